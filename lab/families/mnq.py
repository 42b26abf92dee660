"""(being written) — the emulated mnq API."""

from __future__ import annotations

from lab.api import Lab


def register(lab: Lab) -> None:
    return None
