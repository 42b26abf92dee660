"""The cutover's retire step: delete the phase-1 compute, then record that it is gone.

Order matters. The environment file records `traffic: cluster, instances_retired: true`
only once the apply that deletes the instances succeeded; until then the file still
says the instances exist, so a failed or interrupted retire is simply run again (the
cutover record keeps `retire` as its current step). The apply may delete exactly the
resources that the retired configuration drops — the compute layer — and nothing else:
any other change (a shared layer, the LB, a data layer) refuses the whole step.
"""

from __future__ import annotations

from dataclasses import dataclass

from ciel.deploy import DeployOutcome, deploy_phase1
from ciel.workspace import PlanResult
from foundation.errors import CielError
from infra.config import EnvironmentConfig, load_environment
from infra.config.loader import record_settings

RETIRED_SETTINGS = {"traffic": "cluster", "instances_retired": True}


def retired(config: EnvironmentConfig) -> EnvironmentConfig:
    """The configuration after a finished cutover."""
    return EnvironmentConfig(**{**config.model_dump(), **RETIRED_SETTINGS})


def compute_to_delete(config: EnvironmentConfig) -> set[str]:
    """Plan addresses of what retiring `config` deletes: the resources of its stack that
    the retired stack no longer has (both synthesized aside, offline)."""
    from infra.app import resource_addresses, synthesize_aside

    return (resource_addresses(synthesize_aside(config, "retire-before"))
            - resource_addresses(synthesize_aside(retired(config), "retire-after")))


@dataclass(frozen=True)
class RetirePlanCheck:
    """Refuses a retire plan that would do anything but delete `expected`."""

    expected: frozenset[str]

    def __call__(self, plan: PlanResult) -> None:
        if not plan_has_state(plan):
            # Offline, against an empty state, nothing can be deleted: the plan must at least
            # create none of what retire removes.
            kept = sorted({change.address for change in plan.changes} & self.expected)
            if kept:
                raise CielError(f"retire: the retired stack still declares {', '.join(kept[:5])}")
            return
        other = [change for change in plan.changes if not (change.address in self.expected and change.deletes_only)]
        if other:
            shown = ", ".join(f"{c.address} ({'/'.join(c.actions)})" for c in other[:8])
            raise CielError("refusing to retire: the plan does more than delete the phase-1 instances: " + shown
                            + ". Nothing was applied; traffic and workers stay on the cluster and the instances are "
                            "kept. Bring the environment's configuration back in line with what runs, then rerun")


def plan_has_state(plan: PlanResult) -> bool:
    """Whether the plan was made against an existing state (live), not an empty one."""
    return bool((plan.raw.get("prior_state") or {}).get("values", {}).get("root_module", {}).get("resources"))


def retire_instances(env: str, *, engine_choice: str | None = None, force_offline: bool = False) -> DeployOutcome:
    """Apply the retired configuration (deleting only the compute layer), then record it."""
    current = load_environment(env)
    expected = compute_to_delete(current)
    outcome = deploy_phase1(env, config=retired(current), force_offline=force_offline, engine_choice=engine_choice,
                            force_phase1=True, auto_approve=True, delete_instances=expected,
                            check_plan=RetirePlanCheck(frozenset(expected)))
    # Live: recorded once the deletion is applied — or found already done (a crash after
    # the apply, before this line): the plan then has nothing left to change.
    if outcome.credentials.live and (outcome.applied or not outcome.plan.changes):
        record_settings(env, **RETIRED_SETTINGS)
    return outcome
