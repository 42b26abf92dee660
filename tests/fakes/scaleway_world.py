"""A local stand-in for the Scaleway pieces the cutover touches, driven through the real SDK.

- an HTTP API with the Load Balancer and Instance endpoints the cutover calls, with the
  LB's asynchronous `pending` status (a change made while pending gets 409), and faults
  that can be injected per endpoint (errors, throttling);
- a data plane: a real HTTP proxy that routes like the LB (host-header routes, then the
  frontend's backend, only to servers passing their health checks), in front of real
  HTTP servers standing for the API instances and the cluster's private LB;
- a health checker that really polls each server's /health, as the LB does, one schedule
  per server (a check every `check_interval`, failed after `check_timeout`), and keeps the
  LB's view of each server the way HAProxy does: its operational state (`server_state`:
  running = up, stopping = up but failing, stopped = down, starting = down but passing
  until `rise` passes in a row) apart from its last check result
  (`last_health_check_status`, "unknown" before the first check or while one is in
  progress). The data plane routes only to servers the LB holds up;
- LB changes applied after `pending_polls` status reads, or after `pending_seconds`;
- a watch on the invariant: every frontend routes to a backend with a server the LB holds up.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.fakes import send_json

ZONE = "fr-par-1"


def _new_id() -> str:
    return str(uuid.uuid4())


class AppServer:
    """One machine running the app: answers /health (200 when up) and / ."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        world_app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if not world_app.up:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = f"{world_app.name}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Instance:
    id: str
    name: str
    role: str
    app: AppServer | None
    state: str = "running"
    stop_seconds: float | None = 0.3  # graceful stop duration; None: never stops
    changed_at: float = field(default_factory=time.monotonic)


UP_STATES = ("running", "stopping")  # the LB sends traffic to these (HAProxy: UP, UP going down)


