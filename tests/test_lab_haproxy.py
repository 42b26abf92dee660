"""The lab's load balancers carry traffic: a real HAProxy per LB, configured from the LB
API's objects (driven here in-process, with the bodies the provider sends), on loopback.
Routing by Host header, health checks reported by backend-stats, a graceful reload under
an in-flight request, TLS with the lab's CA, and the LB's deletion stopping its HAProxy.
Needs the Debian package haproxy (./setup.sh --test-tools): without it these tests fail."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from lab import addresses
from lab.api import Lab
from lab.dataplane.haproxy import (
    LoadBalancerPlane,
    haproxy_available,
    health_from_stat,
    render,
)
from lab.families import register_all
from lab.runtime import Runtime
from lab.store import Store

ZONE = "/lb/v1/zones/fr-par-1"
# Private addresses of the two "instances"; the test's servers listen on the loopback
# addresses standing for them (127.100.231.5/6), as the lab's app processes would.
WEB_IP, API_IP = "10.0.231.5", "10.0.231.6"
FORWARD_PORT = 8080
HTTP_PORT, HTTPS_PORT = 18080, 18443  # the frontends' inbound ports (unprivileged)
CHECK_DELAY_MS, CHECK_MAX_RETRIES = 300, 2
API_HOST, SECURE_HOST = "api.ciel.example.com", "secure.ciel.example.com"


class Instance(ThreadingHTTPServer):
    """A stand-in server: answers its name, /health (while healthy; unhealthy it answers
    503, or only after 1 s when `hangs`) and /slow (after 2 s)."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # HAProxy's health checks close as soon as they have the status line

    def __init__(self, name: str, private_ip: str) -> None:
        self.name, self.healthy, self.hangs, self.health_checks = name, True, False, 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler) -> None:
                if handler.path == "/health":
                    self.health_checks += 1
                    status = 200 if self.healthy else 503
                    if status != 200 and self.hangs:
                        time.sleep(1)
                else:
                    status = 200
                    if handler.path == "/slow":
                        time.sleep(2)
                body = f"{self.name} {handler.path} host={handler.headers.get('Host')}".encode()
                handler.send_response(status)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args) -> None:
                pass

        super().__init__((addresses.loopback_for(private_ip), FORWARD_PORT), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def call(lab: Lab, method: str, path: str, body: dict | None = None, **query: str) -> dict:
    status, answer = lab.handle(method, ZONE + path, {key: [value] for key, value in query.items()}, body)
    assert 200 <= status < 300, f"{method} {path}: {status} {answer}"
    return answer or {}


def settle(lab: Lab, lb_id: str) -> None:
    """Read the LB until it is ready, as the provider's waiter does."""
    for _ in range(5):
        if call(lab, "GET", f"/lbs/{lb_id}")["status"] == "ready":
            return
    raise AssertionError("the LB never became ready")


def backend_body(name: str, server_ip: str) -> dict:
    return {"name": name, "forward_protocol": "http", "forward_port": FORWARD_PORT, "server_ip": [server_ip],
            "forward_port_algorithm": "roundrobin", "sticky_sessions": "none", "timeout_server": 30000,
            "timeout_connect": 5000, "on_marked_down_action": "shutdown_sessions",
            "health_check": {"port": FORWARD_PORT, "check_delay": CHECK_DELAY_MS, "check_timeout": 250,
                             "check_max_retries": CHECK_MAX_RETRIES,
                             "http_config": {"uri": "/health", "method": "GET", "code": 200}}}


def get(address: str, port: int, path: str, host: str, timeout: float = 10.0) -> tuple[int, str]:
    connection = http.client.HTTPConnection(addresses.require_loopback(address), port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host})
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def stats(lab: Lab, lb_id: str, backend_id: str) -> dict[str, tuple[str, str]]:
    listed = call(lab, "GET", f"/lbs/{lb_id}/backend-stats", backend_id=backend_id)["backend_servers_stats"]
    return {item["ip"]: (item["server_state"], item["last_health_check_status"]) for item in listed}


