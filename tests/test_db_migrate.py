"""`ciel db migrate`: offline it prints exactly its steps and calls nothing; the API
machines carry the runner, its timer and its log source, the workers none of them; the
stand-in image refuses the app's role. The run itself: tests/test_lab_db_migrate.py."""

from __future__ import annotations

import subprocess
import sys

import yaml

from infra.cloudinit.app import MIGRATION_RUNNER_SOURCE
from tests.conftest import REPO_ROOT, run_ciel, synth_core
from tests.test_compute import user_data, written_file


def test_offline_it_prints_its_steps_and_calls_nothing(tmp_path):
    # Any call would go to these closed addresses and fail: none is made.
    closed = {"SCW_API_URL": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "CIEL_WORK_DIR": str(tmp_path)}
    result = run_ciel("db", "migrate", "--env", "staging", "--image-tag", "2.0.1", env=closed)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "ciel db migrate --env staging would, with credentials:" in text
    assert "1. read the newest request of staging's Secret Manager secret /ciel/staging/migration-request" in text
    assert "<registry_endpoint>/ciel:2.0.1 once with APP_MODE=migrate and DATABASE_URL from " \
           "/ciel/staging/migrator-database-url (the migrator's, never the app's)" in text
    assert '{environment="staging", unit="ciel-migrate"}' in text and "6. exit 0 if N is 0" in text
    assert "OFFLINE: nothing was called." in text
    assert not (tmp_path / "offline").exists()  # not even a synthesis


def test_bad_input_is_refused_before_anything_else():
    moving = run_ciel("db", "migrate", "--env", "prod", "--image-tag", "main")
    assert moving.returncode == 2 and "--image-tag 'main' is a moving tag, refused outside dev" in moving.stderr
    unknown = run_ciel("db", "migrate", "--env", "qa")
    assert unknown.returncode == 2 and "unknown environment 'qa'" in unknown.stderr
    short = run_ciel("db", "migrate", "--env", "dev", "--timeout", "5")
    assert short.returncode == 2 and "--timeout" in short.stderr
    help_text = " ".join(run_ciel("db", "migrate", "--help").stdout.split())
    assert "as the migrator" in help_text and "calls nothing" in help_text and "one run at a time" in help_text


def test_api_machines_carry_the_runner_its_timer_and_its_log_source_and_workers_none():
    stack = synth_core("dev")
    api, worker = user_data(stack, "api"), user_data(stack, "worker")
    runner = written_file(api, "/usr/local/sbin/ciel-migrate")
    assert runner["content"] == MIGRATION_RUNNER_SOURCE.read_text() and runner["permissions"] == "0755"
    service = written_file(api, "/etc/systemd/system/ciel-migrate.service")["content"]
    assert "Type=oneshot" in service and "ExecStart=/usr/local/sbin/ciel-migrate" in service
    timer = written_file(api, "/etc/systemd/system/ciel-migrate.timer")["content"]
    assert "OnUnitInactiveSec=10s" in timer and "WantedBy=timers.target" in timer
    assert "systemctl enable --now ciel-migrate.timer" in yaml.safe_load(api)["runcmd"]
    alloy = written_file(api, "/etc/ciel/alloy.alloy")["content"]
    assert 'matches    = "_SYSTEMD_UNIT=ciel-migrate.service"' in alloy and 'unit = "ciel-migrate"' in alloy
    assert "ciel-migrate" not in worker


def test_the_stand_in_image_refuses_to_migrate_with_the_apps_role(tmp_path):
    env_file = tmp_path / "migrate.env"

    def run(user: str) -> subprocess.CompletedProcess:
        env_file.write_text(f"APP_MODE=migrate\nDATABASE_URL=postgresql://{user}:pw@10.0.0.5:5432/ciel\n")
        return subprocess.run([sys.executable, "-m", "lab.dataplane.standin", "--mode", "migrate", "--name", "m",
                               "--version", "1", "--env-file", str(env_file), "--lab-dir", str(tmp_path)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)

    refused = run("ciel")
    assert refused.returncode == 1 and 'role "ciel" may not create tables' in refused.stdout
    assert not (tmp_path / "databases").exists()
    applied = run("ciel_migrator")
    assert applied.returncode == 0 and "3 pending" in applied.stdout
    assert (tmp_path / "databases" / "10.0.0.5_5432_ciel.json").exists()


def test_a_run_on_instances_that_keep_their_logs_is_refused_before_any_call(environments_dir):
    from foundation.paths import ENVIRONMENTS_DIR

    (environments_dir / "dev.yaml").write_text((ENVIRONMENTS_DIR / "dev.yaml").read_text()
                                               + "ship_logs_to_cockpit: false\n")
    refused = run_ciel("db", "migrate", "--env", "dev", env={"SCW_API_URL": "http://127.0.0.1:9"})
    assert refused.returncode == 2 and "ship_logs_to_cockpit: false" in refused.stderr
    assert "--on cluster" in " ".join(refused.stderr.split())


def test_the_runner_prefixes_its_lines_with_the_label_ciel_looks_for():
    """The runner stands alone on the machine (no import of ours): its prefix is the label by name."""
    import importlib.util

    from infra.cloudinit.app import MIGRATION_LOG_LABEL

    spec = importlib.util.spec_from_file_location("run_migration", MIGRATION_RUNNER_SOURCE)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    assert runner.PREFIX == MIGRATION_LOG_LABEL
