"""`ciel secrets rotate --env ENV NAME`: a new value for a secret ciel generates, read by
every app process, without replacing a machine.

1. The secret's rotation count goes up by one (`secret_rotations` in the environment's
   configuration): it is the keeper of the secret's random value, so the core stack's
   plan replaces exactly that value and its Secret Manager version (the new version is
   created before the old one goes). The plan is refused if it changes anything else.
2. After the apply, the count is recorded in the environment's file, so the next deploy
   plans nothing.
3. The app machines read secrets at every start (infra/cloudinit/fetch_secrets.py): each
   is rebooted through the Instance API — the one way to reach a private machine without
   SSH — one at a time. An API machine stops gracefully (its container drains), the LB
   sends its traffic to the others, and the next machine waits until the LB holds every
   API server up again. Workers follow, each finishing its job in hand.

With a single API instance that restart is an outage: it is refused unless
--allow-downtime says so. Without credentials, the plan is shown and nothing applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ciel import credentials as creds
from ciel.deploy import DeployOutcome, deploy_phase1
from ciel.workspace import PlanResult
from foundation.errors import CielError, UsageError
from foundation.process import say
from infra.config import EnvironmentConfig, load_environment
from infra.config.loader import record_settings
from infra.config.schema import ROTATABLE_SECRETS

# What a rotation may change: the generated value and its Secret Manager version.
ROTATION_TYPES = frozenset({"random_bytes", "random_password", "scaleway_secret_version"})
SEEN_DOWN_TIMEOUT = 90.0  # how long the LB may take to notice a rebooting API machine
HEALTHY_TIMEOUT = 600.0  # for the LB to hold every API server up again


@dataclass
class RotationOutcome:
    deploy: DeployOutcome
    generation: int
    restarted: list[str] = field(default_factory=list)  # server names, in order


def rotated_config(config: EnvironmentConfig, name: str) -> tuple[EnvironmentConfig, int]:
    if name not in ROTATABLE_SECRETS:
        raise UsageError(
            f"{name!r} is not a secret ciel generates; rotatable: {', '.join(ROTATABLE_SECRETS)}. The others come "
            "from the resources that own them (database passwords, IAM keys, queue credentials): replacing that "
            "resource is what rotates them")
    if name == "admin-token" and not config.enable_admin_token:
        raise UsageError(f"{config.name} has no admin token (enable_admin_token: false)")
    generation = config.secret_rotations.get(name, 0) + 1
    return EnvironmentConfig(**{**config.model_dump(),
                                "secret_rotations": {**config.secret_rotations, name: generation}}), generation


def refuse_other_changes(name: str) -> Callable[[PlanResult], None]:
    # In both the random value's address (paseto_access_bytes) and the version's.
    slug = name.replace("-", "_").removesuffix("_key")

    def check(plan: PlanResult) -> None:
        others = [change.address for change in plan.changes
                  if change.type not in ROTATION_TYPES or slug not in change.address]
        if others:
            shown = ", ".join(others[:8]) + (f" and {len(others) - 8} more" if len(others) > 8 else "")
            raise CielError(f"refusing: rotating {name} would also change {shown}"
                            + ". Nothing was applied. Deploy the environment first (`ciel deploy phase1|phase2`), "
                            "so that the rotation's plan holds the rotation alone")
        if not plan.changes:
            raise CielError(f"refusing: the plan does not change {name}. Nothing was applied")
    return check


def rotate(env: str, name: str, *, force_offline: bool = False, engine_choice: str | None = None,
           provider_source: str = "mirror", auto_approve: bool = False, confirm: Callable[[str], bool] | None = None,
           allow_downtime: bool = False) -> RotationOutcome:
    config = load_environment(env)
    rotated, generation = rotated_config(config, name)
    api_count = 0 if config.instances_retired else config.api_instance_count
    live = creds.detect(force_offline).live
    if api_count == 1 and not allow_downtime and live:
        raise UsageError(
            f"{env} runs one API instance: restarting it to read the new secret is an outage of about a minute. "
            "Run two (api_instance_count: 2) for a rotation without a failed request, or pass --allow-downtime")
    say(f"ciel secrets rotate --env {env} {name}: rotation {generation}")
    outcome = deploy_phase1(env, force_offline=force_offline, engine_choice=engine_choice,
                            provider_source=provider_source, auto_approve=auto_approve, confirm=confirm,
                            # Offline, the plan starts from an empty state: everything is new.
                            config=rotated, check_plan=refuse_other_changes(name) if live else None,
                            force_phase1=True)
    result = RotationOutcome(deploy=outcome, generation=generation)
    if not outcome.applied:
        return result
    record_settings(env, secret_rotations=rotated.secret_rotations)
    say(f"→ {name}: new version in Secret Manager (rotation {generation}, recorded in {env}'s configuration)")
    result.restarted = restart_app_machines(outcome)
    if config.phase == 2:
        say(f"  the cluster's pods read {name} at their start: `ciel deploy phase2 --env {env}` rolls them")
    return result


def restart_app_machines(outcome: DeployOutcome) -> list[str]:
    """Reboot every app machine, one at a time (API first), so each reads the new secrets."""
    from migrate.instances import Instances

    outputs = outcome.outputs
    api, workers = list(outputs.get("api_server_ids") or []), list(outputs.get("worker_server_ids") or [])
    if not api and not workers:
        return []
    zone = str((api or workers)[0]).split("/", 1)[0]
    instances = Instances(outcome.credentials.sdk_client(zone=zone, region=zone.rsplit("-", 1)[0]), zone, log=say)
    backend = _api_backend(outcome)
    restarted = []
    for server_id, address in zip(api, outputs.get("api_addresses") or []):
        bare = str(server_id).split("/", 1)[-1]
        say(f"→ restarting API instance {bare} ({address})")
        instances.reboot(bare)
        if backend:
            # Before the next one goes: the LB must have seen this one go, and hold every
            # API server up again once it is back.
            backend.wait_until_down(address, also=lambda: instances.state(bare))
        instances.wait_state(bare, "running", timeout=HEALTHY_TIMEOUT)
        if backend:
            backend.wait_all_ready(address)
        restarted.append(bare)
    for server_id in workers:
        bare = str(server_id).split("/", 1)[-1]
        say(f"→ restarting worker instance {bare} (it finishes its job in hand)")
        instances.reboot(bare)
        _wait_left_running(instances, bare)
        instances.wait_state(bare, "running", timeout=HEALTHY_TIMEOUT)
        restarted.append(bare)
    return restarted


def _wait_left_running(instances, server_id: str) -> None:
    """A reboot shows as stopping/starting; a read of `running` right after the call may
    predate it."""
    deadline = time.monotonic() + SEEN_DOWN_TIMEOUT
    while instances.state(server_id) == "running" and time.monotonic() < deadline:
        time.sleep(2)


class _ApiBackend:
    """The LB's view of the API instances, for the restarts."""

    def __init__(self, balancer, backend_id: str) -> None:
        self.balancer, self.backend_id = balancer, backend_id

    def wait_until_down(self, address: str, *, also: Callable[[], object]) -> None:
        deadline = time.monotonic() + SEEN_DOWN_TIMEOUT
        while (health := self.balancer.server_health(self.backend_id).get(address)) is not None and health.ready:
            if time.monotonic() > deadline:
                say(f"  the LB never saw {address} down (a quick restart); going on")
                return
            also()
            time.sleep(2)

    def wait_all_ready(self, address: str) -> None:
        deadline = time.monotonic() + HEALTHY_TIMEOUT
        while not (states := self.balancer.server_health(self.backend_id)) or not all(h.ready for h in states.values()):
            if time.monotonic() > deadline:
                raise CielError(f"API servers not all healthy {HEALTHY_TIMEOUT:.0f}s after restarting {address}: "
                                f"{states}. The rotation is applied; the remaining machines were not restarted "
                                "(reboot them, or rerun `ciel secrets rotate` after fixing it)")
            time.sleep(2)


def _api_backend(outcome: DeployOutcome) -> _ApiBackend | None:
    from migrate.loadbalancer import LoadBalancer

    outputs = outcome.outputs
    if "lb_id" not in outputs or "instance_backend_id" not in outputs:
        return None  # nothing routes to the API
    zone, lb = str(outputs["lb_id"]).split("/", 1)
    balancer = LoadBalancer(outcome.credentials.sdk_client(zone=zone, region=zone.rsplit("-", 1)[0]), zone, lb,
                            log=say)
    return _ApiBackend(balancer, str(outputs["instance_backend_id"]).split("/", 1)[-1])
