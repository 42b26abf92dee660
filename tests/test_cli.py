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
    assert "needs Scaleway credentials" in result.stderr
