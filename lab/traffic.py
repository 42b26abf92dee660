"""Real traffic for a cutover rehearsal: one vegeta attack, bounded, on loopback only.

A rehearsal starts one attack before its first step and stops it after its last, marking
each step on the way ("deploy phase1 started"). Afterwards the attack's results answer
what the cutover cost users: how many requests failed in each step and why, the latency,
which backends answered, and when the last answer from the old backends came.

The vegeta binary is passed in (toolchain.gotools.ensure_tool("vegeta") builds it): the lab
imports nothing above `foundation`.

Safety: every address a connection can go to is checked with require_loopback before
vegeta starts: the URL's host, or, when `connect_to` is given, the address every
connection to the URL's host:port is sent to instead (the URL's host may then be a name,
which is never resolved). Redirects are not followed and proxy variables are blanked, so
neither a server nor the environment can send the traffic elsewhere. Rate and duration
are capped.

Times are wall-clock Unix seconds (time.time()), the clock vegeta stamps requests with;
a sample's timestamp is when its request was sent.
"""

from __future__ import annotations

from collections.abc import Callable

import base64
import binascii
import bisect
import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from lab.addresses import NotLoopbackable, require_loopback
from lab.processes import Supervisor

MAX_RPS = 2000
MAX_SECONDS = 3600
# The stand-in app's answer ("backend=NAME version=TAG") fits easily; bigger bodies would
# only grow the results file.
MAX_BODY_BYTES = 512
# How long the JSON decoding of one attack's results may take (200k samples: seconds).
DECODE_TIMEOUT = 300.0

BACKEND_IN_BODY = re.compile(rb"backend=([^\s&;,]+)")
VERSION_IN_BODY = re.compile(rb"version=([^\s&;,]+)")

# Go's proxy lookup treats an empty variable as unset: blanking them keeps every request
# on its own (loopback) address even when the lab's CONNECT proxy is configured.
NO_PROXY_ENV = {name: "" for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                      "http_proxy", "https_proxy", "all_proxy")}


class TrafficRefused(ValueError):
    """The asked-for load is outside the lab's bounds; nothing was started."""


class Sample(NamedTuple):
    timestamp: float  # when the request was sent, Unix seconds
    latency_ms: float
    code: int  # 0 when no HTTP answer came
    error: str  # vegeta's error text ("" on success; "503 Service Unavailable" for a 5xx)
    backend: str | None  # who answered, from the body or the backend header
    version: str | None = None  # the image tag it runs, from the body


@dataclass
class WindowStats:
    start: float
    end: float
    requests: int
    failed: int
    failures: dict[str, int]  # kind ("HTTP 503", "connection refused", "timeout", "EOF", ...) → count
    p50_ms: float | None  # latency of successful requests; None without any
    p99_ms: float | None
    backends: dict[str, int]  # backend name → answers (failed answers included, e.g. a 503 it sent)

    @property
    def rate(self) -> float:
        """Requests sent per second over the window."""
        span = self.end - self.start
        return self.requests / span if span > 0 else 0.0


@lru_cache(maxsize=4096)
def failure_kind(code: int, error: str) -> str | None:
    """None for a success (2xx/3xx, no error), else a short kind to count failures by."""
    if code and (code < 200 or code >= 400):
        return f"HTTP {code}"
    if not error:
        return None
    for needle, kind in (
        ("connection refused", "connection refused"),
        ("connection reset", "connection reset"),
        ("Client.Timeout", "timeout"),
        ("deadline exceeded", "timeout"),
        ("i/o timeout", "timeout"),
        ("timeout", "timeout"),
        ("broken pipe", "broken pipe"),
        ("x509:", "TLS certificate"),
        ("tls:", "TLS"),
        ("no such host", "DNS"),
        ("EOF", "EOF"),
    ):
        if needle in error:
            return kind
    # Go errors nest as "op: op: cause"; the innermost cause groups like errors together.
    return "other: " + error.rsplit(": ", 1)[-1][:60]


def window_stats(samples: list[Sample], start: float, end: float) -> WindowStats:
    """Statistics of the requests sent in [start, end); `samples` sorted by timestamp
    (as Traffic.results() returns them)."""
    low = bisect.bisect_left(samples, start, key=lambda s: s.timestamp)
    high = bisect.bisect_left(samples, end, key=lambda s: s.timestamp)
    failures: dict[str, int] = {}
    backends: dict[str, int] = {}
    ok_latencies: list[float] = []
    for sample in samples[low:high]:
        kind = failure_kind(sample.code, sample.error)
        if kind is None:
            ok_latencies.append(sample.latency_ms)
        else:
            failures[kind] = failures.get(kind, 0) + 1
        if sample.backend is not None:
            backends[sample.backend] = backends.get(sample.backend, 0) + 1
    ok_latencies.sort()
    return WindowStats(start=start, end=end, requests=high - low, failed=sum(failures.values()),
                       failures=failures, p50_ms=_percentile(ok_latencies, 50),
                       p99_ms=_percentile(ok_latencies, 99), backends=backends)


