"""The deploy path: config → synth → init → validate → plan → (confirm → apply).

Every check that can fail on bad input runs before the engine does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ciel import credentials as creds
from ciel import state_bucket
from ciel.errors import CielError, UsageError
from ciel.process import say
from ciel.toolchain import bindings, engine as engines, node
from ciel.toolchain.mirror import PROVIDER_SOURCES
from ciel.workspace import PlanResult, StackWorkspace
from infra.config import load_environment
from infra.state import RemoteState


@dataclass
class DeployOutcome:
    env: str
    stack: str
    credentials: creds.Credentials
    plan: PlanResult
    applied: bool
    timings: dict[str, float] = field(default_factory=dict)


def deploy_phase1(
    env: str,
    *,
    force_offline: bool = False,
    engine_choice: str | None = None,
    provider_source: str = "mirror",
    auto_approve: bool = False,
    confirm: Callable[[str], bool] | None = None,
    plan_only: bool = False,
) -> DeployOutcome:
    if provider_source not in PROVIDER_SOURCES:
        raise UsageError(f"unknown provider source {provider_source!r}: choose one of {', '.join(PROVIDER_SOURCES)}")
    config = load_environment(env)  # bad --env or config: stops here
    credentials = creds.detect(force_offline)
    engine = engines.select(engine_choice)
    bindings.ensure_importable()
    timings: dict[str, float] = {}

    say(f"ciel deploy phase1 --env {env}: {credentials.mode} mode, engine {engine.name} {engine.version}")
    if not credentials.live:
        say("  no Scaleway credentials: planning with placeholder credentials and a throw-away local state")

    start = time.monotonic()
    os.environ.update(node.runtime_env())  # the jsii runtime picks its Node from here (if not started yet)
    from infra.app import synthesize  # imports the jsii runtime: only once inputs are valid

    remote_state = RemoteState.for_project(credentials.project_id, config.region) if credentials.live else None
    if remote_state and not state_bucket.exists(remote_state, credentials):
        raise CielError(f"the state bucket {remote_state.bucket} does not exist (or is not readable with these "
                        f"credentials): run `ciel state bootstrap --env {env}` first")
    synth = synthesize(config, remote_state=remote_state)
    timings["synth"] = time.monotonic() - start
    say(f"→ synthesized stack {synth.stack} in {timings['synth']:.1f}s")

    workspace = StackWorkspace(engine, synth.directory, credentials, provider_source)
    for step in ("init", "validate"):
        start = time.monotonic()
        getattr(workspace, step)()
        timings[step] = time.monotonic() - start
    start = time.monotonic()
    plan = workspace.plan()
    timings["plan"] = time.monotonic() - start

    applied = False
    if credentials.live and plan.changes and not plan_only:
        if plan.destroys and not auto_approve:
            say(f"  the plan DESTROYS {len(plan.destroys)} resource(s): " + ", ".join(c.address for c in plan.destroys))
        question = f"Apply {len(plan.changes)} change(s) to {env} on Scaleway?"
        if not auto_approve and not (confirm and confirm(question)):
            raise CielError("not applied: confirmation declined (use --yes to apply without asking)")
        workspace.apply(plan)
        applied = True
    return DeployOutcome(env=env, stack=synth.stack, credentials=credentials, plan=plan, applied=applied, timings=timings)
