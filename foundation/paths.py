"""Where things live: the repository, the per-machine cache, the per-checkout work area."""

from __future__ import annotations

import os
import re
from pathlib import Path

from foundation.errors import UsageError, shown

REPO_ROOT = Path(__file__).resolve().parent.parent

ENVIRONMENTS_DIR = REPO_ROOT / "infra" / "environments"


# An environment's name is also a file name, a state key and a tag value: a short label.
ENVIRONMENT_NAME = re.compile(r"[a-z][a-z0-9-]{1,19}")


def environment_name(name: object) -> str:
    """`name` if it is an environment name. Every path built from one (its YAML file, its
    cutover record) goes through here first, so a name can never reach outside its folder."""
    if not isinstance(name, str) or not ENVIRONMENT_NAME.fullmatch(name):
        raise UsageError(f"{shown(name)} is not an environment name: 2–20 lowercase letters, digits and '-', "
                         "starting with a letter (the name of a file in infra/environments/, e.g. dev)")
    return name


def environments_dir() -> Path:
    """Where environment files are read; CIEL_ENVIRONMENTS_DIR points elsewhere (tests, forks)."""
    explicit = os.environ.get("CIEL_ENVIRONMENTS_DIR")
    return Path(explicit).expanduser().resolve() if explicit else ENVIRONMENTS_DIR


def work_dir() -> Path:
    """Per-checkout, git-ignored: offline synth output, offline state, plans.
    CIEL_WORK_DIR moves it (tests use a temporary folder)."""
    explicit = os.environ.get("CIEL_WORK_DIR")
    return Path(explicit).expanduser().resolve() if explicit else REPO_ROOT / ".ciel"


def live_synth_dir() -> Path:
    """Live stacks synthesize where CDK Terrain's own CLI expects them: cdktf.out/."""
    explicit = os.environ.get("CIEL_WORK_DIR")
    return work_dir() / "cdktf.out" if explicit else REPO_ROOT / "cdktf.out"


def cache_dir() -> Path:
    """Per-machine cache shared by every clone, so a fresh clone's setup is fast.

    CIEL_CACHE_DIR overrides it (tests of a cold setup point it at an empty folder).
    """
    explicit = os.environ.get("CIEL_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ciel-infra"
