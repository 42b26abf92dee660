"""`ciel migrate plan`: the cutover's steps run against recorders instead of APIs.

The recorders answer like a healthy environment, so the very code of the cutover walks
every step and prints each call it would make and each check with its thresholds.
Nothing is called; no credentials are needed.
"""

from __future__ import annotations

from collections.abc import Callable

from migrate.model import ServerHealth
from migrate.probes import ProbeResult


class PlannedProbe(ProbeResult):
    def __str__(self) -> str:
        return f"would send {self.sent} × GET /health"


class _Recorder:
    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log


class RecordingLoadBalancer(_Recorder):
    def __init__(self, log, target) -> None:
        super().__init__(log)
        self.frontends = {f: target.instance_backend_id for f in target.frontend_ids}
        self.pools = {target.instance_backend_id: list(target.instance_ips),
                      target.cluster_backend_id: ["<cluster ingress address>"]}

    def wait_settled(self) -> None:
        self.log("  API GET lb → wait until status is ready")

    def server_health(self, backend_id: str) -> dict[str, ServerHealth]:
        self.log(f"  API GET backend-stats backend={backend_id} (each server: state running AND last check passed)")
        up = ServerHealth(state="running", check="passed")
        return {ip: up for ip in self.pools.get(backend_id, ["<server>"])} or {"<server>": up}

    def frontend_backend(self, frontend_id: str) -> str:
        return self.frontends[frontend_id]

    def set_frontend_backend(self, frontend_id: str, backend_id: str) -> None:
        self.wait_settled()
        self.log(f"  API PUT frontend {frontend_id} backend_id={backend_id} (same name, port, certificates)")
        self.frontends[frontend_id] = backend_id
        self.wait_settled()

    def set_backend_servers(self, backend_id: str, ips: list[str]) -> None:
        self.wait_settled()
        self.log(f"  API PUT backend {backend_id} servers={ips}")
        self.pools[backend_id] = list(ips) or ["<none>"]
        self.wait_settled()

    def ensure_host_route(self, frontend_id: str, host: str, backend_id: str) -> None:
        self.log(f"  API GET routes frontend={frontend_id}")
        self.wait_settled()
        self.log(f"  API POST route frontend={frontend_id} host={host} backend_id={backend_id}")
        self.wait_settled()

    def remove_host_route(self, frontend_id: str, host: str) -> None:
        self.log(f"  API GET routes frontend={frontend_id}; DELETE the route for host={host} if present")


class RecordingInstances(_Recorder):
    def power_off(self, server_id: str) -> None:
        self.log(f"  API POST server {server_id} action=poweroff (ACPI: the container gets its stop timeout)")

    def power_on(self, server_id: str) -> None:
        self.log(f"  API POST server {server_id} action=poweron (if stopped)")

    def wait_state(self, server_id: str, wanted: str, timeout: float) -> None:
        self.log(f"  API GET server {server_id} → wait until {wanted} (at most {timeout:.0f}s)")


class RecordingCluster(_Recorder):
    def readiness(self, name: str) -> tuple[int, int]:
        self.log(f"  K8S GET deployment ciel/{name} (ready replicas = desired ≥ 1)")
        return (1, 1)

    def scale_at_least(self, name: str, replicas: int) -> None:
        self.log(f"  K8S PATCH deployment ciel/{name} scale to ≥ {replicas} replicas")

    def wait_ready(self, name: str, timeout: float) -> None:
        self.log(f"  K8S GET deployment ciel/{name} → wait until ready (at most {timeout:.0f}s)")


class RecordingProber(_Recorder):
    def probe(self, host_header: str | None, count: int) -> ProbeResult:
        return PlannedProbe(sent=count, succeeded=count, p95_ms=0.0)


def collapse_repeats(lines: list[str], longest_block: int = 8, at_least: int = 3) -> list[str]:
    """The bake's watch repeats the same few lines every interval: print one round, then
    how many times it repeats."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        for size in range(1, longest_block + 1):
            block = lines[i:i + size]
            count = 1
            while lines[i + count * size:i + (count + 1) * size] == block:
                count += 1
            if len(block) == size and count >= at_least:
                out += block
                out.append(f"  … the {size} line(s) above, {count - 1} more time(s)")
                i += count * size
                break
        else:
            out.append(lines[i])
            i += 1
    return out


class PlanClock:
    """Time that passes only when the plan 'waits': bake and drain waits are instant."""

    def __init__(self, log) -> None:
        self.now = 0.0
        self.log = log

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.log(f"  wait {seconds:.0f}s")
        self.now += seconds
