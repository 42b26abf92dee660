"""The `ciel` command as a user meets it: help, errors, exit codes."""

from __future__ import annotations

from tests.conftest import run_ciel


def test_top_level_help_explains_the_three_user_commands():
    result = run_ciel("--help")
    assert result.returncode == 0
    for text in ("ciel deploy phase1 --env dev", "ciel deploy phase2 --env dev", "ciel migrate cutover --env dev",
                 "offline", "doctor", "setup", "synth", "plan"):
        assert text in result.stdout


def test_deploy_help_lists_both_phases_and_phase1_help_lists_its_options():
    assert {"phase1", "phase2"} <= set(run_ciel("deploy", "--help").stdout.split())
    phase1 = run_ciel("deploy", "phase1", "--help").stdout
    for option in ("--env", "--yes", "--offline", "--engine", "--provider-source"):
        assert option in phase1


def test_unknown_environment_is_one_actionable_line_and_exit_2():
    result = run_ciel("deploy", "phase1", "--env", "production")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown environment 'production'" in lines[0] and "dev, prod, staging" in lines[0]


def test_invalid_config_stops_before_the_engine_or_bindings(environments_dir, tmp_path):
    (environments_dir / "qa.yaml").write_text("private_network_cidr: 300.0.0.0/24\n")
    # An empty cache: had deploy gone past config validation, it would fail on the toolchain instead.
    result = run_ciel("deploy", "phase1", "--env", "qa", env={"CIEL_CACHE_DIR": str(tmp_path / "empty-cache")})
    assert result.returncode == 2
    assert "qa.yaml: private_network_cidr:" in result.stderr
    assert "init" not in result.stderr and "bindings" not in result.stderr


def test_missing_env_option_is_a_usage_error():
    result = run_ciel("deploy", "phase1")
    assert result.returncode == 2
    assert "--env" in result.stderr


def test_unknown_engine_is_refused():
    result = run_ciel("deploy", "phase1", "--env", "dev", "--engine", "pulumi")
    assert result.returncode == 2
    assert "unknown engine 'pulumi'" in result.stderr and "terraform, tofu" in result.stderr


def test_phase2_help_explains_both_steps():
    text = run_ciel("deploy", "phase2", "--help").stdout
    assert "Step 1" in text and "Step 2" in text and "phase: 2" in text


def test_doctor_reports_each_component_in_one_table():
    result = run_ciel("doctor")
    for component in ("engine", "provider scaleway/scaleway", "provider hashicorp/kubernetes", "node",
                      "cdktn CLI", "bindings scaleway/scaleway", "scaleway credentials"):
        assert component in result.stdout
    assert "none found: deploy plans offline" in result.stdout
    assert result.returncode == 0, result.stdout  # setup has run: nothing is missing


def test_doctor_fails_and_says_what_to_run_when_the_cache_is_empty(tmp_path):
    result = run_ciel("doctor", env={"CIEL_CACHE_DIR": str(tmp_path / "empty")})
    assert result.returncode == 1
    assert "missing" in result.stdout and "./setup.sh" in result.stdout


def test_env_prints_the_contract_without_any_secret_value():
    result = run_ciel("env", "--env", "prod")
    assert result.returncode == 0, result.stderr
    for variable in ("DATABASE_URL", "REDIS_URL", "S3_BUCKET", "S3_PUBLIC_ENDPOINT", "QUEUE_NAME", "PASETO_ACCESS_KEY",
                     "APP_MODE", "HTTP_ADDR"):
        assert variable in result.stdout
    assert "ciel-media-jobs" in result.stdout and "/ciel/prod/database-url" in result.stdout
    assert "postgresql://" not in result.stdout and "(secret)" in result.stdout


def test_state_bootstrap_without_credentials_explains_why_it_cannot_run():
    result = run_ciel("state", "bootstrap", "--env", "dev")
    assert result.returncode == 2
    assert "needs Scaleway credentials" in result.stderr and "--dry-run" in result.stderr


def test_state_bootstrap_dry_run_without_credentials_prints_the_calls_with_a_placeholder():
    result = run_ciel("state", "bootstrap", "--env", "dev", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would call s3.create_bucket(Bucket='ciel-tfstate-<your-project-id>'" in result.stdout
    assert "dry run: nothing called" in result.stdout


def test_synth_writes_the_workloads_stack_too_in_phase_2(tmp_path):
    from pathlib import Path

    work = {"CIEL_WORK_DIR": str(tmp_path)}
    phase1 = run_ciel("synth", "--env", "dev", env=work)
    assert phase1.returncode == 0, phase1.stderr
    assert [line.split(":")[0] for line in phase1.stdout.splitlines()] == ["ciel-dev-core"]
    phase2 = run_ciel("synth", "--env", "dev", "--phase", "2", env=work)
    assert phase2.returncode == 0, phase2.stderr
    written = dict(line.split(": ", 1) for line in phase2.stdout.splitlines())
    assert set(written) == {"ciel-dev-core", "ciel-dev-workloads"}
    assert all(Path(path).is_file() for path in written.values())
    assert "scaleway_k8s_cluster" in Path(written["ciel-dev-core"]).read_text()
    assert "kubernetes_deployment_v1" in Path(written["ciel-dev-workloads"]).read_text()


def test_synth_phase_option_is_validated_against_the_environment(environments_dir):
    (environments_dir / "qa.yaml").write_text('phase: 2\ntraffic: cluster\nimage_tag: "1.0.0"\n')
    result = run_ciel("synth", "--env", "qa", "--phase", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--phase 1: traffic: cluster needs phase: 2" in result.stderr
    assert run_ciel("synth", "--env", "qa", "--phase", "3").returncode == 2


def test_synth_help_says_what_offline_does_without_mentioning_a_plan():
    text = run_ciel("synth", "--help").stdout
    assert "--phase" in text and "runs no engine" in text
    offline = text[text.index("--offline"):text.index("--phase")]
    assert "plan" not in offline.lower() and "backend" in offline
