"""The cutover's record and lock beside the Terraform state, in Object Storage (the lab's):
two checkouts of the project — two operators — see the same cutover, and the second
cannot start another while the first runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ciel.migration import placeholder_target, thresholds_for
from foundation.errors import CielError
from infra.config import load_environment
from migrate.model import Record
from tests.conftest import REPO_ROOT, run_ciel
from tests.lab_support import running_lab

pytestmark = pytest.mark.engine


def store_of(lab_env: dict[str, str], monkeypatch, checkout) -> object:
    """What `ciel` on that checkout uses: found from the environment, as a user runs it."""
    from ciel.state_bucket import cutover_store

    for name, value in lab_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CIEL_WORK_DIR", str(checkout))
    return cutover_store("dev")


def test_two_checkouts_share_one_cutover_record_and_lock(tmp_path, monkeypatch):
    with running_lab(tmp_path / "lab") as lab_env:
        cli = lambda checkout, *args: run_ciel(*args, env={**lab_env, "CIEL_WORK_DIR": str(checkout)})  # noqa: E731
        assert cli(tmp_path / "a", "state", "bootstrap", "--env", "dev").returncode == 0
        first, second = store_of(lab_env, monkeypatch, tmp_path / "a"), store_of(lab_env, monkeypatch, tmp_path / "b")
        assert first.location == second.location and first.location.startswith("s3://ciel-tfstate-")

        config = load_environment("dev")
        record = Record(env="dev", target=vars(placeholder_target(config)).copy(),
                        thresholds=vars(thresholds_for(config)).copy(), completed=["preflight", "preview", "switch"])
        with first.lock():
            first.save(record)
            with pytest.raises(CielError, match=r"another cutover run of dev holds the lock \(.*pid \d+"):
                with second.lock():
                    pass
            # The other operator sees where the cutover stands, and cannot deploy through it.
            status = cli(tmp_path / "b", "migrate", "status", "--env", "dev")
            assert status.returncode == 0 and "dev: switch" in status.stdout, status.stderr
            deploy = cli(tmp_path / "b", "deploy", "phase1", "--env", "dev", "--yes")
            assert deploy.returncode == 1 and "a cutover of dev is in progress (state switch)" in deploy.stderr
        with second.lock():  # released on exit: the second operator may now resume it
            assert second.load().completed == ["preflight", "preview", "switch"]


def test_a_lock_left_by_a_dead_run_is_named_and_removed_only_when_asked(tmp_path, monkeypatch):
    with running_lab(tmp_path / "lab") as lab_env:
        cli = lambda *args: run_ciel(*args, env={**lab_env, "CIEL_WORK_DIR": str(tmp_path / "a")})  # noqa: E731
        assert cli("state", "bootstrap", "--env", "dev").returncode == 0
        store = store_of(lab_env, monkeypatch, tmp_path / "a")
        # A run killed (SIGKILL) while holding the lock: the object stays, naming its holder.
        holder = subprocess.Popen(
            [sys.executable, "-c", "import time\nfrom ciel.state_bucket import cutover_store\n"
             "with cutover_store('dev').lock():\n    print('locked', flush=True)\n    time.sleep(60)"],
            stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
            env={**os.environ, **lab_env, "CIEL_WORK_DIR": str(tmp_path / "a")})
        assert holder.stdout.readline().strip() == "locked"
        holder.kill()
        holder.wait()
        assert f"pid {holder.pid}" in store.holder()
        declined = cli("migrate", "unlock", "--env", "dev")  # no terminal: the question is answered no
        assert declined.returncode == 1 and store.holder() is not None
        removed = cli("migrate", "unlock", "--env", "dev", "--yes")
        assert removed.returncode == 0 and "lock of" in removed.stdout and store.holder() is None
        assert "no cutover lock held" in cli("migrate", "unlock", "--env", "dev").stdout