class World:
    def __init__(self, *, api_ips: list[str], cluster_ip: str, worker_count: int = 1, pending_polls: int = 2,
                 pending_seconds: float | None = None, check_interval: float = 0.05, check_timeout: float = 1.0,
                 fall: int = 2, rise: int = 2, hosts: tuple[str, ...] = ("api.test",),
                 pending_on_instances: bool = False) -> None:
        self.lock = threading.RLock()
        self.pending_on_instances = pending_on_instances
        self.lb_id = _new_id()
        self.lb_instance_id = _new_id()  # the LB's underlying instance, as backend-stats reports it
        self.status = "ready"
        self.pending_left = 0
        self.pending_polls = pending_polls
        self.pending_seconds = pending_seconds
        self.pending_until: float | None = None
        self.ip_apps: dict[str, AppServer] = {}
        self.instances: dict[str, Instance] = {}
        for index, ip in enumerate(api_ips):
            app = AppServer(f"instance-api-{index}")
            self.ip_apps[ip] = app
            server = Instance(_new_id(), f"ciel-test-api-{index}", "api", app)
            self.instances[server.id] = server
        for index in range(worker_count):
            server = Instance(_new_id(), f"ciel-test-worker-{index}", "worker", None)
            self.instances[server.id] = server
        self.cluster_app = AppServer("cluster")
        self.ip_apps[cluster_ip] = self.cluster_app
        self.backends = {
            "instances": {"id": _new_id(), "name": "instances", "pool": list(api_ips)},
            "cluster": {"id": _new_id(), "name": "cluster", "pool": [cluster_ip]},
        }
        self.by_backend_id = {b["id"]: b for b in self.backends.values()}
        instance_backend = self.backends["instances"]["id"]
        self.frontends = {
            fid: {"id": fid, "name": name, "inbound_port": port, "backend_id": instance_backend}
            for fid, name, port in ((_new_id(), "https", 443), (_new_id(), "http-redirect", 80))
        }
        self.routes: dict[str, dict] = {}
        self.health: dict[str, str] = {ip: "unknown" for ip in self.ip_apps}  # last check result
        self.server_state: dict[str, str] = {ip: "stopped" for ip in self.ip_apps}  # the LB's view
        self.state_changed_at: dict[str, datetime] = {ip: datetime.now(timezone.utc) for ip in self.ip_apps}
        self._failures: dict[str, int] = {ip: 0 for ip in self.ip_apps}
        self._successes: dict[str, int] = {ip: 0 for ip in self.ip_apps}
        self.fall, self.rise = fall, rise
        self.held_down: set[str] = set()  # servers whose rise count is not met yet, however long they pass
        self.unknown_reads: dict[str, int] = {}  # stats reads that find a check in progress, per server
        self.faults: list[dict] = []
        self.calls: list[tuple[str, str]] = []
        self.actions: list[tuple[str, str]] = []  # (server id, action) of every server action
        self.violations: list[str] = []
        self.hosts = hosts
        self._rr = itertools.count()
        self._stop = threading.Event()
        self.api_server = ThreadingHTTPServer(("127.0.0.1", 0), self._api_handler())
        self.proxy_server = ThreadingHTTPServer(("127.0.0.1", 0), self._proxy_handler())
        for server in (self.api_server, self.proxy_server):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.check_interval, self.check_timeout = check_interval, check_timeout
        for ip in self.ip_apps:
            threading.Thread(target=self._health_loop, args=(ip,), daemon=True).start()
        threading.Thread(target=self._instances_loop, daemon=True).start()
        self.wait_for_health()
        with self.lock:
            self.violations.clear()  # the LB's own start, before any server was up, is no test's business

    # --- addresses ------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_server.server_port}"

    @property
    def proxy_address(self) -> str:
        return f"127.0.0.1:{self.proxy_server.server_port}"

    def close(self) -> None:
        self._stop.set()
        for server in (self.api_server, self.proxy_server):
            server.shutdown()
            server.server_close()
        for app in self.ip_apps.values():
            app.close()

    # --- faults and observation -----------------------------------------------------------

    def inject(self, method: str, path_pattern: str, status: int, count: int = 1) -> None:
        with self.lock:
            self.faults.append({"method": method, "pattern": re.compile(path_pattern), "status": status, "left": count})

    def frontend_backend_name(self) -> set[str]:
        with self.lock:
            return {self.by_backend_id[f["backend_id"]]["name"] for f in self.frontends.values()}

    def wait_for_health(self, timeout: float = 5.0) -> None:
        """Until every server has been checked and the LB holds it firmly up or down."""
        deadline = time.monotonic() + timeout
        while any(check == "unknown" for check in self.health.values()) \
                or any(state in ("starting", "stopping") for state in self.server_state.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"health checks did not settle: {self.health} {self.server_state}")
            time.sleep(0.02)

    def wait_until(self, condition, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not reached: {self.health} {self.server_state}")
            time.sleep(0.01)

    def lb_status(self) -> str:
        with self.lock:
            self._refresh_status()
            return self.status

    def report_unknown(self, ip: str, reads: int) -> None:
        """The next `reads` backend-stats reads find a check of `ip` in progress: its last
        check reads "unknown" (its state does not change)."""
        with self.lock:
            self.unknown_reads[ip] = reads

    def _check_invariant(self, when: str) -> None:
        for frontend in self.frontends.values():
            pool = self.by_backend_id[frontend["backend_id"]]["pool"]
            if not any(self.server_state.get(ip) in UP_STATES for ip in pool):
                self.violations.append(f"{when}: frontend {frontend['name']} → "
                                       f"{self.by_backend_id[frontend['backend_id']]['name']} {pool} "
                                       f"{self.server_state} {self.health}")

    # --- time passing ---------------------------------------------------------------------

    def _health_loop(self, ip: str) -> None:
        app = self.ip_apps[ip]
        while not self._stop.is_set():
            ok = False
            try:
                connection = HTTPConnection("127.0.0.1", app.port, timeout=self.check_timeout)
                connection.request("GET", "/health")
                ok = connection.getresponse().status == 200
                connection.close()
            except OSError:
                ok = False
            with self.lock:
                self._record_check(ip, ok)
                self._check_invariant("health change")
            time.sleep(self.check_interval)

    def _record_check(self, ip: str, ok: bool) -> None:
        """HAProxy's counters: `fall` failures in a row take an up server down, `rise`
        successes in a row bring a down one up; in between it is on its way."""
        state = self.server_state[ip]
        if ok:
            self._failures[ip], self._successes[ip] = 0, self._successes[ip] + 1
            self.health[ip] = "passed"
            if state == "stopping":
                new = "running"
            elif state in ("stopped", "starting"):
                new = "running" if self._successes[ip] >= self.rise and ip not in self.held_down else "starting"
            else:
                new = state
        else:
            self._successes[ip], self._failures[ip] = 0, self._failures[ip] + 1
            self.health[ip] = "failed"
            if state in UP_STATES:
                new = "stopped" if self._failures[ip] >= self.fall else "stopping"
            else:
                new = "stopped"
        if new != state:
            self.server_state[ip], self.state_changed_at[ip] = new, datetime.now(timezone.utc)

    def _instances_loop(self) -> None:
        while not self._stop.is_set():
            self._advance_instances()
            time.sleep(0.02)

    def _advance_instances(self) -> None:
        now = time.monotonic()
        with self.lock:
            for server in self.instances.values():
                if server.state == "stopping" and server.stop_seconds is not None \
                        and now - server.changed_at >= server.stop_seconds:
                    server.state, server.changed_at = "stopped", now
                elif server.state == "starting" and now - server.changed_at >= 0.1:
                    server.state, server.changed_at = "running", now
                    if server.app:
                        server.app.up = True

    # --- the API --------------------------------------------------------------------------

    def _refresh_status(self) -> None:
        if self.pending_until is not None and time.monotonic() >= self.pending_until:
            self.status, self.pending_until = "ready", None

    def _lb_json(self) -> dict:
        self._refresh_status()
        if self.pending_left > 0:
            self.pending_left -= 1
            if self.pending_left == 0:
                self.status = "ready"
        # As recorded: with `pending_on_instances`, the LB object stays ready while its
        # instance reloads the change.
        lb_status = "ready" if self.pending_on_instances else self.status
        instance = {"id": self.lb_id[:8] + "-instance", "status": self.status, "ip_address": "", "zone": ZONE,
                    "created_at": None, "updated_at": None}
        return {"id": self.lb_id, "name": "ciel-test", "status": lb_status, "zone": ZONE, "frontend_count": 2,
                "backend_count": 2, "type": "lb-s", "tags": [], "ip": [],
                "instances": [instance] if self.pending_on_instances else []}

    def _server_stats_json(self, backend: dict, ip: str) -> dict:
        """One BackendServerStats, as the API returns it (scaleway-sdk-go lb/v1)."""
        check = self.health.get(ip, "unknown")
        if self.unknown_reads.get(ip, 0) > 0:
            self.unknown_reads[ip] -= 1
            check = "unknown"  # a check in progress
        state = self.server_state.get(ip, "stopped")
        changed = self.state_changed_at.get(ip, datetime.now(timezone.utc))
        return {"instance_id": self.lb_instance_id, "backend_id": backend["id"], "ip": ip, "server_state": state,
                "server_state_changed_at": changed.isoformat().replace("+00:00", "Z"),
                "last_health_check_status": check}

    def _backend_json(self, backend: dict) -> dict:
        return {"id": backend["id"], "name": backend["name"], "pool": list(backend["pool"]), "forward_protocol": "http",
                "forward_port": 8080, "forward_port_algorithm": "roundrobin", "sticky_sessions": "none",
                "sticky_sessions_cookie_name": "", "on_marked_down_action": "shutdown_sessions",
                "proxy_protocol": "proxy_protocol_none", "send_proxy_v2": False}

    def _frontend_json(self, frontend: dict) -> dict:
        return {"id": frontend["id"], "name": frontend["name"], "inbound_port": frontend["inbound_port"],
                "backend": self._backend_json(self.by_backend_id[frontend["backend_id"]]), "certificate_ids": [],
                "enable_http3": False, "enable_access_logs": False, "timeout_client": "60s"}

    def _route_json(self, route: dict) -> dict:
        return {"id": route["id"], "frontend_id": route["frontend_id"], "backend_id": route["backend_id"],
                "match": {"host_header": route["host"], "match_subdomains": False}}

    def _change(self) -> None:
        """An LB change: refused while pending, then pending for a few polls."""
        self._refresh_status()
        if self.status != "ready":
            raise _HttpError(409, "lb is in transient state pending")
        if self.pending_seconds is not None:
            self.status, self.pending_until = "pending", time.monotonic() + self.pending_seconds
        else:
            self.status, self.pending_left = "pending", self.pending_polls

    def handle(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict | None]:
        with self.lock:
            self.calls.append((method, path))
            for fault in self.faults:
                if fault["left"] > 0 and fault["method"] == method and fault["pattern"].search(path):
                    fault["left"] -= 1
                    return fault["status"], {"message": "injected fault", "type": "injected"}
            result = self._route(method, path, query, body)
            self._check_invariant(f"{method} {path}")
            return result

    def _route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict | None]:
        lb = f"/lb/v1/zones/{ZONE}"
        if method == "GET" and path == f"{lb}/lbs/{self.lb_id}":
            return 200, self._lb_json()
        if method == "GET" and path == f"{lb}/lbs/{self.lb_id}/backend-stats":
            backend = self.by_backend_id[query["backend_id"][0]]
            page = int(query.get("page", ["1"])[0])
            stats = [self._server_stats_json(backend, ip) for ip in backend["pool"]] if page == 1 else []
            return 200, {"backend_servers_stats": stats, "total_count": len(backend["pool"])}
        match = re.fullmatch(rf"{lb}/backends/([^/]+)(/servers)?", path)
        if match:
            backend = self.by_backend_id[match.group(1)]
            if method == "PUT" and match.group(2):
                self._change()
                backend["pool"] = list(body.get("server_ip") or [])
            return 200, self._backend_json(backend)
        match = re.fullmatch(rf"{lb}/frontends/([^/]+)", path)
        if match:
            frontend = self.frontends[match.group(1)]
            if method == "PUT":
                self._change()
                frontend["backend_id"] = body["backend_id"]
            return 200, self._frontend_json(frontend)
        if path == f"{lb}/routes" and method == "GET":
            page = int(query.get("page", ["1"])[0])
            routes = [self._route_json(r) for r in self.routes.values()
                      if r["frontend_id"] == query.get("frontend_id", [None])[0]]
            return 200, {"routes": routes if page == 1 else [], "total_count": len(routes)}
        if path == f"{lb}/routes" and method == "POST":
            self._change()
            route = {"id": _new_id(), "frontend_id": body["frontend_id"], "backend_id": body["backend_id"],
                     "host": body["match"]["host_header"]}
            self.routes[route["id"]] = route
            return 200, self._route_json(route)
        match = re.fullmatch(rf"{lb}/routes/([^/]+)", path)
        if match:
            route = self.routes[match.group(1)]
            self._change()
            if method == "DELETE":
                del self.routes[route["id"]]
                return 204, None
            route["backend_id"] = body["backend_id"]
            return 200, self._route_json(route)
        match = re.fullmatch(rf"/instance/v1/zones/{ZONE}/servers/([^/]+)(/action)?", path)
        if match:
            server = self.instances[match.group(1)]
            if method == "POST":
                self._server_action(server, body["action"])
                return 202, {"task": {"id": _new_id(), "description": body["action"], "status": "pending"}}
            return 200, {"server": {"id": server.id, "name": server.name, "state": server.state, "zone": ZONE,
                                    "tags": [], "commercial_type": "DEV1-S"}}
        return 404, {"message": f"fake has no {method} {path}"}

    def _server_action(self, server: Instance, action: str) -> None:
        now = time.monotonic()
        self.actions.append((server.id, action))
        if action == "poweroff" and server.state in ("running", "stopped in place", "stopped_in_place"):
            server.state, server.changed_at = "stopping", now
            if server.app:
                server.app.up = False  # the container stops first: /health fails
        elif action == "poweron" and server.state in ("stopped", "stopping", "stopped in place", "stopped_in_place"):
            server.state, server.changed_at = "starting", now

    def _api_handler(self):
        world = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                parsed = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                try:
                    status, payload = world.handle(method, parsed.path, parse_qs(parsed.query), body)
                except _HttpError as error:
                    status, payload = error.status, {"message": error.message, "type": "conflict"}
                send_json(self, status, payload)

            def do_GET(self):  # noqa: N802
                self._serve("GET")

            def do_PUT(self):  # noqa: N802
                self._serve("PUT")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def do_DELETE(self):  # noqa: N802
                self._serve("DELETE")

            def log_message(self, *args):
                pass

        return Handler

    # --- the data plane -------------------------------------------------------------------

    def pick_server(self, host: str) -> AppServer | None:
        with self.lock:
            frontend = next(f for f in self.frontends.values() if f["name"] == "https")
            backend_id = frontend["backend_id"]
            for route in self.routes.values():
                if route["frontend_id"] == frontend["id"] and route["host"] == host:
                    backend_id = route["backend_id"]
            passing = [ip for ip in self.by_backend_id[backend_id]["pool"] if self.server_state.get(ip) in UP_STATES]
            if not passing:
                return None
            return self.ip_apps[passing[next(self._rr) % len(passing)]]

    def _proxy_handler(self):
        world = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                app = world.pick_server(self.headers.get("Host", "").split(":")[0])
                status, body = 503, b"no server available\n"
                if app is not None:
                    try:
                        connection = HTTPConnection("127.0.0.1", app.port, timeout=5)
                        connection.request("GET", self.path)
                        response = connection.getresponse()
                        status, body = response.status, response.read()
                        connection.close()
                    except OSError:
                        status, body = 502, b"bad gateway\n"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Traffic:
    """Real requests through the proxy, all along a test: every answer counted."""

    def __init__(self, address: str, host: str, interval: float = 0.01) -> None:
        self.address, self.host, self.interval = address, host, interval
        self.ok = 0
        self.failed: list[str] = []
        self.served_by: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        host, port = self.address.split(":")
        while not self._stop.is_set():
            try:
                connection = HTTPConnection(host, int(port), timeout=5)
                connection.request("GET", "/photos", headers={"Host": self.host})
                response = connection.getresponse()
                body = response.read().decode().strip()
                connection.close()
                if response.status == 200:
                    self.ok += 1
                    self.served_by[body.split("-")[0]] = self.served_by.get(body.split("-")[0], 0) + 1
                else:
                    self.failed.append(f"{response.status} {body}")
            except OSError as error:
                self.failed.append(repr(error))
            time.sleep(self.interval)
