"""`ciel lab rehearse`, as a user runs it: the three commands on fresh local Scaleways, with
real HAProxy, stand-in apps, a real kube-apiserver and vegeta traffic through the LB.

Each test is one rehearsal (minutes: the cutover's drain waits out the LB's server
timeout, as it must). What they prove is in the report the command prints: every request
answered, the re-plans empty, traffic where it should end, the instances deleted by the
retire apply — or, with a fault, the failures inside the window the docs promise."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_ciel

pytestmark = pytest.mark.engine
RPS = "100"
BAKE = "10"


def rehearse(tmp_path, *args: str) -> dict:
    result = run_ciel("lab", "rehearse", "--rps", RPS, "--bake-seconds", BAKE, "--json", *args,
                      env={"CIEL_WORK_DIR": str(tmp_path)}, timeout=1500)
    assert result.stdout.strip(), result.stderr[-5000:]
    report = json.loads(result.stdout)
    assert result.returncode == (0 if report["ok"] else 1)
    return report


def steps(report: dict, scenario: str) -> list[str]:
    return [step["step"] for found in report["scenarios"] if found["name"] == scenario for step in found["steps"]]


def test_dev_migrates_and_rolls_back_under_traffic_without_a_failed_request(tmp_path):
    report = rehearse(tmp_path, "--env", "dev")
    assert report["ok"], json.dumps(report, indent=1)[-4000:]
    assert report["failed"] == 0 and report["failures"] == {}
    # 100 req/s from phase 1's first answer through two scenarios of minutes each.
    assert report["requests"] > 15_000
    assert report["replan_changes"] == 0
    assert report["final_backend"] == "cluster"
    assert report["instances_left_after_retire"] == 0  # the retire apply deleted them
    assert report["switch_seconds"] is not None and report["rollback_seconds"] is not None
    assert steps(report, "rollback") == [
        "state bootstrap", "deploy phase1", "LB serves (instances healthy)", "deploy phase2", "cutover to switch",
        "rollback after switch", "cutover to bake", "rollback after bake", "re-plan core", "re-plan phase 2"]
    rollback = next(s for s in report["scenarios"] if s["name"] == "rollback")
    assert rollback["final_backend"] == "instances" and len(rollback["rollback_seconds"]) == 2


def test_a_cluster_failing_in_the_bake_rolls_back_with_failures_only_in_the_documented_window(tmp_path):
    report = rehearse(tmp_path, "--env", "dev", "--fault", "cluster-health")
    cutover = report["scenarios"][0]
    assert list(cutover["faults"]) == ["cluster-health"]
    assert cutover["fault_window"] is not None
    assert cutover["failed_outside_window"] == 0, json.dumps(cutover, indent=1)[-4000:]
    assert cutover["final_backend"] == "instances"  # back on a serving backend
    assert cutover["rollback_seconds"], "the rollback's move to the instances was not seen in the traffic"
    assert cutover["switch_seconds"] is not None  # traffic did reach the cluster before it failed
    assert report["replan_changes"] == 0 and report["ok"]


def test_lb_api_errors_and_a_killed_cutover_are_retried_and_resumed_without_a_failed_request(tmp_path):
    report = rehearse(tmp_path, "--env", "dev", "--fault", "lb-api-errors", "--fault", "kill-after-switch")
    assert report["ok"], json.dumps(report, indent=1)[-4000:]
    assert report["failed"] == 0 and report["final_backend"] == "cluster"
    assert report["instances_left_after_retire"] == 0
    names = steps(report, "cutover")
    assert names[names.index("migrate cutover (killed after the switch)") + 1:][:2] == [
        "migrate unlock (the killed run's lock)", "migrate cutover (resumed → retire)"]
    killed = next(step for step in report["scenarios"][0]["steps"] if step["step"].endswith("after the switch)"))
    assert int(killed["note"].split()[0]) > 0  # the LB's refusals were retried, not fatal


def test_a_prod_image_rollout_replaces_the_api_instances_one_at_a_time_without_a_failed_request(tmp_path):
    report = rehearse(tmp_path, "--env", "prod", "--scenario", "rollout")
    rollout = report["scenarios"][0]
    assert report["ok"] and rollout["failed"] == 0, json.dumps(rollout, indent=1)[-4000:]
    assert rollout["replan_changes"] == 0  # the re-plan with the same tag finds nothing
    replaced = next(step for step in rollout["steps"] if step["step"] == "deploy phase1 --image-tag 2")
    assert replaced["requests"] > 1000 and replaced["failed"] == 0
    # Every answer after it comes from version 2; each new API server sits at an address the LB targets.
    note = rollout["steps"][-1]["note"]
    assert note.startswith("answers now from version 2") and note.count(" at 10.2.0.") == 3, note


def test_a_secret_rotation_restarts_every_app_process_with_the_new_version_without_a_failed_request(tmp_path):
    report = rehearse(tmp_path, "--env", "dev", "--scenario", "rotate-secret")
    rotation = report["scenarios"][0]
    assert report["ok"] and rotation["failed"] == 0, json.dumps(rotation, indent=1)[-4000:]
    assert rotation["replan_changes"] == 0  # the rotation count is recorded: the next deploy plans nothing
    rotate = next(step for step in rotation["steps"] if step["step"] == "secrets rotate paseto-access-key")
    assert rotate["requests"] > 500 and rotate["failed"] == 0
    # Read from each machine's own ciel-secrets output: two API instances and the worker.
    assert rotate["note"] == "3 app instances restarted, 0 replaced; each read paseto-access-key revision 2"


def test_rehearse_refuses_bad_input_before_starting_anything(tmp_path):
    for args, message in ((("--env", "nope"), "nope"), (("--env", "dev", "--fault", "meteor"), "meteor"),
                          (("--env", "dev", "--fault", "cluster-health", "--fault", "lb-api-errors"), "alone"),
                          (("--env", "dev", "--scenario", "sideways"), "sideways")):
        result = run_ciel("lab", "rehearse", *args, env={"CIEL_WORK_DIR": str(tmp_path)})
        assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not (tmp_path / "rehearsal").exists()


def test_rehearse_refuses_while_a_lab_of_this_checkout_runs(tmp_path):
    from tests.lab_support import running_lab

    with running_lab(tmp_path / "lab"):
        result = run_ciel("lab", "rehearse", "--env", "dev", env={"CIEL_WORK_DIR": str(tmp_path / "lab")})
    assert result.returncode != 0 and "ciel lab down" in result.stderr, result.stderr
    assert not (tmp_path / "lab" / "rehearsal").exists()
