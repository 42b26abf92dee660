"""Rolling replacement of phase-1 instances, one at a time.

A new image tag (or any boot setting) changes an instance's cloud-init, which replaces
the instance (see infra/constructs/compute.py). Terraform would replace them all at
once; we apply them one by one instead — API instances first, each followed by a wait
until every server of the LB's instance backend passes its health check again — so the
API never loses all its servers. Workers follow, one by one: each is powered off (its
container gets SIGTERM and its stop timeout to finish in-flight jobs) before its
successor boots; the queue keeps the jobs meanwhile.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from ciel.credentials import Credentials
from foundation.errors import CielError
from foundation.process import say
from ciel.workspace import PlanResult, ResourceChange

_ROLE_INDEX = re.compile(r"\.compute_(api|worker)_(\d+)_[0-9A-F]{8}$")
# One instance is a unit of four resources (infra/constructs/compute.py, `_instance`): the
# server `<role>_<i>`, its reserved address `<role>_<i>_address`, its boot config
# `<role>_<i>_boot_config` and its private NIC `<role>_<i>_nic`. cdktn names each
# `compute_<id>_<hash>`. `-target` follows dependencies, not dependents: targeting the
# server alone would replace it and leave the new one without its NIC, off the network.
_UNIT_PARTS = ("", "address_", "boot_config_", "nic_")


def replaced_instances(plan: PlanResult) -> list[ResourceChange]:
    """Phase-1 instances this plan replaces, in rollout order (API first, by index)."""
    found = []
    for change in plan.changes:
        match = _ROLE_INDEX.search(change.address)
        if change.type == "scaleway_instance_server" and match and {"delete", "create"} <= set(change.actions):
            found.append(((0 if match.group(1) == "api" else 1, int(match.group(2))), change))
    return [change for _, change in sorted(found, key=lambda item: item[0])]


def unit_addresses(plan: PlanResult, server: ResourceChange) -> list[str]:
    """Every resource of the instance unit `server` belongs to, as plan addresses."""
    match = _ROLE_INDEX.search(server.address)
    if not match:
        raise CielError(f"{server.address} is not a phase-1 instance")
    unit = re.compile(rf"\.compute_{match.group(1)}_{match.group(2)}_(?:{'|'.join(_UNIT_PARTS)})[0-9A-F]{{8}}$")
    known = [rc["address"] for rc in plan.raw.get("resource_changes", [])] + [c.address for c in plan.changes]
    return sorted({address for address in known if unit.search(address)})


def backend_health_waiter(credentials: Credentials, lb_id: str, backend_id: str, *, timeout_s: float = 600,
                          poll_s: float = 10,
                          on_timeout: str = "rollout stopped; the remaining instances were left untouched"
                          ) -> Callable[[], None]:
    """A wait until the LB holds every server of the backend up with a passing health check
    (Scaleway API, through the cutover's load balancer side: with its timeouts and retries)."""
    from migrate.loadbalancer import LoadBalancer

    zone, lb = lb_id.split("/", 1)
    backend = backend_id.split("/", 1)[-1]
    balancer = LoadBalancer(credentials.sdk_client(zone=zone, region=zone.rsplit("-", 1)[0]), zone, lb, log=say)

    def wait() -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            # Ready = the LB holds the server up AND its last check passed: a passing check
            # alone may still be below the LB's rise count.
            states = balancer.server_health(backend)
            if states and all(health.ready for health in states.values()):
                return
            if time.monotonic() > deadline:
                raise CielError(f"backend servers not healthy after {timeout_s:.0f}s: {states}: {on_timeout}")
            time.sleep(poll_s)

    return wait


def roll(apply_targets: Callable[[list[str]], None], plan: PlanResult, wait_api_healthy: Callable[[], None]) -> None:
    """Apply the plan's replaced instances one unit at a time, API first, each API unit
    followed by a wait until the LB sees every API server healthy again."""
    for change in replaced_instances(plan):
        role = "api" if ".compute_api_" in change.address else "worker"
        say(f"→ rolling {change.address} ({role})")
        apply_targets(unit_addresses(plan, change))
        if role == "api":
            wait_api_healthy()
