"""Choosing the Terraform-compatible engine: Terraform or OpenTofu, both >= 1.10.

Order in `auto` mode: a `terraform` >= 1.10 on PATH, else a `tofu` >= 1.10 on PATH, else
OpenTofu built from the Go module proxy into the cache. CIEL_ENGINE=terraform|tofu (or
`--engine`) forces one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from foundation import paths
from foundation.errors import ToolchainError, UsageError
from toolchain import gobuild
from toolchain.pins import MIN_ENGINE_VERSION, OPENTOFU

ENGINE_CHOICES = ("auto", "terraform", "tofu")


@dataclass(frozen=True)
class Engine:
    name: str  # "terraform" or "tofu"
    path: Path
    version: str
    origin: str  # where it came from, for `ciel doctor`

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def built_tofu_path() -> Path:
    return paths.cache_dir() / "bin" / f"tofu-{OPENTOFU.version}"


def _version_of(binary: Path) -> str | None:
    try:
        out = subprocess.run([str(binary), "version", "-json"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    try:
        return json.loads(out.stdout)["terraform_version"]
    except (ValueError, KeyError):
        match = re.search(r"v(\d+\.\d+\.\d+)", out.stdout)
        return match.group(1) if match else None


def _recent_enough(version: str | None) -> bool:
    if not version:
        return False
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) >= MIN_ENGINE_VERSION


def _on_path(name: str) -> Engine | None:
    found = shutil.which(name)
    if not found:
        return None
    version = _version_of(Path(found))
    if not _recent_enough(version):
        return None
    return Engine(name=name, path=Path(found), version=version or "?", origin=f"PATH ({found})")


def _built_tofu(build_missing: bool) -> Engine | None:
    binary = built_tofu_path()
    if not binary.exists():
        if not build_missing:
            return None
        gobuild.build(OPENTOFU, binary)
    return Engine(name="tofu", path=binary, version=_version_of(binary) or OPENTOFU.version.lstrip("v"),
                  origin=f"built from the Go module proxy ({OPENTOFU.module}@{OPENTOFU.version})")


def preference(explicit: str | None = None) -> str:
    choice = (explicit or os.environ.get("CIEL_ENGINE") or "auto").strip().lower()
    if choice == "opentofu":
        choice = "tofu"
    if choice not in ENGINE_CHOICES:
        raise UsageError(f"unknown engine {choice!r} (from --engine or CIEL_ENGINE): choose one of {', '.join(ENGINE_CHOICES)}")
    return choice


def select(explicit: str | None = None, *, build_missing: bool = False) -> Engine:
    """The engine to use; with build_missing, OpenTofu is built when nothing else fits."""
    choice = preference(explicit)
    minimum = ".".join(map(str, MIN_ENGINE_VERSION))
    if choice in ("auto", "terraform"):
        engine = _on_path("terraform")
        if engine:
            return engine
        if choice == "terraform":
            raise ToolchainError(
                f"CIEL_ENGINE=terraform but no terraform >= {minimum} is on PATH: install it, or use CIEL_ENGINE=tofu"
            )
    engine = _on_path("tofu") or _built_tofu(build_missing)
    if engine:
        return engine
    raise ToolchainError(f"no engine: no terraform/tofu >= {minimum} on PATH and OpenTofu not built yet: run ./setup.sh")
