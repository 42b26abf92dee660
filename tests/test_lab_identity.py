"""The lab's registry, IAM and Secret Manager families: the real provider applies our
constructs' registry namespace, scoped IAM applications (policy, API key) and secrets
against them, the re-plan is empty and destroy succeeds; the API answers with the real
transitions and error shapes."""

from __future__ import annotations

import base64
import json
import re

import pytest

from lab.api import Lab
from lab.families import register_all
from lab.store import Store
from tests.conftest import synth_core
from tests.lab_support import apply_then_replan, engine, lab_answer, running_lab

pytestmark = pytest.mark.engine

# What these families (and the random provider) can produce; a secret whose value needs
# another family (database, cache, queues) is left out.
APPLIED_TYPES = {"scaleway_registry_namespace", "scaleway_iam_application", "scaleway_iam_policy",
                 "scaleway_iam_api_key", "scaleway_secret", "scaleway_secret_version", "random_bytes",
                 "random_password"}
REFERENCE = re.compile(r"\b([a-z]+_[a-z_]+)\.([A-Za-z0-9_]+)\b")
SECRET_MANAGER = "/secret-manager/v1beta1/regions/fr-par"


def identity_config(env: str) -> dict:
    """The resources of these families in `env`'s synthesized core stack, exactly as our
    constructs write them, with the secrets (and random values) whose data they can hold."""
    core = synth_core(env)
    resources = core["resource"]
    chosen: dict[str, dict] = {type_: dict(resources[type_]) for type_ in
                               ("scaleway_registry_namespace", "scaleway_iam_application", "scaleway_iam_policy",
                                "scaleway_iam_api_key")}
    for name, version in resources["scaleway_secret_version"].items():
        references = REFERENCE.findall(version["data"] + version["secret_id"])
        if all(type_ in APPLIED_TYPES for type_, _ in references):
            chosen.setdefault("scaleway_secret_version", {})[name] = version
            for type_, referenced in references:
                chosen.setdefault(type_, {})[referenced] = resources[type_][referenced]
    variables = {name: core["variable"][name] for name in ("project_id", "paseto_access_key", "paseto_refresh_key")}
    return {"variable": variables, "resource": chosen}


def secret_names(config: dict) -> set[str]:
    return {secret["name"] for secret in config["resource"]["scaleway_secret"].values()}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_provider_applies_our_registry_iam_and_secrets_and_the_replan_is_empty(tmp_path, env):
    config = identity_config(env)
    assert {"paseto-access-key", "s3-access-key", "s3-secret-key"} <= secret_names(config)
    directory = tmp_path / "tf"
    directory.mkdir()
    (directory / "identity.tf.json").write_text(json.dumps(config))
    with running_lab(tmp_path / "work") as lab_env:
        lab_env = {**lab_env, "TF_VAR_project_id": lab_env["SCW_DEFAULT_PROJECT_ID"]}
        applied, replan, output = apply_then_replan(directory, lab_env, "")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert replan == 0, output

        state = json.loads(engine(directory, lab_env, "show", "-json").stdout)["values"]["root_module"]["resources"]
        keys = [item for item in state if item["type"] == "scaleway_iam_api_key"]
        assert len(keys) == 3  # media, registry pull, secrets reader
        for key in keys:
            assert re.fullmatch(r"SCW[A-Z0-9]{17}", key["values"]["access_key"])
            assert re.fullmatch(r"[0-9a-f-]{36}", key["values"]["secret_key"])
            assert key["sensitive_values"]["secret_key"] is True
            status, answer = lab_answer(lab_env, f"/iam/v1alpha1/api-keys/{key['values']['access_key']}")
            assert status == 200 and answer["secret_key"] is None
            assert key["values"]["secret_key"] not in json.dumps(answer)

        # The media key's secret reached Secret Manager intact, readable through `access`.
        media_key = next(key for key in keys if "storage" in key["name"])
        stored = next(item for item in state
                      if item["type"] == "scaleway_secret" and item["values"]["name"] == "s3-secret-key")
        secret_id = stored["values"]["id"].split("/")[1]
        status, accessed = lab_answer(lab_env, f"{SECRET_MANAGER}/secrets/{secret_id}/versions/1/access")
        assert status == 200 and base64.b64decode(accessed["data"]).decode() == media_key["values"]["secret_key"]
        assert stored["values"]["path"] == f"/ciel/{env}"

        destroyed = engine(directory, lab_env, "destroy", "-auto-approve", "-input=false")
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
        assert lab_answer(lab_env, f"/iam/v1alpha1/api-keys/{media_key['values']['access_key']}")[0] == 404


