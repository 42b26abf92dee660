"""What each cutover step does, and the checks that decide to go on, stop, or roll back.

Every step converges: it sets the full desired state (frontend → backend, backend →
servers, route present or absent, replicas at least N) and does nothing when it is
already so, so a step can be run again after a crash without harm.

Where the cutover decides to roll back: `production_checks` (switch, drain) and the
bake's watch — once production traffic is on the cluster, a failed check raises RollBack
and the engine moves traffic back. Before the switch a failed check only stops the run
(nothing to undo yet).

What counts as a healthy backend server: the LB's own view of it, both halves — its
state is up (`server_state` running: the LB sends it traffic) AND its last health check
passed. A check can pass while the LB still holds the server down until its rise count is
met; routing to it then would serve errors. A read where a server is up but its check is
in progress ("unknown") is inconclusive: it is read again, and only `no_data_reads`
inconclusive reads in a row count as a failure. "No data" never promotes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from foundation.errors import CielError
from migrate.model import Record, ServerHealth, Target, Thresholds


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


def backend_verdict(ctx: Context, backend_id: str, *,
                    require_all: bool) -> tuple[str, dict[str, ServerHealth]]:
    """"ok", "failed" or "no data" for a backend's servers, from one read of the LB's view.

    "ok": every server (require_all) or at least one is ready — up and passing. "no data":
    no server reported, or the servers short of that are only inconclusive (up, check in
    progress): read again. "failed": otherwise — a server is down, on its way up (rise not
    met), on its way down, or its last check failed."""
    health = ctx.lb.server_health(backend_id)
    if not health:
        return "no data", health
    not_ready = [h for h in health.values() if not h.ready]
    if not not_ready or (not require_all and len(not_ready) < len(health)):
        return "ok", health
    if require_all:
        return ("no data" if all(h.inconclusive for h in not_ready) else "failed"), health
    return ("no data" if any(h.inconclusive for h in not_ready) else "failed"), health


def read_backend(ctx: Context, backend_id: str, *, require_all: bool,
                 what: str) -> tuple[str, dict[str, ServerHealth]]:
    """`backend_verdict`, read again (every watch interval) while it is inconclusive: "no
    data" only after `no_data_reads` inconclusive reads in a row."""
    reads = max(1, ctx.thresholds.no_data_reads)
    for attempt in range(1, reads + 1):
        verdict, health = backend_verdict(ctx, backend_id, require_all=require_all)
        if verdict != "no data" or attempt == reads:
            return verdict, health
        ctx.log(f"  {what}: inconclusive read {attempt}/{reads} ({health or 'no servers'}), "
                f"reading again in {ctx.thresholds.bake_check_interval:g}s")
        ctx.sleep(ctx.thresholds.bake_check_interval)
    raise AssertionError("unreachable")


def invariant(ctx: Context) -> None:
    """Checked after every step (by the engine): each public frontend routes to a backend
    with a server up and passing."""
    for frontend in ctx.target.frontend_ids:
        backend = ctx.lb.frontend_backend(frontend)
        verdict, health = read_backend(ctx, backend, require_all=False, what=f"backend of frontend {frontend}")
        if verdict != "ok":
            raise StepFailed(f"frontend {frontend} routes to backend {backend} with no server up and passing "
                             f"({health or 'no data'})")


def production_checks(ctx: Context) -> None:
    """Abort checks while production is on the cluster; any failure means roll back."""
    verdict, health = read_backend(ctx, ctx.target.cluster_backend_id, require_all=False, what="cluster backend")
    if verdict == "no data":
        raise RollBack(f"cluster backend: no data in {ctx.thresholds.no_data_reads} reads in a row "
                       f"({health or 'no servers'})")
    if verdict != "ok":
        raise RollBack(f"cluster backend failed: no server up and passing ({health})")
    result = ctx.prober.probe(ctx.target.public_host, ctx.thresholds.probe_requests)
    ctx.log(f"  check public frontend: {result} (need ≥ {ctx.thresholds.min_success_ratio:.1%}, "
            f"p95 ≤ {ctx.thresholds.max_p95_ms} ms)")
    verdict = result.verdict(ctx.thresholds)
    if verdict == "failed":
        raise RollBack(f"public frontend probes failed: {result}")
    if verdict == "no data":
        raise RollBack("public frontend probes returned no data")


# --- the steps -----------------------------------------------------------------------


# Watch intervals the preflight waits for a cluster backend that passes its checks but is
# still held down by the LB's rise count (6 × 5 s: several rise periods of the LB's checks).
RISING_READS = 6