def wait_for(predicate, seconds: float, step: float = 0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    assert haproxy_available(), "haproxy is not installed: run ./setup.sh --test-tools (Debian package haproxy)"
    directory = tmp_path_factory.mktemp("hap")
    lab = register_all(Lab(Store(directory / "state.json")))
    runtime = Runtime(directory)
    runtime.load_balancers = LoadBalancerPlane(runtime.supervisor, directory)
    lab.runtime = runtime
    web, api = Instance("web", WEB_IP), Instance("api", API_IP)
    try:
        lb = call(lab, "POST", "/lbs", {"name": "edge", "type": "LB-S", "project_id": "p", "assign_flexible_ip": True})
        settle(lab, lb["id"])
        address = lb["ip"][0]["ip_address"]
        web_backend = call(lab, "POST", f"/lbs/{lb['id']}/backends", backend_body("web", WEB_IP))
        api_backend = call(lab, "POST", f"/lbs/{lb['id']}/backends", backend_body("api", API_IP))
        frontend = call(lab, "POST", f"/lbs/{lb['id']}/frontends",
                        {"name": "http", "inbound_port": HTTP_PORT, "backend_id": web_backend["id"],
                         "timeout_client": 30000})
        call(lab, "POST", "/routes", {"frontend_id": frontend["id"], "backend_id": api_backend["id"],
                                      "match": {"host_header": API_HOST}})
        yield SimpleNamespace(lab=lab, runtime=runtime, plane=runtime.load_balancers, lb_id=lb["id"],
                              address=address, web=web, api=api, web_backend=web_backend["id"],
                              api_backend=api_backend["id"], frontend=frontend["id"], directory=directory)
    finally:
        runtime.stop()
        for server in (web, api):
            server.shutdown()
            server.server_close()


def test_the_lb_public_address_routes_by_host_header_to_the_private_servers_loopback(edge):
    assert addresses.LB_PUBLIC_V4.supernet_of(addresses.ipaddress.ip_network(edge.address + "/32"))
    status, body = get(edge.address, HTTP_PORT, "/", "www.ciel.example.com")
    assert (status, body.split()[0]) == (200, "web")
    status, body = get(edge.address, HTTP_PORT, "/", f"{API_HOST}:{HTTP_PORT}")  # a port in Host still routes
    assert (status, body.split()[0]) == (200, "api")
    config = (edge.plane.folder(edge.lb_id) / "haproxy.cfg").read_text()
    assert f"bind {edge.address}:{HTTP_PORT}" in config
    assert f"127.100.231.5:{FORWARD_PORT}" in config and WEB_IP + ":" not in config  # never the private IP


def test_backend_stats_report_the_health_checks_haproxy_runs(edge):
    both = {WEB_IP: ("running", "passed")}
    assert wait_for(lambda: stats(edge.lab, edge.lb_id, edge.web_backend) == both, 5), \
        stats(edge.lab, edge.lb_id, edge.web_backend)
    assert edge.web.health_checks > 0
    edge.web.healthy = False
    try:
        stopped = time.monotonic()
        bound = CHECK_MAX_RETRIES * CHECK_DELAY_MS / 1000 + 2.0  # fall × inter + margin
        failed = wait_for(lambda: stats(edge.lab, edge.lb_id, edge.web_backend)[WEB_IP] == ("stopped", "failed"),
                          bound)
        assert failed, stats(edge.lab, edge.lb_id, edge.web_backend)
        print(f"marked down after {time.monotonic() - stopped:.2f}s (bound {bound:.1f}s)")
        # The other backend is untouched; the down server's backend answers 503 at the LB.
        assert stats(edge.lab, edge.lb_id, edge.api_backend) == {API_IP: ("running", "passed")}
        assert get(edge.address, HTTP_PORT, "/", "www.ciel.example.com")[0] == 503
    finally:
        edge.web.healthy = True
    assert wait_for(lambda: stats(edge.lab, edge.lb_id, edge.web_backend)[WEB_IP] == ("running", "passed"), 5)


def test_a_reload_lets_the_in_flight_request_finish_on_the_old_worker(edge):
    slow: dict = {}

    def slow_request() -> None:
        started = time.monotonic()
        slow["answer"] = get(edge.address, HTTP_PORT, "/slow", "www.ciel.example.com")
        slow["seconds"] = time.monotonic() - started

    reloads_before = len(edge.plane.reload_seconds)
    in_flight = threading.Thread(target=slow_request)
    in_flight.start()
    time.sleep(0.4)  # the request is now waiting on the server
    changed = time.monotonic()
    call(edge.lab, "POST", "/routes", {"frontend_id": edge.frontend, "backend_id": edge.api_backend,
                                       "match": {"host_header": "new.ciel.example.com"}})
    api_seconds = time.monotonic() - changed
    assert len(edge.plane.reload_seconds) == reloads_before + 1
    # The new worker serves the new route while the old one still holds the slow request.
    assert get(edge.address, HTTP_PORT, "/", "new.ciel.example.com")[1].split()[0] == "api"
    assert in_flight.is_alive()
    in_flight.join(10)
    assert slow["answer"][0] == 200 and slow["answer"][1].startswith("web /slow"), slow
    assert slow["seconds"] >= 2
    print(f"reload took {edge.plane.reload_seconds[-1] * 1000:.0f} ms (the API call with it: "
          f"{api_seconds * 1000:.0f} ms)")


def test_health_state_survives_a_reload(edge):
    """A reload does not forget that a server is down: the new worker starts from the old
    one's states (HAProxy's server-state file), not from "up until checked"."""
    edge.web.healthy, edge.web.hangs = False, True  # each check now takes its whole timeout
    try:
        assert wait_for(lambda: stats(edge.lab, edge.lb_id, edge.web_backend)[WEB_IP] == ("stopped", "failed"), 4)
        call(edge.lab, "PUT", f"/backends/{edge.web_backend}", {**backend_body("web", WEB_IP),
                                                                 "timeout_server": 20000})
        # The new worker's first check cannot have ended yet (250 ms timeout): what it
        # reports is what it inherited.
        assert stats(edge.lab, edge.lb_id, edge.web_backend)[WEB_IP] == ("stopped", "failed")
    finally:
        edge.web.healthy, edge.web.hangs = True, False
    assert wait_for(lambda: stats(edge.lab, edge.lb_id, edge.web_backend)[WEB_IP] == ("running", "passed"), 5)


def test_a_tls_frontend_presents_a_certificate_of_the_lab_ca(edge):
    certificate = call(edge.lab, "POST", f"/lbs/{edge.lb_id}/certificates",
                       {"name": "secure", "letsencrypt": {"common_name": SECURE_HOST,
                                                          "subject_alternative_name": ["alt.ciel.example.com"]}})
    call(edge.lab, "POST", f"/lbs/{edge.lb_id}/frontends",
         {"name": "https", "inbound_port": HTTPS_PORT, "backend_id": edge.web_backend,
          "certificate_ids": [certificate["id"]], "timeout_client": 30000})
    trusting = ssl.create_default_context(cafile=str(edge.directory / "ca.pem"))
    for host in (SECURE_HOST, "alt.ciel.example.com"):
        # As a client resolving `host` to the LB's address would: SNI and checks name `host`.
        connection = http.client.HTTPConnection(edge.address, HTTPS_PORT, timeout=10)
        connection.sock = trusting.wrap_socket(socket.create_connection((edge.address, HTTPS_PORT), timeout=10),
                                               server_hostname=host)
        connection.request("GET", "/", headers={"Host": host})
        answer = connection.getresponse()
        assert (answer.status, answer.read().decode().split()[0]) == (200, "web")
        assert connection.sock.getpeercert()["subject"] == ((("commonName", SECURE_HOST),),)
        connection.close()
    # A name the certificate does not cover.
    with socket.create_connection((edge.address, HTTPS_PORT), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        trusting.wrap_socket(raw, server_hostname="other.example.com")


def test_a_rejected_configuration_keeps_the_running_one(edge):
    running = edge.plane.rendered[edge.lb_id]
    tcp_backend = call(edge.lab, "POST", f"/lbs/{edge.lb_id}/backends",
                       {**backend_body("tcp", API_IP), "forward_protocol": "tcp"})
    # An HTTP frontend cannot route to a TCP backend: HAProxy refuses, the API has answered.
    call(edge.lab, "POST", "/routes", {"frontend_id": edge.frontend, "backend_id": tcp_backend["id"],
                                       "match": {"host_header": "tcp.ciel.example.com"}})
    assert edge.lb_id in edge.plane.errors
    assert edge.plane.rendered[edge.lb_id] != running  # the backend alone was accepted
    assert get(edge.address, HTTP_PORT, "/", API_HOST)[1].split()[0] == "api"


def test_deleting_the_lb_stops_its_haproxy(edge):
    lab = edge.lab
    for route in call(lab, "GET", "/routes")["routes"]:
        call(lab, "DELETE", f"/routes/{route['id']}")
    for frontend in call(lab, "GET", f"/lbs/{edge.lb_id}/frontends")["frontends"]:
        call(lab, "DELETE", f"/frontends/{frontend['id']}")
    settle(lab, edge.lb_id)
    call(lab, "DELETE", f"/lbs/{edge.lb_id}", release_ip="true")
    assert not edge.runtime.supervisor.running(LoadBalancerPlane.process_name(edge.lb_id))
    with pytest.raises(OSError):
        socket.create_connection((edge.address, HTTP_PORT), timeout=2).close()


def test_health_words_follow_the_scaleway_api():
    assert health_from_stat("UP", "L7OK") == ("running", "passed")
    assert health_from_stat("DOWN", "L7STS") == ("stopped", "failed")
    assert health_from_stat("UP", "INI") == ("starting", "unknown")
    assert health_from_stat("MAINT", "") == ("stopped", "unknown")
    assert health_from_stat("UP 1/2", "* L4CON") == ("running", "failed")
    assert health_from_stat("DOWN 1/2", "L7OK") == ("starting", "passed")
    assert health_from_stat("UP", "L7OKC") == ("running", "condpass")


def test_without_a_runtime_every_server_is_reported_healthy(tmp_path):
    lab = register_all(Lab(Store(tmp_path / "state.json")))
    lb = call(lab, "POST", "/lbs", {"name": "api-only", "type": "LB-S", "project_id": "p"})
    settle(lab, lb["id"])
    backend = call(lab, "POST", f"/lbs/{lb['id']}/backends", backend_body("web", WEB_IP))
    assert stats(lab, lb["id"], backend["id"]) == {WEB_IP: ("running", "passed")}
    assert "server 10.0.231.5 127.100.231.5:8080" in render(lab, lb["id"], tmp_path, {})