def first_time_all_from(samples: list[Sample], after: float, backend_prefix: str) -> float | None:
    """Seconds from `after` to the last request (sent after `after`) that a backend NOT
    named `backend_prefix*` answered: from then on, every answer naming a backend came
    from a `backend_prefix*` one. Failures that name no backend are ignored here (count
    them with window_stats).

    0.0 when no other backend answered after `after` (and a matching one did); None when
    the switch is not shown: no matching answer after the last other one, or no answer
    at all after `after`.
    """
    return seconds_until_all(samples, after, lambda backend: backend.startswith(backend_prefix))


def seconds_until_all(samples: list[Sample], after: float, matches: Callable[[str], bool],
                      until: float | None = None) -> float | None:
    """first_time_all_from, with any rule for the backends that count (`matches(name)`),
    looking only at requests sent before `until` (when a later step may move traffic again)."""
    last_other: float | None = None
    last_matching: float | None = None
    for sample in samples:
        if sample.timestamp < after or sample.backend is None:
            continue
        if until is not None and sample.timestamp > until:
            break
        if matches(sample.backend):
            last_matching = sample.timestamp if last_matching is None else max(last_matching, sample.timestamp)
        else:
            last_other = sample.timestamp if last_other is None else max(last_other, sample.timestamp)
    if last_matching is None:
        return None
    if last_other is None:
        return 0.0
    if last_matching <= last_other:
        return None
    return last_other - after


def _percentile(sorted_values: list[float], percent: float) -> float | None:
    # Nearest rank: an actual observed latency, never an interpolation between two.
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * percent // 100))
    return sorted_values[int(rank) - 1]


@dataclass
class _Target:
    url: str
    connect_from: str | None  # "host:port" as Go's transport dials it for `url`
    connect_to: str | None  # "ip:port" on loopback
    header_lines: list[str] = field(default_factory=list)


