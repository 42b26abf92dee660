"""Timeouts and retries around the Scaleway SDK, whose requests have neither.

Retried: HTTP 409 (the LB is busy applying a change), 429 (throttled), 5xx, timeouts and
connection errors. Not retried: other 4xx (a real error — retrying would not help).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
from scaleway_core.api import ScalewayException

from foundation.errors import CielError

T = TypeVar("T")
RETRYABLE_STATUS = {409, 429, 500, 502, 503, 504}
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="scw-call")


class ApiError(CielError):
    """A Scaleway API call failed for good (after retries, or not retryable)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    first_delay: float = 0.5
    max_delay: float = 8.0
    timeout: float = 30.0


def call(description: str, fn: Callable[[], T], policy: RetryPolicy, log: Callable[[str], None]) -> T:
    delay = policy.first_delay
    for attempt in range(1, policy.attempts + 1):
        future = _POOL.submit(fn)
        try:
            return future.result(timeout=policy.timeout)
        except ScalewayException as error:
            status = error.status_code
            if status not in RETRYABLE_STATUS or attempt == policy.attempts:
                raise ApiError(f"{description}: HTTP {status}: {str(error)[:300]}") from None
            reason = f"HTTP {status}"
        except (concurrent.futures.TimeoutError, requests.ConnectionError, requests.Timeout) as error:
            future.cancel()
            if attempt == policy.attempts:
                raise ApiError(f"{description}: no answer after {policy.attempts} attempts ({type(error).__name__})") from None
            reason = type(error).__name__
        log(f"    retry {attempt}/{policy.attempts - 1} of {description} in {delay:.1f}s ({reason})")
        time.sleep(delay)
        delay = min(delay * 2, policy.max_delay)
    raise AssertionError("unreachable")