def call(lab: Lab, method: str, path: str, body: dict | None = None, **query: str) -> tuple[int, object]:
    return lab.handle(method, path, {name: [value] for name, value in query.items()}, body)


def test_the_api_answers_with_the_recorded_transitions_and_error_shapes():
    lab = register_all(Lab(Store()))
    project = "1ab1ab1a-0000-4000-8000-000000000001"

    # Registry: ready at once; deleting answers `deleting`, then the bare 404 of this API.
    status, namespace = call(lab, "POST", "/registry/v1/regions/fr-par/namespaces",
                             {"name": "ciel-dev", "project_id": project, "is_public": False})
    assert (status, namespace["status"], namespace["endpoint"]) == (200, "ready", "rg.fr-par.scw.cloud/ciel-dev")
    item = f"/registry/v1/regions/fr-par/namespaces/{namespace['id']}"
    assert call(lab, "DELETE", item)[1]["status"] == "deleting"
    assert call(lab, "GET", item) == (404, {"message": "Namespace was not found"})

    # IAM: an unknown permission set, or an organization one on projects, is refused.
    _, application = call(lab, "POST", "/iam/v1alpha1/applications", {"name": "app", "organization_id": project})
    for names in (["ContainerRegistryReadOnli"], ["IAMManager"]):
        status, refused = call(lab, "POST", "/iam/v1alpha1/policies", {
            "name": "p", "organization_id": project, "application_id": application["id"],
            "rules": [{"permission_set_names": names, "project_ids": [project]}]})
        assert (status, refused["type"]) == (400, "invalid_arguments")
    # Deleting an application deletes its keys.
    _, key = call(lab, "POST", "/iam/v1alpha1/api-keys", {"application_id": application["id"]})
    assert call(lab, "DELETE", f"/iam/v1alpha1/applications/{application['id']}") == (204, None)
    assert call(lab, "GET", f"/iam/v1alpha1/api-keys/{key['access_key']}")[1]["resource"] == "access_key"

    # Secret Manager: a protected secret refuses deletion (412); a secret with versions is
    # scheduled for deletion (still readable, no longer listed); one without is gone.
    _, kept = call(lab, "POST", f"{SECRET_MANAGER}/secrets", {"name": "a", "project_id": project, "protected": True})
    status, refused = call(lab, "DELETE", f"{SECRET_MANAGER}/secrets/{kept['id']}")
    assert (status, refused["precondition"]) == (412, "protected_resource")
    call(lab, "POST", f"{SECRET_MANAGER}/secrets/{kept['id']}/unprotect", {})
    call(lab, "POST", f"{SECRET_MANAGER}/secrets/{kept['id']}/versions", {"data": base64.b64encode(b"v1").decode()})
    assert call(lab, "DELETE", f"{SECRET_MANAGER}/secrets/{kept['id']}") == (204, None)
    assert call(lab, "GET", f"{SECRET_MANAGER}/secrets/{kept['id']}")[1]["deletion_requested_at"]
    _, version = call(lab, "GET", f"{SECRET_MANAGER}/secrets/{kept['id']}/versions/1")
    assert version["status"] == "scheduled_for_deletion"
    assert call(lab, "GET", f"{SECRET_MANAGER}/secrets", scheduled_for_deletion="false")[1]["total_count"] == 0
    _, empty = call(lab, "POST", f"{SECRET_MANAGER}/secrets", {"name": "b", "project_id": project})
    call(lab, "DELETE", f"{SECRET_MANAGER}/secrets/{empty['id']}")
    assert call(lab, "GET", f"{SECRET_MANAGER}/secrets/{empty['id']}")[0] == 404
