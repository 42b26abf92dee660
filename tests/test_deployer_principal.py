"""Who deploys: the lab's IAM says whose key the deployer's is (through the real SDK),
`ciel` names that principal, and `ciel state bootstrap` admits it (and only the deploying
principals) to the state bucket, against the lab's S3 (moto, as the lab serves it). The
lab's API and moto run in this process: no data plane, no `ciel lab up`."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from scaleway import Client
from scaleway.iam.v1alpha1 import IamV1Alpha1API

from ciel import credentials, state_bucket
from ciel.state_bucket import POLICY_STATEMENT, PRINCIPAL_PLACEHOLDER, bootstrap
from foundation.errors import CielError
from lab.api import ApiFault, Lab
from lab.families import register_all
from lab.families.iam import OWNER_USER_ID
from lab.runner import LAB_ACCESS_KEY, LAB_PROJECT_ID, LAB_SECRET_KEY
from lab.server import serve_api
from lab.store import Store
from tests.lab_support import free_port, local_object_storage

OWNER = f"user_id:{OWNER_USER_ID}"
BUCKET = f"ciel-tfstate-{LAB_PROJECT_ID}"
LAB_KEYS = {"SCW_ACCESS_KEY": LAB_ACCESS_KEY, "SCW_SECRET_KEY": LAB_SECRET_KEY,
            "SCW_DEFAULT_PROJECT_ID": LAB_PROJECT_ID, "SCW_DEFAULT_ORGANIZATION_ID": LAB_PROJECT_ID}
OTHER_OPERATOR = "user_id:ee474852-1f90-4cc1-bad0-4a17998c51e7"


@pytest.fixture
def lab_api(monkeypatch):
    """The lab's API, served in this process, and the deployer's lab keys (IAM asked afresh)."""
    lab = register_all(Lab(Store()))
    server = serve_api(lab, free_port())
    monkeypatch.setenv("SCW_API_URL", f"http://127.0.0.1:{server.server_address[1]}")
    for key, value in LAB_KEYS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(credentials, "_PRINCIPALS", {})
    yield lab
    server.shutdown()
    server.server_close()


@pytest.fixture
def state_storage(lab_api, monkeypatch, tmp_path):
    """The lab's S3 (moto) for `state bootstrap`; yields a client of it and the number of
    PutBucketPolicy calls bootstrap makes."""
    with local_object_storage(monkeypatch, tmp_path / "work") as endpoint:
        yield from _counting_puts(endpoint, monkeypatch)


def _counting_puts(endpoint: str, monkeypatch):
    puts: list[str] = []
    real = state_bucket.s3_client

    def counting(*args, **kwargs):
        client = real(*args, **kwargs)
        client.meta.events.register("before-call.s3.PutBucketPolicy", lambda **_: puts.append("put"))
        return client

    monkeypatch.setattr(state_bucket, "s3_client", counting)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="fr-par", aws_access_key_id=LAB_ACCESS_KEY,
                          aws_secret_access_key=LAB_SECRET_KEY)
    yield client, puts


def policy_of(client) -> dict:
    return json.loads(client.get_bucket_policy(Bucket=BUCKET)["Policy"])


# --- the lab's IAM -------------------------------------------------------------------------

def test_the_lab_answers_the_deployers_own_key_as_a_users_key_through_the_sdk(lab_api):
    client = Client(access_key=LAB_ACCESS_KEY, secret_key=LAB_SECRET_KEY, default_project_id=LAB_PROJECT_ID,
                    default_region="fr-par", default_zone="fr-par-1", api_url=os.environ["SCW_API_URL"])
    key = IamV1Alpha1API(client).get_api_key(access_key=LAB_ACCESS_KEY)
    assert (key.access_key, key.user_id, key.application_id) == (LAB_ACCESS_KEY, OWNER_USER_ID, None)
    assert key.secret_key is None and key.default_project_id == LAB_PROJECT_ID and key.expires_at is None
    # The shape of a user's key in the provider's recordings: user_id, no application_id.
    status, answer = lab_api.handle("GET", f"/iam/v1alpha1/api-keys/{LAB_ACCESS_KEY}", {}, None)
    assert status == 200 and "application_id" not in answer
    assert set(answer) == {"access_key", "secret_key", "description", "created_at", "updated_at", "expires_at",
                           "default_project_id", "editable", "deletable", "managed", "creation_ip", "user_id"}


# --- ciel's deploying principal ------------------------------------------------------------

def test_the_deploying_principal_is_asked_of_iam_once_per_process(lab_api):
    found = credentials.detect()
    assert found.live and credentials.deploying_principal(found) == OWNER
    # IAM now fails: the principal already known is not asked again.
    lab_api.faults.append(ApiFault.from_request({"path": "^/iam/", "methods": ["GET"], "statuses": [500],
                                                 "seconds": 60}))
    assert found.engine_environment()["TF_VAR_deployer_principal"] == OWNER


def test_an_application_key_is_named_by_its_application(lab_api, monkeypatch):
    _, application = lab_api.handle("POST", "/iam/v1alpha1/applications", {}, {
        "name": "ci", "organization_id": LAB_PROJECT_ID})
    _, key = lab_api.handle("POST", "/iam/v1alpha1/api-keys", {}, {"application_id": application["id"]})
    monkeypatch.setenv("SCW_ACCESS_KEY", key["access_key"])
    monkeypatch.setenv("SCW_SECRET_KEY", key["secret_key"])
    assert credentials.deploying_principal(credentials.detect()) == f"application_id:{application['id']}"


class _Refusing(BaseHTTPRequestHandler):
    """Scaleway's answer to a key without IAM permissions."""

    def do_GET(self) -> None:
        body = json.dumps({"details": [{"action": "read", "resource": "api_key"}],
                           "message": "insufficient permissions", "type": "permissions_denied"}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        return None


def test_when_iam_refuses_the_error_says_to_grant_iam_read_only_or_name_the_principal(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("SCW_API_URL", f"http://127.0.0.1:{server.server_address[1]}")
        for key, value in LAB_KEYS.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(credentials, "_PRINCIPALS", {})
        with pytest.raises(CielError) as error:
            credentials.detect().engine_environment()
    finally:
        server.shutdown()
        server.server_close()
    message = str(error.value)
    assert "HTTP 403" in message and "IAMReadOnly" in message
    assert "CIEL_DEPLOYER_PRINCIPAL=user_id:<uuid>" in message and LAB_SECRET_KEY not in message


# --- the state bucket ----------------------------------------------------------------------

def test_bootstrap_admits_exactly_the_deploying_principal_and_does_not_put_again(state_storage):
    client, puts = state_storage
    _, first = bootstrap("dev")
    policy = policy_of(client)
    assert policy["Version"] == "2023-04-17"
    assert policy["Statement"] == [{"Sid": POLICY_STATEMENT, "Effect": "Allow", "Principal": {"SCW": [OWNER]},
                                    "Action": ["s3:*"], "Resource": [BUCKET, f"{BUCKET}/*"]}]
    assert puts == ["put"] and any(line.startswith(f"bucket policy: deploying principals only, {OWNER}")
                                   for line in first)
    assert client.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"

    _, second = bootstrap("dev")
    assert puts == ["put"] and f"bucket policy already admits {OWNER}" in second
    assert policy_of(client) == policy


def test_bootstrap_keeps_the_principals_an_existing_policy_names(state_storage, monkeypatch):
    client, puts = state_storage
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "fr-par"})
    reader = {"Sid": "AuditReadsState", "Effect": "Allow",
              "Principal": {"SCW": "application_id:5b1c2d3e-0000-4000-8000-00000000abcd"},
              "Action": ["s3:GetObject"], "Resource": [f"{BUCKET}/*"]}
    client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2023-04-17", "Id": "by-hand", "Statement": [
        {"Sid": POLICY_STATEMENT, "Effect": "Allow", "Principal": {"SCW": OTHER_OPERATOR}, "Action": ["s3:*"],
         "Resource": [BUCKET, f"{BUCKET}/*"]}, reader]}))

    _, done = bootstrap("dev")
    assert puts == ["put"] and f"bucket policy: deploying principals only, {OWNER} admitted (kept: {OTHER_OPERATOR})" in done
    policy = policy_of(client)
    assert policy["Id"] == "by-hand"
    ours, kept = policy["Statement"]
    assert ours["Principal"] == {"SCW": sorted([OTHER_OPERATOR, OWNER])} and ours["Action"] == ["s3:*"]
    assert kept == reader  # neither removed nor widened

    # The other operator bootstraps with their own key: already admitted, nothing written.
    monkeypatch.setenv("CIEL_DEPLOYER_PRINCIPAL", OTHER_OPERATOR)
    _, again = bootstrap("dev")
    assert puts == ["put"] and f"bucket policy already admits {OTHER_OPERATOR}" in again


def test_the_dry_run_shows_the_policy_call_with_the_principal(state_storage, monkeypatch):
    client, puts = state_storage
    _, lines = bootstrap("dev", dry_run=True)
    put = next(line for line in lines if "put_bucket_policy" in line)
    assert OWNER in put and "principals it names are kept" in put
    assert client.list_buckets()["Buckets"] == [] and puts == []

    for name in LAB_KEYS:
        monkeypatch.delenv(name)
    _, lines = bootstrap("dev", dry_run=True)
    assert PRINCIPAL_PLACEHOLDER in next(line for line in lines if "put_bucket_policy" in line)
