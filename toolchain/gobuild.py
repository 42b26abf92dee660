"""Build Go binaries (providers, OpenTofu) from the Go module proxy.

The Terraform registry and GitHub releases are out of reach on our machines; the Go
module proxy is not. We download the pinned module and build its main package inside
the module's own directory, so its go.mod and replace directives apply unchanged.
(`go install mod@version` would ignore replace directives and asks the proxy for a
version list that it may refuse.)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from foundation import paths
from foundation.errors import ToolchainError
from foundation.process import run, say
from toolchain.pins import GoSource

# Use the machine's Go, never a downloaded toolchain; read-only module graph.
GO_ENV = {"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"}


def go_binary() -> str:
    go = shutil.which("go")
    if not go:
        raise ToolchainError(
            "Go is needed once to build the providers from the Go module proxy, and `go` is not on PATH: "
            "install Go >= 1.26 (the Scaleway provider v2.81 requires it)"
        )
    return go


def cached_binary(name: str, source: GoSource) -> Path:
    """Where a tool built from `source` lives in the per-machine cache: its name carries the
    pinned version, so a new pin is a new file (it may not be built yet)."""
    return paths.cache_dir() / "bin" / f"{name}-{source.version}"


def build(source: GoSource, output: Path) -> Path:
    """Build `source` into `output` unless it is already there. Returns `output`."""
    if output.exists():
        return output
    go = go_binary()
    say(f"  building {source.module}@{source.version} ({source.package}) with Go — first time only")
    info = run(
        [go, "mod", "download", "-json", f"{source.module}@{source.version}"],
        env=GO_ENV,
        capture=True,
        what=f"downloading {source.module}@{source.version} from the Go module proxy",
    )
    module_dir = json.loads(info.stdout)["Dir"]
    return build_package(Path(module_dir), source.package, output,
                         [f"-X {setting}" for setting in source.version_ldflags], env=GO_ENV,
                         what=f"go build of {source.module}@{source.version}")


def build_package(directory: Path, package: str, output: Path, ldflags: list[str], *, env: dict[str, str],
                  what: str) -> Path:
    """`go build` of `package` within `directory` into `output`, stripped and reproducible
    (-trimpath). Built next to the target, then renamed: an interrupted build never leaves
    a half-written binary that a later run would trust."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(fd)
    try:
        run([go_binary(), "build", "-trimpath", "-ldflags=" + " ".join(["-s", "-w", *ldflags]), "-o", tmp_name,
             package], cwd=directory, env=env, quiet=True, what=what)
        os.chmod(tmp_name, 0o755)
        os.replace(tmp_name, output)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return output
