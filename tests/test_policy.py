"""Policy checks on the synthesized configuration of every environment (and variants):
nothing public but the LB (and the gateway), private buckets, sensitive secrets, narrow IAM."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import build_core, of_type, synth_core

VARIANTS = [("dev", {}), ("staging", {}), ("prod", {}), ("dev", {"use_managed_redis": True}),
            ("prod", {"use_managed_redis": False, "enable_bastion": False}),
            ("dev", {"tier": "growth"}), ("staging", {"tier": "scale"}),
            ("prod", {"phase": 2}), ("dev", {"phase": 2, "traffic": "cluster"})]
IDS = [f"{env}{'+' + ','.join(o) if o else ''}" for env, o in VARIANTS]

# Attributes that hold secrets; an output referencing one must be sensitive.
SECRET_REFERENCE = re.compile(
    r"(random_password\.[^.}]+\.result|random_bytes\.|\.secret_key|\.password\b|connection_string|var\.paseto_)")

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_policy_table() -> dict[str, set[str]]:
    """principal suffix (media, registry-pull, ...) → permission sets, from the README's table."""
    text = README.read_text()
    table = text[text.index("<!-- iam-policies -->"):text.index("<!-- /iam-policies -->")]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`ciel-<env>-"):
            rows[cells[0].strip("`").removeprefix("ciel-<env>-")] = {name.strip() for name in cells[1].split(",")}
    return rows


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
                "api_url", "queue_url", "probe_queue_url", "cockpit_logs_url"):  # addresses, no credential in them
            assert output.get("sensitive") is True, name


def test_secret_inputs_are_sensitive_variables(stack):
    for name, variable in stack.get("variable", {}).items():
        if "key" in name or "token" in name or "password" in name:
            assert variable.get("sensitive") is True, name


def test_iam_policies_are_exactly_the_readme_table_each_on_this_project_only(stack):
    env = next(p["name"] for p in of_type(stack, "scaleway_iam_policy")).split("-")[1]
    synthesized = {}
    for policy in of_type(stack, "scaleway_iam_policy"):
        assert policy["name"].startswith(f"ciel-{env}-")
        assert len(policy["rule"]) == 1
        rule = policy["rule"][0]
        assert rule["project_ids"] == ["${var.project_id}"] and "organization_id" not in rule
        synthesized[policy["name"].removeprefix(f"ciel-{env}-")] = set(rule["permission_set_names"])
    assert synthesized == readme_policy_table()


def test_the_readme_table_check_fails_on_a_widened_policy():
    table = readme_policy_table()
    assert table["secrets-reader"] == {"SecretManagerSecretAccess"}
    widened = {**table, "secrets-reader": {"SecretManagerFullAccess"}}
    assert widened != table


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


# --- secrets stay out of what machines and manifests carry ----------------------------------

READER_KEY = re.compile(r"^\$\{scaleway_iam_api_key\.secret_reader_application_api_key_[0-9A-F]{8}\.secret_key\}$")


def secret_references(text: str) -> list[str]:
    """Interpolations in `text` that carry a secret value, except the secret reader's key:
    the one credential a machine's user data may hold (infra/cloudinit/secrets.py)."""
    found = re.findall(r"\$\{[^}]*\}", text)
    return [ref for ref in found if SECRET_REFERENCE.search(ref) and not READER_KEY.match(ref)
            or re.search(r"\.(result|base64|hex|token|kubeconfig)\b", ref)
            and not READER_KEY.match(ref)]


def test_no_user_data_carries_a_secret_but_the_reader_key(stack):
    servers = of_type(stack, "scaleway_instance_server")
    for server in servers:
        text = server["user_data"]["cloud-init"]
        assert secret_references(text) == [], server["name"]
        readers = [ref for ref in re.findall(r"\$\{[^}]*\}", text) if READER_KEY.match(ref)]
        assert len(set(readers)) == 1, server["name"]  # exactly the one credential


def test_the_user_data_check_fails_when_a_secret_is_put_back():
    for leaked in ("DATABASE_URL=postgres://ciel:${random_password.database_app_password_692D6325.result}@db",
                   "PASETO_ACCESS_KEY=${coalesce(var.paseto_access_key, random_bytes.secrets_paseto_access_bytes_6F.base64)}",
                   "AWS_SECRET_ACCESS_KEY=${scaleway_iam_api_key.storage_app_credentials_api_key_CA95CA39.secret_key}",
                   "requirepass ${random_password.cache_password_FE0FAB6E.result}"):
        assert secret_references(leaked), leaked
    assert not secret_references("${scaleway_iam_api_key.secret_reader_application_api_key_E57AB35D.secret_key}")


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_rendered_manifests_never_hold_a_secret_value_even_when_given_them(env, tmp_path):
    from infra.config import load_environment
    from k8s.render import render

    known = {"database_url": "postgres://ciel:KNOWN-DB-PASSWORD@10.0.0.9/ciel",
             "paseto_access_key_value": "KNOWN-PASETO-ACCESS", "paseto_refresh_key_value": "KNOWN-PASETO-REFRESH",
             "media_secret_key": "KNOWN-MEDIA-SECRET", "queue_secret_key": "KNOWN-QUEUE-SECRET",
             "registry_pull_secret_key": "KNOWN-PULL-SECRET", "kube_token": "KNOWN-KUBE-TOKEN",
             "media_bucket": "ciel-media", "registry_endpoint": "rg.fr-par.scw.cloud/ciel"}
    written = render(load_environment(env), tmp_path, outputs=known)
    text = "".join(path.read_text() for path in written)
    assert written and "ciel-media" in text  # the outputs were read
    assert not [value for value in known.values() if value.startswith("KNOWN") and value in text]
    for path in written:
        document = yaml.safe_load(path.read_text())
        if document["kind"] == "Secret":
            assert not document.get("data") and not document.get("stringData"), path.name


def test_tls_on_every_public_frontend_where_https_is_on(stack):
    if not of_type(stack, "scaleway_lb_certificate"):
        return  # no domain: dev serves HTTP on the LB only (a documented choice)
    for frontend in of_type(stack, "scaleway_lb_frontend"):
        if frontend["inbound_port"] == 443:
            assert frontend["certificate_ids"], frontend["name"]
        else:  # plain HTTP only to send clients to HTTPS
            assert [acl["action"]["type"] for acl in frontend["acl"]] == ["redirect"], frontend["name"]
            assert frontend["acl"][0]["action"]["redirect"][0]["target"] == "https"


def test_every_bucket_policy_names_the_deploying_principal(stack):
    """A bucket policy locks out every principal it does not name: Terraform's own included."""
    names_deployer = re.compile(r'"Principal" = \{"SCW" = (\[[^\]]*)?(\$\{)?var\.deployer_principal\b')
    for policy in of_type(stack, "scaleway_object_bucket_policy"):
        assert names_deployer.search(policy["policy"]), policy["policy"]
    if of_type(stack, "scaleway_object_bucket_policy"):
        assert "deployer_principal" in stack["variable"]
