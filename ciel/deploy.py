"""The deploy path: config → synth → init → validate → plan → guards → (confirm → apply).

Every check that can fail on bad input runs before the engine does; every check that
can stop a harmful change runs before anything is applied.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from ciel import credentials as creds
from ciel import rollout, state_bucket
from ciel.project_owner import refuse_a_second_environment
from ciel.workspace import PlanResult, ResourceChange, StackWorkspace
from foundation.errors import CielError, UsageError
from foundation.process import say
from infra.config import EnvironmentConfig, load_environment
from infra.state import RemoteState
from migrate.store import refuse_if_cutover_in_progress
from toolchain import bindings, engine as engines, node
from toolchain.mirror import PROVIDER_SOURCES

# Resources whose destruction loses data (or the addresses clients use). A phase-1 deploy
# never destroys them; doing so on purpose is a manual, deliberate engine run.
DATA_LAYER_TYPES = frozenset({
    "scaleway_rdb_instance", "scaleway_rdb_database", "scaleway_redis_cluster", "scaleway_object_bucket",
    "scaleway_mnq_sqs_queue", "scaleway_secret", "scaleway_registry_namespace", "scaleway_lb", "scaleway_lb_ip",
})
SELF_MANAGED_REDIS = ".cache_server_"


@dataclass
class DeployOutcome:
    env: str
    stack: str
    config: EnvironmentConfig
    credentials: creds.Credentials
    plan: PlanResult
    applied: bool
    outputs: dict[str, object] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def data_layer_destroys(plan: PlanResult) -> list[ResourceChange]:
    """Changes that delete (or replace) a data layer."""
    return [change for change in plan.destroys
            if change.type in DATA_LAYER_TYPES or SELF_MANAGED_REDIS in change.address]


def unconfirmed_instance_deletions(plan: PlanResult, confirmed: Collection[str]) -> list[ResourceChange]:
    """Instances this plan deletes for good (not replaced) that nobody named.

    Instances carry the running service: a lowered count, a hand-written
    `instances_retired: true` or a wrong environment file would otherwise delete them
    silently. Replacements (a new image) are not deletions. Named by server name or by
    plan address."""
    return [change for change in plan.changes
            if change.type == "scaleway_instance_server" and change.deletes_only
            and SELF_MANAGED_REDIS not in change.address
            and change.name not in confirmed and change.address not in confirmed]


def load_config(env: str, image_tag: str | None) -> EnvironmentConfig:
    config = load_environment(env)
    if image_tag is None:
        return config
    from pydantic import ValidationError

    try:
        return EnvironmentConfig(**{**config.model_dump(), "image_tag": image_tag})
    except ValidationError as error:
        # The schema's own rule (no moving tag outside dev) says what to do instead.
        reasons = [e["msg"].removeprefix("Value error, ").removeprefix("image_tag: ") for e in error.errors()
                   if e["type"] == "value_error" and e["msg"].startswith("Value error, image_tag: ")]
        if reasons:
            raise UsageError(f"--image-tag {reasons[0]}") from None
        raise UsageError(f"--image-tag {image_tag!r} is not a valid image tag "
                         "(letters, digits, '_', '.', '-'; up to 128 characters)") from None


@dataclass(frozen=True)
class Session:
    """What every deploy step runs with, checked once: credentials, engine, state location."""

    credentials: creds.Credentials
    engine: engines.Engine
    remote_state: RemoteState | None  # None: offline, a throw-away local state


def check_provider_source(provider_source: str) -> None:
    if provider_source not in PROVIDER_SOURCES:
        raise UsageError(f"unknown provider source {provider_source!r}: choose one of {', '.join(PROVIDER_SOURCES)}")


def start_session(env: str, config: EnvironmentConfig, *, force_offline: bool, engine_choice: str | None) -> Session:
    """After the inputs are validated: find credentials, engine and bindings, prepare the
    jsii runtime, (live) refuse a project that holds another environment, check the state
    bucket exists, and refuse during a cutover (its record lives beside the state)."""
    credentials = creds.detect(force_offline)
    engine = engines.select(engine_choice)
    bindings.ensure_importable()
    os.environ.update(node.runtime_env())  # the jsii runtime picks its Node from here (if not started yet)
    if credentials.live:  # first: in another environment's project, nothing else matters
        refuse_a_second_environment(config, credentials.sdk_client(zone=config.zone, region=config.region),
                                    credentials.project_id)
    remote_state = RemoteState.for_project(credentials.project_id, config.region) if credentials.live else None
    if remote_state and not state_bucket.exists(remote_state, credentials):
        raise CielError(f"the state bucket {remote_state.bucket} does not exist (or is not readable with these "
                        f"credentials): run `ciel state bootstrap --env {env}` first")
    refuse_if_cutover_in_progress(state_bucket.cutover_store(env, credentials))
    return Session(credentials=credentials, engine=engine, remote_state=remote_state)


def deploy_phase1(
    env: str,
    *,
    force_offline: bool = False,
    engine_choice: str | None = None,
    provider_source: str = "mirror",
    image_tag: str | None = None,
    force_phase1: bool = False,
    auto_approve: bool = False,
    confirm: Callable[[str], bool] | None = None,
    plan_only: bool = False,
    delete_instances: Collection[str] = (),
    config: EnvironmentConfig | None = None,
    check_plan: Callable[[PlanResult], None] | None = None,
) -> DeployOutcome:
    """Plan phase 1 of `env` and (live, confirmed) apply it.

    `config` replaces the environment file's (the cutover's retire step deploys the
    retired configuration before recording it); `delete_instances` names the instances
    the caller agreed to delete; `check_plan` may refuse the plan before anything applies."""
    check_provider_source(provider_source)
    config = config or load_config(env, image_tag)  # bad --env, config or tag: stops here
    session = start_session(env, config, force_offline=force_offline, engine_choice=engine_choice)
    credentials, engine = session.credentials, session.engine
    timings: dict[str, float] = {}

    say(f"ciel deploy phase1 --env {env}: {credentials.mode} mode, engine {engine.name} {engine.version}, "
        f"image tag {config.image_tag}")
    if not credentials.live:
        say("  no Scaleway credentials: planning with placeholder credentials and a throw-away local state")

    start = time.monotonic()
    from infra.app import synthesize  # imports the jsii runtime: only once inputs are valid

    synth = synthesize(config, remote_state=session.remote_state)
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
    outcome = DeployOutcome(env=env, stack=synth.stack, config=config, credentials=credentials, plan=plan,
                            applied=False, timings=timings)

    losses = data_layer_destroys(plan)
    if losses:
        raise CielError(
            "refusing: this plan would destroy data layers — " + ", ".join(c.address for c in losses)
            + ". Nothing was applied. Undo the configuration change that causes it; a deliberate teardown is a "
            f"manual `{engine.name} destroy -target=...` in {synth.directory}")
    unconfirmed = [] if plan_only else unconfirmed_instance_deletions(plan, delete_instances)
    if unconfirmed:
        names = [change.name or change.address for change in unconfirmed]
        raise CielError(
            "refusing: this plan deletes the instance(s) " + ", ".join(names) + ". Nothing was applied. If that is "
            "what you want (fewer instances), rerun with " + " ".join(f"--delete-instance {name}" for name in names)
            + "; instances are retired after a cutover by `ciel migrate cutover`, never by editing "
            "instances_retired or traffic by hand")
    if check_plan:
        check_plan(plan)
    if config.phase == 2 and not force_phase1:
        raise UsageError(
            f"{env} is in phase 2: a Kapsule cluster runs beside the instances and shares these layers. The plan "
            "above is what `deploy phase1` would change in them. Nothing was applied; rerun with --force-phase1 "
            "to apply it anyway, or use `ciel deploy phase2`")

    if credentials.live and plan.changes and not plan_only:
        question = f"Apply {len(plan.changes)} change(s) to {env} on Scaleway?"
        if not auto_approve and not (confirm and confirm(question)):
            raise CielError("not applied: confirmation declined (use --yes to apply without asking)")
        _apply(workspace, plan, credentials)
        outcome.applied = True
        outcome.outputs = workspace.outputs()
    if credentials.live and not plan_only and image_tag is not None:
        record_release(env, image_tag)
    return outcome


def record_release(env: str, image_tag: str) -> None:
    """Record a live deploy's --image-tag in the environment file, and say so."""
    from infra.config.loader import record_image_tag

    path = record_image_tag(env, image_tag)
    if path is not None:
        say(f"→ recorded image_tag: {image_tag} in {path} (commit it: the next deploy without --image-tag runs it)")


