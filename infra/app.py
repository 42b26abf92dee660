"""Synthesis: configuration in, Terraform JSON (cdktf.out/stacks/<stack>/cdk.tf.json) out.

`ciel` calls `synthesize()` in-process; `python -m infra.app` (the `app` of cdktf.json)
synthesizes every environment, for those who drive CDK Terrain's own CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cdktn import App, TerraformStack

from foundation import paths
from toolchain.pins import MIN_ENGINE_VERSION
from infra.config import EnvironmentConfig, known_environments, load_environment
from infra.stacks.core import CoreStack
from infra.state import RemoteState


@dataclass(frozen=True)
class SynthResult:
    stack: str
    directory: Path  # holds cdk.tf.json; the engine runs here


# The engines we run (>= 1.10 for S3 native locking); cdktn checks features against these.
TARGET_VERSIONS = {product: ">=" + ".".join(map(str, MIN_ENGINE_VERSION)) + ".0" for product in ("terraform", "opentofu")}


def new_app(outdir: Path | None = None) -> App:
    context = {"targetVersions": TARGET_VERSIONS}
    return App(outdir=str(outdir), context=context) if outdir else App(context=context)


def synth_dir(*, live: bool) -> Path:
    """Live and offline runs synthesize to different folders, so an engine folder
    initialized against the offline backend is never reused against the live one."""
    return paths.live_synth_dir() if live else paths.work_dir() / "offline" / "cdktf.out"


def _synthesize_one(add_stack: Callable[[App], TerraformStack], *, live: bool, outdir: Path | None) -> SynthResult:
    outdir = outdir or synth_dir(live=live)
    outdir.mkdir(parents=True, exist_ok=True)
    app = new_app(outdir)
    stack = add_stack(app).node.id
    app.synth()
    return SynthResult(stack=stack, directory=outdir / "stacks" / stack)


def synthesize(config: EnvironmentConfig, *, remote_state: RemoteState | None, outdir: Path | None = None) -> SynthResult:
    """The core stack; remote_state None: offline (local throw-away state)."""
    return _synthesize_one(lambda app: CoreStack(app, config=config, remote_state=remote_state),
                           live=remote_state is not None, outdir=outdir)


def synthesize_aside(config: EnvironmentConfig, label: str) -> dict:
    """The core stack of `config`, synthesized offline into its own folder (never one an
    engine runs in), as Terraform JSON: a reference to compare a real stack against."""
    result = synthesize(config, remote_state=None, outdir=synth_dir(live=False).parent / label)
    return json.loads((result.directory / "cdk.tf.json").read_text())


def resource_addresses(document: dict) -> set[str]:
    """`type.name` of every managed resource of a synthesized stack (the plan's addresses)."""
    return {f"{type_}.{name}" for type_, resources in document.get("resource", {}).items() for name in resources}


def synthesize_workloads(config: EnvironmentConfig, *, remote_state: RemoteState | None, include_untyped: bool,
                         outdir: Path | None = None) -> SynthResult:
    """The phase-2 workloads stack (kubernetes provider); see infra/stacks/workloads.py."""
    from infra.stacks.workloads import WorkloadsStack

    return _synthesize_one(lambda app: WorkloadsStack(app, config=config, remote_state=remote_state,
                                                      include_untyped=include_untyped),
                           live=remote_state is not None, outdir=outdir)


def main() -> None:
    app = new_app()
    for env in known_environments():
        config = load_environment(env)
        CoreStack(app, config=config, remote_state=None)
    app.synth()


if __name__ == "__main__":
    main()
