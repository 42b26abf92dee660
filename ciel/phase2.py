"""`ciel deploy phase2`: a Kapsule cluster beside the instances, then its workloads.

Two steps, two stacks (see infra/stacks/workloads.py for why):
1. the core stack with `phase: 2` — adds the cluster, its pool, the cluster's ingress
   address and the shared LB's (unused) cluster backend; refuses if anything of phase 1
   or the shared layers would change;
2. the workloads stack — the namespace, configuration, deployments, autoscalers, PDBs,
   network policies and the api Service.
With credentials each step plans, asks, applies (the provider waits for the pool and
the rollouts), then the environment file records `phase: 2`. Offline both plans run
with placeholder inputs and nothing is applied or recorded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from ciel import credentials as creds
from ciel.deploy import check_provider_source, load_config, record_release, start_session
from ciel.rollout import backend_health_waiter
from foundation.errors import CielError
from foundation.process import say
from ciel.workspace import PlanResult, ResourceChange, StackWorkspace
from infra.config import EnvironmentConfig
from infra.config.loader import record_phase

# What phase 2 adds to the core stack; anything else in its plan must stay untouched.
_PHASE2_ADDRESS = re.compile(r"^(scaleway_k8s_cluster|scaleway_k8s_pool)\.|\.cluster_ingress_address_|"
                             r"^scaleway_lb_backend\.edge_cluster_backend_")


@dataclass
class Phase2Outcome:
    env: str
    credentials: creds.Credentials
    cluster_plan: PlanResult
    workloads_plan: PlanResult | None  # None: --cluster-only
    applied: bool  # both steps applied and `phase: 2` recorded
    untouched_checked: int  # phase-1 and shared resources verified unchanged
    cluster_applied: bool = False


def is_phase2_addition(change: ResourceChange) -> bool:
    return bool(_PHASE2_ADDRESS.search(change.address))


def phase1_part_identical(phase1: dict, phase2: dict) -> list[str]:
    """Resources of the phase-1 configuration whose configuration phase 2 would alter.

    Compares the two synthesized documents: with phase 2, every phase-1 resource must be
    there with exactly the same arguments (so a plan against the real state shows it
    unchanged); only the phase-2 additions may be new."""
    differences = []
    for type_, resources in phase1.get("resource", {}).items():
        for name, body in resources.items():
            other = phase2.get("resource", {}).get(type_, {}).get(name)
            if other != body:
                differences.append(f"{type_}.{name}")
    return differences


def _offline_inputs() -> dict[str, str]:
    from infra.stacks.workloads import INPUTS

    return {item.name: item.offline for item in INPUTS}


CLUSTER_BACKEND_TIMEOUT_S = 300


def _live_inputs(core_outputs: dict[str, object]) -> dict[str, str]:
    from infra.stacks.workloads import INPUTS

    missing = [item.name for item in INPUTS if item.name not in core_outputs]
    if missing:
        raise CielError(f"the core stack has no output(s) {', '.join(missing)} yet: its apply did not complete")
    return {item.name: str(core_outputs[item.name]) for item in INPUTS}


def deploy_phase2(
    env: str,
    *,
    force_offline: bool = False,
    engine_choice: str | None = None,
    provider_source: str = "mirror",
    auto_approve: bool = False,
    confirm: Callable[[str], bool] | None = None,
    cluster_only: bool = False,
    image_tag: str | None = None,
) -> Phase2Outcome:
    check_provider_source(provider_source)
    current = load_config(env, image_tag)  # bad --env, config or tag: stops here
    config = EnvironmentConfig(**{**current.model_dump(), "phase": 2})
    session = start_session(env, config, force_offline=force_offline, engine_choice=engine_choice)
    credentials, engine, remote = session.credentials, session.engine, session.remote_state
    say(f"ciel deploy phase2 --env {env}: {credentials.mode} mode, engine {engine.name} {engine.version}"
        f"{' (already in phase 2)' if current.phase == 2 else ''}")

    from infra.app import synthesize, synthesize_aside, synthesize_workloads

    say("step 1/2 — cluster (core stack with phase 2)")
    core = synthesize(config, remote_state=remote)
    checked = 0
    if current.phase == 1:
        # Phase 1's configuration, synthesized aside, is what the cluster step must keep as is.
        reference = synthesize_aside(current, "phase1-reference")
        altered = phase1_part_identical(reference, json.loads((core.directory / "cdk.tf.json").read_text()))
        if altered:
            raise CielError("refusing: phase 2 would alter phase-1 or shared resources: " + ", ".join(altered[:8]))
        checked = sum(len(resources) for resources in reference.get("resource", {}).values())
    core_workspace = StackWorkspace(engine, core.directory, credentials, provider_source)
    core_workspace.init()
    core_workspace.validate()
    cluster_plan = core_workspace.plan()
    touched = [c for c in cluster_plan.changes if not is_phase2_addition(c) and credentials.live]
    if touched:
        raise CielError("refusing: the cluster step would change phase-1 or shared resources in the real state: "
                        + ", ".join(f"{c.address} ({'/'.join(c.actions)})" for c in touched[:8]))

    applied = False
    if credentials.live:
        if cluster_plan.changes:
            _confirm(f"Apply the cluster step ({len(cluster_plan.changes)} change(s)) to {env}?", auto_approve, confirm)
            core_workspace.apply(cluster_plan)
        core_outputs = core_workspace.outputs(include_sensitive=True)
        inputs = _live_inputs(core_outputs)
    else:
        inputs = _offline_inputs()

    if cluster_only:
        # The workloads come with the next run; `phase: 2` is recorded only once they are applied.
        say("step 2/2 — workloads: skipped (--cluster-only)")
        return Phase2Outcome(env=env, credentials=credentials, cluster_plan=cluster_plan, workloads_plan=None,
                             applied=False, untouched_checked=checked,
                             cluster_applied=credentials.live and bool(cluster_plan.changes))
    say("step 2/2 — workloads (kubernetes provider)")
    include_untyped = credentials.live and config.enable_keda
    if config.enable_keda and not credentials.live:
        say("  KEDA objects need the cluster's API at plan time: left out of this offline plan")
    workloads = synthesize_workloads(config, remote_state=remote, include_untyped=include_untyped)
    workloads_workspace = StackWorkspace(engine, workloads.directory, credentials, provider_source, variables=inputs)
    workloads_workspace.init()
    workloads_workspace.validate()
    workloads_plan = workloads_workspace.plan()
    if credentials.live and workloads_plan.changes:
        _confirm(f"Apply the workloads step ({len(workloads_plan.changes)} change(s)) to {env}?", auto_approve, confirm)
        workloads_workspace.apply(workloads_plan)  # waits for the rollouts and the Service's LB
        applied = True
    if credentials.live and "cluster_backend_id" in core_outputs:
        # Done means ready for the cutover: the shared LB holds the cluster's address up and
        # passing (its rise count takes a few checks after the private LB first answers).
        say("  waiting until the shared load balancer sees the cluster backend up and passing /health")
        backend_health_waiter(credentials, str(core_outputs["lb_id"]), str(core_outputs["cluster_backend_id"]),
                              timeout_s=CLUSTER_BACKEND_TIMEOUT_S, poll_s=2,
                              on_timeout="the workloads are applied but the LB cannot reach them (see the private "
                              "LB of Service ciel/api); `phase: 2` not recorded")()
    if credentials.live:  # idempotent; also records a run that applied the workloads but died before this
        record_phase(env, 2)
        if image_tag is not None:
            record_release(env, image_tag)
    return Phase2Outcome(env=env, credentials=credentials, cluster_plan=cluster_plan, workloads_plan=workloads_plan,
                         applied=applied, untouched_checked=checked,
                         cluster_applied=credentials.live and bool(cluster_plan.changes))


def _confirm(question: str, auto_approve: bool, confirm: Callable[[str], bool] | None) -> None:
    if not auto_approve and not (confirm and confirm(question)):
        raise CielError("not applied: confirmation declined (use --yes to apply without asking)")
