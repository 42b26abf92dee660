"""Running external tools with output a user can follow and errors they can act on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from foundation.errors import ToolchainError


def run(
    args: Sequence[str | os.PathLike],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
    quiet: bool = False,
    what: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run a command; on failure raise ToolchainError naming the step and its last output.

    capture=True returns stdout/stderr; quiet=True hides output unless the command fails.
    """
    argv = [str(a) for a in args]
    full_env = None if env is None else {**os.environ, **env}
    hidden = capture or quiet
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=full_env,
        text=True,
        stdout=subprocess.PIPE if hidden else None,
        stderr=subprocess.STDOUT if quiet and not capture else (subprocess.PIPE if capture else None),
    )
    if proc.returncode != 0 and check:
        tail = " (its output is above)"
        if hidden:
            out = (proc.stdout or "") + (proc.stderr or "")
            tail = "\n" + "\n".join(out.strip().splitlines()[-25:])
        raise ToolchainError(f"{what or argv[0]} failed (exit {proc.returncode}): {' '.join(argv[:4])} ...{tail}")
    return proc


def say(message: str) -> None:
    """Progress lines go to stderr so stdout stays parseable (plans, JSON)."""
    print(message, file=sys.stderr, flush=True)
