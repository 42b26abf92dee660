"""Cache layer: Redis 7, self-managed on an instance (default, cheap) or managed (TLS).

Either way it is reachable on the private network only, with a password, and exposes a
sensitive `redis_url`.
"""

from __future__ import annotations

from cdktn import Fn
from cdktn_provider_random.password import Password
from constructs import Construct

from infra.cloudinit.redis import REDIS_PORT, redis_user_data
from infra.cloudinit.secrets import SecretSource
from infra.config import EnvironmentConfig
from infra.config.offers import INSTANCE_SIZES
from infra.constructs.networking import Networking
from infra.contract import REDIS_PASSWORD_SECRET
from infra.providers import scaleway

DEBIAN_IMAGE = "debian_bookworm"


class Cache(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, network: Networking,
                 secrets: SecretSource) -> None:
        super().__init__(scope, id_)
        self.managed = config.use_managed_redis
        self._secrets = secrets
        self.server = None
        if self.managed:
            self._managed(config, network)
        else:
            self._self_managed(config, network)

    def boot_after(self, secret_versions: list) -> None:
        """The self-managed machine reads its password as it boots: after the secret exists."""
        if self.server is not None:
            self.server.add_override("depends_on", [f"{version.terraform_resource_type}.{version.friendly_unique_id}"
                                                    for version in secret_versions])

    def _self_managed(self, config: EnvironmentConfig, network: Networking) -> None:
        server = scaleway("instance_server")
        security_group = scaleway("instance_security_group")
        private_nic = scaleway("instance_private_nic")
        ipam_ip = scaleway("ipam_ip")
        tags = [*config.tags("cache"), "role=redis"]

        # Letters and digits only: it is interpolated into a config file and a URL.
        self.password = Password(self, "password", length=40, special=False)
        inbound = [security_group.InstanceSecurityGroupInboundRule(
            action="accept", protocol="TCP", port=REDIS_PORT, ip_range=config.private_network_cidr)]
        if config.enable_bastion:
            inbound.append(security_group.InstanceSecurityGroupInboundRule(
                action="accept", protocol="TCP", port=22, ip_range=config.private_network_cidr))
        self.security_group = security_group.InstanceSecurityGroup(
            self,
            "security_group",
            name=f"ciel-{config.name}-redis",
            zone=config.zone,
            inbound_default_policy="drop",
            outbound_default_policy="accept",
            stateful=True,
            inbound_rule=inbound,
            tags=tags,
        )
        # A reserved IPAM address: the URL is known before the machine boots and
        # survives its replacement.
        self.address = ipam_ip.IpamIp(
            self,
            "address",
            region=config.region,
            source=[ipam_ip.IpamIpSource(private_network_id=network.private_network.id)],
            tags=tags,
        )
        ram_gib = INSTANCE_SIZES[config.redis_instance_type][1]
        self.server = server.InstanceServer(
            self,
            "server",
            name=f"ciel-{config.name}-redis",
            type=config.redis_instance_type,
            image=DEBIAN_IMAGE,
            zone=config.zone,
            security_group_id=self.security_group.id,
            enable_dynamic_ip=False,  # no public IP: egress goes through the public gateway
            user_data={"cloud-init": redis_user_data(password_secret=REDIS_PASSWORD_SECRET, secrets=self._secrets,
                                                     maxmemory_mb=ram_gib * 1024 * 3 // 4)},
            tags=tags,
        )
        self.nic = private_nic.InstancePrivateNic(
            self,
            "private_nic",
            server_id=self.server.id,
            private_network_id=network.private_network.id,
            ipam_ip_ids=[self.address.id],
            zone=config.zone,
        )
        self.redis_url = f"redis://:{self.password.result}@{self.address.address}:{REDIS_PORT}/0"
        # Plain redis:// on the private network: no TLS, so no CA for the app to trust.
        self.redis_ca_cert_b64 = ""

    def _managed(self, config: EnvironmentConfig, network: Networking) -> None:
        cluster = scaleway("redis_cluster")
        self.password = Password(self, "password", length=32, min_upper=2, min_lower=2, min_numeric=2, min_special=2,
                                 override_special="-_.~")
        self.cluster = cluster.RedisCluster(
            self,
            "cluster",
            name=f"ciel-{config.name}",
            version=config.managed_redis_version,
            node_type=config.managed_redis_node_type,
            cluster_size=1,
            user_name="ciel",
            password=self.password.result,
            tls_enabled=True,  # changing it later replaces the cluster
            zone=config.zone,
            private_network=[cluster.RedisClusterPrivateNetwork(id=network.private_network.id)],
            tags=config.tags("cache"),
        )
        endpoint = self.cluster.private_network.get(0)
        # The cluster's TLS CA (PEM, public), base64 on one line for an environment variable:
        # the app verifies the rediss:// server against it (REDIS_CA_CERT_B64).
        self.redis_ca_cert_b64 = Fn.base64encode(self.cluster.certificate)
        self.redis_url = (f"rediss://ciel:{Fn.urlencode(self.password.result)}@{Fn.element(endpoint.ips, 0)}"
                          f":{Fn.tostring(endpoint.port)}/0")
