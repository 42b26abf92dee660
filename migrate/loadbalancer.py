"""The shared load balancer, through the official SDK: idempotent, converging operations.

Every change waits for the LB and its instances to leave their transient statuses before
and after (a change of the LB made while it is busy is refused with 409, and a change is
not in effect until its instances are `ready` again: the LB object itself may stay
`ready` meanwhile) — wait, change, wait, as the Terraform provider does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from scaleway import Client
from scaleway.lb.v1 import LbV1ZonedAPI

from foundation.errors import CielError
from migrate.model import ServerHealth
from migrate.resilience import RetryPolicy, call

SETTLED = "ready"


class LoadBalancer:
    def __init__(self, client: Client, zone: str, lb_id: str, *, log: Callable[[str], None],
                 policy: RetryPolicy = RetryPolicy(), poll_seconds: float = 2.0, wait_timeout: float = 600) -> None:
        self.api = LbV1ZonedAPI(client)
        self.zone, self.lb_id, self.log, self.policy = zone, lb_id, log, policy
        self.poll_seconds, self.wait_timeout = poll_seconds, wait_timeout

    def _call(self, description: str, fn):
        self.log(f"  API {description}")
        return call(description, fn, self.policy, self.log)

    def status(self) -> str:
        """The LB's status, or, once that is `ready`, the first of its instances' that is not:
        the real LB object stays `ready` while its instances reload a change (`pending`), as
        the provider's recordings show, so the LB's own status alone would not wait."""
        lb = self._call(f"GET lb {self.lb_id}", lambda: self.api.get_lb(zone=self.zone, lb_id=self.lb_id))
        if str(lb.status) != SETTLED:
            return str(lb.status)
        return next((str(i.status) for i in (lb.instances or []) if str(i.status) != SETTLED), SETTLED)

    def wait_settled(self) -> None:
        deadline = time.monotonic() + self.wait_timeout
        while (status := self.status()) != SETTLED:
            if status in ("error", "locked"):
                raise CielError(f"load balancer {self.lb_id} is {status}: stop, look at it in the console")
            if time.monotonic() > deadline:
                raise CielError(f"load balancer {self.lb_id} still {status} after {self.wait_timeout:.0f}s")
            time.sleep(self.poll_seconds)

    def server_health(self, backend_id: str) -> dict[str, ServerHealth]:
        """Server IP → the LB's view of it: its operational state (`server_state`: running
        is up) and its last health check (`last_health_check_status`)."""
        stats = self._call(f"GET backend-stats backend={backend_id}", lambda: self.api.list_backend_stats_all(
            zone=self.zone, lb_id=self.lb_id, backend_id=backend_id))
        return {s.ip: ServerHealth(state=str(s.server_state), check=str(s.last_health_check_status)) for s in stats}

    def backend_servers(self, backend_id: str) -> list[str]:
        backend = self._call(f"GET backend {backend_id}", lambda: self.api.get_backend(zone=self.zone, backend_id=backend_id))
        return list(backend.pool or [])

    def set_backend_servers(self, backend_id: str, ips: list[str]) -> None:
        if sorted(self.backend_servers(backend_id)) == sorted(ips):
            return
        self.wait_settled()
        self._call(f"PUT backend {backend_id} servers={ips}", lambda: self.api.set_backend_servers(
            zone=self.zone, backend_id=backend_id, server_ip=list(ips)))
        self.wait_settled()

    def frontend_backend(self, frontend_id: str) -> str:
        frontend = self._call(f"GET frontend {frontend_id}", lambda: self.api.get_frontend(zone=self.zone,
                                                                                          frontend_id=frontend_id))
        return frontend.backend.id if frontend.backend else ""

    def set_frontend_backend(self, frontend_id: str, backend_id: str) -> None:
        current = self._call(f"GET frontend {frontend_id}", lambda: self.api.get_frontend(zone=self.zone,
                                                                                         frontend_id=frontend_id))
        if current.backend and current.backend.id == backend_id:
            return
        self.wait_settled()
        # The API replaces the whole frontend: send back everything, change only the backend.
        self._call(f"PUT frontend {frontend_id} backend_id={backend_id}", lambda: self.api.update_frontend(
            zone=self.zone, frontend_id=frontend_id, name=current.name, inbound_port=current.inbound_port,
            backend_id=backend_id, enable_http3=bool(current.enable_http3), timeout_client=current.timeout_client,
            certificate_ids=list(current.certificate_ids or []) or None,
            connection_rate_limit=current.connection_rate_limit,
            enable_access_logs=bool(current.enable_access_logs)))
        self.wait_settled()

    def _routes(self, frontend_id: str):
        return self._call(f"GET routes frontend={frontend_id}", lambda: self.api.list_routes_all(
            zone=self.zone, frontend_id=frontend_id))

    def ensure_host_route(self, frontend_id: str, host: str, backend_id: str) -> None:
        from scaleway.lb.v1 import RouteMatch

        for route in self._routes(frontend_id):
            if route.match and route.match.host_header == host:
                if route.backend_id == backend_id:
                    return
                self.wait_settled()
                self._call(f"PUT route {route.id} backend_id={backend_id}", lambda: self.api.update_route(
                    zone=self.zone, route_id=route.id, backend_id=backend_id, match=RouteMatch(match_subdomains=False, host_header=host)))
                self.wait_settled()
                return
        self.wait_settled()
        self._call(f"POST route frontend={frontend_id} host={host} backend_id={backend_id}", lambda: self.api.create_route(
            zone=self.zone, frontend_id=frontend_id, backend_id=backend_id, match=RouteMatch(match_subdomains=False, host_header=host)))
        self.wait_settled()

    def remove_host_route(self, frontend_id: str, host: str) -> None:
        for route in self._routes(frontend_id):
            if route.match and route.match.host_header == host:
                self.wait_settled()
                self._call(f"DELETE route {route.id}", lambda: self.api.delete_route(zone=self.zone, route_id=route.id))
                self.wait_settled()
