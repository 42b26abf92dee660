"""What runs in the cluster (phase 2), for namespace `ciel`, in a stable order.

The same image as phase 1, with the same environment contract (infra/contract.py): the
non-secret half in a ConfigMap, the secret half in a Secret. The api is reached through
a private LB that the cloud controller creates at a reserved address on the shared
private network — option 1, "chained", of docs/phase2.md — and that the shared public LB
targets with its (not yet used) cluster backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import EnvironmentConfig
from infra.contract import CLUSTER_INGRESS_PORT, MIGRATE_MODE, MIGRATOR_SECRET, QUEUE_NAME
from k8s import objects
from k8s.objects import Container, DeploymentSpec, JobSpec, Manifest, Resources

NAMESPACE = "ciel"
CONFIG = "ciel-config"
SECRETS = "ciel-secrets"
MIGRATOR_SECRETS = "ciel-migrator"  # DATABASE_URL of the migrator: only `ciel db migrate`'s Jobs read it
PULL_SECRET = "ciel-registry"
APP_PORT = 8080
HEALTH = "/health"
# Kapsule's default pod range; pods reach each other and the LB's health checks arrive from nodes.
POD_CIDR = "100.64.0.0/15"

SECRET_KEYS = ("DATABASE_URL", "REDIS_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "QUEUE_ACCESS_KEY_ID",
               "QUEUE_SECRET_ACCESS_KEY", "PASETO_ACCESS_KEY", "PASETO_REFRESH_KEY")


@dataclass(frozen=True)
class WorkloadInputs:
    """Values that come from the core stack (references in the Terraform path)."""

    image: str
    registry_host: str
    private_network_id: str  # bare UUID, for the cloud controller
    ingress_ip_id: str  # bare UUID of the reserved IPAM address
    s3_bucket: str
    s3_public_endpoint: str
    queue_endpoint: str
    queue_url: str
    redis_ca_cert_b64: str  # base64 of the managed Redis TLS CA (unused with the self-managed Redis)
    secrets: dict[str, str] | None  # SECRET_KEYS → values; None when rendering for GitOps
    migrator_database_url: str | None  # None when rendering for GitOps
    docker_config_json: str | None  # the pull secret's .dockerconfigjson; None when rendering


def labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "ciel", "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "ciel", "app.kubernetes.io/managed-by": "ciel-infra"}


def selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "ciel", "app.kubernetes.io/component": component}


def image_pull_policy(config: EnvironmentConfig) -> str:
    """A pinned tag names one build: a node that has it need not ask the registry again
    (IfNotPresent: faster starts, no dependency on the registry for a reschedule). A moving
    tag (`latest`, `main`...: allowed in dev only, infra/config/schema.py) must be pulled on
    every pod start (Always), or a node that pulled it once keeps running that stale image."""
    return "Always" if config.image_tag_is_mutable else "IfNotPresent"


def _config_data(config: EnvironmentConfig, inputs: WorkloadInputs) -> dict[str, str]:
    return {
        "S3_ENDPOINT": f"https://s3.{config.region}.scw.cloud",
        "S3_REGION": config.region,
        "S3_BUCKET": inputs.s3_bucket,
        "S3_PUBLIC_ENDPOINT": inputs.s3_public_endpoint,
        "QUEUE_ENDPOINT": inputs.queue_endpoint,
        "QUEUE_REGION": config.region,
        "QUEUE_NAME": QUEUE_NAME,
        # As on the instances (infra/contract.py): the self-managed Redis has no TLS, so no CA.
        "REDIS_CA_CERT_B64": inputs.redis_ca_cert_b64 if config.use_managed_redis else "",
    }


def _secrets(config: EnvironmentConfig, inputs: WorkloadInputs) -> list[Manifest]:
    source = f"secret-manager:/ciel/{config.name}/"
    if inputs.secrets is None:
        # GitOps rendering: the objects and their keys, never their values.
        note = {"ciel-infra/values-from": source, "ciel-infra/keys": ",".join(SECRET_KEYS)}
        return [objects.secret(SECRETS, NAMESPACE, labels("config"), None, annotations=note),
                objects.secret(MIGRATOR_SECRETS, NAMESPACE, labels("config"), None,
                               annotations={"ciel-infra/values-from": source + MIGRATOR_SECRET,
                                            "ciel-infra/keys": "DATABASE_URL"}),
                objects.secret(PULL_SECRET, NAMESPACE, labels("config"), None, type_="kubernetes.io/dockerconfigjson",
                               annotations={"ciel-infra/values-from": "terraform output registry_pull_secret_key"})]
    return [objects.secret(SECRETS, NAMESPACE, labels("config"), dict(inputs.secrets)),
            objects.secret(MIGRATOR_SECRETS, NAMESPACE, labels("config"),
                           {"DATABASE_URL": inputs.migrator_database_url or ""}),
            objects.secret(PULL_SECRET, NAMESPACE, labels("config"),
                           {".dockerconfigjson": inputs.docker_config_json or ""},
                           type_="kubernetes.io/dockerconfigjson")]


def _rotations(config: EnvironmentConfig) -> dict[str, str]:
    """Pods read their Secret's values at start only: after `ciel secrets rotate`, a new
    rotation count in the pod template rolls them onto the new value."""
    if not config.secret_rotations:
        return {}
    return {"ciel-infra/secret-rotations": ",".join(f"{name}={count}"
                                                    for name, count in sorted(config.secret_rotations.items()))}


def _api(config: EnvironmentConfig, inputs: WorkloadInputs) -> list[Manifest]:
    container = Container(
        name="api", image=inputs.image, env={"APP_MODE": "api", "HTTP_ADDR": f"0.0.0.0:{APP_PORT}"},
        env_from_config_maps=[CONFIG], env_from_secrets=[SECRETS],
        resources=Resources(cpu_request="250m", memory_request="256Mi", cpu_limit=None, memory_limit="512Mi"),
        port=APP_PORT, readiness_path=HEALTH, liveness_path=HEALTH, pre_stop_sleep_seconds=10,
        image_pull_policy=image_pull_policy(config))
    return [
        objects.deployment(DeploymentSpec(
            name="api", ns=NAMESPACE, labels=labels("api"), replicas=config.api_replicas, container=container,
            termination_grace_seconds=config.api_stop_timeout_seconds + 10, image_pull_secret=PULL_SECRET,
            pod_annotations=_rotations(config))),
        objects.pod_disruption_budget("api", NAMESPACE, labels("api"), selector("api"), max_unavailable=1),
        objects.cpu_autoscaler("api", NAMESPACE, labels("api"), "api", minimum=config.api_replicas,
                               maximum=config.api_max_replicas, cpu_percent=config.api_cpu_target_percent),
        objects.service("api", NAMESPACE, labels("api"), selector("api"), port=CLUSTER_INGRESS_PORT,
                        target_port=APP_PORT, type_="LoadBalancer", annotations=_private_lb(config, inputs)),
    ]


def _private_lb(config: EnvironmentConfig, inputs: WorkloadInputs) -> dict[str, str]:
    """Cloud controller annotations: a private LB at the reserved address, checking /health."""
    prefix = "service.beta.kubernetes.io/scw-loadbalancer-"
    return {
        f"{prefix}private": "true",
        f"{prefix}pn-ids": inputs.private_network_id,
        f"{prefix}private-ip-ids": inputs.ingress_ip_id,
        f"{prefix}type": config.cluster_lb_type,
        f"{prefix}zone": config.zone,
        f"{prefix}health-check-type": "http",
        f"{prefix}health-check-http-uri": HEALTH,
        f"{prefix}health-check-http-method": "GET",
        f"{prefix}health-check-http-code": "200",
        f"{prefix}on-marked-down-action": "shutdown_sessions",
    }


def _worker(config: EnvironmentConfig, inputs: WorkloadInputs) -> list[Manifest]:
    # No probes: a worker busy on a long job must not be killed for not answering HTTP.
    container = Container(
        name="worker", image=inputs.image, env={"APP_MODE": "worker"},
        env_from_config_maps=[CONFIG], env_from_secrets=[SECRETS],
        resources=Resources(cpu_request="250m", memory_request="256Mi", cpu_limit=None, memory_limit="1Gi"),
        image_pull_policy=image_pull_policy(config))
    manifests = [
        objects.deployment(DeploymentSpec(
            name="worker", ns=NAMESPACE, labels=labels("worker"), replicas=config.worker_replicas,
            container=container, termination_grace_seconds=config.worker_termination_grace_seconds,
            image_pull_secret=PULL_SECRET, pod_annotations=_rotations(config))),
        objects.pod_disruption_budget("worker", NAMESPACE, labels("worker"), selector("worker"), max_unavailable=1),
    ]
    if config.enable_keda:
        manifests += _keda(config, inputs)
    else:
        # Without KEDA: CPU is a fair proxy for a media worker that is busy processing.
        manifests.append(objects.cpu_autoscaler("worker", NAMESPACE, labels("worker"), "worker",
                                                minimum=max(config.worker_replicas, 1),
                                                maximum=config.worker_max_replicas, cpu_percent=70))
    return manifests


def _keda(config: EnvironmentConfig, inputs: WorkloadInputs) -> list[Manifest]:
    """Queue-depth scaling with KEDA's aws-sqs-queue scaler against Scaleway Queues.

    KEDA itself is installed once per cluster, before phase 2's workloads (docs/phase2.md).
    `scaleOnInFlight: "false"`: Scaleway counts delivered-but-undeleted messages as in
    flight until deleted, which would keep workers scaled up for nothing."""
    auth_name = "ciel-queue"
    return [
        {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
         "metadata": objects.metadata(auth_name, NAMESPACE, labels("worker")),
         "spec": {"secretTargetRef": [
             {"parameter": "awsAccessKeyID", "name": SECRETS, "key": "QUEUE_ACCESS_KEY_ID"},
             {"parameter": "awsSecretAccessKey", "name": SECRETS, "key": "QUEUE_SECRET_ACCESS_KEY"}]}},
        {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
         "metadata": objects.metadata("worker", NAMESPACE, labels("worker")),
         "spec": {
             "scaleTargetRef": {"name": "worker"},
             "minReplicaCount": config.worker_replicas,
             "maxReplicaCount": config.worker_max_replicas,
             "cooldownPeriod": config.visibility_timeout,
             "triggers": [{"type": "aws-sqs-queue", "authenticationRef": {"name": auth_name}, "metadata": {
                 "queueURL": inputs.queue_url, "queueLength": str(config.keda_messages_per_worker),
                 "awsRegion": config.region, "awsEndpoint": inputs.queue_endpoint, "scaleOnInFlight": "false"}}],
         }},
    ]


def migration_job(config: EnvironmentConfig, *, image: str, run_id: str, deadline_seconds: int) -> Manifest:
    """`ciel db migrate`'s run in phase 2: the image once with APP_MODE=migrate and the
    migrator's DATABASE_URL alone (not the app's Secret). Not part of the workloads stack:
    ciel creates one per run and reads its pod's log. Its labels put it under the app's
    egress policy (the database on the private network)."""
    container = Container(
        name="migrate", image=image, env={"APP_MODE": MIGRATE_MODE}, env_from_config_maps=[],
        env_from_secrets=[MIGRATOR_SECRETS],
        resources=Resources(cpu_request="100m", memory_request="128Mi", cpu_limit=None, memory_limit="512Mi"),
        image_pull_policy=image_pull_policy(config))
    return objects.job(JobSpec(name=f"migrate-{run_id}", ns=NAMESPACE, labels=labels("migration"), container=container,
                               image_pull_secret=PULL_SECRET, deadline_seconds=deadline_seconds))


def _network_policies(config: EnvironmentConfig) -> list[Manifest]:
    everything: dict[str, str] = {}
    dns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
           "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    data_layers = {"to": [{"ipBlock": {"cidr": config.private_network_cidr}}],
                   "ports": [{"port": 5432, "protocol": "TCP"}, {"port": 6379, "protocol": "TCP"}]}
    # Object Storage, Queues and the registry are public HTTPS endpoints.
    https = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]}
    return [
        objects.network_policy("default-deny", NAMESPACE, labels("network"), everything, ingress=[], egress=[]),
        objects.network_policy("api-ingress", NAMESPACE, labels("network"), selector("api"), ingress=[{
            # The private LB's traffic and health checks reach pods through the nodes.
            "from": [{"ipBlock": {"cidr": config.private_network_cidr}}, {"ipBlock": {"cidr": POD_CIDR}}],
            "ports": [{"port": APP_PORT, "protocol": "TCP"}]}], egress=None),
        objects.network_policy("app-egress", NAMESPACE, labels("network"), {"app.kubernetes.io/name": "ciel"},
                               ingress=None, egress=[dns, data_layers, https]),
    ]


def build(config: EnvironmentConfig, inputs: WorkloadInputs) -> list[Manifest]:
    """Every object, in apply order: namespace, configuration, policies, workloads."""
    return [
        objects.namespace(NAMESPACE, {**labels("namespace"), "kubernetes.io/metadata.name": NAMESPACE}),
        objects.config_map(CONFIG, NAMESPACE, labels("config"), _config_data(config, inputs)),
        *_secrets(config, inputs),
        *_network_policies(config),
        *_api(config, inputs),
        *_worker(config, inputs),
    ]
