"""HTTP probes through the load balancer: a success ratio and a p95, or "no data".

"No data" (no probe answered, nothing measured) is inconclusive: it never promotes the
cutover to its next step.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass

from migrate.model import Thresholds


@dataclass(frozen=True)
class ProbeResult:
    sent: int
    succeeded: int
    p95_ms: float | None

    @property
    def ratio(self) -> float | None:
        return self.succeeded / self.sent if self.sent else None

    def verdict(self, thresholds: Thresholds) -> str:
        """"ok", "failed" or "no data"."""
        if not self.sent:
            return "no data"
        if self.succeeded == 0 or self.p95_ms is None:
            return "failed"
        if self.ratio < thresholds.min_success_ratio or self.p95_ms > thresholds.max_p95_ms:
            return "failed"
        return "ok"

    def __str__(self) -> str:
        if not self.sent:
            return "no data"
        p95 = f"{self.p95_ms:.0f} ms" if self.p95_ms is not None else "n/a"
        return f"{self.succeeded}/{self.sent} ok, p95 {p95}"


class HttpProber:
    """GET /health through `address` ("ip" or "ip:port"), with a chosen Host header."""

    def __init__(self, address: str, *, path: str = "/health", timeout: float = 5.0) -> None:
        self.address, self.path, self.timeout = address, path, timeout

    def probe(self, host_header: str | None, count: int) -> ProbeResult:
        host, _, port = self.address.partition(":")
        durations, succeeded = [], 0
        for _ in range(count):
            started = time.monotonic()
            connection = http.client.HTTPConnection(host, int(port or 80), timeout=self.timeout)
            try:
                connection.request("GET", self.path, headers={"Host": host_header or host})
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    succeeded += 1
                    durations.append((time.monotonic() - started) * 1000)
            except OSError:
                pass
            finally:
                connection.close()
        durations.sort()
        p95 = durations[max(0, int(len(durations) * 0.95) - 1)] if durations else None
        return ProbeResult(sent=count, succeeded=succeeded, p95_ms=p95)
