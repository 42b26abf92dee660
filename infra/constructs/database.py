"""Database layer: managed PostgreSQL 16 on the private network only.

No `load_balancer` block: the instance gets a private endpoint and no public one.
Three roles: the admin (created with the instance, kept for break-glass), a migrator
that owns the schema (`all` on `ciel`), and the application user with `readwrite` only.
"""

from __future__ import annotations

from cdktn import Fn
from cdktn_provider_random.password import Password
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs.networking import Networking
from infra.providers import scaleway

DATABASE_NAME = "ciel"
APP_USER = "ciel_app"
MIGRATOR_USER = "ciel_migrator"
ADMIN_USER = "ciel_admin"


def database_password(scope: Construct, id_: str) -> Password:
    """Scaleway requires upper, lower, digit and symbol; the symbols avoid URL/shell trouble."""
    return Password(scope, id_, length=32, min_upper=2, min_lower=2, min_numeric=2, min_special=2,
                    override_special="-_.~")


class Database(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, network: Networking) -> None:
        super().__init__(scope, id_)
        rdb = scaleway("rdb_instance")
        rdb_database = scaleway("rdb_database")
        rdb_user = scaleway("rdb_user")
        rdb_privilege = scaleway("rdb_privilege")

        admin_password = database_password(self, "admin_password")
        self.app_password = database_password(self, "app_password")
        self.migrator_password = database_password(self, "migrator_password")

        self.instance = rdb.RdbInstance(
            self,
            "instance",
            name=f"ciel-{config.name}",
            engine="PostgreSQL-16",
            node_type=config.db_node_type,
            is_ha_cluster=config.db_enable_ha,
            region=config.region,
            user_name=ADMIN_USER,
            password=admin_password.result,
            volume_type="sbs_5k",
            volume_size_in_gb=config.db_volume_size_in_gb,
            encryption_at_rest=True,
            disable_backup=False,
            backup_schedule_frequency=24,
            backup_schedule_retention=config.db_backup_retention_days,
            # Settings values are plain numbers as strings; sizes are in MB.
            settings={
                "work_mem": str(config.db_work_mem_mb),
                "max_connections": str(config.db_max_connections),
                "effective_cache_size": str(config.db_effective_cache_size_mb),
            },
            private_network=rdb.RdbInstancePrivateNetwork(pn_id=network.private_network.id, enable_ipam=True),
            tags=config.tags("database"),
        )
        self.database = rdb_database.RdbDatabase(self, "database", instance_id=self.instance.id, name=DATABASE_NAME)
        self.app_user = rdb_user.RdbUser(self, "app_user", instance_id=self.instance.id, name=APP_USER,
                                         password=self.app_password.result, is_admin=False)
        self.migrator_user = rdb_user.RdbUser(self, "migrator_user", instance_id=self.instance.id, name=MIGRATOR_USER,
                                              password=self.migrator_password.result, is_admin=False)
        for role, user, permission in (("app", self.app_user, "readwrite"), ("migrator", self.migrator_user, "all")):
            rdb_privilege.RdbPrivilege(self, f"{role}_privilege", instance_id=self.instance.id,
                                       database_name=self.database.name, user_name=user.name, permission=permission)

        self.read_replicas = []
        if config.db_read_replica_count:
            replica = scaleway("rdb_read_replica")
            for index in range(config.db_read_replica_count):
                self.read_replicas.append(replica.RdbReadReplica(
                    self,
                    f"read_replica_{index}",
                    instance_id=self.instance.id,
                    region=config.region,
                    private_network=replica.RdbReadReplicaPrivateNetwork(
                        private_network_id=network.private_network.id, enable_ipam=True),
                ))

        endpoint = self.instance.private_network
        host_port = f"{endpoint.ip}:{Fn.tostring(endpoint.port)}"
        self.database_url = (f"postgresql://{APP_USER}:{Fn.urlencode(self.app_password.result)}@{host_port}"
                             f"/{DATABASE_NAME}?sslmode=require")
        self.migrator_url = (f"postgresql://{MIGRATOR_USER}:{Fn.urlencode(self.migrator_password.result)}@{host_port}"
                             f"/{DATABASE_NAME}?sslmode=require")
