"""Secret Manager access by path, and IAM application keys acting with their policies'
permissions, through the real `scaleway` SDK against a running lab: the deployer's own
key (which the lab's IAM did not issue) acts as the organization owner; a key the lab
issued to an application gets what its policies grant on the secret's project (403
`permissions_denied` otherwise) until it is revoked (then 401 `denied_authentication`);
the lab keeps no secret key, only its SHA-256."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from scaleway import Client
from scaleway.iam.v1alpha1 import IamV1Alpha1API, RuleSpecs
from scaleway.secret.v1beta1 import SecretV1Beta1API
from scaleway_core.api import ScalewayException

from tests.lab_support import running_lab

OTHER_PROJECT = "0ee0ee0e-0000-4000-8000-000000000002"
PATH, NAME = "/ciel/dev", "paseto-access-key"
FIRST, SECOND = b"v4.local.first-paseto-key", b"v4.local.second-paseto-key"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class World:
    env: dict[str, str]
    state_dir: Path  # the lab's folder: state.json and the rest
    project: str
    secret_id: str

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Client:
        return Client(access_key=access_key or self.env["SCW_ACCESS_KEY"],
                      secret_key=secret_key or self.env["SCW_SECRET_KEY"], default_project_id=self.project,
                      default_organization_id=self.env["SCW_DEFAULT_ORGANIZATION_ID"], default_region="fr-par",
                      default_zone="fr-par-1", api_url=self.env["SCW_API_URL"])

    @property
    def deployer(self) -> Client:
        return self.client()

    def application(self, name: str, rules: list[RuleSpecs]) -> tuple[str, str, str]:
        """A new application with one policy of `rules` (none: no policy) and an API key:
        (application ID, access key, secret key)."""
        iam = IamV1Alpha1API(self.deployer)
        organization = self.env["SCW_DEFAULT_ORGANIZATION_ID"]
        application = iam.create_application(description="", name=name, organization_id=organization)
        if rules:
            iam.create_policy(description="", name=f"{name}-policy", organization_id=organization,
                              application_id=application.id, rules=rules)
        key = iam.create_api_key(description=name, application_id=application.id, default_project_id=self.project)
        assert key.secret_key
        return application.id, key.access_key, key.secret_key

    def secrets_as(self, access_key: str, secret_key: str) -> SecretV1Beta1API:
        return SecretV1Beta1API(self.client(access_key, secret_key))


def secret_access(project: str) -> list[RuleSpecs]:
    return [RuleSpecs(condition="", permission_set_names=["SecretManagerSecretAccess"], project_ids=[project])]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("secret-access")
    with running_lab(work) as env:
        project = env["SCW_DEFAULT_PROJECT_ID"]
        deployer = SecretV1Beta1API(Client(access_key=env["SCW_ACCESS_KEY"], secret_key=env["SCW_SECRET_KEY"],
                                           default_project_id=project, default_region="fr-par",
                                           api_url=env["SCW_API_URL"]))
        secret = deployer.create_secret(name=NAME, protected=False, project_id=project, path=PATH)
        deployer.create_secret_version(secret_id=secret.id, data=b64(FIRST))
        deployer.create_secret_version(secret_id=secret.id, data=b64(SECOND))
        yield World(env, work / "lab", project, secret.id)


def refusal(call) -> tuple[int, dict]:
    with pytest.raises(ScalewayException) as raised:
        call()
    return raised.value.status_code, raised.value.response.json()


def permissions_denied(resource: str, action: str) -> dict:
    return {"details": [{"action": action, "resource": resource}], "message": "insufficient permissions",
            "type": "permissions_denied"}


DENIED_AUTHENTICATION = {"message": "authentication is denied", "method": "api_key", "reason": "not_found",
                         "type": "denied_authentication"}


def test_an_application_with_secret_access_reads_payloads_by_path_and_by_revision_and_nothing_else(world):
    _, access_key, secret_key = world.application("paseto-reader", secret_access(world.project))
    api = world.secrets_as(access_key, secret_key)

    latest = api.access_secret_version_by_path(secret_path=PATH, secret_name=NAME, revision="latest")
    assert (latest.secret_id, latest.revision, base64.b64decode(latest.data)) == (world.secret_id, 2, SECOND)
    first = api.access_secret_version_by_path(secret_path=PATH, secret_name=NAME, revision="1")
    assert (first.revision, base64.b64decode(first.data)) == (1, FIRST)
    enabled = api.access_secret_version_by_path(secret_path=PATH + "/", secret_name=NAME, revision="latest_enabled")
    assert enabled.revision == 2
    by_id = api.access_secret_version(secret_id=world.secret_id, revision="1")
    assert (by_id.revision, by_id.data, by_id.type_) == (1, first.data, first.type_)

    # Writes are refused, and so are metadata reads: SecretManagerSecretAccess is "read
    # access to versions' data" only (Scaleway's permission sets).
    assert refusal(lambda: api.create_secret_version(secret_id=world.secret_id, data=b64(b"x"))) == (
        403, permissions_denied("secret_version", "create"))
    assert refusal(lambda: api.delete_secret(secret_id=world.secret_id)) == (
        403, permissions_denied("secret", "delete"))
    assert refusal(lambda: api.get_secret(secret_id=world.secret_id))[0] == 403
    assert refusal(lambda: api.list_secrets(project_id=world.project, scheduled_for_deletion=False))[0] == 403
    # Nothing changed.
    kept = SecretV1Beta1API(world.deployer).get_secret(secret_id=world.secret_id)
    assert (kept.version_count, kept.deletion_requested_at) == (2, None)

    # An unknown name or path, in a project it may read: not found.
    for path, name in ((PATH, "nope"), ("/ciel/prod", NAME)):
        status, body = refusal(partial(api.access_secret_version_by_path, secret_path=path, secret_name=name,
                                       revision="latest"))
        assert (status, body["type"], body["resource"]) == (404, "not_found", "secret")


def test_an_application_without_a_policy_or_with_one_on_another_project_is_refused(world):
    by_path = {"secret_path": PATH, "secret_name": NAME, "revision": "latest"}
    for name, rules in (("no-policy", []), ("elsewhere", secret_access(OTHER_PROJECT)),
                        ("metadata-only", [RuleSpecs(condition="", permission_set_names=["SecretManagerReadOnly"],
                                                     project_ids=[world.project])])):
        _, access_key, secret_key = world.application(name, rules)
        api = world.secrets_as(access_key, secret_key)
        assert refusal(partial(api.access_secret_version_by_path, **by_path)) == (
            403, permissions_denied("secret_version", "read")), name
        assert refusal(partial(api.access_secret_version, secret_id=world.secret_id, revision="latest"))[0] == 403

    # The read-only application reads the metadata, never the data.
    assert api.get_secret(secret_id=world.secret_id).name == NAME
    assert [version.revision for version in api.list_secret_versions(secret_id=world.secret_id).versions] == [2, 1]

    # An organization-wide rule covers the organization's projects.
    _, access_key, secret_key = world.application("organization-wide", [RuleSpecs(
        condition="", permission_set_names=["SecretManagerFullAccess"], project_ids=None,
        organization_id=world.env["SCW_DEFAULT_ORGANIZATION_ID"])])
    assert base64.b64decode(world.secrets_as(access_key, secret_key).access_secret_version_by_path(**by_path).data) \
        == SECOND


def test_a_deleted_key_or_application_is_refused_everywhere_and_the_deployer_key_still_acts_as_owner(world):
    iam = IamV1Alpha1API(world.deployer)
    by_path = {"secret_path": PATH, "secret_name": NAME, "revision": "latest"}
    _, access_key, secret_key = world.application("revoked-key", secret_access(world.project))
    assert world.secrets_as(access_key, secret_key).access_secret_version_by_path(**by_path).revision == 2
    iam.delete_api_key(access_key=access_key)
    assert refusal(lambda: world.secrets_as(access_key, secret_key).access_secret_version_by_path(**by_path)) == (
        401, DENIED_AUTHENTICATION)
    # On any route, declared permissions or not.
    assert refusal(lambda: IamV1Alpha1API(world.client(access_key, secret_key)).list_applications()) == (
        401, DENIED_AUTHENTICATION)

    application_id, access_key, secret_key = world.application("revoked-application", secret_access(world.project))
    assert world.secrets_as(access_key, secret_key).access_secret_version_by_path(**by_path).revision == 2
    iam.delete_application(application_id=application_id)
    assert refusal(lambda: world.secrets_as(access_key, secret_key).access_secret_version_by_path(**by_path)) == (
        401, DENIED_AUTHENTICATION)

    # A key the lab did not issue acts as the organization owner, as before.
    stranger = world.secrets_as("SCWSTRANGERSTRANGER0", "0ee0ee0e-0000-4000-8000-00000000000f")
    assert stranger.access_secret_version_by_path(**by_path).revision == 2
    assert SecretV1Beta1API(world.deployer).get_secret(secret_id=world.secret_id).name == NAME


def test_a_secret_scheduled_for_deletion_is_not_found_by_path(world):
    api = SecretV1Beta1API(world.deployer)
    doomed = api.create_secret(name="doomed", protected=False, project_id=world.project, path=PATH)
    api.create_secret_version(secret_id=doomed.id, data=b64(b"gone"))
    assert api.access_secret_version_by_path(secret_path=PATH, secret_name="doomed", revision="latest").revision == 1
    api.delete_secret(secret_id=doomed.id)
    status, body = refusal(lambda: api.access_secret_version_by_path(secret_path=PATH, secret_name="doomed",
                                                                     revision="latest"))
    assert (status, body["type"]) == (404, "not_found")


def test_the_lab_keeps_no_secret_key_only_its_digest(world):
    _, access_key, secret_key = world.application("never-stored", secret_access(world.project))
    state = (world.state_dir / "state.json").read_text()
    assert access_key in state and hashlib.sha256(secret_key.encode()).hexdigest() in state
    for path in world.state_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 64 * 1024 * 1024:
            assert secret_key.encode() not in path.read_bytes(), path
    # Nor does the API answer it again.
    assert IamV1Alpha1API(world.deployer).get_api_key(access_key=access_key).secret_key is None
