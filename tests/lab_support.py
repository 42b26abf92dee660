"""Running the lab in tests the way a user does: `ciel lab up` semantics (a background
process on 127.0.0.1), then the real engine and provider against it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

PROVIDER_BLOCK = """
terraform {
  required_providers {
    scaleway = { source = "scaleway/scaleway", version = "2.81.0" }
  }
}
provider "scaleway" {
  region = "fr-par"
  zone   = "fr-par-1"
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_lab(work_dir: Path):
    """A lab of its own (own folder, free ports); yields the variables `ciel lab env` prints."""
    from lab import runner

    previous = os.environ.get("CIEL_WORK_DIR")
    os.environ["CIEL_WORK_DIR"] = str(work_dir)
    try:
        ports, _ = runner.up(runner.free_ports())  # the API's port + 3..5: its Kubernetes API server, etcd
        try:
            yield runner.environment(ports)
        finally:
            os.environ["CIEL_WORK_DIR"] = str(work_dir)  # the test may have pointed it elsewhere
            runner.down()
    finally:
        if previous is None:
            os.environ.pop("CIEL_WORK_DIR", None)
        else:
            os.environ["CIEL_WORK_DIR"] = previous


def engine(directory: Path, lab_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The real engine (terraform or tofu, as `ciel` picks it) with the providers of the mirror."""
    from toolchain import engine as engines, mirror

    env = {**os.environ, **lab_env, "TF_CLI_CONFIG_FILE": str(mirror.cli_config_path("mirror")),
           "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "AWS_CA_BUNDLE": ""}  # as ciel/workspace.py
    return subprocess.run([str(engines.select(None).path), *args, "-no-color"], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=900)


def apply_then_replan(directory: Path, lab_env: dict[str, str], hcl: str) -> tuple[subprocess.CompletedProcess, int, str]:
    """Write `hcl` (after the provider block), init, apply, then plan again: returns the
    apply's result and the re-plan's exit code (0: no changes) and output."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.tf").write_text(PROVIDER_BLOCK + hcl)
    init = engine(directory, lab_env, "init", "-input=false")
    assert init.returncode == 0, init.stdout + init.stderr
    applied = engine(directory, lab_env, "apply", "-auto-approve", "-input=false")
    replan = engine(directory, lab_env, "plan", "-detailed-exitcode", "-input=false")
    return applied, replan.returncode, replan.stdout + replan.stderr


def lab_answer(lab_env: dict[str, str], path: str, body: dict | None = None,
               method: str | None = None) -> tuple[int, object]:
    """(status, JSON body or None) of a GET (or, with a body, a POST; or `method`) on the
    running lab's API, errors included."""
    request = urllib.request.Request(lab_env["SCW_API_URL"] + path, headers={"Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode(), method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            data = answer.read()
            return answer.status, json.loads(data) if data else None
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def lab_json(lab_env: dict[str, str], path: str, body: dict | None = None) -> dict:
    """The JSON body of a GET (or POST) that must succeed."""
    status, answer = lab_answer(lab_env, path, body)
    assert 200 <= status < 300, f"{path}: {status} {answer}"
    return answer


def outputs(directory: Path, lab_env: dict[str, str]) -> dict:
    """The applied configuration's outputs, by name."""
    shown = engine(directory, lab_env, "output", "-json")
    assert shown.returncode == 0, shown.stderr
    return {name: item["value"] for name, item in json.loads(shown.stdout).items()}


@contextmanager
def local_object_storage(monkeypatch, work_dir: Path):
    """A moto S3 server standing in for Object Storage, with CIEL_S3_ENDPOINT pointing at it.
    Each server has its own endpoint, hence its own backend configuration: CIEL_WORK_DIR
    goes to a fresh folder too. Yields the endpoint."""
    import requests
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        requests.post(f"{endpoint}/moto-api/reset", timeout=10)  # moto keeps buckets process-wide
        monkeypatch.setenv("CIEL_WORK_DIR", str(work_dir))
        monkeypatch.setenv("CIEL_S3_ENDPOINT", endpoint)
        yield endpoint
    finally:
        server.stop()


def wait_until(check, seconds: float, what: str, *, pause: float = 0.05):
    """check()'s first truthy value within `seconds`; else an AssertionError naming `what`."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"not within {seconds} s: {what}")
