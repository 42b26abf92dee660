"""Policy checks on the synthesized configuration of every environment (and variants):
nothing public but the LB (and the gateway), private buckets, sensitive secrets, narrow IAM."""

from __future__ import annotations

import re

import pytest

from tests.conftest import build_core, of_type, synth_core

VARIANTS = [("dev", {}), ("staging", {}), ("prod", {}), ("dev", {"use_managed_redis": True}),
            ("prod", {"use_managed_redis": False, "enable_bastion": False})]
IDS = [f"{env}{'+' + ','.join(o) if o else ''}" for env, o in VARIANTS]

# Attributes that hold secrets; an output referencing one must be sensitive.
SECRET_REFERENCE = re.compile(
    r"(random_password\.[^.}]+\.result|random_bytes\.|\.secret_key|\.password\b|connection_string|var\.paseto_)")

ALLOWED_PERMISSION_SETS = {
    "media": {"ObjectStorageObjectsRead", "ObjectStorageObjectsWrite", "ObjectStorageObjectsDelete"},
    "registry-pull": {"ContainerRegistryReadOnly"},
}


@pytest.fixture(params=VARIANTS, ids=IDS)
def stack(request):
    env, overrides = request.param
    return synth_core(env, **overrides)


def test_database_has_no_public_endpoint(stack):
    for instance in of_type(stack, "scaleway_rdb_instance"):
        assert "load_balancer" not in instance and "private_network" in instance
    for replica in of_type(stack, "scaleway_rdb_read_replica"):
        assert "direct_access" not in replica and "private_network" in replica


def test_redis_has_no_public_endpoint(stack):
    for cluster in of_type(stack, "scaleway_redis_cluster"):
        assert "public_network" not in cluster and cluster["tls_enabled"] is True


def test_no_instance_has_a_public_ip(stack):
    for server in of_type(stack, "scaleway_instance_server"):
        assert server.get("enable_dynamic_ip") is False
        assert "ip_id" not in server and "ip_ids" not in server


def test_security_groups_drop_inbound_by_default_and_open_only_to_the_private_network(stack):
    cidr = of_type(stack, "scaleway_vpc_private_network")[0]["ipv4_subnet"]["subnet"]
    for group in of_type(stack, "scaleway_instance_security_group"):
        assert group["inbound_default_policy"] == "drop"
        assert all(rule["ip_range"] == cidr for rule in group.get("inbound_rule", []))


def test_only_the_load_balancer_and_the_gateway_get_public_addresses(stack):
    public_address_types = {"scaleway_lb_ip", "scaleway_vpc_public_gateway_ip", "scaleway_instance_ip"}
    present = {t for t in stack["resource"] if t in public_address_types}
    assert present <= {"scaleway_lb_ip", "scaleway_vpc_public_gateway_ip"}


def test_buckets_are_private(stack):
    buckets = of_type(stack, "scaleway_object_bucket")
    acls = of_type(stack, "scaleway_object_bucket_acl")
    assert len(acls) == len(buckets) and all(acl["acl"] == "private" for acl in acls)
    assert all("acl" not in bucket for bucket in buckets)  # the deprecated argument


@pytest.mark.parametrize("env", ["prod", "staging"])
def test_anonymous_access_is_read_only_and_limited_to_the_cdn_prefix(env):
    document = build_core(env).storage.policy_document
    if document is None:
        assert not synth_core(env).get("resource", {}).get("scaleway_object_bucket_policy")
        return
    for statement in document["Statement"]:
        if statement["Principal"] == "*":
            assert statement["Action"] == ["s3:GetObject"]
            assert all(resource.endswith("/public/*") for resource in statement["Resource"])


def test_every_secret_bearing_output_is_sensitive(stack):
    for name, output in stack["output"].items():
        if SECRET_REFERENCE.search(str(output["value"])) or name.endswith(("_url", "_key", "_token")) and name not in (
                "api_url", "queue_url"):
            assert output.get("sensitive") is True, name


def test_secret_inputs_are_sensitive_variables(stack):
    for name, variable in stack.get("variable", {}).items():
        if "key" in name or "token" in name or "password" in name:
            assert variable.get("sensitive") is True, name


def test_iam_policies_name_only_the_permission_sets_they_need_on_this_project(stack):
    policies = of_type(stack, "scaleway_iam_policy")
    assert policies
    for policy in policies:
        purpose = next(key for key in ALLOWED_PERMISSION_SETS if policy["name"].endswith(key))
        for rule in policy["rule"]:
            assert set(rule["permission_set_names"]) <= ALLOWED_PERMISSION_SETS[purpose]
            assert rule["project_ids"] == ["${var.project_id}"] and "organization_id" not in rule


def test_everything_taggable_carries_app_environment_and_layer(stack):
    for type_, resources in stack["resource"].items():
        for resource in resources.values():
            tags = resource.get("tags")
            if isinstance(tags, list):
                assert "app=ciel" in tags and any(t.startswith("environment=") for t in tags), type_
                assert any(t.startswith("layer=") for t in tags), type_
            elif isinstance(tags, dict):
                assert {"app", "environment", "layer"} <= set(tags), type_


def test_no_deprecated_resource_or_argument_is_used(stack):
    resources = stack["resource"]
    assert not {"scaleway_cockpit", "scaleway_cockpit_grafana_user", "scaleway_vpc_public_gateway_dhcp"} & set(resources)
    for lb in of_type(stack, "scaleway_lb"):
        assert "ip_id" not in lb
    for backend in of_type(stack, "scaleway_lb_backend"):
        assert "send_proxy_v2" not in backend
    for link in of_type(stack, "scaleway_vpc_gateway_network"):
        assert not {"enable_dhcp", "dhcp_id", "static_address"} & set(link)
