"""The typed configuration of one environment.

Every field has a description, a safe and cheap default (the mvp tier's value), and
validation. The environment's YAML file picks a tier, whose preset (tiers.py) fills the
scaling variables; keys set in the file win over the preset.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from foundation.errors import shown
from infra.config import offers

# Regions and their zones where every service we use (VPC, LB, RDB, Kapsule, Queues) exists.
REGION_ZONES: dict[str, tuple[str, ...]] = {
    "fr-par": ("fr-par-1", "fr-par-2"),
    "nl-ams": ("nl-ams-1", "nl-ams-2", "nl-ams-3"),
    "pl-waw": ("pl-waw-1", "pl-waw-2", "pl-waw-3"),
}

# Secrets ciel generates itself (infra/constructs/secrets.py), so it can make new values.
ROTATABLE_SECRETS = ("paseto-access-key", "paseto-refresh-key", "admin-token")

Tier = Literal["mvp", "growth", "scale"]
Region = Literal["fr-par", "nl-ams", "pl-waw"]

# Used with fullmatch only: `$` also matches before a trailing newline, which would let
# "api.example.com\n" through to a DNS record or a certificate request.
_HOSTNAME = re.compile(r"(?=.{4,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
# What Cockpit's contact point accepts in practice: a dot-atom local part, a host name.
_EMAIL = re.compile(r"(?=.{6,254}\Z)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_ORIGIN = re.compile(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?|\*", re.IGNORECASE)
# Cockpit's preconfigured alert rules are identified by UUIDs (the provider's
# `scaleway_cockpit_preconfigured_alert` data source lists them as preconfigured_rule_id).
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Private networks take RFC 1918 ranges only; ipaddress's is_private also says yes to
# loopback, link-local, carrier-grade NAT and documentation ranges.
_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def _mismatches(values: list[str], pattern: re.Pattern) -> str:
    """The first value of a list that `pattern` refuses, echoed safely (and how many more), or ''."""
    bad = [value for value in values if not pattern.fullmatch(value)]
    return f"{shown(bad[0])}{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}" if bad else ""


def _offer(kind: str, allowed: tuple[str, ...]):
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{shown(value)} is not a supported {kind}; choose one of {', '.join(allowed)}")
        return value

    return AfterValidator(check)


def _hostname(value: Optional[str]) -> Optional[str]:
    if value is not None and not _HOSTNAME.fullmatch(value):
        raise ValueError(f"{shown(value)} is not a fully qualified domain name (lowercase, e.g. ciel.example.com)")
    return value


InstanceType = Annotated[str, _offer("instance type", offers.INSTANCE_TYPES)]
LbType = Annotated[str, _offer("load balancer type", offers.LB_TYPES)]
DbNodeType = Annotated[str, _offer("database node type", offers.DB_NODE_TYPES)]
RedisNodeType = Annotated[str, _offer("managed Redis node type", offers.REDIS_NODE_TYPES)]
GatewayType = Annotated[str, _offer("public gateway type", offers.PUBLIC_GATEWAY_TYPES)]
K8sVersion = Annotated[str, _offer("Kapsule Kubernetes version", offers.K8S_VERSIONS)]
Hostname = Annotated[Optional[str], AfterValidator(_hostname)]

# Tags that name a moving target, not a build: a re-created machine or pod would run
# whatever the tag points at by then. Refused outside dev (compared case-insensitively).
MUTABLE_IMAGE_TAGS = frozenset({"latest", "main", "master", "stable", "edge", "dev", "nightly"})
# The one environment allowed to follow a moving tag.
MUTABLE_TAGS_ALLOWED_IN = "dev"


class EnvironmentConfig(BaseModel):
    """One environment (dev, staging, prod): where it runs, how big it is, what it enables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- identity and placement -------------------------------------------------------
    name: str = Field(description="Environment name; taken from the file name, used in every resource name and tag.")
    tier: Tier = Field("mvp", description="Size preset: mvp (~€50/month), growth (~€200), scale (~€600–800).")
    region: Region = Field("fr-par", description="Scaleway region for regional resources (VPC, database, queues).")
    zone: str = Field("fr-par-1", description="Zone for zonal resources (instances, LB, gateway, Redis); must be in `region`.")
    domain: Hostname = Field(None, description="DNS zone managed in Scaleway Domains (e.g. ciel.example.com); unset: no DNS records, no certificate.")
    api_subdomain: str = Field("api", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
                               description="Label of the API host inside `domain` (api → api.ciel.example.com).")

    # --- networking -------------------------------------------------------------------
    private_network_cidr: str = Field("10.0.0.0/24", description="IPv4 range of the private network joining every component; RFC 1918, /16 to /28.")
    public_gateway_type: GatewayType = Field("VPC-GW-S", description="Public gateway offer: egress (masquerade) for private-only machines, and the bastion.")
    enable_bastion: bool = Field(False, description="SSH bastion on the public gateway; the only SSH path to instances.")
    bastion_port: int = Field(61000, ge=1024, le=65535, description="Public port of the bastion.")

    # --- edge -------------------------------------------------------------------------
    enable_load_balancer: bool = Field(True, description="The shared public load balancer, pivot of the phase-1 → phase-2 cutover.")
    lb_type: LbType = Field("LB-S", description="Load balancer offer.")
    enable_https: bool = Field(False, description="HTTPS frontend with a Let's Encrypt certificate for the API host; needs `domain` pointing at the LB.")

    # --- the image and the environment's phase -----------------------------------------
    image_name: str = Field("ciel", pattern=r"^[a-z0-9]+([._-][a-z0-9]+)*$", description="Image name inside the registry namespace.")
    image_tag: str = Field("latest", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
                           description="Image tag to run; outside dev a pinned version (`ciel deploy phase1 --image-tag 1.4.2`): latest, main, master, stable, edge, dev and nightly are refused there.")
    phase: Literal[1, 2] = Field(1, description="1: instances serve; 2: a Kapsule cluster runs beside them (set by `ciel deploy phase2`).")
    traffic: Literal["instances", "cluster"] = Field("instances", description="Backend of the public frontends (set by `ciel migrate cutover`).")
    instances_retired: bool = Field(False, description="Phase-1 instances deleted after a finished cutover (set by its retire step).")

    # --- the cutover's thresholds -------------------------------------------------------
    cutover_bake_seconds: int = Field(600, ge=0, le=86400, description="How long production runs on the cluster, watched, before draining the instances.")
    cutover_bake_check_interval_seconds: int = Field(5, ge=1, le=60, description="How often the bake reads the cluster backend's LB health and probes production (default: the LB health check's 5 s cadence); a failure rolls back at the next read.")
    cutover_probe_requests: int = Field(50, ge=5, le=10000, description="HTTP probes per check (preview host, then public frontend).")
    cutover_min_success_ratio: float = Field(0.995, ge=0.5, le=1.0, description="Share of probes that must succeed.")
    cutover_max_p95_ms: int = Field(500, ge=10, le=60000, description="p95 latency the probes must stay under (the plan's 500 ms trigger).")
    cutover_preview_host: Hostname = Field(None, description="Host header routed to the cluster during preview (default: preview-<api host> or preview.invalid).")

    # --- compute (phase 1) ------------------------------------------------------------
    api_instance_count: int = Field(1, ge=0, le=20, description="Instances running APP_MODE=api behind the load balancer.")
    api_instance_type: InstanceType = Field("DEV1-S", description="Instance offer for the API.")
    worker_instance_count: int = Field(1, ge=0, le=20, description="Instances running APP_MODE=worker (queue consumers).")
    worker_instance_type: InstanceType = Field("DEV1-S", description="Instance offer for the workers.")
    api_stop_timeout_seconds: int = Field(60, ge=5, le=600, description="Grace an API container gets to finish requests when stopped.")
    ship_logs_to_cockpit: bool = Field(True, description="Ship the containers' logs to the Cockpit logs source (Grafana Alloy).")

    # --- cluster (phase 2) ---------------------------------------------------------------
    k8s_version: K8sVersion = Field("1.34", description="Kapsule Kubernetes minor version (patches come from auto-upgrade).")
    k8s_cni: Literal["cilium", "calico"] = Field("cilium", description="Cluster network plugin (Cilium enforces NetworkPolicies).")
    k8s_node_type: InstanceType = Field("DEV1-M", description="Node offer of the cluster's pool.")
    k8s_pool_min_size: int = Field(1, ge=1, le=100, description="Fewest nodes the autoscaler keeps.")
    k8s_pool_max_size: int = Field(3, ge=1, le=100, description="Most nodes the autoscaler may add.")
    cluster_lb_type: LbType = Field("LB-S", description="Offer of the private LB the cloud controller creates for the api Service.")
    api_replicas: int = Field(2, ge=1, le=100, description="Fewest api pods (HPA minimum); 2 keeps one during a node drain.")
    api_max_replicas: int = Field(6, ge=1, le=200, description="Most api pods the HPA may run.")
    api_cpu_target_percent: int = Field(70, ge=10, le=95, description="HPA CPU target of the api (the plan's 70% trigger).")
    worker_replicas: int = Field(1, ge=0, le=100, description="Fewest worker pods.")
    worker_max_replicas: int = Field(4, ge=1, le=200, description="Most worker pods.")
    enable_keda: bool = Field(False, description="Scale workers on queue depth with KEDA (installed in the cluster beforehand); else an HPA on CPU.")
    keda_messages_per_worker: int = Field(100, ge=1, le=100000, description="Queue messages per worker pod KEDA aims for.")

    # --- database ---------------------------------------------------------------------
    db_node_type: DbNodeType = Field("DB-DEV-S", description="Managed PostgreSQL 16 node offer.")
    db_enable_ha: bool = Field(False, description="High-availability (standby node) cluster.")
    db_volume_size_in_gb: int = Field(10, ge=5, le=10000, description="Block storage (sbs_5k) volume size of the database.")
    db_read_replica_count: int = Field(0, ge=0, le=3, description="Read replicas on the private network.")
    db_backup_retention_days: int = Field(7, ge=1, le=365, description="Days automatic daily backups are kept.")
    db_work_mem_mb: int = Field(4, ge=1, le=2048, description="PostgreSQL work_mem, in MB.")
    db_max_connections: int = Field(100, ge=50, le=10000, description="PostgreSQL max_connections.")
    db_effective_cache_size_mb: int = Field(768, ge=64, le=1048576, description="PostgreSQL effective_cache_size, in MB.")

    # --- cache ------------------------------------------------------------------------
    use_managed_redis: bool = Field(False, description="Managed Redis (TLS) instead of Redis 7 self-managed on an instance.")
    redis_instance_type: InstanceType = Field("DEV1-S", description="Instance offer of the self-managed Redis.")
    managed_redis_node_type: RedisNodeType = Field("RED1-MICRO", description="Node offer of the managed Redis.")
    managed_redis_version: str = Field("7.2.11", pattern=r"^7\.[0-9]{1,3}\.[0-9]{1,3}$",
                                       description="Managed Redis 7 engine version (check `scw redis version list`).")

    # --- storage and CDN --------------------------------------------------------------
    enable_cdn: bool = Field(True, description="Edge Services pipeline (CDN) in front of the media bucket; the plan's "
                                               "MVP already has one (about 5 €/month).")
    cdn_custom_domain: Hostname = Field(None, description="Custom host of the CDN (e.g. cdn.ciel.example.com), with a managed certificate.")
    cors_allowed_origins: list[str] = Field(default_factory=list, description="Origins allowed to upload to the bucket with presigned URLs (https://app.example.com).")
    enable_glacier_transition: bool = Field(False, description="Move media objects to Glacier after `glacier_transition_days`.")
    glacier_transition_days: int = Field(90, ge=1, le=3650, description="Age in days before the Glacier transition.")

    # --- messaging --------------------------------------------------------------------
    message_retention_seconds: int = Field(345600, ge=60, le=1209600, description="How long an unconsumed job stays in the queue.")
    visibility_timeout: int = Field(300, ge=0, le=43200, description="Seconds a received job stays hidden; a worker must finish a job within it.")
    receive_wait_time: int = Field(10, ge=0, le=20, description="Long-poll wait of a receive, in seconds.")
    enable_dlq: bool = Field(True, description="Dead-letter queue for jobs that keep failing.")
    dlq_max_receive_count: int = Field(5, ge=1, le=1000, description="Receives before a job moves to the dead-letter queue.")

    # --- secrets and observability ----------------------------------------------------
    enable_admin_token: bool = Field(False, description="Generate an admin API token in Secret Manager.")
    secret_rotations: dict[str, int] = Field(default_factory=dict, description="How many times each generated secret was rotated (set by `ciel secrets rotate`); a higher number generates a new value.")
    alert_email: Optional[str] = Field(None, description="Email contact point of the Cockpit alert manager; unset: alerts fire to no one.")
    alerts: bool = Field(True, description="Enable Cockpit's preconfigured alert rules on the plan's scaling signals that this environment runs (infra/alerts.py, docs/observability.md).")
    preconfigured_alert_ids: list[str] = Field(default_factory=list, description="More Cockpit preconfigured alert rule IDs to enable, beside those `alerts` enables (see docs/observability.md).")
    metrics_retention_days: int = Field(31, ge=1, le=365, description="Retention of the Cockpit metrics source.")
    logs_retention_days: int = Field(7, ge=1, le=365, description="Retention of the Cockpit logs source.")

    @field_validator("name")
    @classmethod
    def _name_is_a_label(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]{1,19}", value):
            raise ValueError("must be 2–20 characters: lowercase letters, digits and '-', starting with a letter")
        return value

    @field_validator("private_network_cidr")
    @classmethod
    def _cidr_is_private(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError as error:
            raise ValueError(f"{shown(value)} is not an IPv4 network in CIDR form ({shown(str(error))}); "
                             "example: 10.0.0.0/24") from None
        if not any(network.subnet_of(allowed) for allowed in _RFC1918):
            raise ValueError(f"{value} is not a private (RFC 1918) range; use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
        if not 16 <= network.prefixlen <= 28:
            raise ValueError(f"prefix /{network.prefixlen} is out of range: Scaleway private networks take /16 to /28")
        return str(network)

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        if bad := _mismatches(value, _ORIGIN):
            raise ValueError(f"{bad} is not an origin: use scheme://host[:port] without a path, "
                             "e.g. https://app.example.com")
        return value

    @field_validator("preconfigured_alert_ids")
    @classmethod
    def _alert_ids(cls, value: list[str]) -> list[str]:
        if bad := _mismatches(value, _UUID):
            raise ValueError(f"{bad} is not an alert rule id: ids are lowercase UUIDs (preconfigured_rule_id in `scw cockpit "
                             "preconfigured-alert list`), e.g. 09396fbe-bddc-47a3-8072-c4246bef03c1")
        return value

    @field_validator("secret_rotations")
    @classmethod
    def _rotations(cls, value: dict[str, int]) -> dict[str, int]:
        for name, generation in value.items():
            if name not in ROTATABLE_SECRETS:
                raise ValueError(f"{shown(name)} is not a secret ciel generates; rotatable: {', '.join(ROTATABLE_SECRETS)}")
            if not 0 <= generation <= 1_000_000:
                raise ValueError(f"{name}: the rotation count is a number from 0 up")
        return value

    @field_validator("alert_email")
    @classmethod
    def _email(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _EMAIL.fullmatch(value):
            raise ValueError(f"{shown(value)} is not an email address (name@example.com, no spaces)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "EnvironmentConfig":
        zones = REGION_ZONES[self.region]
        if self.zone not in zones:
            raise ValueError(f"zone {shown(self.zone)} is not in region {self.region}: choose one of {', '.join(zones)}")
        if self.enable_https and not self.domain:
            raise ValueError("enable_https: a certificate needs `domain` (Let's Encrypt validates a name that points at the LB); set domain or enable_https: false")
        if self.enable_https and not self.enable_load_balancer:
            raise ValueError("enable_https: needs enable_load_balancer: true (the certificate lives on the LB)")
        if self.cdn_custom_domain and not self.enable_cdn:
            raise ValueError("cdn_custom_domain: set enable_cdn: true to use it")
        if self.traffic == "cluster" and self.phase != 2:
            raise ValueError("traffic: cluster needs phase: 2 (run `ciel deploy phase2` first)")
        if self.instances_retired and self.traffic != "cluster":
            raise ValueError("instances_retired: only after the cutover moved traffic to the cluster")
        if self.k8s_pool_max_size < self.k8s_pool_min_size:
            raise ValueError("k8s_pool_max_size: must be at least k8s_pool_min_size")
        if self.api_max_replicas < self.api_replicas or self.worker_max_replicas < self.worker_replicas:
            raise ValueError("api_max_replicas / worker_max_replicas: must be at least the matching *_replicas")
        if self.cutover_preview_host is not None and self.cutover_preview_host == self.api_hostname:
            raise ValueError(f"cutover_preview_host: must differ from the API host {self.api_hostname}: the preview "
                             "route would send all production traffic to the cluster; remove it (default: "
                             f"preview-{self.api_hostname}) or choose another host")
        if self.api_instance_count == 0 and self.enable_load_balancer and self.traffic == "instances":
            raise ValueError("api_instance_count: 0 leaves the load balancer without a server while it sends "
                             "production to the instances (traffic: instances); set at least 1")
        # Last, so that any other mistake in the file is named first. Applies to the default
        # (`latest`) too: an environment other than dev must name its build.
        if self.name != MUTABLE_TAGS_ALLOWED_IN and self.image_tag_is_mutable:
            raise ValueError(f"image_tag: {shown(self.image_tag)} is a moving tag, refused outside "
                             f"{MUTABLE_TAGS_ALLOWED_IN} (a replaced instance or pod would run whatever it points at "
                             "by then); pin a version: `ciel deploy phase1 --image-tag 1.4.2`, or image_tag: \"1.4.2\" "
                             "in the environment file (or another tag you never move, such as the commit SHA)")
        return self

    def ignored_settings(self, written: Iterable[str]) -> list[tuple[str, str]]:
        """The keys among `written` (those an environment file sets) that another setting
        switches off, each with why: probably a mistake, since the author expects an effect."""
        return [(key, reason) for key, ignored, reason in _SWITCHED_OFF if key in written and ignored(self)]

    @property
    def worker_stop_timeout_seconds(self) -> int:
        """A stopping worker may be inside a long poll and then a job: it gets both.
        Past the visibility timeout the job is redelivered anyway, so waiting longer is useless."""
        return self.visibility_timeout + self.receive_wait_time

    @property
    def worker_termination_grace_seconds(self) -> int:
        """A worker pod's grace: its stop timeout plus a margin for the container runtime."""
        return self.worker_stop_timeout_seconds + 30

    @property
    def preview_host(self) -> str:
        if self.cutover_preview_host:
            return self.cutover_preview_host
        return f"preview-{self.api_hostname}" if self.api_hostname else "preview.invalid"

    @property
    def image_tag_is_mutable(self) -> bool:
        """A tag that may move (allowed in dev only): nodes must re-pull it."""
        return self.image_tag.lower() in MUTABLE_IMAGE_TAGS

    @property
    def api_hostname(self) -> Optional[str]:
        return f"{self.api_subdomain}.{self.domain}" if self.domain else None

    def image(self, registry_endpoint: str) -> str:
        """The image every machine, pod and migration runs: this name and tag in that namespace."""
        return f"{registry_endpoint}/{self.image_name}:{self.image_tag}"

    def tags(self, layer: str) -> list[str]:
        """Scaleway tags are strings; key=value keeps them filterable."""
        return ["app=ciel", f"environment={self.name}", f"layer={layer}"]

    def tag_map(self, layer: str) -> dict[str, str]:
        """The same tags for resources that take a map (Object Storage)."""
        return {"app": "ciel", "environment": self.name, "layer": layer}


# (key, when it has no effect, why): settings whose effect another setting switches off.
_SWITCHED_OFF: tuple[tuple[str, Callable[[EnvironmentConfig], bool], str], ...] = (
    ("bastion_port", lambda c: not c.enable_bastion, "enable_bastion is false"),
    ("keda_messages_per_worker", lambda c: not c.enable_keda, "enable_keda is false (workers scale on CPU)"),
    ("glacier_transition_days", lambda c: not c.enable_glacier_transition, "enable_glacier_transition is false"),
    ("managed_redis_node_type", lambda c: not c.use_managed_redis, "use_managed_redis is false"),
    ("managed_redis_version", lambda c: not c.use_managed_redis, "use_managed_redis is false"),
    ("redis_instance_type", lambda c: c.use_managed_redis, "use_managed_redis is true (no Redis instance)"),
    ("dlq_max_receive_count", lambda c: not c.enable_dlq, "enable_dlq is false"),
    ("lb_type", lambda c: not c.enable_load_balancer, "enable_load_balancer is false"),
    ("cutover_preview_host", lambda c: not c.enable_load_balancer,
     "enable_load_balancer is false (the cutover moves the load balancer's traffic)"),
    ("api_subdomain", lambda c: not c.domain, "domain is not set (no DNS record, no certificate)"),
)
