"""Cache construct: self-managed Redis on a private-only instance, or managed Redis with TLS."""

from __future__ import annotations

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


def test_cloud_init_installs_redis_with_password_and_persistence():
    user_data = redis_servers(synth_core("dev"))[0]["user_data"]["cloud-init"]
    assert user_data.startswith("#cloud-config")
    for line in ("redis-server", "requirepass ${random_password.", "appendonly yes", "maxmemory 1536mb"):
        assert line in user_data


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
