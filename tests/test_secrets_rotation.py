"""`ciel secrets rotate`: which secrets, what its plan may hold, what the CLI says.
The live path (apply, restarts under traffic) runs on the local Scaleway in
tests/test_lab_rehearsal.py (scenario rotate-secret)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciel.secrets_rotation import refuse_other_changes, rotated_config
from ciel.workspace import PlanResult, ResourceChange
from foundation.errors import CielError, UsageError
from infra.config import load_environment
from tests.conftest import run_ciel

ROTATION = [
    ResourceChange("random_bytes.secrets_paseto_access_bytes_6F4F1F48", "random_bytes", ("delete", "create")),
    ResourceChange("scaleway_secret_version.secrets_secret_paseto_access_key_version_00E70627",
                   "scaleway_secret_version", ("create", "delete")),
]


def plan(*changes: ResourceChange) -> PlanResult:
    return PlanResult(plan_file=Path("plan.tfplan"), changes=list(changes), raw={})


def test_each_rotation_raises_the_count_of_that_secret_only():
    config = load_environment("dev")
    once, generation = rotated_config(config, "paseto-access-key")
    assert generation == 1 and once.secret_rotations == {"paseto-access-key": 1}
    twice, generation = rotated_config(once, "paseto-access-key")
    assert generation == 2 and twice.secret_rotations == {"paseto-access-key": 2}
    both, _ = rotated_config(twice, "paseto-refresh-key")
    assert both.secret_rotations == {"paseto-access-key": 2, "paseto-refresh-key": 1}


def test_only_generated_secrets_rotate_and_the_admin_token_only_where_it_exists():
    with pytest.raises(UsageError, match="'database-url' is not a secret ciel generates"):
        rotated_config(load_environment("dev"), "database-url")
    with pytest.raises(UsageError, match="dev has no admin token"):
        rotated_config(load_environment("dev"), "admin-token")
    assert rotated_config(load_environment("prod"), "admin-token")[1] == 1


def test_the_plan_may_hold_the_rotation_and_nothing_else():
    check = refuse_other_changes("paseto-access-key")
    check(plan(*ROTATION))
    with pytest.raises(CielError, match="would also change scaleway_instance_server.compute_api_0"):
        check(plan(*ROTATION, ResourceChange("scaleway_instance_server.compute_api_0_8541E40A",
                                             "scaleway_instance_server", ("delete", "create"))))
    with pytest.raises(CielError, match="would also change random_bytes.secrets_paseto_refresh"):
        check(plan(*ROTATION, ResourceChange("random_bytes.secrets_paseto_refresh_bytes_83953F9F", "random_bytes",
                                             ("delete", "create"))))
    with pytest.raises(CielError, match="does not change paseto-access-key"):
        check(plan())


def test_the_cli_refuses_an_unknown_secret_before_anything_runs(tmp_path):
    result = run_ciel("secrets", "rotate", "--env", "dev", "database-url", env={"CIEL_WORK_DIR": str(tmp_path)})
    assert result.returncode != 0 and "is not a secret ciel generates" in result.stderr
    assert not (tmp_path / "offline").exists()  # nothing synthesized
    help_text = run_ciel("secrets", "rotate", "--help").stdout
    assert "--allow-downtime" in help_text and "no machine is replaced" in " ".join(help_text.split())
