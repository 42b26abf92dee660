"""The managed data layer through the real provider against the lab, as `ciel synth`
declares it: PostgreSQL 16 on the private network (HA with a read replica in prod), its
database, users and privileges, and managed Redis with TLS (prod)."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest

from tests.conftest import synth_core
from tests.lab_support import apply_then_replan, engine, lab_json, running_lab

pytestmark = pytest.mark.engine

DATA_LAYER = ("scaleway_vpc", "scaleway_vpc_private_network", "scaleway_rdb_instance", "scaleway_rdb_database",
              "scaleway_rdb_user", "scaleway_rdb_privilege", "scaleway_rdb_read_replica", "scaleway_redis_cluster")


def data_layer(env: str) -> dict:
    """The data layer's resources of the synthesized core stack, with the random passwords they use."""
    stack = synth_core(env)["resource"]
    resources = {type_: stack[type_] for type_ in DATA_LAYER if type_ in stack}
    used = set(re.findall(r"random_password\.(\w+)\.", json.dumps(resources)))
    resources["random_password"] = {name: block for name, block in stack["random_password"].items() if name in used}
    return {"resource": resources}


def apply_replan_destroy(tmp_path, env: str) -> tuple[dict, dict]:
    """Apply the data layer of `env`, re-plan (must be empty) and destroy; returns the applied
    state's resources by type and what the lab still holds after the destroy."""
    directory = tmp_path / "tf"
    directory.mkdir()
    (directory / "data.tf.json").write_text(json.dumps(data_layer(env)))
    with running_lab(tmp_path / "work") as lab_env:
        applied, replan, output = apply_then_replan(directory, lab_env, "")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert replan == 0, output
        shown = json.loads(engine(directory, lab_env, "show", "-json").stdout)
        destroyed = engine(directory, lab_env, "destroy", "-auto-approve", "-input=false")
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
        left = {path: lab_json(lab_env, path)["total_count"] for path in (
            "/rdb/v1/regions/fr-par/instances", "/redis/v1/zones/fr-par-1/clusters", "/ipam/v1/regions/fr-par/ips")}
    state: dict[str, list[dict]] = {}
    for resource in shown["values"]["root_module"]["resources"]:
        state.setdefault(resource["type"], []).append(resource["values"])
    return state, left


def test_prod_postgresql_with_replica_and_managed_redis_apply_replan_empty_and_destroy(tmp_path):
    state, left = apply_replan_destroy(tmp_path, "prod")
    (instance,), (replica,), (cluster,) = (state["scaleway_rdb_instance"], state["scaleway_rdb_read_replica"],
                                            state["scaleway_redis_cluster"])
    assert instance["is_ha_cluster"] is True and instance["volume_type"] == "sbs_5k"
    subnet = ipaddress.ip_network(state["scaleway_vpc_private_network"][0]["ipv4_subnet"][0]["subnet"])
    addresses = [instance["private_network"][0]["ip"], replica["private_network"][0]["ip"],
                 cluster["private_network"][0]["ips"][0]]
    assert len(set(addresses)) == 3 and all(ipaddress.ip_address(a) in subnet for a in addresses), addresses
    assert instance["private_ip"][0]["address"] == addresses[0]  # booked in IPAM
    assert instance["load_balancer"] == [] and instance["endpoint_ip"] == ""  # no public endpoint
    assert cluster["public_network"] == [] and cluster["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert len(state["scaleway_rdb_privilege"]) == 2 and len(state["scaleway_rdb_user"]) == 2
    assert left == {"/rdb/v1/regions/fr-par/instances": 0, "/redis/v1/zones/fr-par-1/clusters": 0,
                    "/ipam/v1/regions/fr-par/ips": 0}


def test_dev_postgresql_applies_replans_empty_and_destroys(tmp_path):
    state, left = apply_replan_destroy(tmp_path, "dev")
    (instance,) = state["scaleway_rdb_instance"]
    assert instance["node_type"] == "DB-DEV-S" and instance["is_ha_cluster"] is False
    assert instance["settings"] == {"effective_cache_size": "768", "max_connections": "100", "work_mem": "4"}
    assert "scaleway_redis_cluster" not in state and "scaleway_rdb_read_replica" not in state
    assert set(left.values()) == {0}


def test_unknown_engine_setting_and_redis_version_are_refused_as_the_api_does(tmp_path):
    with running_lab(tmp_path / "work") as lab_env:
        applied, _, _ = apply_then_replan(tmp_path / "tf", lab_env, """
resource "scaleway_rdb_instance" "main" {
  name      = "refused"
  engine    = "PostgreSQL-16"
  node_type = "DB-DEV-S"
  settings  = { work_mem = "0" }
}
resource "scaleway_redis_cluster" "main" {
  name      = "refused"
  version   = "7.2.99"
  node_type = "RED1-MICRO"
  user_name = "ciel"
  password  = "Lab-passw0rd-1234"
}
""")
        engine(tmp_path / "tf", lab_env, "destroy", "-auto-approve", "-input=false")
    assert applied.returncode != 0
    assert "setting 'work_mem' must be an integer between 1 and 2097151" in applied.stderr
    assert "version '7.2.99' is not available" in applied.stderr
