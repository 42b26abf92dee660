"""One environment per Scaleway project: a second one is refused before any plan, on what
the project itself holds (read through the real SDK from the local Scaleway)."""

from __future__ import annotations

import base64

import pytest

from ciel.project_owner import environments_in_project, refuse_a_second_environment
from foundation.errors import UsageError
from infra.config import load_environment
from tests.conftest import run_ciel
from tests.lab_support import lab_json, running_lab

pytestmark = pytest.mark.engine


def _client(lab_env: dict[str, str]):
    from scaleway import Client

    return Client(access_key=lab_env["SCW_ACCESS_KEY"], secret_key=lab_env["SCW_SECRET_KEY"],
                  default_project_id=lab_env["SCW_DEFAULT_PROJECT_ID"], default_region="fr-par",
                  default_zone="fr-par-1", api_url=lab_env["SCW_API_URL"])


def test_a_second_environment_in_a_project_is_refused_before_any_plan(tmp_path):
    with running_lab(tmp_path / "work") as lab_env:
        project = lab_env["SCW_DEFAULT_PROJECT_ID"]
        # What `deploy phase1 --env dev` leaves in the project: its secrets under /ciel/dev.
        secret = lab_json(lab_env, "/secret-manager/v1beta1/regions/fr-par/secrets",
                          {"name": "paseto-access-key", "project_id": project, "path": "/ciel/dev"})
        lab_json(lab_env, f"/secret-manager/v1beta1/regions/fr-par/secrets/{secret['id']}/versions",
                 {"data": base64.b64encode(b"x" * 32).decode()})
        client = _client(lab_env)
        assert environments_in_project(client, project, "fr-par") == {"dev": "/ciel/dev"}
        refuse_a_second_environment(load_environment("dev"), client, project)  # its own project: fine

        result = run_ciel("deploy", "phase1", "--env", "prod", env={**lab_env, "CIEL_WORK_DIR": str(tmp_path / "w")})
        assert result.returncode != 0
        message = " ".join((result.stdout + result.stderr).split())
        assert f"project {project} already holds the environment 'dev' (Secret Manager folder /ciel/dev)" in message
        assert "Queues (SQS) activation" in message and "SCW_DEFAULT_PROJECT_ID" in message
        assert "synthesized" not in message  # refused before the stack was even built
        with pytest.raises(UsageError, match="already holds the environment 'dev'"):
            refuse_a_second_environment(load_environment("staging"), client, project)
