"""Which alerts an environment gets, and what a person does when one fires.

The plan names the signals that say "act" (scale up, move to the next tier, or fix
something). Cockpit's preconfigured alert rules cover those that Scaleway measures
itself; each is pinned here by its rule id (offline plans cannot list them: the data
source needs the live API), with the threshold Scaleway gives it and the action this
project recommends. A rule is enabled when the environment's configuration has what it
watches, not when its phase does: the alert manager is a shared resource, which `deploy
phase2` and the cutover's retire step must leave unchanged (a rule on instances that are
gone, or on a cluster not yet there, never fires).

Signals no preconfigured rule covers (5xx ratio, p95 latency, queue depth and oldest
message age, dead-letter queue, certificate expiry) need custom rules on Cockpit's
Grafana: listed in UNCOVERED, with why, until they exist (docs/observability.md). Each
pin keeps Scaleway's rule expression too: the dashboard (infra/dashboards.py) plots its
measure against its limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from infra.config import EnvironmentConfig


@dataclass(frozen=True)
class PreconfiguredRule:
    rule_id: str  # preconfigured_rule_id in `scw cockpit alert list-preconfigured`
    name: str  # Scaleway's rule name
    product: str
    threshold: str  # as Scaleway defines it (not configurable)
    expression: str  # Scaleway's PromQL, `<measure> > <limit>`: the dashboard plots the measure

    @property
    def measure(self) -> str:
        return self.expression.rsplit(" > ", 1)[0]

    @property
    def limit(self) -> float:
        return float(self.expression.rsplit(" > ", 1)[1])


@dataclass(frozen=True)
class AlertedSignal:
    signal: str  # the plan's words
    rule: PreconfiguredRule
    action: str  # the one line a person reads when it fires
    applies: Callable[[EnvironmentConfig], bool]


def _load_balancer(config: EnvironmentConfig) -> bool:
    return config.enable_load_balancer


def _always(config: EnvironmentConfig) -> bool:
    return True


def _managed_redis(config: EnvironmentConfig) -> bool:
    return config.use_managed_redis


ALERTED = (
    AlertedSignal("API CPU (instances)", PreconfiguredRule(
        "1c16c699-e00e-4be8-b05d-d8cd2797f2a7", "InstanceHighCPUUsage", "Instance", "> 90 % for 10 minutes",
        "(rate(instance_server_cpu_seconds_total[1m])) / instance_server_vcpu_count > 0.9"),
        "raise api_instance_count or api_instance_type (or move to the next tier), then `ciel deploy phase1`",
        _always),
    AlertedSignal("database CPU", PreconfiguredRule(
        "615245e6-3882-4d99-8798-d17ca1c95645", "PostgreSQLHighCPULoad", "PostgreSQL", "> 80 % for 10 minutes",
        '1 - avg(irate(rdb_instance_postgresql_node_cpu_seconds_total{mode="idle"}[5m])) > 0.8'),
        "a larger db_node_type (growth → scale), or a read replica for read-heavy load", _always),
    AlertedSignal("database connections vs max_connections", PreconfiguredRule(
        "6c6843af-1815-46df-9e52-6feafcf31fd7", "PostgresqlTooManyConnections", "PostgreSQL",
        "> 80 % for 10 minutes",
        "rdb_instance_postgresql_pg_stat_database_numbackends"
        " / rdb_instance_postgresql_pg_settings_max_connections > 0.8"),
        "raise db_max_connections (within the node's memory) or lower the app's pool size; next tier if both are "
        "at their limit", _always),
    AlertedSignal("database disk", PreconfiguredRule(
        "c8991f90-facb-436c-b4ab-6aa13822a451", "PostgreSQLHighStorageUsage", "PostgreSQL", "> 80 % for 10 minutes",
        "1 - rdb_instance_postgresql_node_filesystem_avail_bytes"
        " / rdb_instance_postgresql_node_filesystem_size_bytes > 0.8"),
        "raise db_volume_size_in_gb (the volume grows online), then deploy", _always),
    AlertedSignal("Redis memory", PreconfiguredRule(
        "3c5b3a41-69de-43ed-9217-e3002d687c53", "HighMemoryUsage", "Redis", "> 80 % for 10 minutes",
        "1 - rkv_cluster_node_memory_MemAvailable_bytes / rkv_cluster_node_memory_MemTotal_bytes > 0.8"),
        "a larger managed_redis_node_type, or shorter TTLs in the app's cache", _managed_redis),
    AlertedSignal("Redis CPU", PreconfiguredRule(
        "f5e3c109-91b3-4586-b580-9f86529c1df8", "HighCpuUsage", "Redis", "> 80 % for 10 minutes",
        '1 - avg(irate(rkv_cluster_node_cpu_seconds_total{mode="idle"}[5m])) > 0.8'),
        "a larger managed_redis_node_type", _managed_redis),
    AlertedSignal("API servers failing (LB health checks)", PreconfiguredRule(
        "feb64cef-c855-4230-a74e-813515fdb357", "LBBackendServerDown", "LB", "1 or several backend servers down",
        'load_balancer_lb_backend_agg_server_check_status{state="DOWN", backend_name!=""} > 0'),
        "`ciel verify --env ENV`, then the failing server's logs in Cockpit; a rollout gone wrong: deploy the "
        "previous --image-tag", _load_balancer),
    AlertedSignal("API down (every server)", PreconfiguredRule(
        "d1b1b4a0-7215-494b-9d81-796e52c7ed0e", "LBBackendDown", "LB", "all servers of a backend down",
        'load_balancer_lb_backend_status{state="DOWN", backend_name!=""} > 0'),
        "an outage: `ciel verify --env ENV`; during a cutover, `ciel migrate rollback`", _load_balancer),
    AlertedSignal("load balancer connections", PreconfiguredRule(
        "fcf06e62-22ee-4e86-9b16-3cc9708e1b07", "LBHighConnectionLoad", "LB", "> 80 % for 10 minutes",
        "load_balancer_lb_connection_usage > 0.8"),
        "a larger lb_type (LB-S → LB-GP-M, the growth tier's)", _load_balancer),
    AlertedSignal("load balancer CPU", PreconfiguredRule(
        "769bd543-6030-4540-bd2d-5e2d0604e767", "LBHighCPULoad", "LB", "> 80 % for 10 minutes",
        "load_balancer_lb_cpu_usage > 0.8"),
        "a larger lb_type", _load_balancer),
    AlertedSignal("cluster nodes not ready", PreconfiguredRule(
        "dc9b67ae-baa6-4a37-907d-2a6c31304561", "NodesNotReady", "Kubernetes", "> 0 for 10 minutes",
        "kubernetes_cluster_k8s_shoot_nodes - kubernetes_cluster_k8s_shoot_nodes_ready > 0"),
        "the pool's nodes in the console (autohealing replaces them); a pool at its maximum: raise "
        "k8s_pool_max_size", _always),
)

# The plan's signals with no preconfigured rule, and why they are not alerted yet.
UNCOVERED = {
    "API 5xx ratio": "needs a custom rule on the LB's response-code metrics (Cockpit Grafana)",
    "p95 latency": "needs the app's request-duration histogram pushed to Cockpit, then a custom rule",
    "queue depth": "needs a custom rule on the Queues metrics; phase 2's KEDA scaler acts on it meanwhile",
    "oldest message age": "needs a custom rule on the Queues metrics",
    "dead-letter queue not empty": "needs a custom rule on the dead-letter queue's message count",
    "certificate expiry": "Let's Encrypt renews on the LB; a custom rule on the certificate's expiry would watch it",
}


def alerted_signals(config: EnvironmentConfig) -> list[AlertedSignal]:
    """The signals this environment is alerted on (none with alerts: false)."""
    if not config.alerts:
        return []
    return [signal for signal in ALERTED if signal.applies(config)]


def preconfigured_alert_ids(config: EnvironmentConfig) -> list[str]:
    """The rule ids the alert manager enables: the applicable ones, and any the
    configuration adds (preconfigured_alert_ids), each once, sorted."""
    return sorted({signal.rule.rule_id for signal in alerted_signals(config)} | set(config.preconfigured_alert_ids))
