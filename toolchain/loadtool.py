"""The HTTP load generator (vegeta) for the lab's rehearsals, built from the Go module proxy.

Only the lab needs it, so `ciel setup` does not build it up front: the first rehearsal
(or test) that asks for it builds it once into the per-machine cache, like OpenTofu.
"""

from __future__ import annotations

from pathlib import Path

from toolchain import gobuild
from toolchain.pins import VEGETA

BUILD_HINT = (
    ".venv/bin/python -c 'from toolchain.loadtool import ensure_vegeta; print(ensure_vegeta())'"
)


def vegeta_path() -> Path:
    return gobuild.cached_binary("vegeta", VEGETA)


def ensure_vegeta() -> Path:
    """The pinned vegeta binary, built first if missing (about a minute, needs Go)."""
    return gobuild.build(VEGETA, vegeta_path())
