"""`ciel doctor`: what this machine has, what is missing, and what to do about it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass

from ciel import credentials as creds
from foundation import paths
from foundation.errors import CielError
from toolchain import bindings, engine as engines, mirror, node
from toolchain.pins import PROVIDERS, SCALEWAY


@dataclass(frozen=True)
class Check:
    component: str
    ok: bool
    detail: str
    fix: str = ""


def _version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else None


def checks(engine_choice: str | None = None) -> list[Check]:
    result = [Check("python", sys.version_info >= (3, 11), sys.version.split()[0], "Python >= 3.11 is required")]

    try:
        engine = engines.select(engine_choice)
        result.append(Check("engine", True, f"{engine.name} {engine.version} — {engine.origin}"))
    except CielError as error:
        result.append(Check("engine", False, str(error), "./setup.sh"))

    for pin in PROVIDERS:
        ok = mirror.provider_installed(pin)
        detail = f"{pin.version} from {pin.source.module}@{pin.source.version}"
        result.append(Check(f"provider {pin.address}", ok, detail if ok else f"not in {mirror.mirror_dir()}", "./setup.sh"))

    config_ok = mirror.cli_config_path("mirror").exists()
    result.append(Check("engine CLI config", config_ok, str(mirror.cli_config_path("mirror")), "./setup.sh"))

    node_version = _version([str(node.node_binary()), "--version"]) if node.node_binary().exists() else None
    result.append(Check("node (for cdktn/jsii)", node_version is not None,
                        f"{node_version} at {node.node_binary()}" if node_version else "not installed", "./setup.sh"))
    result.append(Check("cdktn CLI", node.cdktn_binary().exists(), str(node.cdktn_binary()), "./setup.sh"))

    result.append(Check(f"bindings {SCALEWAY.address}", bindings.generated(),
                        f"{len(SCALEWAY.generate_bindings_for or ())} resource types in {bindings.bindings_root()}",
                        "./setup.sh"))

    go = shutil.which("go")
    go_version = _version([go, "version"]) if go else None
    all_built = all(mirror.provider_installed(pin) for pin in PROVIDERS)
    result.append(Check("go (setup only)", bool(go_version) or all_built, go_version or "not on PATH (only needed to build providers)",
                        "install Go >= 1.26"))

    try:
        found = creds.detect()
        detail = (f"live: {found.source}, access key {found.access_key_hint}" if found.live
                  else "none found: deploy plans offline and applies nothing")
        result.append(Check("scaleway credentials", True, detail))
    except CielError as error:
        result.append(Check("scaleway credentials", False, str(error), "fix or unset SCW_* variables"))

    result.append(Check("cache", True, str(paths.cache_dir())))
    return result
