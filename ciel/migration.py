"""`ciel migrate ...`: wiring the cutover (migrate/) to an environment.

Targets come from the core stack's outputs (live) or from placeholders (the plan). The
Scaleway side goes through the official SDK (SCW_API_URL redirects it, e.g. to a local
fake), the cluster side through the official kubernetes client.
"""

from __future__ import annotations

from collections.abc import Callable

from ciel import credentials as creds
from ciel.outputs import core_outputs, kube_ca_file
from foundation.errors import CielError, UsageError
from infra.config import EnvironmentConfig, load_environment
from migrate.engine import Cutover
from infra.constructs.lb_health import (HEALTH_CHECK_DELAY_SECONDS, HEALTH_CHECK_MAX_RETRIES,
                                       HEALTH_CHECK_TIMEOUT_SECONDS)
from migrate.model import Target, Thresholds, rollback_worst_case
from ciel.state_bucket import cutover_store
from migrate.store import MemoryStore

# The LB's health check (infra/constructs/lb_health.py) marks a server down after
# HEALTH_CHECK_MAX_RETRIES failed checks, HEALTH_CHECK_DELAY_SECONDS apart, each at most
# HEALTH_CHECK_TIMEOUT_SECONDS; its server timeout is 60 s.
LB_SERVER_TIMEOUT_SECONDS = 60
LB_POLL_SECONDS = 2.0  # migrate.loadbalancer.LoadBalancer's poll while a change is applied
BAKE_PROBE_REQUESTS = 5  # probes per watch read while baking: each read stays short
NO_DATA_READS = 3  # inconclusive reads in a row that count as a failure


def thresholds_for(config: EnvironmentConfig) -> Thresholds:
    return Thresholds(
        probe_requests=config.cutover_probe_requests,
        min_success_ratio=config.cutover_min_success_ratio,
        max_p95_ms=config.cutover_max_p95_ms,
        bake_seconds=config.cutover_bake_seconds,
        bake_check_interval=float(config.cutover_bake_check_interval_seconds),
        in_flight_seconds=LB_SERVER_TIMEOUT_SECONDS + 10,
        worker_stop_seconds=config.worker_stop_timeout_seconds,
        worker_replicas=max(config.worker_replicas, 1),
        wait_timeout=600.0,
        bake_probe_requests=min(BAKE_PROBE_REQUESTS, config.cutover_probe_requests),
        no_data_reads=NO_DATA_READS,
    )


def bake_worst_case_seconds(thresholds: Thresholds, frontends: int, lb_apply_seconds: float = 0.0) -> float:
    """The documented worst case of a cluster failing during the bake, in seconds, given
    the LB's own apply time (pending → ready: unknown for the real LB, about one read for
    the lab's)."""
    return rollback_worst_case(fall=HEALTH_CHECK_MAX_RETRIES, check_delay=HEALTH_CHECK_DELAY_SECONDS,
                               check_timeout=HEALTH_CHECK_TIMEOUT_SECONDS,
                               watch_interval=thresholds.bake_check_interval, frontends=frontends,
                               apply_seconds=LB_POLL_SECONDS + lb_apply_seconds)


def bake_worst_case_lines(thresholds: Thresholds, frontends: int) -> list[str]:
    """The documented worst case of a cluster failing during the bake, with this
    environment's numbers (the LB's apply time is the LB's own: unknown here)."""
    fixed = bake_worst_case_seconds(thresholds, frontends)
    return [
        f"Bake watch: every {thresholds.bake_check_interval:g}s the cluster backend's LB health (a server up AND "
        f"passing) and {thresholds.bake_probe_requests} probes; the first failure rolls back, "
        f"{thresholds.no_data_reads} inconclusive reads in a row too.",
        "Worst case from the cluster failing during the bake to every frontend back on the instances: "
        "fall × (check delay + check timeout) + watch interval + frontends × (LB apply time + one LB poll) = "
        f"{HEALTH_CHECK_MAX_RETRIES} × ({HEALTH_CHECK_DELAY_SECONDS}s + {HEALTH_CHECK_TIMEOUT_SECONDS}s) + "
        f"{thresholds.bake_check_interval:g}s + {frontends} × (apply + {LB_POLL_SECONDS:g}s) = "
        f"{fixed:g}s + {frontends} × the LB's apply time (pending → ready).",
    ]


def _bare(zoned_id: str) -> str:
    return str(zoned_id).split("/")[-1]


def target_from_outputs(config: EnvironmentConfig, outputs: dict) -> Target:
    needed = ("lb_id", "lb_ip", "public_frontend_ids", "instance_backend_id", "cluster_backend_id", "api_server_ids",
              "worker_server_ids")
    missing = [name for name in needed if name not in outputs]
    if missing:
        raise CielError(f"the core stack lacks {', '.join(missing)}: run `ciel deploy phase2 --env {config.name}` first")
    zone = str(outputs["lb_id"]).split("/")[0]
    return Target(
        zone=zone, lb_id=_bare(outputs["lb_id"]), lb_address=str(outputs["lb_ip"]), public_host=config.api_hostname,
        preview_host=config.preview_host, frontend_ids=[_bare(f) for f in outputs["public_frontend_ids"]],
        instance_backend_id=_bare(outputs["instance_backend_id"]),
        cluster_backend_id=_bare(outputs["cluster_backend_id"]),
        instance_ips=[str(ip) for ip in outputs.get("api_addresses", [])],
        api_server_ids=[_bare(s) for s in outputs["api_server_ids"]],
        worker_server_ids=[_bare(s) for s in outputs["worker_server_ids"]],
    )


