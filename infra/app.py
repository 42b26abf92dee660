"""Synthesis: configuration in, Terraform JSON (cdktf.out/stacks/<stack>/cdk.tf.json) out.

`ciel` calls `synthesize()` in-process; `python -m infra.app` (the `app` of cdktf.json)
synthesizes every environment, for those who drive CDK Terrain's own CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cdktn import App

from ciel import paths
from infra.config import EnvironmentConfig, known_environments, load_environment
from infra.stacks.core import CoreStack, core_stack_name


@dataclass(frozen=True)
class SynthResult:
    stack: str
    directory: Path  # holds cdk.tf.json; the engine runs here


def state_file(env: str, stack: str, *, live: bool) -> Path:
    """Local state: offline plans use a throw-away one, never the live one."""
    kind = "state" if live else "offline-state"
    return paths.WORK_DIR / kind / env / f"{stack}.tfstate"


def synth_dir(*, live: bool) -> Path:
    """Live and offline runs synthesize to different folders, so an engine folder
    initialized against the offline backend is never reused against the live one."""
    return paths.SYNTH_OUT if live else paths.WORK_DIR / "offline" / "cdktf.out"


def synthesize(config: EnvironmentConfig, *, live: bool, outdir: Path | None = None) -> SynthResult:
    outdir = outdir or synth_dir(live=live)
    outdir.mkdir(parents=True, exist_ok=True)
    app = App(outdir=str(outdir))
    stack = core_stack_name(config.name)
    CoreStack(app, config=config, state_file=state_file(config.name, stack, live=live))
    app.synth()
    return SynthResult(stack=stack, directory=outdir / "stacks" / stack)


def main() -> None:
    app = App()
    for env in known_environments():
        config = load_environment(env)
        CoreStack(app, config=config, state_file=state_file(env, core_stack_name(env), live=False))
    app.synth()


if __name__ == "__main__":
    main()
