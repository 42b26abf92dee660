"""The environment's workloads stack (phase 2): what runs in the Kapsule cluster.

Separate from the core stack on purpose: the kubernetes provider cannot be configured
reliably from a cluster created in the same apply. Its inputs are variables that `ciel`
fills from the core stack's outputs (live) or with placeholders (offline), so its plan
never depends on a state that does not exist yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktn import Fn, TerraformStack, TerraformVariable
from cdktn_provider_kubernetes.provider import KubernetesProvider
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.stacks.backend import configure_backend
from infra.state import RemoteState
from k8s.terraform import add_manifests
from k8s.workloads import SECRET_KEYS, WorkloadInputs, build


def workloads_stack_name(env: str) -> str:
    return f"ciel-{env}-workloads"


@dataclass(frozen=True)
class Input:
    name: str  # the variable's name = the core stack output it comes from
    sensitive: bool
    offline: str  # a well-formed stand-in for offline plans


# A self-signed certificate made for offline plans only (its key was never kept): the
# provider checks that the CA is PEM before planning.
OFFLINE_CA_PEM_BASE64 = (
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJuRENDQVVPZ0F3SUJBZ0lVZXVyLzZjdnAvUmVjTUlXaGw2bEpmQjVj"
    "byswd0NnWUlLb1pJemowRUF3SXcKSXpFaE1COEdBMVVFQXd3WVkybGxiQzF2Wm1ac2FXNWxMWEJzWVdObGFHOXNaR1Z5TUNB"
    "WERUSTJNVEV5TmpJegpNakUxTlZvWUR6SXhNall4TVRBeU1qTXlNVFUxV2pBak1TRXdId1lEVlFRRERCaGphV1ZzTFc5bVpt"
    "eHBibVV0CmNHeGhZMlZvYjJ4a1pYSXdXVEFUQmdjcWhrak9QUUlCQmdncWhrak9QUU1CQndOQ0FBUTc2ZzJGWTIrUXl5UHoK"
    "Z3NUQTdLdHVpek9Vc3E5R1RjcFF5K1M4K25LK2JSUWkvUGhiWFNhYVNIOWNJRG9zNlpLTjd5OU5oc2wyaHQyUwpENVhyeFVw"
    "bW8xTXdVVEFkQmdOVkhRNEVGZ1FVNjhFUUVaU2lMcUJCVEE0L01CVndmaVpDa25Fd0h3WURWUjBqCkJCZ3dGb0FVNjhFUUVa"
    "U2lMcUJCVEE0L01CVndmaVpDa25Fd0R3WURWUjBUQVFIL0JBVXdBd0VCL3pBS0JnZ3EKaGtqT1BRUURBZ05IQURCRUFpQUVI"
    "R1MydE91ZjJXSnVOK1BDNmRJWFgwcDdBVmtVUndTaFlMTjFyQ0Ryb1FJZwpNWFlIbDJGeWhZUmN1YWFoZ3JKYWpaSW93aC9m"
    "VjJDM25lUlVwdWNoVUFvPQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg=="
)

# Core outputs the workloads need. A `.invalid` host never resolves: nothing is contacted.
INPUTS = (
    Input("kube_host", True, "https://offline.invalid:6443"),
    Input("kube_token", True, "offline-placeholder-token"),
    Input("kube_ca_certificate", True, OFFLINE_CA_PEM_BASE64),
    Input("private_network_id", False, "fr-par/00000000-0000-4000-8000-00000000000a"),
    Input("cluster_ingress_ip_id", False, "fr-par/00000000-0000-4000-8000-00000000000b"),
    Input("registry_endpoint", False, "rg.fr-par.scw.cloud/ciel-offline"),
    Input("media_bucket", False, "ciel-offline-media-000000"),
    Input("s3_public_endpoint", False, "https://s3.fr-par.scw.cloud"),
    Input("queue_endpoint", False, "https://sqs.mnq.fr-par.scaleway.com"),
    Input("queue_url", False, "https://sqs.mnq.fr-par.scaleway.com/project-offline/ciel-media-jobs"),
    Input("redis_ca_cert_b64", False, ""),  # empty: the self-managed Redis (no TLS)
    Input("registry_pull_secret_key", True, "00000000-0000-4000-8000-00000000000c"),
    Input("database_url", True, "postgresql://offline"),
    Input("migrator_database_url", True, "postgresql://offline-migrator"),
    Input("redis_url", True, "redis://offline"),
    Input("media_access_key", True, "SCWOFFLINEPLACEHOLD1"),
    Input("media_secret_key", True, "00000000-0000-4000-8000-00000000000d"),
    Input("queue_access_key", True, "offline"),
    Input("queue_secret_key", True, "offline"),
    Input("paseto_access_key_value", True, "b2ZmbGluZQ=="),
    Input("paseto_refresh_key_value", True, "b2ZmbGluZQ=="),
)
SECRET_SOURCES = dict(zip(SECRET_KEYS, ("database_url", "redis_url", "media_access_key", "media_secret_key",
                                        "queue_access_key", "queue_secret_key", "paseto_access_key_value",
                                        "paseto_refresh_key_value")))


class WorkloadsStack(TerraformStack):
    def __init__(self, scope: Construct, *, config: EnvironmentConfig, remote_state: RemoteState | None,
                 include_untyped: bool) -> None:
        name = workloads_stack_name(config.name)
        super().__init__(scope, name)
        configure_backend(self, env=config.name, stack_name=name, remote=remote_state)
        self.add_override("terraform.required_version", ">= 1.10.0")
        var = {item.name: TerraformVariable(self, item.name, type="string", sensitive=item.sensitive, nullable=False,
                                            description=f"core stack output `{item.name}`").string_value
               for item in INPUTS}
        KubernetesProvider(self, "kubernetes", host=var["kube_host"], token=var["kube_token"],
                           cluster_ca_certificate=Fn.base64decode(var["kube_ca_certificate"]))

        registry_host = f"rg.{config.region}.scw.cloud"
        pull_key = var["registry_pull_secret_key"]
        docker_config = Fn.jsonencode({"auths": {registry_host: {
            "username": "nologin", "password": pull_key, "auth": Fn.base64encode(f"nologin:{pull_key}")}}})

        def bare(reference: str) -> str:  # regional IDs are "<region>/<uuid>"; the controller wants the UUID
            return Fn.element(Fn.split("/", reference), 1)

        self.inputs = WorkloadInputs(
            image=config.image(var["registry_endpoint"]),
            registry_host=registry_host,
            private_network_id=bare(var["private_network_id"]),
            ingress_ip_id=bare(var["cluster_ingress_ip_id"]),
            s3_bucket=var["media_bucket"],
            s3_public_endpoint=var["s3_public_endpoint"],
            queue_endpoint=var["queue_endpoint"],
            queue_url=var["queue_url"],
            redis_ca_cert_b64=var["redis_ca_cert_b64"],
            secrets={key: var[source] for key, source in SECRET_SOURCES.items()},
            migrator_database_url=var["migrator_database_url"],
            docker_config_json=docker_config,
        )
        self.manifests = build(config, self.inputs)
        self.resources = add_manifests(self, self.manifests, typed_only=not include_untyped)
