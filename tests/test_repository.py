"""The repository's promises to a newcomer: CI runs the README's test command."""

from __future__ import annotations

from tests.conftest import REPO_ROOT


def _readme_commands() -> list[str]:
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    return [line for line in lines if line.startswith("./setup.sh")]


def test_readme_has_exactly_two_fresh_clone_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("ciel deploy phase1 --env dev")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci_script = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci_script
