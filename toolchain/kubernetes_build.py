"""Build a real kube-apiserver and etcd from the Go module proxy, for the lab's Kapsule.

`k8s.io/kubernetes` is not meant to be required as a module: its go.mod replaces every
`k8s.io/*` staging module (api, apimachinery, apiserver, client-go, ...) with a path under
./staging that the module zip does not contain. So we write a build module of our own,
in the cache, that requires k8s.io/kubernetes at the pinned release and replaces each of
those staging modules with its published v0.<minor>.<patch> of the same release, then
builds k8s.io/kubernetes/cmd/kube-apiserver from it.

etcd's own `main` sits in its root module, whose go.mod likewise points every etcd module
at a local path; a three-line main of ours calls the same entry point (etcdmain.Main) from
the published server module.

Both are slow to build (minutes on 2 cores, GiB of RAM), so nothing builds them unless
asked: `run_setup(lab_tools=True)` or `ensure_lab_tools()`. The binaries are cached per
version in ~/.cache/ciel-infra/bin; the build modules are regenerated each time.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from foundation import paths
from foundation.errors import ToolchainError
from foundation.process import run, say
from toolchain.gobuild import build_package, go_binary
from toolchain.pins import ETCD, KUBERNETES_RELEASE, KUBERNETES_STAGING_VERSION

KUBERNETES_MODULE = "k8s.io/kubernetes"
BUILD_HINT = ".venv/bin/python -c 'from toolchain.kubernetes_build import ensure_lab_tools; ensure_lab_tools()'"

# -mod=mod: our build module starts without a go.sum; the first build records it.
# -p=2: the machines have two cores, and more parallel compiles only add peak memory.
BUILD_ENV = {"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -p=2"}

_STAGING_REPLACE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", re.MULTILINE)


def kube_apiserver_path() -> Path:
    return paths.cache_dir() / "bin" / f"kube-apiserver-{KUBERNETES_RELEASE}"


def etcd_path() -> Path:
    return paths.cache_dir() / "bin" / f"etcd-{ETCD.version}"


def staging_modules(kubernetes_go_mod: str) -> list[str]:
    """The module paths that kubernetes' go.mod replaces with its ./staging folders."""
    return sorted(set(_STAGING_REPLACE.findall(kubernetes_go_mod)))


def kube_build_go_mod(release: str, staging_version: str, staging: list[str]) -> str:
    """go.mod of our build module: kubernetes at `release`, staging modules at `staging_version`."""
    if not staging:
        raise ToolchainError(f"{KUBERNETES_MODULE}@{release}: its go.mod replaces no staging module; "
                             "the build recipe no longer fits this release")
    replaces = "\n".join(f"\t{module} => {module} {staging_version}" for module in staging)
    # go and godebug as kubernetes' own go.mod sets them: the main module's settings are
    # the ones a binary gets, and upstream builds with kubernetes as the main module.
    return (f"module ciel.local/kube-apiserver-build\n\ngo 1.24.0\n\ngodebug default=go1.24\n\n"
            f"require {KUBERNETES_MODULE} {release}\n\nreplace (\n{replaces}\n)\n")


def etcd_build_go_mod(version: str) -> str:
    return f"module ciel.local/etcd-build\n\ngo 1.24.0\n\nrequire {ETCD.module} {version}\n"


ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def _kube_version_ldflags(release: str) -> list[str]:
    """What upstream's hack/lib/version.sh stamps, so the server reports its real version."""
    major, minor = release.lstrip("v").split(".")[:2]
    settings = {"gitVersion": release, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    return [f"-X {package}.{name}={value}"
            for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
            for name, value in settings.items()]


def _download_go_mod(module: str, version: str) -> str:
    info = run([go_binary(), "mod", "download", "-json", f"{module}@{version}"], env=BUILD_ENV, capture=True,
               what=f"downloading {module}@{version} from the Go module proxy")
    return Path(json.loads(info.stdout)["GoMod"]).read_text()


def _fresh_build_dir(name: str) -> Path:
    build_dir = paths.cache_dir() / "build" / name
    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True)
    return build_dir


def build_kube_apiserver() -> Path:
    """kube-apiserver of the pinned release, built once (several minutes, ~3+ GiB of RAM)."""
    output = kube_apiserver_path()
    if output.exists():
        return output
    say(f"  building kube-apiserver {KUBERNETES_RELEASE} from the Go module proxy — first time only, minutes")
    staging = staging_modules(_download_go_mod(KUBERNETES_MODULE, KUBERNETES_RELEASE))
    build_dir = _fresh_build_dir(f"kube-apiserver-{KUBERNETES_RELEASE}")
    (build_dir / "go.mod").write_text(kube_build_go_mod(KUBERNETES_RELEASE, KUBERNETES_STAGING_VERSION, staging))
    return build_package(build_dir, f"{KUBERNETES_MODULE}/cmd/kube-apiserver", output,
                         _kube_version_ldflags(KUBERNETES_RELEASE), env=BUILD_ENV,
                         what=f"go build of kube-apiserver {KUBERNETES_RELEASE}")


def build_etcd() -> Path:
    """etcd of the pinned version, built once (about a minute)."""
    output = etcd_path()
    if output.exists():
        return output
    say(f"  building etcd {ETCD.version} from the Go module proxy — first time only")
    build_dir = _fresh_build_dir(f"etcd-{ETCD.version}")
    (build_dir / "go.mod").write_text(etcd_build_go_mod(ETCD.version))
    (build_dir / "main.go").write_text(ETCD_MAIN)
    return build_package(build_dir, ".", output, [], env=BUILD_ENV, what=f"go build of etcd {ETCD.version}")


def ensure_lab_tools() -> tuple[Path, Path]:
    """(kube-apiserver, etcd), each built first if missing."""
    return build_kube_apiserver(), build_etcd()
