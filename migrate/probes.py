"""HTTP probes through the load balancer: a success ratio and a p95, or "no data".

"No data" (no probe answered, nothing measured) is inconclusive: it never promotes the
cutover to its next step.
"""

from __future__ import annotations

import http.client
import ssl
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
    """GET /health through `address` ("ip" or "ip:port"), with a chosen Host header.

    With `tls_server_name` (the API host, whose certificate the LB holds) it speaks HTTPS
    to port 443 with that name for SNI and certificate checks, while the Host header
    picks the route: that is how the preview host reaches the cluster before it has a
    certificate or DNS of its own. Without it, plain HTTP (dev, no domain)."""

    def __init__(self, address: str, *, tls_server_name: str | None = None, ca_file: str | None = None,
                 path: str = "/health", timeout: float = 5.0) -> None:
        self.address, self.tls_server_name, self.path, self.timeout = address, tls_server_name, path, timeout
        self.ca_file = ca_file  # None: the system's trust store (Let's Encrypt is in it)

    def _connection(self) -> http.client.HTTPConnection:
        host, _, port = self.address.partition(":")
        if not self.tls_server_name:
            return http.client.HTTPConnection(host, int(port or 80), timeout=self.timeout)
        context = ssl.create_default_context(cafile=self.ca_file)
        server_name = self.tls_server_name

        class _Sni(http.client.HTTPSConnection):
            def connect(self) -> None:  # the IP to connect to, the name to check
                http.client.HTTPConnection.connect(self)
                self.sock = context.wrap_socket(self.sock, server_hostname=server_name)

        return _Sni(host, int(port or 443), timeout=self.timeout, context=context)

    def probe(self, host_header: str | None, count: int) -> ProbeResult:
        durations, succeeded = [], 0
        for _ in range(count):
            started = time.monotonic()
            connection = self._connection()
            try:
                connection.request("GET", self.path, headers={"Host": host_header or self.address.split(":")[0]})
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
