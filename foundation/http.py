"""One HTTP call with the standard library: its status and body, whatever the status."""

from __future__ import annotations

import urllib.error
import urllib.request

TIMEOUT = 10.0


def http_call(method: str, url: str, data: bytes | None = None, headers: dict | None = None,
              timeout: float = TIMEOUT) -> tuple[int, bytes]:
    """(status, body); an HTTP error status is an answer, not an exception (OSError is)."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
