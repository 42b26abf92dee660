"""Compute construct (phase 1): API and worker instances, their cloud-init, the LB backend."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from infra.cloudinit.secrets import fetch_secrets_script
from infra.contract import SECRET_ENV
from tests.conftest import of_type, one, synth_core


def servers(stack, role: str) -> list[dict]:
    return [s for s in of_type(stack, "scaleway_instance_server") if f"role={role}" in s.get("tags", [])]


def user_data(stack, role: str) -> str:
    return servers(stack, role)[0]["user_data"]["cloud-init"]


def test_dev_runs_one_api_and_one_worker_on_dev1_s_and_staging_two_of_each():
    dev, staging = synth_core("dev"), synth_core("staging")
    assert [s["type"] for s in servers(dev, "api")] == ["DEV1-S"]
    assert [s["type"] for s in servers(dev, "worker")] == ["DEV1-S"]
    assert [s["type"] for s in servers(staging, "api")] == ["DEV1-M", "DEV1-M"]
    assert len(servers(staging, "worker")) == 2


def test_instances_are_debian_private_only_and_the_api_is_spread_by_a_placement_group():
    stack = synth_core("staging")
    for server in servers(stack, "api") + servers(stack, "worker"):
        assert server["image"] == "debian_bookworm" and server["enable_dynamic_ip"] is False
        assert "ip_id" not in server and "ip_ids" not in server
    assert all("scaleway_instance_placement_group" in s["placement_group_id"] for s in servers(stack, "api"))
    assert all("placement_group_id" not in s for s in servers(stack, "worker"))
    assert one(stack, "scaleway_instance_placement_group")["policy_type"] == "max_availability"


def _group(stack, role):
    return [g for g in of_type(stack, "scaleway_instance_security_group") if g["name"].endswith(f"-{role}")][0]


def test_api_accepts_8080_from_the_private_network_only_and_workers_accept_nothing():
    dev = synth_core("dev")
    assert _group(dev, "api")["inbound_default_policy"] == "drop"
    assert _group(dev, "api")["inbound_rule"] == [
        {"action": "accept", "protocol": "TCP", "port": 8080, "ip_range": "10.0.0.0/24"}]
    assert _group(dev, "worker")["inbound_default_policy"] == "drop" and "inbound_rule" not in _group(dev, "worker")


def test_with_the_bastion_ssh_is_open_from_the_private_network_only():
    staging = synth_core("staging")  # growth tier: bastion on
    assert {r["port"] for r in _group(staging, "worker")["inbound_rule"]} == {22}
    assert {r["port"] for r in _group(staging, "api")["inbound_rule"]} == {8080, 22}
    assert all(r["ip_range"] == "10.1.0.0/24" for r in _group(staging, "api")["inbound_rule"])


def test_lb_backend_lists_the_api_reserved_addresses_not_list_positions():
    stack = synth_core("staging")
    backend = one(stack, "scaleway_lb_backend")
    addresses = {f"${{scaleway_ipam_ip.{name}.address}}" for name in stack["resource"]["scaleway_ipam_ip"]
                 if name.startswith("compute_api_")}
    assert len(addresses) == 2 and set(backend["server_ips"]) == addresses
    nics = [n for n in of_type(stack, "scaleway_instance_private_nic") if "compute_api_" in n["server_id"]]
    assert {n["ipam_ip_ids"][0].replace(".id}", ".address}") for n in nics} == addresses


def test_a_changed_boot_config_replaces_the_machine():
    stack = synth_core("dev")
    for server in servers(stack, "api") + servers(stack, "worker"):
        (trigger,) = server["lifecycle"]["replace_triggered_by"]
        assert trigger.startswith("terraform_data.") and "${" not in trigger
        data = stack["resource"]["terraform_data"][trigger.split(".")[1]]
        assert data["input"]["cloud_init"] == server["user_data"]["cloud-init"]


def written_file(cloud_init: str, path: str) -> dict:
    return next(entry for entry in yaml.safe_load(cloud_init)["write_files"] if entry["path"] == path)


def secrets_config(cloud_init: str) -> dict:
    return json.loads(written_file(cloud_init, "/etc/ciel/secrets.json")["content"])


def test_cloud_init_runs_the_image_with_the_contract_and_a_graceful_stop():
    stack = synth_core("dev")
    api, worker = user_data(stack, "api"), user_data(stack, "worker")
    for text in (api, worker):
        assert "docker.io" in text and "docker login rg.fr-par.scw.cloud -u nologin --password-stdin" in text
        assert "/ciel:latest" in text and "--env-file /etc/ciel/app.env" in text
        assert "Restart=on-failure" in text
        config = secrets_config(text)
        assert config["env_file"] == "/etc/ciel/app.env" and config["path"] == "/ciel/dev"
        assert {"S3_BUCKET", "QUEUE_NAME"} <= set(config["settings"]) and config["settings"]["QUEUE_NAME"] == "ciel-media-jobs"
        assert config["env_secrets"] == SECRET_ENV  # every secret variable of the contract, by name
    assert secrets_config(api)["settings"]["APP_MODE"] == "api" and "-p 8080:8080" in api
    assert secrets_config(api)["settings"]["HTTP_ADDR"] == "0.0.0.0:8080"
    assert secrets_config(worker)["settings"]["APP_MODE"] == "worker" and "-p 8080" not in worker
    # The worker may finish a job inside the visibility timeout after a long poll: 300 + 10.
    assert "--stop-timeout 310" in worker and "TimeoutStopSec=340" in worker
    assert "--stop-timeout 60" in api


def test_the_user_data_carries_only_the_reader_key_and_every_start_fetches_the_secrets():
    text = user_data(synth_core("dev"), "api")
    key = written_file(text, "/etc/ciel/secrets-reader-key")
    assert key["permissions"] == "0600" and key["owner"] == "root:root"
    assert key["content"].strip() == "${scaleway_iam_api_key.secret_reader_application_api_key_E57AB35D.secret_key}"
    assert "secret_key" not in written_file(text, "/etc/ciel/secrets.json")["content"]
    assert written_file(text, "/usr/local/sbin/ciel-secrets")["content"] == fetch_secrets_script()
    unit = written_file(text, "/etc/systemd/system/ciel.service")["content"].splitlines()
    # The secrets are fetched before the registry login and the container's start, at every start.
    order = [next(i for i, line in enumerate(unit) if line.startswith(prefix)) for prefix in (
        "ExecStartPre=/usr/local/sbin/ciel-secrets", "ExecStartPre=/bin/sh -c 'docker login", "ExecStart=")]
    assert order == sorted(order)
    assert "ExecReload=/usr/local/sbin/ciel-secrets --restart-if-changed" in unit


def test_logs_are_shipped_to_cockpit_unless_disabled():
    assert "loki.write" in user_data(synth_core("dev"), "api") and "X-Token" in user_data(synth_core("dev"), "api")
    assert "alloy" not in user_data(synth_core("dev", ship_logs_to_cockpit=False), "api")


ROLES = ("api", "worker", "redis")


def _user_data_by_role(stack) -> dict[str, str]:
    found = {role: user_data(stack, role) for role in ("api", "worker")}
    found["redis"] = [s for s in of_type(stack, "scaleway_instance_server") if s["name"].endswith("-redis")][0][
        "user_data"]["cloud-init"]
    return found


@pytest.mark.parametrize(("change", "must_change"), [
    ({"image_tag": "1.4.2"}, {"api", "worker"}),
    ({"visibility_timeout": 600}, {"worker"}),
    ({"api_stop_timeout_seconds": 90}, {"api"}),
    ({"cors_allowed_origins": ["https://other.example.com"]}, set()),
    ({"redis_instance_type": "DEV1-M"}, {"redis"}),
])
def test_a_change_alters_exactly_the_user_data_that_must_change(change, must_change):
    before, after = _user_data_by_role(synth_core("dev")), _user_data_by_role(synth_core("dev", **change))
    assert {role for role in ROLES if before[role] != after[role]} == must_change


def test_image_tag_change_touches_only_the_image_references():
    before, after = user_data(synth_core("dev"), "api"), user_data(synth_core("dev", image_tag="1.4.2"), "api")
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert changed and all(a.replace(":latest", ":1.4.2") == b for a, b in changed)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_rendered_cloud_init_passes_cloud_inits_own_schema_validator(env, tmp_path):
    validator = shutil.which("cloud-init")
    assert validator, "cloud-init is not installed: ./setup.sh --all-engines --test-tools installs it"
    stack = synth_core(env)
    documents = {s["name"]: s["user_data"]["cloud-init"] for s in of_type(stack, "scaleway_instance_server")}
    assert documents
    for name, document in documents.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(document)
        result = subprocess.run([validator, "schema", "--config-file", str(path)], capture_output=True, text=True)
        assert result.returncode == 0 and "Valid cloud-config" in result.stdout, (name, result.stdout, result.stderr)


def test_the_schema_validator_rejects_a_broken_document(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("#cloud-config\npackages: docker.io\nwrite_files: yes\n")
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert result.returncode != 0
