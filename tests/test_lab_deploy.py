"""The three commands' first half, as a user runs them, against the local Scaleway: the
real CLI, the real engine, the real provider, state in the lab's Object Storage through
the real S3 backend with a lock file. Apply, then a re-plan that must find nothing."""

from __future__ import annotations

import boto3
import pytest

from tests.conftest import run_ciel
from tests.lab_support import running_lab

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


def test_deploy_phase2_applies_the_cluster_step_beside_phase1_and_replans_empty(tmp_path):
    with running_lab(tmp_path / "lab") as lab_env:
        ciel(lab_env, tmp_path, "state", "bootstrap", "--env", "dev")
        ciel(lab_env, tmp_path, "deploy", "phase1", "--env", "dev", "--yes")
        first = ciel(lab_env, tmp_path, "deploy", "phase2", "--env", "dev", "--yes", "--cluster-only")
        assert "Applied the cluster step to dev" in first.stdout
        again = ciel(lab_env, tmp_path, "deploy", "phase2", "--env", "dev", "--yes", "--cluster-only")
        assert "cluster step: 0 to add, 0 to change, 0 to destroy" in again.stdout
        assert "Nothing to apply in the cluster step of dev" in again.stdout
