"""The GitHub workflow linter (actionlint) the test suite runs, built from the Go module proxy.

Like gitleaks (toolchain/secretscan.py): built once into the per-machine cache, under a
name that carries its pinned version, by `ciel setup --lab-tools` (so `./setup.sh
--test-tools` and CI). A second call finds the binary and returns. The tests do not build
it: without it they fail with BUILD_HINT (tests/test_workflows.py).
"""

from __future__ import annotations

from pathlib import Path

from toolchain import gobuild
from toolchain.pins import ACTIONLINT

BUILD_HINT = (
    ".venv/bin/python -c 'from toolchain.workflowlint import ensure_actionlint; print(ensure_actionlint())'"
)


def actionlint_path() -> Path:
    return gobuild.cached_binary("actionlint", ACTIONLINT)


def ensure_actionlint() -> Path:
    """The pinned actionlint binary, built first if missing (under a minute, needs Go)."""
    return gobuild.build(ACTIONLINT, actionlint_path())
