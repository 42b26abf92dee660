"""The secret scanner (gitleaks) the test suite runs, built from the Go module proxy.

Like vegeta (toolchain/loadtool.py): built once into the per-machine cache, under a name
that carries its pinned version, by `ciel setup --lab-tools` (so `./setup.sh --test-tools`
and CI). A second call finds the binary and returns. The tests do not build it: without
it they fail with BUILD_HINT (tests/test_secret_scan.py).
"""

from __future__ import annotations

from pathlib import Path

from toolchain import gobuild
from toolchain.pins import GITLEAKS

BUILD_HINT = (
    ".venv/bin/python -c 'from toolchain.secretscan import ensure_gitleaks; print(ensure_gitleaks())'"
)


def gitleaks_path() -> Path:
    return gobuild.cached_binary("gitleaks", GITLEAKS)


def ensure_gitleaks() -> Path:
    """The pinned gitleaks binary, built first if missing (about a minute, needs Go)."""
    return gobuild.build(GITLEAKS, gitleaks_path())
