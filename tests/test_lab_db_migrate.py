"""`ciel db migrate` on the local Scaleway, as a user runs it.

After `deploy phase1`: the request goes through the lab's Secret Manager, the API
machine's own `ciel-migrate` runs it (the stand-in image's migrate mode in place of the
Ciel image), its output reaches ciel through the machine's Alloy and Cockpit. After
`deploy phase2`, `--on cluster`: a Job on the lab's real Kubernetes API server, run by
the lab's stand-in kubelet, its output read through the API's pods/log. Either way a
failed migration fails the command with its output; a second run changes nothing; a
second command while one runs is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from foundation.paths import ENVIRONMENTS_DIR
from tests.conftest import CIEL, REPO_ROOT, run_ciel
from tests.lab_support import lab_json, running_lab, wait_until

pytestmark = pytest.mark.engine
TIMEOUT = "120"


def migrate(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    """`ciel db migrate`; its .output: what it printed, the run's lines (on stderr, with the progress) included."""
    result = run_ciel("db", "migrate", "--env", "dev", "--image-tag", "1.4.3", "--timeout", TIMEOUT, *extra, env=env)
    result.output = result.stdout + result.stderr
    result.said = " ".join(result.stderr.split())  # the errors, as one line (the console wraps them)
    return result


def test_migrations_run_once_on_an_api_machine_as_the_migrator_and_a_failure_fails_the_release(tmp_path):
    work, environments = tmp_path / "work", tmp_path / "environments"
    environments.mkdir()
    shutil.copy(ENVIRONMENTS_DIR / "dev.yaml", environments)  # deploy phase2 records `phase: 2` in it
    with running_lab(work) as lab_env:
        env = {**lab_env, "CIEL_WORK_DIR": str(work), "CIEL_ENVIRONMENTS_DIR": str(environments)}
        lab = work / "lab"
        assert run_ciel("state", "bootstrap", "--env", "dev", env=env).returncode == 0
        # Nothing deployed: nothing to migrate yet, which the deploy workflow tells apart (exit 4).
        early = migrate(env)
        assert early.returncode == 4, early.output[-2000:]
        assert "dev was never deployed" in early.said and "then `ciel db migrate`" in early.said
        deployed = run_ciel("deploy", "phase1", "--env", "dev", "--yes", "--no-verify", env=env)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

        # A migration that fails: the command fails, with the migration's own words.
        faults = lab / "faults"
        faults.mkdir(parents=True, exist_ok=True)
        (faults / "migration").write_text('relation "photos" already exists')
        failed = migrate(env)
        assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
        assert 'ERROR: 0001_create_photos: relation "photos" already exists' in failed.output
        assert "Migration failed" in failed.said and "exit 1" in failed.said and "do not deploy" in failed.said
        databases = lab / "databases"
        assert not any(databases.glob("*.json"))  # nothing applied
        (faults / "migration").unlink()

        # It runs, once, with the migrator's role, on the first API machine.
        done = migrate(env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "on ciel-dev-api-0" in done.output and "as the migrator" in done.output
        for name in ("0001_create_photos", "0002_create_albums", "0003_index_photos_by_album"):
            assert f"applying {name}" in done.output
        assert "schema is current: 0003_index_photos_by_album (3 migrations)" in done.output
        assert "Migrated dev to 1.4.3" in done.stdout
        [database] = databases.glob("*.json")
        assert json.loads(database.read_text())[-1] == "0003_index_photos_by_album"
        # The app's container never gets the migrator's URL; the runner's env file is gone.
        machines = list((lab / "machines").iterdir())
        for machine in machines:
            app_env = machine / "etc/ciel/app.env"
            if app_env.exists():
                assert "ciel_migrator" not in app_env.read_text()
            assert not (machine / "run/ciel/migrate.env").exists()
        assert "postgresql://" not in done.output

        # Idempotent: a second run finds nothing pending.
        again = migrate(env)
        assert again.returncode == 0 and "0 pending" in again.output and "applying" not in again.output

        # One at a time: while a slow run is under way, a second command is refused.
        database.unlink()
        (faults / "migration-seconds").write_text("4")
        first = subprocess.Popen([CIEL, "db", "migrate", "--env", "dev", "--image-tag", "1.4.3", "--timeout", TIMEOUT],
                                 env={**os.environ, "COLUMNS": "200", **env}, cwd=REPO_ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: any((machine / "run/ciel/migrate.env").exists() for machine in machines),
                       seconds=60, what="the first run to start on the machine")
            second = migrate(env)
            assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
            assert "has not reported its end: one migration runs at a time" in second.said
            stdout, stderr = first.communicate(timeout=120)
        finally:
            first.kill()
        assert first.returncode == 0, stdout[-3000:] + stderr[-3000:]
        assert (stdout + stderr).count("applying") == 3
        # Four requests written (the refused one wrote none): only the newest two are kept.
        project = lab_env["SCW_DEFAULT_PROJECT_ID"]
        [request_secret] = lab_json(lab_env, f"/secret-manager/v1beta1/regions/fr-par/secrets?project_id={project}"
                                             "&name=migration-request")["secrets"]
        versions = lab_json(lab_env, f"/secret-manager/v1beta1/regions/fr-par/secrets/{request_secret['id']}"
                                     "/versions")["versions"]
        assert sorted(version["revision"] for version in versions if version["status"] == "enabled") == [3, 4]


        # Phase 2: the same migrations as a Job in the cluster, beside the instances.
        deployed = run_ciel("deploy", "phase2", "--env", "dev", "--yes", "--no-verify", env=env)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        database.unlink()
        (faults / "migration-seconds").unlink()
        (faults / "migration").write_text("deadlock detected")
        failed = migrate(env, "--on", "cluster")
        assert failed.returncode == 1, failed.output[-3000:]
        assert "│ ERROR: 0001_create_photos: deadlock detected" in failed.output
        assert "Migration failed" in failed.said and "kubectl -n ciel logs job/migrate-" in failed.said
        (faults / "migration").unlink()
        done = migrate(env, "--on", "cluster")
        assert done.returncode == 0, done.output[-3000:]
        assert "on the cluster (namespace ciel)" in done.output and done.output.count("│ applying") == 3
        assert json.loads(database.read_text())[-1] == "0003_index_photos_by_album"
        again = migrate(env, "--on", "cluster")
        assert again.returncode == 0 and "│ ciel 1.4.3: schema at 0003_index_photos_by_album, 0 pending" in again.output
        jobs = _migration_jobs(lab_env, tmp_path)
        assert [job["status"] for job in jobs] == ["Failed", "Complete", "Complete"], jobs
        assert all(job["env_from"] == [{"secretRef": {"name": "ciel-migrator"}}] for job in jobs)


def _migration_jobs(lab_env: dict[str, str], tmp_path) -> list[dict]:
    """The migration Jobs on the lab's Kubernetes API server (through the cluster's own
    kubeconfig), oldest first."""
    import base64

    import yaml
    from kubernetes import client

    from lab.kubernetes.apiserver import admin_client

    project = lab_env["SCW_DEFAULT_PROJECT_ID"]
    [cluster] = lab_json(lab_env, f"/k8s/v1/regions/fr-par/clusters?project_id={project}")["clusters"]
    kubeconfig = yaml.safe_load(base64.b64decode(
        lab_json(lab_env, f"/k8s/v1/regions/fr-par/clusters/{cluster['id']}/kubeconfig")["content"]))
    ca_file = tmp_path / "cluster-ca.pem"
    ca_file.write_bytes(base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]))
    api = admin_client(kubeconfig["clusters"][0]["cluster"]["server"], kubeconfig["users"][0]["user"]["token"], ca_file)
    jobs = client.BatchV1Api(api).list_namespaced_job("ciel", label_selector="app.kubernetes.io/component=migration")
    found = []
    for job in sorted(jobs.items, key=lambda job: job.metadata.creation_timestamp):
        container = job.spec.template.spec.containers[0]
        status = next((c.type for c in job.status.conditions or [] if c.type in ("Complete", "Failed")), None)
        found.append({"name": job.metadata.name, "status": status,
                      "env_from": api.sanitize_for_serialization(container.env_from)})
    return found
