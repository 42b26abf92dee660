"""The whole deploy path with the real engine and the real Scaleway provider, offline.

These tests run terraform/tofu and the provider binaries from the local mirror; when the
toolchain is missing they fail (ToolchainError: run ./setup.sh), they never skip.
"""

from __future__ import annotations

import pytest

from ciel import deploy
from ciel.toolchain import mirror
from ciel.toolchain.pins import SCALEWAY
from infra.app import state_file
from tests.conftest import run_ciel

pytestmark = pytest.mark.engine


def _by_type(plan) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for change in plan.raw["resource_changes"]:
        found.setdefault(change["type"], []).append(change)
    return found


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_offline_plan_creates_the_network_of_each_environment(env):
    outcome = deploy.deploy_phase1(env)
    assert not outcome.credentials.live and not outcome.applied
    by_type = _by_type(outcome.plan)
    assert set(by_type) == {"scaleway_vpc", "scaleway_vpc_private_network"}
    network = by_type["scaleway_vpc_private_network"][0]["change"]
    assert network["actions"] == ["create"]
    assert network["after"]["name"] == f"ciel-{env}"
    expected_cidr = {"dev": "10.0.0.0/24", "staging": "10.1.0.0/24", "prod": "10.2.0.0/24"}[env]
    assert network["after"]["ipv4_subnet"][0]["subnet"] == expected_cidr
    assert outcome.plan.count("create") == 2 and not outcome.plan.destroys
    # An offline plan writes no state.
    assert not state_file(env, outcome.stack, live=False).exists()


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


def test_readme_main_command_prints_the_offline_plan_and_says_nothing_was_applied():
    result = run_ciel("deploy", "phase1", "--env", "dev")
    assert result.returncode == 0, result.stderr
    assert "scaleway_vpc.networking_vpc" in result.stdout
    assert "scaleway_vpc_private_network.networking_private_network" in result.stdout
    assert "2 to add, 0 to change, 0 to destroy" in result.stdout
    assert "OFFLINE: nothing was applied" in result.stdout
    assert "terraform plan (offline)" in result.stderr or "tofu plan (offline)" in result.stderr


def test_live_mode_without_confirmation_applies_nothing(monkeypatch):
    """With (fake but well-formed) credentials the path asks before applying; a 'no' stops it.

    The plan itself cannot reach Scaleway here, so this checks the refusal, not the apply.
    """
    from ciel.errors import CielError
    from ciel.workspace import PlanResult, ResourceChange, StackWorkspace

    monkeypatch.setenv("SCW_ACCESS_KEY", "SCWABCDEFGHIJKLMNOPQ")
    monkeypatch.setenv("SCW_SECRET_KEY", "11111111-2222-4333-8444-555555555555")
    monkeypatch.setenv("SCW_DEFAULT_PROJECT_ID", "66666666-7777-4888-8999-000000000000")
    applied = []
    planned = PlanResult(plan_file=state_file("dev", "x", live=True), raw={},
                         changes=[ResourceChange("scaleway_vpc.a", "scaleway_vpc", ("create",))])
    monkeypatch.setattr(StackWorkspace, "plan", lambda self: planned)
    monkeypatch.setattr(StackWorkspace, "apply", lambda self, plan: applied.append(plan))
    questions = []
    with pytest.raises(CielError, match="confirmation declined"):
        deploy.deploy_phase1("dev", confirm=lambda q: questions.append(q) or False)
    assert applied == [] and "Apply 1 change(s) to dev" in questions[0]
    outcome = deploy.deploy_phase1("dev", confirm=lambda q: True)
    assert outcome.applied and applied == [planned]
