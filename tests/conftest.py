"""Shared fixtures. Tests that need the toolchain do not skip when it is missing: they
fail with the message that says to run ./setup.sh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ciel.toolchain import node

# The jsii runtime (started by the first cdktn import) takes its Node from JSII_NODE.
os.environ.update(node.runtime_env())

REPO_ROOT = Path(__file__).resolve().parent.parent
CIEL = str(Path(sys.executable).with_name("ciel"))


@pytest.fixture(autouse=True)
def isolated_scaleway_credentials(monkeypatch, tmp_path):
    """No test sees the developer's real Scaleway credentials or CLI profile."""
    for name in list(os.environ):
        if name.startswith("SCW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SCW_CONFIG_PATH", str(tmp_path / "no-scw-config.yaml"))


def synth_construct(build) -> dict:
    """Synthesize what `build(stack)` adds to an empty stack; returns the Terraform JSON."""
    import json

    from cdktn import TerraformStack, Testing

    stack = TerraformStack(Testing.app(), "test")
    build(stack)
    return json.loads(Testing.synth(stack))


def run_ciel(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """The real console script, as a user runs it."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([CIEL, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def environments_dir(tmp_path, monkeypatch):
    """An empty environments folder for tests that write their own YAML files."""
    directory = tmp_path / "environments"
    directory.mkdir()
    monkeypatch.setenv("CIEL_ENVIRONMENTS_DIR", str(directory))
    return directory
