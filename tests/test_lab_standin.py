"""The lab's stand-in for the Ciel image (lab/dataplane/standin.py) and the plane that runs
one per running lab server (lab/dataplane/apps.py): the app contract a load balancer and a
cutover rely on (health, header, fault, graceful drain on SIGTERM, worker finishing its
job), and the Instance API starting and draining the stand-ins as servers power on and off.
All traffic goes to 127.0.0.0/8 and every wait is bounded."""

from __future__ import annotations

import base64
import http.client
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infra.cloudinit.app import AppMachine, app_user_data
from infra.cloudinit.redis import redis_user_data
from infra.cloudinit.secrets import SecretSource
from lab.addresses import loopback_for, require_loopback
from lab.api import Lab
from lab.dataplane.apps import AppPlane, NotAnApp, parse_cloud_init
from lab.families import register_all
from lab.families.instance import _local_image
from lab.runtime import Runtime
from lab.server import serve_api
from lab.store import Store
from tests.lab_support import free_port, wait_until

REPOSITORY = Path(__file__).resolve().parent.parent
ZONE, REGION, PROJECT = "fr-par-1", "fr-par", "11111111-1111-4111-8111-111111111111"


# --- helpers --------------------------------------------------------------------------------

def _get(address: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(require_loopback(address), port, timeout=timeout)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def _refuses(address: str, port: int) -> bool:
    try:
        socket.create_connection((require_loopback(address), port), timeout=1).close()
    except (ConnectionRefusedError, ConnectionResetError):  # reset: queued as the listener closed
        return True
    return False


def _until(check, seconds: float, message: str):
    return wait_until(check, seconds, message, pause=0.02)


def _healthy(address: str, port: int):
    def check():
        try:
            return _get(address, port, "/health", timeout=1)
        except OSError:
            return None
    return _until(check, 10, f"{address}:{port} answers /health")


def _spare_loopback() -> str:
    """A loopback address of the private-address range (127.1xx) no one is listening on at 8080."""
    for _ in range(50):
        address = f"127.100.{random.randint(200, 254)}.{random.randint(2, 254)}"
        if _refuses(address, 8080):
            return address
    raise AssertionError("no free loopback address")


def _spare_private_address() -> str:
    """An address of 10.0.0.0/24 whose loopback stand-in (127.100.0.x) has 8080 free."""
    for _ in range(50):
        address = f"10.0.0.{random.randint(100, 250)}"
        if _refuses(loopback_for(address), 8080):
            return address
    raise AssertionError("no free address")


def _standin(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lab.dataplane.standin", *args], cwd=REPOSITORY,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture
def api_standin(tmp_path):
    address, port, fault = _spare_loopback(), free_port(), tmp_path / "fault"
    process = _standin("--mode", "api", "--bind", address, "--port", str(port), "--name", "api-7",
                       "--version", "2.3.4", "--fault-file", str(fault), "--drain-seconds", "10")
    try:
        _healthy(address, port)
        yield process, address, port, fault
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(5)


# --- the stand-in ---------------------------------------------------------------------------

def test_api_standin_health_requests_header_and_fault_file(api_standin):
    process, address, port, fault = api_standin
    status, headers, body = _get(address, port, "/health")
    assert (status, json.loads(body)) == (200, {"status": "ok", "backend": "api-7", "version": "2.3.4", "secrets": {}, "checks": {}})
    assert headers["x-ciel-backend"] == "api-7"

    status, headers, body = _get(address, port, "/v1/photos/42")
    assert status == 200 and "backend=api-7 version=2.3.4" in body.decode()
    assert headers["x-ciel-backend"] == "api-7"

    fault.touch()
    status, _, body = _get(address, port, "/health")
    assert status == 503 and json.loads(body)["status"] == "fault"
    assert _get(address, port, "/v1/photos/42")[0] == 200  # a sick health check, not a dead app
    fault.unlink()
    assert _get(address, port, "/health")[0] == 200


def test_api_standin_keeps_connections_alive(api_standin):
    _, address, port, _ = api_standin
    connection = http.client.HTTPConnection(address, port, timeout=5)
    try:
        ports = set()
        for _ in range(20):
            connection.request("GET", "/x")
            answer = connection.getresponse()
            assert answer.status == 200 and answer.read()
            ports.add(connection.sock.getsockname()[1])
        assert len(ports) == 1  # one connection carried all twenty
    finally:
        connection.close()


def test_sigterm_refuses_new_connections_finishes_the_request_in_flight_and_exits_0(api_standin):
    process, address, port, _ = api_standin
    idle = http.client.HTTPConnection(address, port, timeout=5)  # a keep-alive client that went quiet
    idle.request("GET", "/warm")
    idle.getresponse().read()
    slow: dict = {}

    def slow_request():
        started = time.monotonic()
        slow["answer"] = _get(address, port, "/upload?delay_ms=1000", timeout=10)
        slow["seconds"] = time.monotonic() - started

    client = threading.Thread(target=slow_request)
    client.start()
    time.sleep(0.3)  # the request is in the app's hands
    process.send_signal(signal.SIGTERM)
    _until(lambda: _refuses(address, port), 2, "new connections refused while draining")
    assert "answer" not in slow  # refused while the slow request is still being served
    client.join(10)
    status, headers, body = slow["answer"]
    assert status == 200 and b"backend=api-7" in body and headers["connection"] == "close"
    assert slow["seconds"] >= 1.0
    # The idle keep-alive connection did not hold the drain up: exit right after the request.
    assert process.wait(3) == 0
    output = process.stdout.read().decode()
    assert "draining" in output and "drained" in output
    idle.close()


def test_worker_takes_jobs_and_finishes_the_one_in_hand_on_sigterm(tmp_path):
    queue = tmp_path / "queue"
    queue.mkdir()
    for index in range(3):
        (queue / f"quick-{index}.job").write_text("")
    process = _standin("--mode", "worker", "--name", "worker-1", "--version", "2.3.4", "--queue-dir", str(queue))
    try:
        _until(lambda: len(list((queue / "done").glob("quick-*"))) == 3 if (queue / "done").exists() else False,
               5, "three 50 ms jobs done")
        assert (queue / "done" / "quick-0.job").read_text() == "backend=worker-1 version=2.3.4\n"

        (queue / "long.job").write_text(json.dumps({"seconds": 1.0}))
        _until(lambda: (queue / "claimed" / "long.job.worker-1").exists(), 5, "the long job claimed")
        process.send_signal(signal.SIGTERM)
        (queue / "later.job").write_text("")  # queued after the signal: left for another worker
        assert process.wait(5) == 0
        assert (queue / "done" / "long.job").exists()
        assert not list((queue / "claimed").iterdir())
        assert (queue / "later.job").exists()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(5)


# --- cloud-init as ciel renders it ----------------------------------------------------------

SECRETS = SecretSource(region=REGION, project_id=PROJECT, path="/ciel/dev", reader_key="lab-reader-key")


def _machine(role: str, tag: str, stop_timeout: int = 5) -> AppMachine:
    return AppMachine(role=role, environment="dev", registry_host="rg.fr-par.scw.cloud",
                      image=f"rg.fr-par.scw.cloud/ciel-dev/ciel:{tag}", settings={"S3_BUCKET": "media"},
                      secret_env={"DATABASE_URL": "database-url"}, secrets=SECRETS,
                      registry_password_secret="registry-pull-key", stop_timeout_seconds=stop_timeout)


def _secret(lab: Lab, name: str, value: str) -> None:
    _, secret = _call(lab, "POST", f"/secret-manager/v1beta1/regions/{REGION}/secrets",
                      {"name": name, "project_id": PROJECT, "path": SECRETS.path}, expect=200)
    _call(lab, "POST", f"/secret-manager/v1beta1/regions/{REGION}/secrets/{secret['id']}/versions",
          {"data": base64.b64encode(value.encode()).decode()}, expect=200)


def test_the_app_is_read_from_the_cloud_init_ciel_renders():
    api = parse_cloud_init(app_user_data(_machine("api", "1.4.2", stop_timeout=60)))
    assert (api.mode, api.tag, api.port, api.stop_timeout) == ("api", "1.4.2", 8080, 60)
    assert api.image == "rg.fr-par.scw.cloud/ciel-dev/ciel:1.4.2"
    worker = parse_cloud_init(app_user_data(_machine("worker", "1.4.3", stop_timeout=330)))
    assert (worker.mode, worker.tag, worker.stop_timeout) == ("worker", "1.4.3", 330)
    for not_an_app in (redis_user_data(password_secret="redis-password", secrets=SECRETS, maxmemory_mb=512), "", None,
                       "#!/bin/sh\necho hi\n"):
        with pytest.raises(NotAnApp):
            parse_cloud_init(not_an_app)


# --- the plane, driven by the Instance API ---------------------------------------------------

def _call(lab: Lab, method: str, path: str, body: object = None, expect: int | None = None):
    status, payload = lab.handle(method, path, {}, body)
    if expect is not None:
        assert status == expect, (method, path, status, payload)
    return status, payload


@pytest.fixture
def lab_with_apps(tmp_path):
    lab = register_all(Lab(Store()))
    runtime = Runtime(tmp_path / "runtime")
    logged: list[str] = []
    # The machines' ciel-secrets asks the lab's API, over HTTP, as it would ask Scaleway's.
    port = free_port()
    api = serve_api(lab, port)
    runtime.apps = AppPlane(runtime.supervisor, tmp_path / "runtime" / "apps", api_url=f"http://127.0.0.1:{port}",
                            log=logged.append)
    lab.runtime = runtime
    _secret(lab, "database-url", "postgres://ciel:lab@10.0.0.3:5432/ciel")
    _secret(lab, "registry-pull-key", "lab-password")
    try:
        yield lab, runtime.apps, logged
    finally:
        runtime.stop()
        api.shutdown()


def _network(lab: Lab) -> str:
    _, network = _call(lab, "POST", f"/vpc/v2/regions/{REGION}/private-networks",
                       {"name": "ciel-dev", "project_id": PROJECT, "subnets": ["10.0.0.0/24"]}, expect=200)
    return network["id"]


def _server(lab: Lab, network_id: str, name: str, user_data: str | None, *, nic_first: bool) -> tuple[str, str]:
    """A server as the provider makes it (created stopped, user data, power on, read until running,
    then its NIC holding a reserved IPAM address; `nic_first`: the NIC before powering on).
    Returns (server id, private address)."""
    address = _spare_private_address()
    v1 = f"/instance/v1/zones/{ZONE}"
    _, ip = _call(lab, "POST", f"/ipam/v1/regions/{REGION}/ips",
                  {"project_id": PROJECT, "source": {"private_network_id": network_id}, "address": address},
                  expect=200)
    image = _local_image(ZONE, "debian_bookworm")["id"]
    _, created = _call(lab, "POST", f"{v1}/servers", {"name": name, "commercial_type": "DEV1-S", "image": image,
                                                      "project": PROJECT, "dynamic_ip_required": False}, expect=201)
    server_id = created["server"]["id"]
    if user_data is not None:
        _call(lab, "PATCH", f"{v1}/servers/{server_id}/user_data/cloud-init", user_data, expect=204)

    def nic():
        _call(lab, "POST", f"/instance/v2alpha1/zones/{ZONE}/private-network-interfaces",
              {"server_id": server_id, "private_network_id": network_id, "ip_ids": [ip["id"]]}, expect=200)

    if nic_first:
        nic()
    _call(lab, "POST", f"{v1}/servers/{server_id}/action", {"action": "poweron"}, expect=202)
    assert _states(lab, server_id, "running") == ["starting", "running"]
    if not nic_first:
        nic()
    return server_id, address


def _states(lab: Lab, server_id: str, settled: str, seconds: float = 10) -> list[str]:
    """The states a waiter reads until `settled` (a pause between reads, as the provider's)."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, payload = _call(lab, "GET", f"/instance/v1/zones/{ZONE}/servers/{server_id}")
        seen.append("gone" if status == 404 else payload["server"]["state"])
        if seen[-1] == settled:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{server_id} not {settled} within {seconds} s: {seen}")


def test_a_running_api_server_serves_on_its_loopback_address_and_drains_on_poweroff(lab_with_apps):
    lab, apps, _ = lab_with_apps
    network_id = _network(lab)
    server_id, address = _server(lab, network_id, "ciel-dev-api-0", app_user_data(_machine("api", "2.3.4")),
                                 nic_first=False)
    bind = loopback_for(address)
    status, headers, body = _healthy(bind, 8080)
    assert status == 200 and json.loads(body)["backend"] == "ciel-dev-api-0"
    assert json.loads(body)["version"] == "2.3.4" and headers["x-ciel-backend"] == "ciel-dev-api-0"
    # Its machine's own ciel-secrets fetched the secrets before it started, from the lab's API.
    assert json.loads(body)["secrets"] == {"database-url": 1, "registry-pull-key": 1}
    env_file = Path(str(apps.machine_root(server_id)) + "/etc/ciel/app.env")
    assert "DATABASE_URL=postgres://ciel:lab@10.0.0.3:5432/ciel\n" in env_file.read_text()
    assert "S3_BUCKET=media\n" in env_file.read_text() and env_file.stat().st_mode & 0o777 == 0o600
    # Its dependencies, as /health reports them: the database's URL is set; no REDIS_URL here.
    assert json.loads(body)["checks"] == {"database": "ok", "redis": "failing: REDIS_URL is not set"}
    assert json.loads(body)["status"] == "degraded"
    apps.dependency_faults().mkdir(parents=True, exist_ok=True)
    (apps.dependency_faults() / "database").touch()
    status, _, body = _healthy(bind, 8080)
    assert status == 200 and json.loads(body)["checks"]["database"] == "failing: database unreachable (lab fault)"
    (apps.dependency_faults() / "database").unlink()
    first_pid = apps.process(server_id).pid

    # Reboot: drained, then a new process once running again.
    _call(lab, "POST", f"/instance/v1/zones/{ZONE}/servers/{server_id}/action", {"action": "reboot"}, expect=202)
    assert _states(lab, server_id, "running")[-1] == "running"
    assert json.loads(_healthy(bind, 8080)[2])["backend"] == "ciel-dev-api-0"
    assert apps.process(server_id).pid != first_pid

    # Poweroff while a request is in flight: the API answers at once, the request completes,
    # and the server reads stopped only once the stand-in has exited.
    process = apps.process(server_id)
    slow: dict = {}
    client = threading.Thread(target=lambda: slow.update(answer=_get(bind, 8080, "/feed?delay_ms=800", timeout=10)))
    client.start()
    time.sleep(0.2)
    started = time.monotonic()
    _call(lab, "POST", f"/instance/v1/zones/{ZONE}/servers/{server_id}/action", {"action": "poweroff"}, expect=202)
    assert time.monotonic() - started < 0.5
    states = _states(lab, server_id, "stopped")
    assert states.count("stopping") >= 2  # held in stopping while the request drained
    assert process.poll() == 0  # exited, cleanly, by the time the server reads stopped
    client.join(10)
    assert slow["answer"][0] == 200
    assert _refuses(bind, 8080)
    assert apps.process(server_id) is None
    _call(lab, "DELETE", f"/instance/v1/zones/{ZONE}/servers/{server_id}", expect=204)


def test_a_worker_server_takes_jobs_from_its_network_queue_and_goes_with_terminate(lab_with_apps):
    lab, apps, _ = lab_with_apps
    network_id = _network(lab)
    server_id, _ = _server(lab, network_id, "ciel-dev-worker-0", app_user_data(_machine("worker", "2.3.4")),
                           nic_first=True)
    process = _until(lambda: apps.process(server_id), 5, "the worker runs")
    queue = apps.queue_dir(network_id)
    _until(lambda: (queue / "done").exists(), 10, "the worker opened its queue")
    (queue / "resize-1.job").write_text("")
    _until(lambda: (queue / "done" / "resize-1.job").exists(), 10, "the job done")
    assert (queue / "done" / "resize-1.job").read_text() == "backend=ciel-dev-worker-0 version=2.3.4\n"

    _call(lab, "POST", f"/instance/v1/zones/{ZONE}/servers/{server_id}/action", {"action": "terminate"}, expect=202)
    assert _states(lab, server_id, "gone")[-1] == "gone"
    assert process.wait(10) == 0


def test_a_server_whose_user_data_runs_no_app_runs_nothing_and_says_why(lab_with_apps):
    lab, apps, logged = lab_with_apps
    network_id = _network(lab)
    server_id, _ = _server(lab, network_id, "ciel-dev-redis", redis_user_data(password_secret="redis-password", secrets=SECRETS, maxmemory_mb=512),
                           nic_first=True)
    assert apps.process(server_id) is None
    assert any("ciel-dev-redis" in line and "runs no stand-in" in line and "APP_MODE" in line for line in logged)


def test_without_a_runtime_the_api_behaves_as_before():
    lab = register_all(Lab(Store()))
    assert lab.runtime is None
    network_id = _network(lab)
    server_id, _ = _server(lab, network_id, "ciel-dev-api-0", app_user_data(_machine("api", "2.3.4")),
                           nic_first=False)
    _call(lab, "POST", f"/instance/v1/zones/{ZONE}/servers/{server_id}/action", {"action": "poweroff"}, expect=202)
    assert _states(lab, server_id, "stopped") == ["stopping", "stopped"]


def test_an_app_whose_secrets_cannot_be_fetched_does_not_start(lab_with_apps):
    lab, apps, logged = lab_with_apps
    network_id = _network(lab)
    machine = _machine("api", "2.3.4")
    missing = AppMachine(**{**vars(machine), "secret_env": {"DATABASE_URL": "no-such-secret"}})
    server_id, _ = _server(lab, network_id, "ciel-dev-api-0", app_user_data(missing), nic_first=True)
    deadline = time.monotonic() + 10
    while not any("ciel-secrets failed" in line for line in logged) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("no-such-secret: not found" in line for line in logged), logged
    assert any("ciel-secrets failed; the app does not start" in line for line in logged)
    assert apps.process(server_id) is None