def _checked_target(url: str, host_header: str | None, connect_to: str | None) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TrafficRefused(f"{url!r}: only http:// and https:// URLs are attacked")
    host = (parts.hostname or "").lower()
    if not host:
        raise TrafficRefused(f"{url!r} has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise TrafficRefused(f"{url!r}: {error}") from None
    header_lines = []
    if host_header is not None:
        if any(c in host_header for c in "\r\n:") or not host_header.strip():
            raise TrafficRefused(f"host header {host_header!r} is not a host name")
        header_lines.append(f"Host: {host_header}")
    if connect_to is None:
        # Without a rewrite the URL's host is dialled (or resolved): it must be a loopback IP.
        _require_loopback_ip(host, "the URL's host (give connect_to to attack a name)")
        return _Target(url=url, connect_from=None, connect_to=None, header_lines=header_lines)
    target_host, _, target_port = connect_to.rpartition(":")
    if not target_host or not target_port.isdigit() or not 0 < int(target_port) < 65536:
        raise TrafficRefused(f"connect_to {connect_to!r}: expected ip:port")
    target_ip = _require_loopback_ip(target_host, "connect_to")
    if ":" in host or ":" in target_ip:
        # vegeta's -connect-to is split on ':' (src:port:dst:port): no IPv6 there.
        raise TrafficRefused("connect_to works with IPv4 addresses and host names only")
    return _Target(url=url, connect_from=f"{host}:{port}", connect_to=f"{target_ip}:{int(target_port)}",
                   header_lines=header_lines)


def _require_loopback_ip(host: str, what: str) -> str:
    try:
        return require_loopback(host)
    except NotLoopbackable:
        raise
    except ValueError:
        raise NotLoopbackable(f"{what}: {host!r} is not an IP address; lab traffic goes to loopback IPs only") from None


class Traffic:
    """One vegeta attack for a whole rehearsal, run under the lab's Supervisor."""

    def __init__(self, supervisor: Supervisor, directory: Path, vegeta: Path, *, name: str = "traffic",
                 backend_header: str = "X-Ciel-Backend") -> None:
        self.supervisor = supervisor
        self.directory = Path(directory)
        self.vegeta = Path(vegeta)
        self.name = name
        self.backend_header = backend_header
        self.results_path = self.directory / f"{name}.gob"
        self.started_at: float | None = None
        self.request_timeout = 0.0
        self.exit_code: int | None = None
        self.marks: list[tuple[str, float]] = []
        self.truncated = False  # the last result was cut off (vegeta killed mid-write)
        self._cached: list[Sample] | None = None

    # -- running --------------------------------------------------------------------

    def start(self, url: str, *, rps: int, max_seconds: float, host_header: str | None = None,
              connect_to: str | None = None, ca_file: Path | str | None = None, timeout: float = 5.0,
              keepalive: bool = True, http2: bool = False) -> None:
        """Send GET `url` at `rps` requests per second until stop() or `max_seconds`.

        connect_to "ip:port" sends every connection for the URL's host:port there (the URL
        may then name the site, for TLS and Host); ca_file is the CA the site's
        certificate chains to; timeout bounds each request. Everything is checked before
        anything starts: TrafficRefused / NotLoopbackable otherwise.
        """
        if self.started_at is not None:
            raise TrafficRefused(f"traffic {self.name!r} was already started: one attack per Traffic")
        if isinstance(rps, bool) or not isinstance(rps, int) or not 0 < rps <= MAX_RPS:
            raise TrafficRefused(f"rps={rps!r}: the lab's traffic runs at 1..{MAX_RPS} requests per second")
        if not 0 < max_seconds <= MAX_SECONDS:
            raise TrafficRefused(f"max_seconds={max_seconds!r}: the lab's traffic lasts at most {MAX_SECONDS} s")
        if not 0 < timeout <= 60:
            raise TrafficRefused(f"timeout={timeout!r}: a request may wait 0..60 s")
        target = _checked_target(url, host_header, connect_to)
        if ca_file is not None and not Path(ca_file).is_file():
            raise TrafficRefused(f"CA file {ca_file} does not exist")
        if not self.vegeta.is_file():
            raise TrafficRefused(f"vegeta is not at {self.vegeta}: build it with toolchain.gotools.ensure_tool('vegeta')")

        self.directory.mkdir(parents=True, exist_ok=True)
        targets_path = self.directory / f"{self.name}.targets"
        targets_path.write_text("\n".join([f"GET {target.url}", *target.header_lines]) + "\n")
        self.results_path.unlink(missing_ok=True)
        # Enough workers for every request of a full timeout to be in flight, so a stalled
        # backend shows as timeouts at the asked rate instead of a silently lower rate.
        max_workers = int(rps * timeout) + 50
        argv = [str(self.vegeta), "attack",
                f"-targets={targets_path}", f"-output={self.results_path}",
                f"-rate={rps}/1s", f"-duration={max_seconds}s", f"-timeout={timeout}s",
                f"-max-workers={max_workers}", f"-max-body={MAX_BODY_BYTES}",
                f"-keepalive={str(keepalive).lower()}", f"-http2={str(http2).lower()}",
                # A redirect is recorded with its 3xx code, never followed: it could point off loopback.
                "-redirects=-1",
                "-dns-ttl=-1"]
        if target.connect_to:
            argv.append(f"-connect-to={target.connect_from}:{target.connect_to}")
        if ca_file is not None:
            argv.append(f"-root-certs={ca_file}")
        self.request_timeout = timeout
        self.started_at = time.time()
        process = self.supervisor.start(self.name, argv, env=NO_PROXY_ENV, cwd=self.directory)
        # Bad flags or an unreadable CA make vegeta exit at once: say so now, not at results().
        try:
            process.wait(timeout=0.3)
        except subprocess.TimeoutExpired:  # still running: the attack is under way
            return
        self.exit_code = process.returncode
        if process.returncode != 0:
            raise RuntimeError(f"vegeta exited at once (exit {process.returncode}): {self._log_tail()}")

    def running(self) -> bool:
        return self.supervisor.running(self.name)

    def mark(self, name: str) -> float:
        """Label this moment (a rehearsal step); returns its time."""
        now = time.time()
        self.marks.append((name, now))
        return now

    def mark_time(self, name: str) -> float:
        """When `name` was last marked."""
        for mark_name, moment in reversed(self.marks):
            if mark_name == name:
                return moment
        raise KeyError(f"no mark {name!r}; marks: {', '.join(n for n, _ in self.marks) or 'none'}")

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the attack to end on its own (max_seconds reached)."""
        process = self.supervisor.get(self.name)
        if process is None:
            return True
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        self.exit_code = process.returncode
        return True

    def stop(self) -> None:
        """SIGINT: vegeta sends nothing more and writes the requests in flight (each ends
        within the request timeout); killed if it takes longer than that plus 5 s."""
        process = self.supervisor.get(self.name)
        self.supervisor.stop(self.name, sig=signal.SIGINT, timeout=self.request_timeout + 5.0)
        if process is not None:
            self.exit_code = process.returncode
            if process.returncode == -signal.SIGKILL:
                self.truncated = True

    # -- results --------------------------------------------------------------------

    def results(self) -> list[Sample]:
        """Every request's outcome, sorted by send time. While the attack runs: those
        written so far (not cached)."""
        if self._cached is not None:
            return self._cached
        if not self.results_path.exists():
            return []
        still_running = self.running()
        json_path = self.directory / f"{self.name}.json"
        decoder_name = f"{self.name}-decode"
        decoder = self.supervisor.start(
            decoder_name, [str(self.vegeta), "encode", "--to", "json", f"--output={json_path}", str(self.results_path)])
        try:
            decoder.wait(timeout=DECODE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.supervisor.stop(decoder_name, timeout=0)
            raise RuntimeError(f"decoding {self.results_path} took more than {DECODE_TIMEOUT:.0f} s") from None
        self.supervisor.stop(decoder_name, timeout=0)
        if decoder.returncode != 0:
            # A record cut off at the end (vegeta killed, or still writing) loses that record only.
            log_tail = self._log_tail(decoder_name)
            if "EOF" not in log_tail:
                raise RuntimeError(f"vegeta encode failed (exit {decoder.returncode}): {log_tail}")
            self.truncated = self.truncated or not still_running
        try:
            samples = self._read_json_lines(json_path)
        finally:
            json_path.unlink(missing_ok=True)
        samples.sort(key=lambda s: s.timestamp)
        if not still_running and self.started_at is not None:
            self._cached = samples
        return samples

    def between(self, from_mark: str, to_mark: str | None = None) -> WindowStats:
        """window_stats from one mark to the next named one (or to the end of the attack)."""
        samples = self.results()
        start = self.mark_time(from_mark)
        end = self.mark_time(to_mark) if to_mark else (samples[-1].timestamp + 1e-6 if samples else start)
        return window_stats(samples, start, max(start, end))

    def _read_json_lines(self, path: Path) -> list[Sample]:
        samples: list[Sample] = []
        epoch_of_second: dict[str, float] = {}
        with open(path, "rb") as lines:
            for line in lines:
                if line.strip():
                    samples.append(self._sample(json.loads(line), epoch_of_second))
        return samples

    def _sample(self, result: dict, epoch_of_second: dict[str, float]) -> Sample:
        backend = version = None
        body = result.get("body")
        if body:
            try:
                decoded = base64.b64decode(body)
            except (binascii.Error, ValueError):
                decoded = b""
            if (found := BACKEND_IN_BODY.search(decoded)):
                backend = found.group(1).decode("utf-8", "replace")
            if (found := VERSION_IN_BODY.search(decoded)):
                version = sys.intern(found.group(1).decode("utf-8", "replace"))
        if backend is None:
            values = (result.get("headers") or {}).get(self.backend_header)
            if values:
                backend = values[0]
        return Sample(
            timestamp=_unix_seconds(result["timestamp"], epoch_of_second),
            latency_ms=result.get("latency", 0) / 1e6,
            code=int(result.get("code") or 0),
            error=sys.intern(result.get("error") or ""),
            backend=sys.intern(backend) if backend is not None else None,
            version=version,
        )

    def _log_tail(self, name: str | None = None) -> str:
        log = self.supervisor.logs / f"{(name or self.name).replace('/', '_')}.log"
        try:
            return " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "(no log)"


def _unix_seconds(stamp: str, epoch_of_second: dict[str, float]) -> float:
    """RFC 3339 with nanoseconds ("2026-11-27T09:25:14.211647979Z") → Unix seconds.
    The whole-second part is parsed once per second and cached: 200k stamps stay cheap."""
    zone_at = max(stamp.rfind("Z"), stamp.rfind("+"), stamp.rfind("-", 19))
    zone = stamp[zone_at:] if zone_at >= 19 else ""
    second = stamp[:19] + zone
    epoch = epoch_of_second.get(second)
    if epoch is None:
        epoch = datetime.fromisoformat(second).timestamp()
        epoch_of_second[second] = epoch
    fraction = stamp[19:zone_at] if zone_at >= 19 else stamp[19:]
    return epoch + (float("0" + fraction) if fraction.startswith(".") else 0.0)
