"""The three commands' first half, as a user runs them, against the local Scaleway: the
real CLI, the real engine, the real provider, state in the lab's Object Storage through
the real S3 backend with a lock file. Apply, then a re-plan that must find nothing."""

from __future__ import annotations

import json

import boto3
import pytest

from infra.alerts import preconfigured_alert_ids
from infra.config import load_environment
from tests.conftest import run_ciel
from tests.lab_support import lab_answer, lab_json, running_lab

pytestmark = pytest.mark.engine


def ciel(lab_env: dict[str, str], work_dir, *args: str):
    result = run_ciel(*args, env={**lab_env, "CIEL_WORK_DIR": str(work_dir)})
    assert result.returncode == 0, f"ciel {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def state_keys(lab_env: dict[str, str]) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=lab_env["CIEL_S3_ENDPOINT"], region_name="fr-par",
                      aws_access_key_id=lab_env["SCW_ACCESS_KEY"], aws_secret_access_key=lab_env["SCW_SECRET_KEY"])
    bucket = f"ciel-tfstate-{lab_env['SCW_DEFAULT_PROJECT_ID']}"
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.mark.parametrize(("env", "engine"), [("dev", "terraform"), ("prod", "tofu")])
def test_deploy_phase1_applies_everything_and_the_next_deploy_finds_nothing_to_change(tmp_path, env, engine):
    with running_lab(tmp_path / "lab") as lab_env:
        ciel(lab_env, tmp_path, "state", "bootstrap", "--env", env)
        applied = ciel(lab_env, tmp_path, "deploy", "phase1", "--env", env, "--yes", "--engine", engine)
        assert f"Applied {env}" in applied.stdout and "0 to destroy" in applied.stdout
        again = ciel(lab_env, tmp_path, "deploy", "phase1", "--env", env, "--engine", engine)
        assert "0 to add, 0 to change, 0 to destroy" in again.stdout
        assert "Nothing to apply" in again.stdout
        assert f"{env}/ciel-{env}-core.tfstate" in state_keys(lab_env)
        # The alert rules on the plan's signals it runs are enabled (infra/alerts.py), and stay so.
        enabled = lab_json(lab_env, "/cockpit/v1/regions/fr-par/alerts?is_preconfigured=true&rule_status=enabled"
                                    f"&project_id={lab_env['SCW_DEFAULT_PROJECT_ID']}")["alerts"]
        assert sorted(alert["preconfigured_data"]["preconfigured_rule_id"] for alert in enabled) == \
            preconfigured_alert_ids(load_environment(env)) and len(enabled) >= 8
        if env == "prod":
            _a_cdn_without_its_route_fails_verifys_cdn_check_alone(lab_env, tmp_path, engine)


def _a_cdn_without_its_route_fails_verifys_cdn_check_alone(lab_env: dict[str, str], work_dir, engine: str) -> None:
    """The deploy verified the CDN; with the pipeline's backend stage deleted (the route to
    the bucket gone), the cdn check fails and the storage check beside it still passes."""
    api = "/edge-services/v1beta1"
    [pipeline] = lab_json(lab_env, f"{api}/pipelines?project_id={lab_env['SCW_DEFAULT_PROJECT_ID']}")["pipelines"]
    [backend] = lab_json(lab_env, f"{api}/pipelines/{pipeline['id']}/backend-stages")["stages"]
    status, _ = lab_answer(lab_env, f"{api}/backend-stages/{backend['id']}", method="DELETE")
    assert status in (200, 204)
    result = run_ciel("verify", "--env", "prod", "--json", "--check", "storage", "--check", "cdn", "--wait", "5",
                      "--engine", engine, env={**lab_env, "CIEL_WORK_DIR": str(work_dir)})
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["storage"]["status"] == "pass" and checks["cdn"]["status"] == "fail"
    assert "answered 502" in checks["cdn"]["detail"] and "backend stage" in checks["cdn"]["detail"]


def test_deploy_phase2_applies_the_cluster_step_beside_phase1_and_replans_empty(tmp_path):
    with running_lab(tmp_path / "lab") as lab_env:
        ciel(lab_env, tmp_path, "state", "bootstrap", "--env", "dev")
        ciel(lab_env, tmp_path, "deploy", "phase1", "--env", "dev", "--yes")
        first = ciel(lab_env, tmp_path, "deploy", "phase2", "--env", "dev", "--yes", "--cluster-only")
        assert "Applied the cluster step to dev" in first.stdout
        again = ciel(lab_env, tmp_path, "deploy", "phase2", "--env", "dev", "--yes", "--cluster-only")
        assert "cluster step: 0 to add, 0 to change, 0 to destroy" in again.stdout
        assert "Nothing to apply in the cluster step of dev" in again.stdout