def _apply(workspace: StackWorkspace, plan: PlanResult, credentials: creds.Credentials) -> None:
    replaced = rollout.replaced_instances(plan)
    if not replaced:
        workspace.apply(plan)
        return
    say(f"  {len(replaced)} instances are replaced: rolling them one at a time")
    current = workspace.outputs()
    if "lb_id" in current and "instance_backend_id" in current:
        wait = rollout.backend_health_waiter(credentials, str(current["lb_id"]), str(current["instance_backend_id"]))
    else:
        def wait() -> None:  # no load balancer: nothing routes to the API, nothing to wait for
            return None
    rollout.roll(workspace.apply_targets, plan, wait)
    workspace.apply(workspace.plan())  # whatever else the approved change holds


def verification_steps(outcome: DeployOutcome) -> list[str]:
    """What to check after a live apply, with the real URLs and names."""
    config, outputs = outcome.config, outcome.outputs
    api_url = outputs.get("api_url", "(no load balancer)")
    return [
        f"API: {api_url}/health",
        f"Migrations: run the image's migration command once with DATABASE_URL set to the migrator URL "
        f"(Secret Manager /ciel/{config.name}/migrator-database-url), e.g. from an API instance "
        f"(ssh through the bastion{'' if config.enable_bastion else ', enable_bastion: true first'}): "
        f"docker run --rm --env-file /etc/ciel/app.env -e DATABASE_URL=... <image> <migrate command>",
        f"Logs: Cockpit → Grafana → Explore, source ciel-{config.name}-logs, labels app=ciel role=api|worker; "
        "on a machine: journalctl -u ciel.service",
        f"Image: push to {outputs.get('registry_endpoint', 'the registry namespace')}/{config.image_name}:<tag>, "
        "then `ciel deploy phase1 --env {0} --image-tag <tag>` rolls the instances one at a time".format(config.name),
    ]
