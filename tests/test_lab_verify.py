"""`ciel verify` on the local Scaleway, as a user runs it: after `deploy phase1` (which runs
it too) every check of dev passes or does not apply; a fault injected for one check fails
that check alone, with a message that says where to look."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_ciel
from tests.lab_support import lab_answer, lab_json, running_lab

pytestmark = pytest.mark.engine
WAIT = "20"  # the deploy has waited for the LB and the first logs already


def ciel(env: dict[str, str], *args: str, expect: int = 0):
    result = run_ciel(*args, env=env)
    assert result.returncode == expect, f"ciel {' '.join(args)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def verify(env: dict[str, str], expect: int = 0) -> dict[str, dict]:
    report = json.loads(ciel(env, "verify", "--env", "dev", "--json", "--wait", WAIT, expect=expect).stdout)
    assert report["live"] is True and report["ok"] is (expect == 0)
    return {check["name"]: check for check in report["checks"]}


def delete_named(lab_env: dict[str, str], collection: str, name: str) -> None:
    """Delete the project's object called `name` in a collection of the lab's API."""
    listed = lab_json(lab_env, f"{collection}?project_id={lab_env['SCW_DEFAULT_PROJECT_ID']}")
    items = next(value for value in listed.values() if isinstance(value, list))
    found = next(item for item in items if item["name"] == name)
    status, _ = lab_answer(lab_env, f"{collection}/{found['id']}", method="DELETE")
    assert status in (200, 204), (collection, name, status)


def failed(checks: dict[str, dict]) -> list[str]:
    return [name for name, check in checks.items() if check["status"] == "fail"]


def test_verify_passes_on_a_deployed_dev_and_a_fault_fails_its_check_alone(tmp_path):
    work = tmp_path / "work"
    with running_lab(work) as lab_env:
        env = {**lab_env, "CIEL_WORK_DIR": str(work)}
        ciel(env, "state", "bootstrap", "--env", "dev")
        deployed = ciel(env, "deploy", "phase1", "--env", "dev", "--yes")
        assert "Verification of dev" in deployed.stdout  # the deploy verified what it applied

        checks = verify(env)
        assert {name: check["status"] for name, check in checks.items()} == {
            "health": "pass", "database": "pass", "redis": "pass", "storage": "pass", "cdn": "pass",
            "queue": "pass", "dns": "skip", "logs": "pass"}  # the mvp tier has the plan's CDN
        assert checks["dns"]["detail"] == "no domain in this environment"

        # The app loses its database, then its Redis (what its /health reports).
        faults = work / "lab" / "faults" / "dependencies"
        faults.mkdir(parents=True, exist_ok=True)
        for dependency, variable in (("database", "DATABASE_URL"), ("redis", "REDIS_URL")):
            (faults / dependency).touch()
            checks = verify(env, expect=1)
            assert failed(checks) == [dependency]
            assert f"the app reports {dependency} failing: {dependency} unreachable" in checks[dependency]["detail"]
            assert f"Check {variable}" in checks[dependency]["detail"]
            (faults / dependency).unlink()

        # The app's queue credentials are revoked: only the queue round trip fails.
        delete_named(lab_env, "/mnq/v1beta1/regions/fr-par/sqs-credentials", "ciel-dev-app")
        checks = verify(env, expect=1)
        assert failed(checks) == ["queue"] and "Check the app's queue credentials" in checks["queue"]["detail"]
        # The next deploy puts them back (and the app's secret with them).
        ciel(env, "deploy", "phase1", "--env", "dev", "--yes", "--no-verify")
        assert failed(verify(env)) == []

        # The query token is deleted: only the logs check fails.
        delete_named(lab_env, "/cockpit/v1/regions/fr-par/tokens", "ciel-dev-verify")
        checks = verify(env, expect=1)
        assert failed(checks) == ["logs"] and "no log line of dev in Cockpit" in checks["logs"]["detail"]
