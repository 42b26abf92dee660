"""The whole deploy path with the real engine and the real Scaleway provider, offline.

These tests run terraform/tofu and the provider binaries from the local mirror; when the
toolchain is missing they fail (ToolchainError: run ./setup.sh), they never skip.
"""

from __future__ import annotations

import pytest

from ciel import deploy
from ciel.toolchain import mirror
from ciel.toolchain.pins import SCALEWAY
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
    assert [s["type"] for s in planned(dev, "scaleway_instance_server")] == ["DEV1-S"]
    assert [db["node_type"] for db in planned(staging, "scaleway_rdb_instance")] == ["DB-DEV-M"]
    assert [db["is_ha_cluster"] for db in planned(prod, "scaleway_rdb_instance")] == [True]
    assert len(planned(prod, "scaleway_rdb_read_replica")) == 1
    assert [r["node_type"] for r in planned(prod, "scaleway_redis_cluster")] == ["RED1-S"]
    assert [lb["type"] for lb in planned(prod, "scaleway_lb")] == ["LB-GP-M"]
    assert planned(dev, "scaleway_edge_services_pipeline") == [] and planned(prod, "scaleway_edge_services_pipeline")


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
