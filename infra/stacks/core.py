"""The environment's core stack: the shared layers (and, from phase 1 on, the instances).

One stack per environment holds everything both phases share so that phase changes never
move state between stacks. It only composes constructs; every decision lives in them.
"""

from __future__ import annotations

from cdktn import TerraformOutput, TerraformStack, TerraformVariable
from cdktn_provider_random.provider import RandomProvider
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.contract import (CLUSTER_INGRESS_PORT, COCKPIT_PUSH_SECRET, MIGRATOR_SECRET, QUEUE_NAME, REDIS_PASSWORD_SECRET,
                            REGISTRY_PULL_SECRET, SECRET_ENV)
from infra.constructs.cache import Cache
from infra.constructs.cdn import Cdn
from infra.constructs.cluster import Cluster
from infra.constructs.compute import Compute, ImageSource, LogShipping
from infra.constructs.database import Database
from infra.constructs.dns import Dns
from infra.constructs.edge import Edge
from infra.constructs.messaging import Messaging
from infra.constructs.networking import Networking
from infra.constructs.observability import Observability
from infra.constructs.registry import Registry
from infra.constructs.secrets import SecretReader, Secrets, SecretValue
from infra.constructs.storage import Storage, deployer_principal_variable
from infra.providers import scaleway
from infra.stacks.backend import configure_backend
from infra.state import RemoteState


def core_stack_name(env: str) -> str:
    return f"ciel-{env}-core"


