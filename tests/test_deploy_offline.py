"""The whole deploy path with the real engine and the real Scaleway provider, offline.

These tests run terraform/tofu and the provider binaries from the local mirror; when the
toolchain is missing they fail (ToolchainError: run ./setup.sh), they never skip.
"""

from __future__ import annotations

import json

import pytest

from ciel import deploy
from foundation.errors import UsageError
from toolchain import mirror
from toolchain.pins import SCALEWAY
from infra.state import offline_state_file
from tests.conftest import run_ciel

pytestmark = pytest.mark.engine

_OUTCOMES: dict[str, deploy.DeployOutcome] = {}


def offline_plan(env: str) -> deploy.DeployOutcome:
    """One real offline deploy per environment, shared by the tests below."""
    if env not in _OUTCOMES:
        _OUTCOMES[env] = deploy.deploy_phase1(env)
    return _OUTCOMES[env]


def planned(outcome, type_: str) -> list[dict]:
    return [rc["change"]["after"] for rc in outcome.plan.raw["resource_changes"] if rc["type"] == type_]


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_offline_plan_of_every_environment_creates_every_shared_layer(env):
    outcome = offline_plan(env)
    assert not outcome.credentials.live and not outcome.applied
    types = {change.type for change in outcome.plan.changes}
    for layer_type in ("scaleway_vpc_private_network", "scaleway_vpc_public_gateway", "scaleway_lb", "scaleway_lb_backend",
                       "scaleway_registry_namespace", "scaleway_rdb_instance", "scaleway_object_bucket",
                       "scaleway_mnq_sqs_queue", "scaleway_secret", "scaleway_cockpit_source", "scaleway_iam_policy"):
        assert layer_type in types, layer_type
    assert outcome.plan.count("create") == len(outcome.plan.changes) and not outcome.plan.destroys
    assert not offline_state_file(env, outcome.stack).exists()  # an offline plan writes no state


def test_each_plan_reflects_its_tier():
    dev, staging, prod = (offline_plan(env) for env in ("dev", "staging", "prod"))
    assert [db["is_ha_cluster"] for db in planned(dev, "scaleway_rdb_instance")] == [False]
    assert planned(dev, "scaleway_rdb_read_replica") == [] and planned(dev, "scaleway_redis_cluster") == []
    assert sorted(s["name"] for s in planned(dev, "scaleway_instance_server")) == [
        "ciel-dev-api-0", "ciel-dev-redis", "ciel-dev-worker-0"]
    # growth, as the plan's table: a production database with HA, managed Redis, a general-purpose LB
    assert [(db["node_type"], db["is_ha_cluster"]) for db in planned(staging, "scaleway_rdb_instance")] == [
        ("DB-PRO2-XXS", True)]
    assert [r["node_type"] for r in planned(staging, "scaleway_redis_cluster")] == ["RED1-MICRO"]
    assert [lb["type"] for lb in planned(staging, "scaleway_lb")] == ["LB-GP-M"]
    assert [db["is_ha_cluster"] for db in planned(prod, "scaleway_rdb_instance")] == [True]
    assert len(planned(prod, "scaleway_rdb_read_replica")) == 1
    assert [r["node_type"] for r in planned(prod, "scaleway_redis_cluster")] == ["RED1-S"]
    assert [lb["type"] for lb in planned(prod, "scaleway_lb")] == ["LB-GP-M"]
    assert all(len(planned(plan, "scaleway_edge_services_pipeline")) == 1 for plan in (dev, staging, prod))


def test_secret_outputs_are_sensitive_in_the_engine_plan():
    outputs = offline_plan("prod").plan.raw["planned_values"]["outputs"]
    for name in ("database_url", "redis_url", "media_secret_key", "queue_secret_key", "cockpit_push_token"):
        assert outputs[name]["sensitive"] is True, name
    assert outputs["s3_endpoint"]["sensitive"] is False
    assert outputs["s3_endpoint"]["value"] == "https://s3.fr-par.scw.cloud"


@pytest.mark.parametrize("engine_name", ["terraform", "tofu"])
def test_both_engines_plan_with_the_provider_from_the_local_mirror(engine_name):
    outcome = deploy.deploy_phase1("dev", engine_choice=engine_name)
    raw = outcome.plan.raw
    assert raw["configuration"]["provider_config"]["scaleway"]["full_name"].endswith("/scaleway/scaleway")
    # The engine installed exactly the binary that setup built into the mirror.
    host = "registry.opentofu.org" if engine_name == "tofu" else "registry.terraform.io"
    installed = (outcome.plan.plan_file.parent / ".terraform" / "providers" / host / "scaleway" / "scaleway"
                 / SCALEWAY.version / mirror.target_platform() / f"terraform-provider-scaleway_v{SCALEWAY.version}")
    assert installed.resolve().read_bytes()[:4] == b"\x7fELF"
    assert installed.resolve().stat().st_size == mirror.mirrored_binary(SCALEWAY).stat().st_size
    assert outcome.plan.count("create") == len(offline_plan("dev").plan.changes)


