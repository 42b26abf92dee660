"""What each cutover step does, and the checks that decide to go on, stop, or roll back.

Every step converges: it sets the full desired state (frontend → backend, backend →
servers, route present or absent, replicas at least N) and does nothing when it is
already so, so a step can be run again after a crash without harm.

Where the cutover decides to roll back: `production_checks` — once production traffic is
on the cluster (switch, bake), a failed check raises RollBack and the engine moves
traffic back. Before the switch a failed check only stops the run (nothing to undo yet).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from foundation.errors import CielError
from migrate.model import Record, Target, Thresholds


class StepFailed(CielError):
    """The step could not complete; nothing was undone. Fix and resume, or roll back."""


class RollBack(CielError):
    """A check failed while production runs on the cluster: traffic goes back."""


@dataclass
class Context:
    record: Record
    target: Target
    thresholds: Thresholds
    lb: object  # migrate.loadbalancer.LoadBalancer or a recorder
    instances: object  # migrate.instances.Instances
    cluster: object  # migrate.cluster.ClusterSide
    prober: object  # migrate.probes.HttpProber
    log: Callable[[str], None]
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


def backend_verdict(ctx: Context, backend_id: str, *, require_all: bool) -> tuple[str, dict[str, str]]:
    """"ok", "failed" or "no data" for a backend's servers, from the LB's own health checks."""
    health = ctx.lb.backend_health(backend_id)
    if not health or all(state in ("unknown", "neutral") for state in health.values()):
        return "no data", health
    passing = [ip for ip, state in health.items() if state in ("passed", "condpass")]
    if (require_all and len(passing) == len(health)) or (not require_all and passing):
        return "ok", health
    return "failed", health


def invariant(ctx: Context) -> None:
    """Checked after every step (by the engine): each public frontend routes to a backend
    with a passing server."""
    for frontend in ctx.target.frontend_ids:
        backend = ctx.lb.frontend_backend(frontend)
        verdict, health = backend_verdict(ctx, backend, require_all=False)
        if verdict != "ok":
            raise StepFailed(f"frontend {frontend} routes to backend {backend} with no passing server ({health or 'no data'})")


def production_checks(ctx: Context) -> None:
    """Abort checks while production is on the cluster; any failure means roll back."""
    verdict, health = backend_verdict(ctx, ctx.target.cluster_backend_id, require_all=False)
    if verdict != "ok":
        raise RollBack(f"cluster backend {verdict}: {health or 'no data'}")
    result = ctx.prober.probe(ctx.target.public_host, ctx.thresholds.probe_requests)
    ctx.log(f"  check public frontend: {result} (need ≥ {ctx.thresholds.min_success_ratio:.1%}, "
            f"p95 ≤ {ctx.thresholds.max_p95_ms} ms)")
    verdict = result.verdict(ctx.thresholds)
    if verdict == "failed":
        raise RollBack(f"public frontend probes failed: {result}")
    if verdict == "no data":
        raise RollBack("public frontend probes returned no data")


# --- the steps -----------------------------------------------------------------------


def preflight(ctx: Context) -> None:
    ctx.lb.wait_settled()
    for name in ("api", "worker"):
        ready, desired = ctx.cluster.readiness(name)
        ctx.log(f"  check deployment {name}: {ready}/{desired} ready")
        if desired < 1 or ready < desired:
            raise StepFailed(f"deployment {name} is not ready ({ready}/{desired}): run `ciel deploy phase2` and wait")
    verdict, health = backend_verdict(ctx, ctx.target.cluster_backend_id, require_all=True)
    ctx.log(f"  check cluster backend: {verdict} {health}")
    if verdict != "ok":
        raise StepFailed(f"the cluster backend is {verdict} ({health or 'no servers'}): not every server passes /health")
    verdict, health = backend_verdict(ctx, ctx.target.instance_backend_id, require_all=False)
    ctx.log(f"  check instance backend (the way back): {verdict} {health}")
    if verdict != "ok":
        raise StepFailed(f"the instance backend has no passing server ({health}): no safe way back, not starting")


def preview(ctx: Context) -> None:
    """Test traffic only: a Host-header route to the cluster, probed through the real LB.
    The app's /health answers only when its database and cache are reachable, so a passing
    probe also proves the data layers from the cluster."""
    ctx.lb.ensure_host_route(ctx.target.frontend_ids[0], ctx.target.preview_host, ctx.target.cluster_backend_id)
    result = ctx.prober.probe(ctx.target.preview_host, ctx.thresholds.probe_requests)
    ctx.log(f"  check preview {ctx.target.preview_host}: {result} (need ≥ {ctx.thresholds.min_success_ratio:.1%}, "
            f"p95 ≤ {ctx.thresholds.max_p95_ms} ms)")
    verdict = result.verdict(ctx.thresholds)
    if verdict != "ok":
        raise StepFailed(f"preview probes {verdict}: {result}; production traffic was not touched")


def switch(ctx: Context) -> None:
    verdict, health = backend_verdict(ctx, ctx.target.cluster_backend_id, require_all=True)
    if verdict != "ok":
        raise StepFailed(f"cluster backend {verdict} just before the switch ({health}); not switching")
    for frontend in ctx.target.frontend_ids:
        ctx.lb.set_frontend_backend(frontend, ctx.target.cluster_backend_id)
    if ctx.record.switched_at is None:
        ctx.record.switched_at = ctx.clock()
    production_checks(ctx)
    # Production now goes where the preview went: the route has served its purpose.
    ctx.lb.remove_host_route(ctx.target.frontend_ids[0], ctx.target.preview_host)


def bake(ctx: Context) -> None:
    """Production on the cluster, watched for `bake_seconds`; the instances stay ready."""
    until = (ctx.record.switched_at or ctx.clock()) + ctx.thresholds.bake_seconds
    checks = 0
    while True:
        production_checks(ctx)
        checks += 1
        if ctx.clock() >= until:
            break
        ctx.sleep(min(ctx.thresholds.bake_check_interval, max(0.0, until - ctx.clock())))
    ctx.log(f"  baked: {checks} conclusive check(s) passed")


def drain(ctx: Context) -> None:
    production_checks(ctx)
    # Workers compete on one queue: the cluster's take over before the instances' stop.
    ctx.cluster.scale_at_least("worker", ctx.thresholds.worker_replicas)
    ctx.cluster.wait_ready("worker", ctx.thresholds.wait_timeout)
    for server in ctx.target.worker_server_ids:
        ctx.instances.power_off(server)  # SIGTERM; the job in hand finishes within the stop timeout
    for server in ctx.target.worker_server_ids:
        try:
            ctx.instances.wait_state(server, "stopped",
                                     ctx.thresholds.worker_stop_seconds + min(60.0, ctx.thresholds.wait_timeout))
        except CielError as error:
            raise StepFailed(f"worker instance never drained: {error}") from None
    # The API instances get no new requests since the switch; let the longest one end.
    wait = (ctx.record.switched_at or 0) + ctx.thresholds.in_flight_seconds - ctx.clock()
    if wait > 0:
        ctx.log(f"  waiting {wait:.0f}s for requests still running on the instances")
        ctx.sleep(wait)
    ctx.lb.set_backend_servers(ctx.target.instance_backend_id, [])
    for server in ctx.target.api_server_ids:
        ctx.instances.power_off(server)
    for server in ctx.target.api_server_ids:
        try:
            ctx.instances.wait_state(server, "stopped", ctx.thresholds.wait_timeout)
        except CielError as error:
            raise StepFailed(f"API instance never stopped: {error}") from None


def restore_instances(ctx: Context) -> None:
    """The way back, from any state before retire: instances on, in their backend, healthy,
    then every frontend on them and the preview route gone."""
    for server in ctx.target.api_server_ids + ctx.target.worker_server_ids:
        ctx.instances.power_on(server)
    for server in ctx.target.api_server_ids:
        ctx.instances.wait_state(server, "running", ctx.thresholds.wait_timeout)
    ctx.lb.set_backend_servers(ctx.target.instance_backend_id, list(ctx.target.instance_ips))
    deadline = ctx.clock() + ctx.thresholds.wait_timeout
    while backend_verdict(ctx, ctx.target.instance_backend_id, require_all=False)[0] != "ok":
        if ctx.clock() > deadline:
            raise CielError("rollback: no instance passes its health check; traffic left where it is")
        ctx.sleep(1.0)
    for frontend in ctx.target.frontend_ids:
        ctx.lb.set_frontend_backend(frontend, ctx.target.instance_backend_id)
    ctx.lb.remove_host_route(ctx.target.frontend_ids[0], ctx.target.preview_host)
