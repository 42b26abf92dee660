"""Phase-1 instances, through the official SDK: graceful power-off and power-on, idempotent.

`poweroff` is an ACPI shutdown: systemd stops ciel.service, whose ExecStop gives the
container its stop timeout (the worker finishes its job) before the machine halts. The
instance and its disk stay: it can be powered on and put back until it is retired.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from scaleway import Client
from scaleway.instance.v1 import InstanceV1API, ServerAction, ServerState

from foundation.errors import CielError
from migrate.resilience import RetryPolicy, call

# The SDK's enum says `stopped_in_place` (ServerState.STOPPED_IN_PLACE); the API's JSON, which
# the SDK passes through as it comes, says "stopped in place" (the Go SDK's value, and what the
# provider's recorded responses hold). Either way the server is off: nothing to power off.
STOPPED_OR_STOPPING = frozenset({ServerState.STOPPED.value, ServerState.STOPPING.value,
                                 ServerState.STOPPED_IN_PLACE.value, "stopped in place"})


class Instances:
    def __init__(self, client: Client, zone: str, *, log: Callable[[str], None], policy: RetryPolicy = RetryPolicy(),
                 poll_seconds: float = 2.0) -> None:
        self.api = InstanceV1API(client)
        self.zone, self.log, self.policy, self.poll_seconds = zone, log, policy, poll_seconds

    def state(self, server_id: str) -> str:
        self.log(f"  API GET server {server_id}")
        response = call(f"GET server {server_id}", lambda: self.api.get_server(zone=self.zone, server_id=server_id),
                        self.policy, self.log)
        return str(response.server.state)

    def _action(self, server_id: str, action: ServerAction) -> None:
        self.log(f"  API POST server {server_id} action={action.value}")
        call(f"POST server {server_id} action={action.value}",
             lambda: self.api.server_action(zone=self.zone, server_id=server_id, action=action), self.policy, self.log)

    def power_off(self, server_id: str) -> None:
        if self.state(server_id) in STOPPED_OR_STOPPING:
            return
        self._action(server_id, ServerAction.POWEROFF)

    def power_on(self, server_id: str) -> None:
        if self.state(server_id) in ("running", "starting"):
            return
        self._action(server_id, ServerAction.POWERON)

    def reboot(self, server_id: str) -> None:
        """An ACPI reboot: systemd stops the app gracefully; at boot its unit starts again."""
        self._action(server_id, ServerAction.REBOOT)

    def wait_state(self, server_id: str, wanted: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (state := self.state(server_id)) != wanted:
            if time.monotonic() > deadline:
                raise CielError(f"instance {server_id} is still {state} after {timeout:.0f}s (expected {wanted})")
            time.sleep(self.poll_seconds)
