"""`deploy phase2` end to end with the real engine, the Scaleway and kubernetes providers."""

from __future__ import annotations

import pytest

from ciel.phase2 import deploy_phase2, is_phase2_addition
from infra.config import load_environment
from infra.config.loader import record_phase
from tests.conftest import REPO_ROOT, run_ciel

pytestmark = pytest.mark.engine

_OUTCOMES: dict = {}


def phase2(env: str):
    if env not in _OUTCOMES:
        _OUTCOMES[env] = deploy_phase2(env)
    return _OUTCOMES[env]


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_both_phase2_steps_plan_offline_with_the_real_providers(env):
    outcome = phase2(env)
    assert not outcome.applied and not outcome.credentials.live
    added = [c for c in outcome.cluster_plan.changes if is_phase2_addition(c)]
    assert {c.type for c in added} == {"scaleway_k8s_cluster", "scaleway_k8s_pool", "scaleway_ipam_ip",
                                       "scaleway_lb_backend"}
    kinds = {c.type for c in outcome.workloads_plan.changes}
    assert {"kubernetes_namespace_v1", "kubernetes_deployment_v1", "kubernetes_service_v1",
            "kubernetes_network_policy_v1", "kubernetes_pod_disruption_budget_v1",
            "kubernetes_horizontal_pod_autoscaler_v2", "kubernetes_secret_v1", "kubernetes_config_map_v1"} == kinds
    assert outcome.untouched_checked > 50


def test_secret_values_are_sensitive_in_the_workloads_plan():
    raw = phase2("dev").workloads_plan.raw
    secrets = [rc for rc in raw["resource_changes"] if rc["type"] == "kubernetes_secret_v1"]
    assert secrets and all(rc["change"]["after_sensitive"]["data"] is True for rc in secrets)
    variables = raw["configuration"]["root_module"]["variables"]
    assert variables["database_url"]["sensitive"] is True and variables["kube_token"]["sensitive"] is True


def test_offline_phase2_records_nothing():
    before = (REPO_ROOT / "infra" / "environments" / "dev.yaml").read_text()
    phase2("dev")
    assert (REPO_ROOT / "infra" / "environments" / "dev.yaml").read_text() == before
    assert load_environment("dev").phase == 1


def test_the_cli_prints_both_steps_and_says_nothing_was_applied():
    result = run_ciel("deploy", "phase2", "--env", "dev")
    assert result.returncode == 0, result.stderr
    assert "cluster step:" in result.stdout and "workloads step: 15 to add" in result.stdout
    assert "unchanged by phase 2" in result.stdout and "OFFLINE: nothing was applied" in result.stdout


def test_recording_the_phase_keeps_the_file_and_its_comments(environments_dir):
    path = environments_dir / "qa.yaml"
    path.write_text('# QA environment\ntier: mvp\nprivate_network_cidr: 10.7.0.0/24  # its own range\nimage_tag: "1.0.0"\n')
    record_phase("qa", 2)
    text = path.read_text()
    assert text.startswith("# QA environment\n") and "# its own range" in text and "phase: 2" in text
    assert load_environment("qa").phase == 2
    record_phase("qa", 1)
    assert load_environment("qa").phase == 1 and path.read_text().count("phase:") == 1


def test_phase2_again_on_an_environment_already_cut_over_plans_fine(environments_dir):
    (environments_dir / "qa.yaml").write_text("private_network_cidr: 10.6.0.0/24\nphase: 2\ntraffic: cluster\n"
                                              'instances_retired: true\nimage_tag: "1.0.0"\n')
    outcome = deploy_phase2("qa")
    assert outcome.untouched_checked == 0  # nothing of phase 1 left to compare with; the live plan guard remains
    assert not any(c.type == "scaleway_instance_server" and "compute_" in c.address
                   for c in outcome.cluster_plan.changes)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_core_stack_outputs_every_input_the_workloads_stack_takes(env):
    from infra.stacks.workloads import INPUTS
    from tests.conftest import synth_core

    outputs = synth_core(env, phase=2)["output"]
    assert {item.name for item in INPUTS} <= set(outputs)
    for item in INPUTS:
        if item.sensitive:  # a secret input must come from a sensitive output
            assert outputs[item.name].get("sensitive") is True, item.name


def test_the_core_stack_outputs_what_the_cutover_targets():
    from ciel.migration import target_from_outputs
    from tests.conftest import config_for, synth_core

    outputs = {name: body["value"] for name, body in synth_core("prod", phase=2)["output"].items()}
    target = target_from_outputs(config_for("prod", phase=2), outputs)  # raises if one is missing
    assert len(target.frontend_ids) == 2 and target.preview_host == "preview-api.ciel.example.com"
