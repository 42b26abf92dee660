"""The tools the lab and the tests run, built from the Go module proxy: vegeta (the
rehearsal's load), gitleaks (the secret scan), actionlint (the workflows' lint).

Each is built once into the per-machine cache, under a name that carries its pinned
version, by `ciel setup --lab-tools` (so `./setup.sh --test-tools` and CI); a second call
finds the binary and returns. The tests do not build them: without one they fail with
`build_hint(name)`.
"""

from __future__ import annotations

from pathlib import Path

from toolchain import gobuild
from toolchain.pins import ACTIONLINT, GITLEAKS, VEGETA, GoSource

TOOLS: dict[str, GoSource] = {"vegeta": VEGETA, "gitleaks": GITLEAKS, "actionlint": ACTIONLINT}


def tool_path(name: str) -> Path:
    """Where the pinned tool lives in the cache (it may not be built yet)."""
    return gobuild.cached_binary(name, TOOLS[name])


def ensure_tool(name: str) -> Path:
    """The pinned tool's binary, built first if missing (up to a minute, needs Go)."""
    return gobuild.build(TOOLS[name], tool_path(name))


def build_hint(name: str) -> str:
    return f".venv/bin/python -c 'from toolchain.gotools import ensure_tool; print(ensure_tool(\"{name}\"))'"
