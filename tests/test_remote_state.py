"""Remote state: the bucket bootstrap and the S3 backend with lock files, for real, against a
local S3 server (moto) standing in for Scaleway Object Storage, through boto3 and the real
engine's S3 backend."""

from __future__ import annotations

import json

import boto3
import pytest

from ciel import deploy
from foundation import paths
from foundation.errors import CielError, UsageError
from ciel.state_bucket import bootstrap
from ciel.workspace import StackWorkspace
from infra.state import state_key
from lab.api import Lab
from lab.families import register_all
from lab.server import serve_api
from lab.store import Store
from tests.lab_support import free_port, local_object_storage

pytestmark = pytest.mark.engine

PROJECT = "66666666-7777-4888-8999-000000000000"
BUCKET = f"ciel-tfstate-{PROJECT}"
KEYS = {"SCW_ACCESS_KEY": "SCWABCDEFGHIJKLMNOPQ", "SCW_SECRET_KEY": "11111111-2222-4333-8444-555555555555",
        "SCW_DEFAULT_PROJECT_ID": PROJECT}
# Whose key KEYS are: given, as IAM is out of reach here (tests/test_deployer_principal.py asks the lab's).
DEPLOYER = "user_id:0b8cc93b-dfd2-4427-b674-8d27affb0334"


@pytest.fixture
def object_storage(monkeypatch, tmp_path):
    with local_object_storage(monkeypatch, tmp_path / "work") as endpoint:
        yield from _live_against(endpoint, monkeypatch)


def _live_against(endpoint: str, monkeypatch):
    for key, value in KEYS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CIEL_DEPLOYER_PRINCIPAL", DEPLOYER)
    # A live deploy first asks Secret Manager whether the project holds another environment:
    # an in-process local Scaleway answers (an empty project).
    api_port = free_port()
    api = serve_api(register_all(Lab(Store())), api_port)
    monkeypatch.setenv("SCW_API_URL", f"http://127.0.0.1:{api_port}")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="fr-par", aws_access_key_id="x",
                          aws_secret_access_key="x")
    yield client
    api.shutdown()


def test_bootstrap_needs_credentials():
    with pytest.raises(UsageError, match="needs Scaleway credentials"):
        bootstrap("dev")


def test_dry_run_lists_the_calls_and_makes_none(object_storage):
    _, lines = bootstrap("dev", dry_run=True)
    assert [line.split("(")[0] for line in lines] == [
        "would call s3.head_bucket", "would call s3.create_bucket", "would call s3.put_bucket_versioning",
        "would call s3.get_bucket_policy", "would call s3.put_bucket_policy", "would call s3.put_bucket_tagging"]
    assert DEPLOYER in next(line for line in lines if "put_bucket_policy" in line)
    assert object_storage.list_buckets()["Buckets"] == []


def test_bootstrap_creates_a_private_versioned_bucket_and_is_idempotent(object_storage):
    remote, first = bootstrap("dev")
    assert remote.bucket == BUCKET and any("created" in line for line in first)
    assert object_storage.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    grants = object_storage.get_bucket_acl(Bucket=BUCKET)["Grants"]
    assert all("URI" not in grant["Grantee"] for grant in grants)  # no AllUsers / AuthenticatedUsers grant
    tags = {t["Key"]: t["Value"] for t in object_storage.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags == {"app": "ciel", "purpose": "terraform-state"}
    policy = json.loads(object_storage.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert [s["Principal"] for s in policy["Statement"]] == [{"SCW": [DEPLOYER]}]
    _, second = bootstrap("dev")
    assert second[0].endswith("exists: kept") and "versioning already enabled" in second
    assert f"bucket policy already admits {DEPLOYER}" in second


def test_live_deploy_refuses_to_start_without_the_state_bucket(object_storage):
    with pytest.raises(CielError, match="run `ciel state bootstrap --env dev` first"):
        deploy.deploy_phase1("dev", confirm=lambda question: False)


def test_live_plan_initializes_the_s3_backend_takes_and_releases_the_lock(object_storage, monkeypatch):
    bootstrap("dev")
    questions = []
    with pytest.raises(CielError, match="confirmation declined"):
        deploy.deploy_phase1("dev", confirm=lambda question: questions.append(question) or False)
    assert questions and questions[0].startswith("Apply ")
    keys = [o["Key"] for o in object_storage.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert not any(key.endswith(".tflock") for key in keys)  # the lock was released

    stack_dir = paths.live_synth_dir() / "stacks" / "ciel-dev-core"
    backend = json.loads((stack_dir / "cdk.tf.json").read_text())["terraform"]["backend"]["s3"]
    assert backend["key"] == "dev/ciel-dev-core.tfstate" and backend["use_lockfile"] is True
    assert "access_key" not in backend and "secret_key" not in backend  # credentials stay in the environment

    # Confirmed, the same plan goes to apply (Scaleway itself is out of reach: stop there).
    applied = []
    monkeypatch.setattr(StackWorkspace, "apply", lambda self, plan: applied.append(plan.plan_file))
    outcome = deploy.deploy_phase1("dev", confirm=lambda question: True)
    assert outcome.applied and applied == [stack_dir / "plan.tfplan"]


def test_a_held_lock_stops_a_second_run(object_storage, capfd):
    bootstrap("dev")
    lock_key = state_key("dev", "ciel-dev-core") + ".tflock"
    object_storage.put_object(Bucket=BUCKET, Key=lock_key,
                              Body=b'{"ID":"held-by-another-run","Operation":"OperationTypeApply","Who":"someone"}')
    with pytest.raises(CielError, match="plan failed"):
        deploy.deploy_phase1("dev", confirm=lambda question: True)
    engine_output = capfd.readouterr()
    assert "Error acquiring the state lock" in engine_output.out + engine_output.err
    assert "held-by-another-run" in engine_output.out + engine_output.err