def test_readme_main_command_prints_the_offline_plan_and_says_nothing_was_applied():
    result = run_ciel("deploy", "phase1", "--env", "dev")
    assert result.returncode == 0, result.stderr
    for address in ("scaleway_vpc.networking_vpc", "scaleway_rdb_instance.database_instance", "scaleway_lb.edge_lb"):
        assert address in result.stdout
    assert "to add, 0 to change, 0 to destroy" in result.stdout
    assert "OFFLINE: nothing was applied" in result.stdout
    assert "plan (offline)" in result.stderr


def test_dev_phase1_plan_runs_one_api_one_worker_and_redis_with_only_the_lb_public():
    dev = offline_plan("dev")
    servers = {s["name"]: s for s in planned(dev, "scaleway_instance_server")}
    assert set(servers) == {"ciel-dev-api-0", "ciel-dev-worker-0", "ciel-dev-redis"}
    assert all(s["enable_dynamic_ip"] is False for s in servers.values())
    types = {change.type for change in dev.plan.changes}
    assert "scaleway_instance_ip" not in types
    public = types & {"scaleway_lb_ip", "scaleway_vpc_public_gateway_ip", "scaleway_instance_ip"}
    assert public == {"scaleway_lb_ip", "scaleway_vpc_public_gateway_ip"}  # the gateway: egress (+bastion when on)
    (backend,) = planned(dev, "scaleway_lb_backend")
    assert backend["forward_port"] == 8080 and backend["health_check_http"][0]["uri"] == "/health"
    unknown = [rc["change"]["after_unknown"] for rc in dev.plan.raw["resource_changes"] if rc["type"] == "scaleway_lb_backend"]
    assert unknown[0]["server_ips"] is True  # the API addresses, known once IPAM reserves them


def test_an_environment_in_phase_2_is_planned_but_not_deployed_without_force(environments_dir):
    (environments_dir / "qa.yaml").write_text('phase: 2\nprivate_network_cidr: 10.9.0.0/24\nimage_tag: "1.0.0"\n')
    with pytest.raises(UsageError, match="qa is in phase 2.*--force-phase1"):
        deploy.deploy_phase1("qa")
    assert deploy.deploy_phase1("qa", force_phase1=True).plan.changes


def test_image_tag_option_is_validated_before_anything_runs():
    with pytest.raises(UsageError, match="--image-tag 'bad tag!' is not a valid image tag"):
        deploy.deploy_phase1("dev", image_tag="bad tag!", engine_choice="no-such-engine")
    outcome = deploy.deploy_phase1("dev", image_tag="1.4.2")
    # The user data is unknown until apply (it holds generated secrets): read what was planned from.
    synthesized = json.loads((outcome.plan.plan_file.parent / "cdk.tf.json").read_text())
    images = [s["user_data"]["cloud-init"] for s in synthesized["resource"]["scaleway_instance_server"].values()
              if "-redis" not in s["name"]]
    assert len(images) == 2 and all("/ciel:1.4.2" in text and ":latest" not in text for text in images)


def test_a_rollout_step_targets_the_whole_unit_of_one_instance():
    """A targeted apply follows dependencies, not dependents: the server alone would be
    replaced without its private NIC. A real targeted plan of the unit holds all of it."""
    from ciel import rollout
    from ciel.workspace import StackWorkspace
    from toolchain import engine as engines

    dev = offline_plan("dev")
    workspace = StackWorkspace(engines.select(None), dev.plan.plan_file.parent, dev.credentials)
    server = next(c for c in dev.plan.changes if c.type == "scaleway_instance_server" and ".compute_api_0_" in c.address)
    unit = rollout.unit_addresses(dev.plan, server)
    assert sorted(a.split(".")[0] for a in unit) == sorted(
        ["scaleway_instance_server", "scaleway_instance_private_nic", "scaleway_ipam_ip", "terraform_data"])
    targeted = {change.address for change in workspace.plan(targets=unit).changes}
    assert set(unit) <= targeted
    assert not any(".compute_worker_" in address for address in targeted)  # one unit, not the others
    server_alone = {change.address for change in workspace.plan(targets=[server.address]).changes}
    nic = next(a for a in unit if a.startswith("scaleway_instance_private_nic."))
    assert nic not in server_alone  # what the old rollout applied
