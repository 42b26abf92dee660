"""The local Scaleway: its lifecycle as a user meets it, and the real provider applying
against it."""

from __future__ import annotations

import pytest

from tests.conftest import run_ciel
from tests.lab_support import apply_then_replan, free_port, running_lab

pytestmark = pytest.mark.engine


def test_the_provider_applies_a_vpc_and_a_private_network_and_the_replan_is_empty(tmp_path):
    with running_lab(tmp_path / "work") as lab_env:
        applied, replan, output = apply_then_replan(tmp_path / "tf", lab_env, """
resource "scaleway_vpc" "main" {
  name = "lab-vpc"
  tags = ["app=ciel"]
}
resource "scaleway_vpc_private_network" "main" {
  name   = "lab-pn"
  vpc_id = scaleway_vpc.main.id
  tags   = ["app=ciel"]
  ipv4_subnet { subnet = "10.0.0.0/24" }
}
""")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "2 added" in applied.stdout
    assert replan == 0, output


def test_lab_up_twice_is_harmless_down_leaves_no_port_and_a_taken_port_is_a_clear_error(tmp_path):
    import socket

    ports = [str(free_port()) for _ in range(3)]
    args = ["--api-port", ports[0], "--s3-port", ports[1], "--proxy-port", ports[2]]
    env = {"CIEL_WORK_DIR": str(tmp_path)}
    try:
        first = run_ciel("lab", "up", *args, env=env)
        assert first.returncode == 0 and "lab started" in first.stderr, first.stderr
        second = run_ciel("lab", "up", *args, env=env)
        assert second.returncode == 0 and "already running" in second.stderr
        exports = run_ciel("lab", "env", env=env).stdout
        assert f"export SCW_API_URL=http://127.0.0.1:{ports[0]}" in exports
    finally:
        down = run_ciel("lab", "down", env=env)
    assert down.returncode == 0 and "lab stopped" in down.stderr
    for port in ports:  # nothing listens any more
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", int(port)), timeout=2):
            pass
    with socket.socket() as holder:  # another program listening on the API port
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the lab's TIME_WAIT connections
        holder.bind(("127.0.0.1", int(ports[0])))
        holder.listen()
        taken = run_ciel("lab", "up", *args, env=env)
    assert taken.returncode == 2 and f"api {ports[0]}" in taken.stderr and "already in use" in taken.stderr
    assert "Traceback" not in taken.stderr
