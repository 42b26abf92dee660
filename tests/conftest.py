"""Shared fixtures. Tests that need the toolchain do not skip when it is missing: they
fail with the message that says to run ./setup.sh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolchain import node

# The jsii runtime (started by the first cdktn import) takes its Node from JSII_NODE.
os.environ.update(node.runtime_env())

REPO_ROOT = Path(__file__).resolve().parent.parent
CIEL = str(Path(sys.executable).with_name("ciel"))


@pytest.fixture(scope="session")
def session_work_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ciel-work")


@pytest.fixture(autouse=True)
def isolated_work_dir(monkeypatch, session_work_dir):
    """Synth output, engine folders and offline state go to a temporary folder, not the checkout."""
    monkeypatch.setenv("CIEL_WORK_DIR", str(session_work_dir))


@pytest.fixture(autouse=True)
def isolated_scaleway_credentials(monkeypatch, tmp_path):
    """No test sees the developer's real Scaleway credentials or CLI profile."""
    for name in list(os.environ):
        if name.startswith("SCW_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("CIEL_DEPLOYER_PRINCIPAL", raising=False)
    monkeypatch.setenv("SCW_CONFIG_PATH", str(tmp_path / "no-scw-config.yaml"))


def synth_construct(build, stack_factory=None) -> dict:
    """Synthesize what `build(stack)` adds to a stack (empty unless stack_factory makes
    one); returns the Terraform JSON."""
    import json

    from cdktn import TerraformStack, Testing

    app = Testing.app()
    stack = stack_factory(app) if stack_factory else TerraformStack(app, "test")
    build(stack)
    return json.loads(Testing.synth(stack))


_SYNTH_CACHE: dict[tuple, dict] = {}


def config_for(env: str, **overrides):
    """A shipped environment's config with some keys changed (validated like a file)."""
    from infra.config import load_environment
    from infra.config.schema import EnvironmentConfig

    return EnvironmentConfig(**{**load_environment(env).model_dump(), **overrides})


def build_core(env: str, **overrides):
    """The CoreStack object itself, for properties that only exist before synthesis."""
    from cdktn import Testing

    from infra.stacks.core import CoreStack

    return CoreStack(Testing.app(), config=config_for(env, **overrides), remote_state=None)


def synth_core(env: str, **overrides) -> dict:
    """The core stack of `env` (offline backend) as Terraform JSON; cached per configuration
    (the whole validated config is the key: a file changed by a test is a new entry)."""
    config = config_for(env, **overrides)
    key = config.model_dump_json()
    if key not in _SYNTH_CACHE:
        from infra.stacks.core import CoreStack

        _SYNTH_CACHE[key] = synth_construct(lambda app_stack: None, stack_factory=lambda app: CoreStack(
            app, config=config, remote_state=None))
    return _SYNTH_CACHE[key]


def of_type(document: dict, type_: str) -> list[dict]:
    """All resources of one type in a synthesized stack."""
    return list(document.get("resource", {}).get(type_, {}).values())


def one(document: dict, type_: str) -> dict:
    found = of_type(document, type_)
    assert len(found) == 1, f"expected one {type_}, found {len(found)}"
    return found[0]


def run_ciel(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """The real console script, as a user runs it."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([CIEL, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def environments_dir(tmp_path, monkeypatch):
    """An empty environments folder for tests that write their own YAML files."""
    directory = tmp_path / "environments"
    directory.mkdir()
    monkeypatch.setenv("CIEL_ENVIRONMENTS_DIR", str(directory))
    return directory
