"""`ciel setup`: install the whole toolchain from package registries, idempotently.

Every step checks for its cached result first, so a second run costs seconds. The order
matters: bindings need the engine, the mirror and Node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from foundation.process import say
from toolchain import bindings, engine, gobuild, gotools, kubernetes_build, mirror, node
from toolchain.pins import OPENTOFU, PROVIDERS


@dataclass(frozen=True)
class StepResult:
    name: str
    detail: str
    seconds: float


def run_setup(engine_preference: str | None = None, *, all_engines: bool = False,
              lab_tools: bool = False) -> list[StepResult]:
    """Install everything; with all_engines, also build OpenTofu when Terraform is the one in use;
    with lab_tools, also build the lab's tools: kube-apiserver and etcd for its Kapsule (minutes,
    ~2 GiB of RAM, once) and vegeta for its rehearsals' traffic, and the test suite's secret
    scanner (gitleaks) and workflow linter (actionlint)."""
    results: list[StepResult] = []

    def timed(name: str, action) -> None:
        start = time.monotonic()
        detail = action()
        results.append(StepResult(name, detail, time.monotonic() - start))

    say("ciel setup: engine, provider mirror, Node + cdktn, Scaleway bindings")
    selected: list[engine.Engine] = []

    def pick_engine() -> str:
        chosen = engine.select(engine_preference, build_missing=True)
        selected.append(chosen)
        return f"{chosen.name} {chosen.version} — {chosen.origin}"

    timed("engine", pick_engine)
    if all_engines and selected[0].name != "tofu":
        timed("engine (OpenTofu too)", lambda: str(gobuild.build(OPENTOFU, engine.built_tofu_path())))
    for pin in PROVIDERS:
        timed(f"provider {pin.address}", lambda pin=pin: f"{pin.version} → {mirror.install_provider(pin)}")
    timed("CLI config", lambda: (mirror.write_cli_configs(), str(mirror.cli_config_path("mirror")))[1])
    timed("Node + cdktn", lambda: (node.install(), str(node.node_binary()))[1])
    timed("Scaleway bindings", lambda: str(bindings.generate(selected[0])))
    if lab_tools:
        timed("lab kube-apiserver", lambda: str(kubernetes_build.build_kube_apiserver()))
        timed("lab etcd", lambda: str(kubernetes_build.build_etcd()))
        timed("lab vegeta", lambda: str(gotools.ensure_tool("vegeta")))
        timed("test gitleaks", lambda: str(gotools.ensure_tool("gitleaks")))
        timed("test actionlint", lambda: str(gotools.ensure_tool("actionlint")))
    return results