class CoreStack(TerraformStack):
    def __init__(self, scope: Construct, *, config: EnvironmentConfig, remote_state: RemoteState | None) -> None:
        name = core_stack_name(config.name)
        super().__init__(scope, name)
        # Credentials reach the provider through SCW_* environment variables only.
        scaleway("provider").ScalewayProvider(self, "scaleway", region=config.region, zone=config.zone)
        RandomProvider(self, "random")
        configure_backend(self, env=config.name, stack_name=name, remote=remote_state)
        # Same floor for Terraform and OpenTofu: S3 native locking arrived in 1.10.
        self.add_override("terraform.required_version", ">= 1.10.0")
        project_id = TerraformVariable(
            self, "project_id", type="string", nullable=False,
            description="Scaleway project of this environment; `ciel` sets it from SCW_DEFAULT_PROJECT_ID.",
        ).string_value
        deployer_principal = deployer_principal_variable(self).string_value

        self.networking = Networking(self, "networking", config=config)
        self.edge = Edge(self, "edge", config=config, network=self.networking) if config.enable_load_balancer else None
        self.registry = Registry(self, "registry", config=config, project_id=project_id)
        self.database = Database(self, "database", config=config, network=self.networking)
        # The one credential machines carry: they read everything else from Secret Manager.
        self.secret_reader = SecretReader(self, "secret_reader", config=config, project_id=project_id)
        self.cache = Cache(self, "cache", config=config, network=self.networking, secrets=self.secret_reader.source)
        self.storage = Storage(self, "storage", config=config, project_id=project_id,
                               deployer_principal=deployer_principal)
        self.cdn = Cdn(self, "cdn", config=config, storage=self.storage) if config.enable_cdn else None
        self.messaging = Messaging(self, "messaging", config=config)
        self.observability = Observability(self, "observability", config=config)
        self.secrets = Secrets(self, "secrets", config=config, extra=[
            SecretValue("database-url", self.database.database_url, "DATABASE_URL of the app user"),
            SecretValue(MIGRATOR_SECRET, self.database.migrator_url, "Database URL for schema migrations"),
            SecretValue("redis-url", self.cache.redis_url, "REDIS_URL"),
            *([SecretValue(REDIS_PASSWORD_SECRET, self.cache.password.result, "Password of the self-managed Redis")]
              if not self.cache.managed else []),
            SecretValue("s3-access-key", self.storage.app.api_key.access_key, "AWS_ACCESS_KEY_ID for the media bucket"),
            SecretValue("s3-secret-key", self.storage.app.api_key.secret_key, "AWS_SECRET_ACCESS_KEY for the media bucket"),
            SecretValue("sqs-access-key", self.messaging.app_credentials.access_key, "Queue access key (publish/receive)"),
            SecretValue("sqs-secret-key", self.messaging.app_credentials.secret_key, "Queue secret key (publish/receive)"),
            SecretValue(REGISTRY_PULL_SECRET, self.registry.puller.api_key.secret_key, "Registry pull key (read-only)"),
            SecretValue(COCKPIT_PUSH_SECRET, self.observability.push_token.secret_key, "Cockpit push token (write-only)"),
        ])
        self.cache.boot_after(self.secrets.versions)
        # After a finished cutover the instances are retired: the whole compute layer (servers,
        # their NICs, addresses and boot configs, security groups, placement group) is gone
        # from the stack, so the retire step's apply deletes exactly it.
        self.compute = None if config.instances_retired else Compute(
            self, "compute", config=config, network=self.networking, image=ImageSource(
                registry_host=f"rg.{config.region}.scw.cloud",
                image=config.image(self.registry.namespace.endpoint),
                pull_secret=REGISTRY_PULL_SECRET,
            ), settings=self._app_settings(config), secret_env=dict(SECRET_ENV), secrets=self.secret_reader.source,
            secrets_ready=self.secrets.versions, logs=LogShipping(
                push_url=self.observability.logs.push_url, token_secret=COCKPIT_PUSH_SECRET,
            ) if config.ship_logs_to_cockpit else None)
        if self.edge:
            # The LB sends traffic to the API instances' reserved addresses (none once retired:
            # the cutover's drain emptied the backend, the configuration says so too).
            self.edge.instance_backend.server_ips = [a.address for a in self.compute.api_addresses] if self.compute else []
        self.cluster = None
        if config.phase == 2:
            self.cluster = Cluster(self, "cluster", config=config, network=self.networking)
            if self.edge:
                self.edge.add_cluster_backend(address=self.cluster.ingress_address.address, port=CLUSTER_INGRESS_PORT)
                if config.traffic == "cluster":
                    # Recorded by the cutover: declare what it did, so the next apply changes nothing.
                    self.edge.route_public_traffic_to(self.edge.cluster_backend)
        self.dns = None
        if config.domain:
            self.dns = Dns(self, "dns", config=config,
                           lb_ip_address=self.edge.ip.ip_address if self.edge else None,
                           cdn_target=self.cdn.dns.default_fqdn if self.cdn else None)
            if self.edge:  # Let's Encrypt needs the API host to resolve to the LB first
                self.edge.issue_certificate_after(self.dns.records["api"])
        self._outputs(config)

    def _app_settings(self, config: EnvironmentConfig) -> dict[str, str]:
        """The plain half of the image's configuration contract (infra/contract.py); the
        secret half (SECRET_ENV) is read from Secret Manager on the machine."""
        return {
            "S3_ENDPOINT": self.storage.endpoint,
            "S3_REGION": config.region,
            "S3_BUCKET": self.storage.bucket.name,
            "S3_PUBLIC_ENDPOINT": self.cdn.public_endpoint if self.cdn else self.storage.endpoint,
            "QUEUE_ENDPOINT": self.messaging.endpoint,
            "QUEUE_REGION": config.region,
            "QUEUE_NAME": QUEUE_NAME,
            "REDIS_CA_CERT_B64": self.cache.redis_ca_cert_b64,
        }

    def _outputs(self, config: EnvironmentConfig) -> None:
        def output(name: str, value, description: str, sensitive: bool = False) -> None:
            TerraformOutput(self, name, value=value, description=description, sensitive=sensitive)

        if self.edge:
            output("lb_ip", self.edge.ip.ip_address, "Public IP of the shared load balancer (kept across phases).")
            scheme = "https" if config.enable_https else "http"
            host = config.api_hostname if config.enable_https else self.edge.ip.ip_address
            output("api_url", f"{scheme}://{host}", "Base URL of the API.")
            output("lb_id", self.edge.lb.id, "Zoned ID of the shared load balancer (the cutover's pivot).")
            output("instance_backend_id", self.edge.instance_backend.id, "Zoned ID of the LB backend of the instances.")
        output("registry_endpoint", self.registry.namespace.endpoint, "Registry namespace to push the image to.")
        output("media_bucket", self.storage.bucket.name, "S3_BUCKET.")
        output("s3_endpoint", self.storage.endpoint, "S3_ENDPOINT.")
        output("s3_public_endpoint", self.cdn.public_endpoint if self.cdn else self.storage.endpoint,
               "S3_PUBLIC_ENDPOINT: the CDN in front of the bucket, or the bucket's endpoint without a CDN.")
        output("queue_endpoint", self.messaging.endpoint, "QUEUE_ENDPOINT.")
        output("queue_url", self.messaging.queue.url, "URL of the media jobs queue.")
        output("probe_queue_url", self.messaging.probe_queue.url, "URL of `ciel verify`'s probe queue.")
        output("secret_manager_path", self.secrets.path, "Secret Manager path holding the app's secrets.")
        output("database_url", self.database.database_url, "DATABASE_URL (app user, private network).", sensitive=True)
        output("migrator_database_url", self.database.migrator_url, "Database URL for migrations.", sensitive=True)
        output("redis_url", self.cache.redis_url, "REDIS_URL (private network).", sensitive=True)
        output("redis_ca_cert_b64", self.cache.redis_ca_cert_b64, "REDIS_CA_CERT_B64 (empty for the self-managed Redis).")
        output("media_access_key", self.storage.app.api_key.access_key, "AWS_ACCESS_KEY_ID of the media app.", sensitive=True)
        output("media_secret_key", self.storage.app.api_key.secret_key, "AWS_SECRET_ACCESS_KEY of the media app.", sensitive=True)
        output("queue_access_key", self.messaging.app_credentials.access_key, "Queue access key of the app.", sensitive=True)
        output("queue_secret_key", self.messaging.app_credentials.secret_key, "Queue secret key of the app.", sensitive=True)
        output("registry_pull_secret_key", self.registry.puller.api_key.secret_key, "Registry pull key.", sensitive=True)
        output("cockpit_push_token", self.observability.push_token.secret_key, "Cockpit push token.", sensitive=True)
        output("cockpit_logs_url", self.observability.logs.url, "Cockpit logs source (Loki API) of the environment.")
        output("cockpit_query_token", self.observability.query_token.secret_key,
               "Cockpit token that may only query (for `ciel verify`).", sensitive=True)
        output("private_network_id", self.networking.private_network.id, "Regional ID of the shared private network.")
        # The workloads stack takes these as inputs (Secrets of the namespace).
        output("paseto_access_key_value", self.secrets.values["paseto-access-key"], "PASETO access key.", sensitive=True)
        output("paseto_refresh_key_value", self.secrets.values["paseto-refresh-key"], "PASETO refresh key.",
               sensitive=True)
        if self.cluster:
            kubeconfig = self.cluster.cluster.kubeconfig.get(0)
            output("cluster_id", self.cluster.cluster.id, "Regional ID of the Kapsule cluster.")
            output("cluster_ingress_ip_id", self.cluster.ingress_address.id, "IPAM ID of the cluster's ingress address.")
            output("kube_host", kubeconfig.host, "Kubernetes API URL.", sensitive=True)
            output("kube_token", kubeconfig.token, "Kubernetes admin token.", sensitive=True)
            output("kube_ca_certificate", kubeconfig.cluster_ca_certificate, "Cluster CA (base64).", sensitive=True)
            if self.edge:
                output("cluster_backend_id", self.edge.cluster_backend.id, "Zoned ID of the LB backend of the cluster.")
        if self.edge:
            output("public_frontend_ids", [f.id for f in self.edge.frontends], "Zoned IDs of the public frontends.")
        compute = self.compute
        output("api_server_ids", [s.id for s in compute.api_servers] if compute else [], "Zoned IDs of the API instances.")
        output("api_addresses", [a.address for a in compute.api_addresses] if compute else [],
               "Private IPs of the API instances.")
        output("worker_server_ids", [s.id for s in compute.worker_servers] if compute else [],
               "Zoned IDs of the worker instances.")
