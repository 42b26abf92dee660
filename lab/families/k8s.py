"""(being written) — the emulated k8s API."""

from __future__ import annotations

from lab.api import Lab


def register(lab: Lab) -> None:
    return None