def preflight(ctx: Context) -> None:
    ctx.lb.wait_settled()
    for name in ("api", "worker"):
        ready, desired = ctx.cluster.readiness(name)
        ctx.log(f"  check deployment {name}: {ready}/{desired} ready")
        if desired < 1 or ready < desired:
            raise StepFailed(f"deployment {name} is not ready ({ready}/{desired}): run `ciel deploy phase2` and wait")
    verdict, health = read_backend(ctx, ctx.target.cluster_backend_id, require_all=True, what="cluster backend")
    ctx.log(f"  check cluster backend (every server up and passing): {verdict} {health}")
    # Right after `deploy phase2` the LB has seen the cluster pass but not yet rise times in
    # a row: wait for that, a bounded number of watch intervals, rather than stop.
    for _ in range(RISING_READS):
        if verdict == "ok" or not health or not all(h.ready or h.rising for h in health.values()):
            break
        ctx.log(f"  cluster backend on its way up (the LB's rise count): reading again in "
                f"{ctx.thresholds.bake_check_interval:g}s")
        ctx.sleep(ctx.thresholds.bake_check_interval)
        verdict, health = read_backend(ctx, ctx.target.cluster_backend_id, require_all=True, what="cluster backend")
        ctx.log(f"  check cluster backend (every server up and passing): {verdict} {health}")
    if verdict != "ok":
        raise StepFailed(f"the cluster backend is {verdict} ({health or 'no servers'}): not every server is up and "
                         "passes /health")
    verdict, health = read_backend(ctx, ctx.target.instance_backend_id, require_all=False,
                                   what="instance backend")
    ctx.log(f"  check instance backend (the way back): {verdict} {health}")
    if verdict != "ok":
        raise StepFailed(f"the instance backend has no server up and passing ({health}): no safe way back, "
                         "not starting")


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
    verdict, health = read_backend(ctx, ctx.target.cluster_backend_id, require_all=True, what="cluster backend")
    if verdict != "ok":
        raise StepFailed(f"cluster backend {verdict} just before the switch ({health or 'no servers'}): not every "
                         "server is up and passing; not switching")
    for frontend in ctx.target.frontend_ids:
        ctx.lb.set_frontend_backend(frontend, ctx.target.cluster_backend_id)
    if ctx.record.switched_at is None:
        ctx.record.switched_at = ctx.clock()
    production_checks(ctx)
    # Production now goes where the preview went: the route has served its purpose.
    ctx.lb.remove_host_route(ctx.target.frontend_ids[0], ctx.target.preview_host)


def bake(ctx: Context) -> None:
    """Production on the cluster, watched without a gap for `bake_seconds`; the instances
    stay ready. Every `bake_check_interval` (the LB health check's cadence by default) the
    watch reads the cluster backend from the LB — a server up and passing — and sends a
    small batch of probes through the public frontend. The first conclusive failure rolls
    back at once; an inconclusive read is read again at the next tick, and
    `no_data_reads` of them in a row roll back. The bake ends on a conclusive pass.

    Worst case from a cluster failure to traffic back on the instances: see
    `migrate.model.rollback_worst_case` (shown by `ciel migrate plan`)."""
    t = ctx.thresholds
    until = (ctx.record.switched_at or ctx.clock()) + t.bake_seconds
    batch = max(1, min(t.bake_probe_requests, t.probe_requests))
    checks = no_data = 0
    while True:
        started = ctx.clock()
        verdict, health = backend_verdict(ctx, ctx.target.cluster_backend_id, require_all=False)
        if verdict == "failed":
            raise RollBack(f"cluster backend failed: no server up and passing ({health})")
        result = ctx.prober.probe(ctx.target.public_host, batch)
        probes = result.verdict(t)
        if probes == "failed":
            raise RollBack(f"public frontend probes failed: {result} (need ≥ {t.min_success_ratio:.1%}, "
                           f"p95 ≤ {t.max_p95_ms} ms)")
        if verdict == "no data" or probes == "no data":
            no_data += 1
            ctx.log(f"  watch: inconclusive ({no_data}/{t.no_data_reads}): cluster backend {verdict} "
                    f"{health or 'no servers'}, probes {result}")
            if no_data >= t.no_data_reads:
                raise RollBack(f"no data: {no_data} inconclusive reads in a row (cluster backend "
                               f"{health or 'no servers'}, probes {result})")
        else:
            no_data = 0
            checks += 1
            ctx.log(f"  watch: cluster backend ok {health}, public frontend {result}")
        now = ctx.clock()
        if now >= until and no_data == 0:
            break
        next_read = started + t.bake_check_interval
        if no_data == 0 and until > now:
            next_read = min(next_read, until)
        ctx.sleep(max(0.0, next_read - now))
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
    # Up and passing, not only passing: a server whose check passed may still be held down by
    # the LB until its rise count is met, and a frontend moved to it then would serve errors.
    deadline = ctx.clock() + ctx.thresholds.wait_timeout
    while (found := backend_verdict(ctx, ctx.target.instance_backend_id, require_all=False))[0] != "ok":
        if ctx.clock() > deadline:
            raise CielError(f"rollback: no instance is up and passing its health check ({found[1] or 'no data'}); "
                            "traffic left where it is")
        ctx.sleep(min(1.0, ctx.thresholds.bake_check_interval))
    for frontend in ctx.target.frontend_ids:
        ctx.lb.set_frontend_backend(frontend, ctx.target.instance_backend_id)
    ctx.lb.remove_host_route(ctx.target.frontend_ids[0], ctx.target.preview_host)
