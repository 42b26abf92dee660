"""Reading a live environment's core-stack outputs (IDs, endpoints, and — only when a
caller hands them straight to another tool — secrets) from its remote state."""

from __future__ import annotations

from ciel import credentials as creds
from infra.config import load_environment


def core_outputs(env: str, found: creds.Credentials, engine_choice: str | None, *, include_sensitive: bool) -> dict:
    """The core stack's outputs. Sensitive ones stay in this process: never print them."""
    from ciel.workspace import StackWorkspace
    from infra.app import synthesize
    from infra.state import RemoteState
    from toolchain import bindings, engine as engines

    config = load_environment(env)
    bindings.ensure_importable()
    core = synthesize(config, remote_state=RemoteState.for_project(found.project_id, config.region))
    workspace = StackWorkspace(engines.select(engine_choice), core.directory, found)
    workspace.init()
    return workspace.outputs(include_sensitive=include_sensitive)


def kube_ca_file(outputs: dict) -> str:
    """The cluster CA of the core stack's outputs, in a file of its own (what the kubernetes
    client reads)."""
    import base64
    import tempfile
    from pathlib import Path

    ca_file = Path(tempfile.mkdtemp(prefix="ciel-kube-")) / "ca.pem"
    ca_file.write_bytes(base64.b64decode(str(outputs["kube_ca_certificate"])))
    return str(ca_file)