def placeholder_target(config: EnvironmentConfig) -> Target:
    frontends = ["<https frontend>", "<http frontend>"] if config.enable_https else ["<http frontend>"]
    return Target(
        zone=config.zone, lb_id="<lb>", lb_address="<lb ip>", public_host=config.api_hostname,
        preview_host=config.preview_host, frontend_ids=frontends, instance_backend_id="<instances backend>",
        cluster_backend_id="<cluster backend>",
        instance_ips=[f"<api-{i} address>" for i in range(config.api_instance_count)],
        api_server_ids=[f"<api-{i}>" for i in range(config.api_instance_count)],
        worker_server_ids=[f"<worker-{i}>" for i in range(config.worker_instance_count)],
    )


def check_ready_for_cutover(config: EnvironmentConfig) -> None:
    if config.phase != 2:
        raise UsageError(f"{config.name} is in phase {config.phase}: run `ciel deploy phase2 --env {config.name}` first")
    if config.instances_retired:
        raise UsageError(f"{config.name} already finished its cutover: traffic is on the cluster, instances retired")
    if not config.enable_load_balancer:
        raise UsageError("the cutover moves the shared load balancer's traffic: enable_load_balancer is false")


def plan_lines(env: str) -> list[str]:
    """Every call and check of a cutover of `env`, in order; nothing is called."""
    from migrate.planning import (PlanClock, RecordingCluster, RecordingInstances, RecordingLoadBalancer,
                                  RecordingProber, collapse_repeats)

    config = load_environment(env)
    target = placeholder_target(config)
    thresholds = thresholds_for(config)
    lines: list[str] = [
        f"Cutover plan for {env}: production on {target.frontend_ids} moves from the instances' backend to the "
        f"cluster's; preview host {target.preview_host}.",
        f"Thresholds: probes {thresholds.probe_requests} per check, success ≥ {thresholds.min_success_ratio:.1%}, "
        f"p95 ≤ {thresholds.max_p95_ms} ms; bake {thresholds.bake_seconds:.0f}s (watched every "
        f"{thresholds.bake_check_interval:g}s); in-flight window {thresholds.in_flight_seconds:.0f}s; worker stop "
        f"{thresholds.worker_stop_seconds:.0f}s. 'No data' never promotes; a failed check after the switch rolls back.",
        *bake_worst_case_lines(thresholds, len(target.frontend_ids)),
    ]
    clock = PlanClock(lines.append)
    cutover = Cutover(MemoryStore(env), lb=RecordingLoadBalancer(lines.append, target),
                      instances=RecordingInstances(lines.append), cluster=RecordingCluster(lines.append),
                      prober=RecordingProber(lines.append), log=lines.append,
                      confirm_retire=lambda question: lines.append(f"  ASK: {question}") or True,
                      retire=lambda: lines.append(
                          "  APPLY the retired configuration: deletes the phase-1 compute only (servers, NICs, "
                          "their addresses and boot configs, security groups, placement group); refused if the plan "
                          f"changes anything else; then RECORD in infra/environments/{env}.yaml: traffic: cluster, "
                          "instances_retired: true"),
                      clock=clock.time, sleep=clock.sleep)
    cutover.run(env, target, thresholds)
    lines.append("Rollback (from any state before retire): power the instances on, set the instance backend's "
                 "servers back, wait until an instance is up in the LB and passes its health check, point every "
                 "frontend at the instances, remove the preview route.")
    return collapse_repeats(lines)


def status_lines(env: str) -> list[str]:
    record = cutover_store(env).load()
    if record is None:
        return [f"{env}: no cutover recorded (traffic: {load_environment(env).traffic})"]
    lines = [f"{env}: {record.state}" + (f" (current step: {record.current})" if record.current else "")
             + (f"; rolled back because: {record.rollback_reason}" if record.rollback_reason else "")]
    lines += [f"  {entry['event']}" for entry in record.history[-15:]]
    return lines


def live_cutover(env: str, *, confirm_retire: Callable[[str], bool], log: Callable[[str], None],
                 engine_choice: str | None = None, after_step=None) -> tuple[Cutover, Target, Thresholds]:
    """A cutover wired to the real APIs, from the core stack's outputs."""
    from ciel.retire import retire_instances
    from migrate.cluster import ClusterSide
    from migrate.instances import Instances
    from migrate.loadbalancer import LoadBalancer
    from migrate.probes import HttpProber

    config = load_environment(env)
    check_ready_for_cutover(config)
    found = creds.detect()
    if not found.live:
        raise UsageError("the cutover changes the live load balancer: it needs Scaleway credentials. "
                         f"`ciel migrate plan --env {env}` shows every call without them")
    outputs = core_outputs(env, found, engine_choice, include_sensitive=True)
    target = target_from_outputs(config, outputs)
    client = found.sdk_client(zone=target.zone, region=config.region)
    cluster = ClusterSide.connect(str(outputs["kube_host"]), str(outputs["kube_token"]), kube_ca_file(outputs), log=log)

    def retire() -> None:
        retire_instances(env, engine_choice=engine_choice)  # deletes the compute layer only, then records it

    cutover = Cutover(cutover_store(env, found), lb=LoadBalancer(client, target.zone, target.lb_id, log=log),
                      instances=Instances(client, target.zone, log=log), cluster=cluster,
                      prober=HttpProber(target.lb_address,
                                        tls_server_name=config.api_hostname if config.enable_https else None), log=log, confirm_retire=confirm_retire, retire=retire,
                      after_step=after_step)
    return cutover, target, thresholds_for(config)
