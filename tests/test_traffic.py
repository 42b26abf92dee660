"""lab/traffic.py: a real vegeta attack against a small server on 127.0.0.1 whose answers
change at known moments (backend a → 503s → dropped connections → backend b)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lab.addresses import NotLoopbackable
from lab.processes import Supervisor
from lab.traffic import (
    MAX_RPS,
    MAX_SECONDS,
    Sample,
    Traffic,
    TrafficRefused,
    _unix_seconds,
    failure_kind,
    first_time_all_from,
    window_stats,
)
from toolchain.gotools import build_hint, ensure_tool

SERVICE_UNAVAILABLE_FOR = 0.4
DROPPED_FOR = 0.2
IN_FLIGHT = 0.02  # far above a loopback answer's p99 (~1 ms), far below a phase


@pytest.fixture(scope="module")
def vegeta():
    try:
        return ensure_tool("vegeta")
    except Exception as error:  # noqa: BLE001 - any failure means the same thing to the reader
        pytest.fail(f"vegeta is needed and could not be built ({error}); build it with:\n  {build_hint('vegeta')}")


class SwitchingServer:
    """Answers `backend=a` until `switch_at`, then 503 until `dropping_at`, then closes
    connections unanswered until `b_at`, then answers `backend=b`."""

    def __init__(self) -> None:
        self.switch_at = self.dropping_at = self.b_at = float("inf")
        self.hosts_seen: set[str] = set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real clients and HAProxy do
            # Headers and body go out in two writes: with Nagle on, each answer would wait
            # for the client's delayed ACK (~40 ms).
            disable_nagle_algorithm = True

            def do_GET(self):
                owner.hosts_seen.add(self.headers.get("Host", ""))
                now = time.time()
                if now < owner.switch_at:
                    self._answer(200, b"backend=a version=1\n")
                elif now < owner.dropping_at:
                    self._answer(503, b"no server available\n")
                elif now < owner.b_at:
                    self.close_connection = True  # no answer at all: the client reads EOF
                else:
                    self._answer(200, b"backend=b version=2\n")

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = SwitchingServer()
    yield running
    running.close()


@pytest.fixture
def supervisor(tmp_path):
    supervising = Supervisor(tmp_path / "lab")
    yield supervising
    supervising.stop_all(timeout=5)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def test_a_rehearsal_window_by_window(vegeta, server, supervisor, tmp_path):
    traffic = Traffic(supervisor, tmp_path / "traffic", vegeta)
    began = time.time()
    traffic.start(f"http://127.0.0.1:{server.port}/", rps=100, max_seconds=4)
    # The server changes phase at the very moment the mark is taken, as a rehearsal
    # marks a step when it starts it: on two busy cores a sleep can overrun by tens of
    # milliseconds, and a phase change planned ahead of the mark would then land early.
    sleep_until(began + 1.5)
    server.switch_at = traffic.mark("switch")
    server.dropping_at = server.switch_at + SERVICE_UNAVAILABLE_FOR
    sleep_until(server.dropping_at + DROPPED_FOR)
    server.b_at = traffic.mark("b only")
    assert traffic.wait(timeout=15), "vegeta did not end after its max_seconds"
    traffic.stop()
    assert traffic.exit_code == 0 and not traffic.truncated

    samples = traffic.results()
    assert 380 <= len(samples) <= 420  # 100 rps × 4 s
    assert [s.timestamp for s in samples] == sorted(s.timestamp for s in samples)
    assert began <= samples[0].timestamp and samples[-1].timestamp <= began + 4.5

    # A request sent in the last milliseconds before a mark can reach the server after
    # its phase changed; those few are left out of the strict window and counted apart.
    before = window_stats(samples, traffic.started_at, traffic.mark_time("switch") - IN_FLIGHT)
    assert before.failed == 0 and set(before.backends) == {"a"}
    assert 135 <= before.requests <= 160
    # Milliseconds, not nanoseconds; generous: other work shares these two cores.
    assert before.p50_ms is not None and 0 < before.p50_ms < 50 and before.p50_ms <= before.p99_ms < 1000
    assert 95 <= before.rate <= 105
    straddling = window_stats(samples, traffic.mark_time("switch") - IN_FLIGHT, traffic.mark_time("switch"))
    assert straddling.requests <= 3  # 20 ms at 100 rps

    during = traffic.between("switch", "b only")
    assert set(during.failures) == {"HTTP 503", "EOF"}
    assert 30 <= during.failures["HTTP 503"] <= 50  # 0.4 s at 100 rps
    assert 12 <= during.failures["EOF"] <= 28  # 0.2 s at 100 rps
    # A 503 from the balancer names no backend; only the in-flight requests of the
    # window's first and last IN_FLIGHT can have reached the server in another phase.
    assert during.failed >= during.requests - 2 and sum(during.backends.values()) <= 2

    after = traffic.between("b only")
    assert after.failed == 0 and set(after.backends) == {"b"}
    assert 170 <= after.requests <= 210

    whole = window_stats(samples, began, began + 10)
    assert whole.requests == len(samples)
    assert whole.backends["a"] + whole.backends["b"] + whole.failed == len(samples)

    # The last answer from backend a came just before the switch; b alone after.
    switched_after = first_time_all_from(samples, began, "b")
    assert switched_after is not None and 1.40 <= switched_after <= 1.51
    assert first_time_all_from(samples, began, "a") is None  # a never answered last
    assert first_time_all_from(samples, traffic.mark_time("b only"), "b") == 0.0
    assert first_time_all_from(samples, began + 100, "b") is None  # no answers at all then


def test_stop_ends_the_attack_early_and_keeps_its_results(vegeta, server, supervisor, tmp_path):
    traffic = Traffic(supervisor, tmp_path / "traffic", vegeta)
    traffic.start(f"http://127.0.0.1:{server.port}/", rps=200, max_seconds=60, timeout=2)
    time.sleep(1.0)
    assert traffic.running()
    asked = time.time()
    traffic.stop()
    assert time.time() - asked < 3
    assert not traffic.running() and traffic.exit_code == 0
    samples = traffic.results()
    expected = 200 * (asked - traffic.started_at)
    assert 0.85 * expected <= len(samples) <= 1.1 * expected
    assert window_stats(samples, 0, time.time()).backends == {"a": len(samples)}


def test_a_site_name_reached_through_connect_to(vegeta, server, supervisor, tmp_path):
    traffic = Traffic(supervisor, tmp_path / "traffic", vegeta)
    # The name is never resolved: every connection for shop.example:port goes to 127.0.0.1.
    traffic.start(f"http://shop.example:{server.port}/", rps=50, max_seconds=1,
                  connect_to=f"127.0.0.1:{server.port}", host_header="www.shop.example")
    assert traffic.wait(timeout=10)
    stats = window_stats(traffic.results(), 0, time.time())
    assert stats.failed == 0 and 45 <= stats.requests <= 55
    assert server.hosts_seen == {"www.shop.example"}


def test_connection_refused_is_counted_as_such(vegeta, supervisor, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    traffic = Traffic(supervisor, tmp_path / "traffic", vegeta)
    traffic.start(f"http://127.0.0.1:{closed_port}/", rps=50, max_seconds=1)
    assert traffic.wait(timeout=10)
    stats = window_stats(traffic.results(), 0, time.time())
    assert set(stats.failures) == {"connection refused"}
    assert 45 <= stats.failed == stats.requests <= 55
    assert stats.p50_ms is None and stats.backends == {}


@pytest.mark.parametrize(("url", "options", "refusal"), [
    ("http://10.0.0.5/", {}, NotLoopbackable),
    ("http://8.8.8.8:80/", {}, NotLoopbackable),
    ("http://localhost:8080/", {}, NotLoopbackable),  # a name is resolved: only with connect_to
    ("http://shop.example/", {"connect_to": "10.0.0.5:80"}, NotLoopbackable),
    ("http://127.0.0.1:8080/", {"connect_to": "192.168.1.1:8080"}, NotLoopbackable),
    ("http://127.0.0.1:8080/", {"rps": MAX_RPS + 1}, TrafficRefused),
    ("http://127.0.0.1:8080/", {"rps": 0}, TrafficRefused),
    ("http://127.0.0.1:8080/", {"max_seconds": MAX_SECONDS + 1}, TrafficRefused),
    ("ftp://127.0.0.1/", {}, TrafficRefused),
])
def test_refused_before_anything_starts(vegeta, supervisor, tmp_path, url, options, refusal):
    traffic = Traffic(supervisor, tmp_path / "traffic", vegeta)
    with pytest.raises(refusal):
        traffic.start(url, **{"rps": 10, "max_seconds": 1, **options})
    assert supervisor.names() == []
    assert not (tmp_path / "traffic").exists()


def test_one_attack_per_traffic(vegeta, server, supervisor, tmp_path):
    traffic = Traffic(supervisor, tmp_path / "traffic", vegeta)
    traffic.start(f"http://127.0.0.1:{server.port}/", rps=10, max_seconds=1)
    with pytest.raises(TrafficRefused, match="already started"):
        traffic.start(f"http://127.0.0.1:{server.port}/", rps=10, max_seconds=1)
    traffic.stop()


def test_failure_kinds():
    assert failure_kind(200, "") is None
    assert failure_kind(302, "") is None
    assert failure_kind(503, "503 Service Unavailable") == "HTTP 503"
    assert failure_kind(0, 'Get "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: connection refused') \
        == "connection refused"
    assert failure_kind(0, 'Get "http://127.0.0.1:1/": context deadline exceeded '
                           "(Client.Timeout exceeded while awaiting headers)") == "timeout"
    assert failure_kind(0, 'Get "http://127.0.0.1:1/": EOF') == "EOF"
    assert failure_kind(0, "read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer") \
        == "connection reset"
    assert failure_kind(0, "something odd: very odd") == "other: very odd"


def test_timestamps_keep_nanoseconds_and_zones():
    cache: dict[str, float] = {}
    assert _unix_seconds("1970-01-01T00:00:01.5Z", cache) == 1.5
    assert _unix_seconds("1970-01-01T01:00:02.250000000+01:00", cache) == 2.25
    assert _unix_seconds("1970-01-01T00:00:03Z", cache) == 3.0
    assert _unix_seconds("2026-11-27T09:25:14.211647979Z", cache) == pytest.approx(1795771514.211648, abs=1e-6)


def test_switch_time_ignores_failures_and_needs_a_later_matching_answer():
    samples = [Sample(10.0, 1, 200, "", "vm-1"), Sample(11.0, 1, 503, "503 x", None),
               Sample(12.0, 1, 200, "", "vm-2"), Sample(13.0, 1, 0, "EOF", None),
               Sample(14.0, 1, 200, "", "cluster-1"), Sample(15.0, 1, 200, "", "cluster-2")]
    assert first_time_all_from(samples, 9.0, "cluster") == 3.0
    assert first_time_all_from(samples, 9.0, "vm") is None
    assert first_time_all_from(samples[:3], 9.0, "cluster") is None
    assert first_time_all_from(samples, 13.0, "cluster") == 0.0


def test_backend_from_the_body_else_from_the_stand_in_header(tmp_path):
    traffic = Traffic(Supervisor(tmp_path), tmp_path, tmp_path / "vegeta-not-needed-here")
    stamp = "2026-11-27T09:25:14.5Z"
    from_body = traffic._sample({"timestamp": stamp, "latency": 2_500_000, "code": 200, "error": "",
                                 "body": "YmFja2VuZD12bS0xIHZlcnNpb249djEK",  # "backend=vm-1 version=v1\n"
                                 "headers": {"X-Ciel-Backend": ["ignored-when-the-body-names-one"]}}, {})
    assert (from_body.backend, from_body.latency_ms, from_body.code) == ("vm-1", 2.5, 200)
    from_header = traffic._sample({"timestamp": stamp, "latency": 1, "code": 200, "error": "", "body": "b2s=",
                                   "headers": {"X-Ciel-Backend": ["cluster-7"]}}, {})
    assert from_header.backend == "cluster-7"
    unnamed = traffic._sample({"timestamp": stamp, "latency": 1, "code": 0, "error": "EOF", "body": None,
                               "headers": None}, {})
    assert unnamed.backend is None and unnamed.error == "EOF"
