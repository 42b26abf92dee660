"""Cache construct: self-managed Redis on a private-only instance, or managed Redis with TLS."""

from __future__ import annotations

import json

import yaml

from tests.conftest import of_type, one, synth_core


def redis_servers(stack) -> list[dict]:
    return [s for s in of_type(stack, "scaleway_instance_server") if s["name"].endswith("-redis")]


def test_self_managed_redis_is_a_private_instance_with_a_reserved_address():
    stack = synth_core("dev")
    (server,) = redis_servers(stack)
    assert server["enable_dynamic_ip"] is False and "ip_id" not in server and "ip_ids" not in server
    assert server["image"] == "debian_bookworm" and server["type"] == "DEV1-S"
    nic = [n for n in of_type(stack, "scaleway_instance_private_nic") if "cache_server" in n["server_id"]][0]
    assert "scaleway_ipam_ip.cache_address" in nic["ipam_ip_ids"][0]
    assert of_type(stack, "scaleway_redis_cluster") == []


def test_self_managed_redis_accepts_only_redis_from_the_private_network():
    group = [g for g in of_type(synth_core("dev"), "scaleway_instance_security_group") if g["name"].endswith("-redis")][0]
    assert group["inbound_default_policy"] == "drop"
    assert group["inbound_rule"] == [{"action": "accept", "protocol": "TCP", "port": 6379, "ip_range": "10.0.0.0/24"}]


def test_cloud_init_installs_redis_with_persistence_and_reads_its_password_from_secret_manager():
    user_data = redis_servers(synth_core("dev"))[0]["user_data"]["cloud-init"]
    assert user_data.startswith("#cloud-config")
    for line in ("redis-server", "include /etc/redis/ciel-auth.conf", "appendonly yes", "maxmemory 1536mb",
                 "ExecStartPre=+/usr/local/sbin/ciel-secrets"):
        assert line in user_data
    assert "random_password" not in user_data  # the password itself never travels in user data
    config = json.loads(next(entry["content"] for entry in yaml.safe_load(user_data)["write_files"]
                             if entry["path"] == "/etc/ciel/secrets.json"))
    assert config["files"] == [{"path": "/etc/redis/ciel-auth.conf", "secret": "redis-password", "mode": "0640",
                                "group": "redis", "prefix": "requirepass "}]


def test_managed_redis_is_private_with_tls():
    stack = synth_core("prod")
    cluster = one(stack, "scaleway_redis_cluster")
    assert cluster["tls_enabled"] is True and cluster["node_type"] == "RED1-S"
    assert cluster["version"].startswith("7.")
    assert "public_network" not in cluster and "acl" not in cluster
    assert "scaleway_vpc_private_network" in cluster["private_network"][0]["id"]
    assert redis_servers(stack) == []
    assert synth_core("prod")["output"]["redis_url"]["value"].startswith("rediss://")


def test_redis_url_is_sensitive_either_way():
    for env in ("dev", "prod"):
        assert synth_core(env)["output"]["redis_url"]["sensitive"] is True


def _app_settings(stack) -> dict[str, str]:
    """The plain settings an API instance writes into its environment file."""
    server = next(s for s in of_type(stack, "scaleway_instance_server") if s["name"].endswith("-api-0"))
    files = yaml.safe_load(server["user_data"]["cloud-init"])["write_files"]
    return json.loads(next(f["content"] for f in files if f["path"] == "/etc/ciel/secrets.json"))["settings"]


def test_the_managed_redis_tls_ca_reaches_the_app_as_a_plain_setting():
    """The app verifies the managed Redis (rediss://) against the cluster's own CA."""
    from infra.contract import app_contract
    from k8s.render import gitops_inputs
    from k8s.workloads import build
    from tests.conftest import config_for

    stack = synth_core("prod")
    (cluster_name,) = stack["resource"]["scaleway_redis_cluster"]
    expected = f"${{base64encode(scaleway_redis_cluster.{cluster_name}.certificate)}}"
    assert stack["output"]["redis_url"]["value"].startswith("rediss://")
    # Phase 1: the instances' environment, next to the other plain settings (not a secret: a CA is public).
    assert _app_settings(stack)["REDIS_CA_CERT_B64"] == expected
    output = stack["output"]["redis_ca_cert_b64"]
    assert output["value"] == expected and output["sensitive"] is False
    # Phase 2: the ConfigMap, from that core output.
    config = config_for("prod")
    objects = build(config, gitops_inputs(config, {"redis_ca_cert_b64": "Q0EtUEVN"}))
    config_map = next(m for m in objects if m["kind"] == "ConfigMap")
    assert config_map["data"]["REDIS_CA_CERT_B64"] == "Q0EtUEVN"
    (entry,) = [e for e in app_contract(config) if e.name == "REDIS_CA_CERT_B64"]
    assert not entry.secret and "redis_ca_cert_b64" in entry.source


def test_the_self_managed_redis_has_no_tls_so_an_empty_ca_everywhere():
    from infra.contract import app_contract
    from k8s.render import gitops_inputs
    from k8s.workloads import build
    from tests.conftest import config_for, run_ciel

    stack = synth_core("dev")
    assert stack["output"]["redis_url"]["value"].startswith("redis://")
    assert _app_settings(stack)["REDIS_CA_CERT_B64"] == ""
    assert stack["output"]["redis_ca_cert_b64"]["value"] == ""
    config = config_for("dev")
    # Even with an output at hand (a former managed Redis): no TLS, no CA.
    objects = build(config, gitops_inputs(config, {"redis_ca_cert_b64": "Q0EtUEVN"}))
    assert next(m for m in objects if m["kind"] == "ConfigMap")["data"]["REDIS_CA_CERT_B64"] == ""
    (entry,) = [e for e in app_contract(config) if e.name == "REDIS_CA_CERT_B64"]
    assert not entry.secret and entry.value == "" and "plain redis://" in entry.source
    listed = run_ciel("env", "--env", "dev")
    assert listed.returncode == 0 and "REDIS_CA_CERT_B64" in listed.stdout
