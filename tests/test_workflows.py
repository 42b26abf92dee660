"""The GitHub workflows (.github/workflows/): actionlint passes on them, every `ciel`
command they run exists in the CLI with the options they give it, and the release
pipeline keeps its rules: dev → staging → prod, one deploy of an environment at a time,
each in its GitHub environment, and never the cutover.

actionlint is built by `./setup.sh --test-tools` and checks the run scripts with
shellcheck (a Debian package the same command installs); when either is missing these
tests fail with the command that installs it, they never skip. Controls show that a
broken workflow is reported, by actionlint and by our own checks, so that neither can
pass by checking nothing.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
import yaml

from infra.config import known_environments
from infra.config.schema import MUTABLE_IMAGE_TAGS
from tests.conftest import REPO_ROOT
from toolchain.gotools import build_hint, tool_path

WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.yml"))


# --- actionlint ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def actionlint() -> Path:
    binary = tool_path("actionlint")
    if not (binary.is_file() and binary.stat().st_mode & 0o111):
        pytest.fail(f"actionlint is not built ({binary} is missing); build it with:\n  ./setup.sh --test-tools\n"
                    f"or only actionlint:\n  {build_hint('actionlint')}")
    return binary


@pytest.fixture(scope="module")
def shellcheck() -> str:
    found = shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck is missing (actionlint checks the workflows' run scripts with it); install it with:\n"
                    "  ./setup.sh --test-tools\nor only shellcheck:\n  apt-get install shellcheck")
    return found


def lint(actionlint: Path, shellcheck: str, files: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    """actionlint on `files`, with shellcheck named explicitly (never whatever PATH has, or
    nothing) and without pyflakes (no workflow has a `shell: python` step)."""
    return subprocess.run([str(actionlint), "-no-color", "-oneline", f"-shellcheck={shellcheck}", "-pyflakes=",
                           *map(str, files)], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_actionlint_passes_on_the_workflows(actionlint, shellcheck):
    assert {path.name for path in WORKFLOWS} >= {"deploy.yml", "deploy-environment.yml", "pr.yml"}
    result = lint(actionlint, shellcheck, WORKFLOWS, REPO_ROOT)
    assert result.returncode == 0 and not result.stdout.strip(), (
        f"actionlint (exit {result.returncode}):\n{result.stdout}{result.stderr}")


def test_actionlint_reports_a_broken_workflow(actionlint, shellcheck, tmp_path):
    """The control: the same invocation reports a job that needs a missing job, an unknown
    expression context, and (through shellcheck) an unquoted variable."""
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    broken = workflows / "broken.yml"
    broken.write_text(textwrap.dedent("""\
        on: push
        jobs:
          deploy:
            needs: missing-job
            runs-on: ubuntu-latest
            steps:
              - run: echo ${{ nonsense.value }}
              - run: rm -rf $TARGET/build
        """))
    result = lint(actionlint, shellcheck, [broken], tmp_path)
    assert result.returncode == 1, f"actionlint (exit {result.returncode}):\n{result.stdout}{result.stderr}"
    assert 'needs job "missing-job" which does not exist' in result.stdout, result.stdout
    assert 'undefined variable "nonsense"' in result.stdout, result.stdout
    assert "SC2086" in result.stdout, result.stdout  # shellcheck ran


# --- the `ciel` invocations in run scripts --------------------------------------------------

EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)
PLACEHOLDER = "GH_EXPRESSION"
COMMAND_SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Words after which a new command starts (shell keywords count only where a command starts).
KEYWORDS = {"then", "do", "else", "elif", "if", "while", "until", "!", "time", "exec", "{", "}", "command"}


@dataclass(frozen=True)
class Invocation:
    where: str  # workflow, job and step, for messages
    words: tuple[str, ...]  # "ciel" first, then its arguments as the shell passes them

    @property
    def text(self) -> str:
        return " ".join(("ciel", *self.words[1:]))


def _is_ciel(word: str) -> bool:
    return word == "ciel" or word.endswith("/ciel")  # also .venv/bin/ciel


def _is_operator(word: str) -> bool:
    return bool(word) and all(character in "();<>|&" for character in word)


def _logical_lines(script: str) -> list[str]:
    """The script's lines, backslash continuations joined, `${{ }}` expressions replaced by
    a placeholder word; a line that opens a quote runs on until the quote is closed."""
    lines = EXPRESSION.sub(PLACEHOLDER, script).replace("\\\n", " ").splitlines()
    logical: list[str] = []
    pending = ""
    for line in lines:
        pending = f"{pending}\n{line}" if pending else line
        try:
            _words(pending)
        except ValueError:  # an open quote (e.g. `python -c '` and its program)
            continue
        logical.append(pending)
        pending = ""
    if pending:
        logical.append(pending)  # a quote never closed: ciel_invocations says so
    return logical


def _words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def ciel_invocations(script: str) -> list[tuple[str, ...]]:
    """Every `ciel ...` that `script` runs: at the start of a command (after `;`, `&&`,
    `|`, `then`, a `case` pattern's `)`, variable assignments...), or in a `$(...)`."""
    found: list[tuple[str, ...]] = []
    for line in _logical_lines(script):
        for inner in COMMAND_SUBSTITUTION.findall(line):
            found.extend(ciel_invocations(inner))
        try:
            words = _words(line)
        except ValueError as error:
            raise AssertionError(f"cannot read this shell: {error}:\n{line}") from None
        at_start, current = True, None
        for word in words:
            if current is not None:
                if _is_operator(word):
                    if word[0] in "<>" and current[-1].isdigit():
                        current.pop()  # the descriptor of a redirection (2>&1)
                    found.append(tuple(current))
                    current, at_start = None, True
                else:
                    current.append(word)
                continue
            if _is_operator(word):
                at_start = True
            elif at_start and (word in KEYWORDS or ASSIGNMENT.match(word)):
                pass
            elif at_start and _is_ciel(word):
                current = [word]
            else:
                at_start = False
        if current is not None:
            found.append(tuple(current))
    return found


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def workflow_invocations(path: Path, text: str | None = None) -> list[Invocation]:
    document = yaml.safe_load(text) if text is not None else _load(path)
    invocations = []
    for job_id, job in (document.get("jobs") or {}).items():
        for number, step in enumerate(job.get("steps") or [], start=1):
            if "run" in step:
                where = f"{path.name}: job {job_id}, step {step.get('name') or number}"
                invocations += [Invocation(where, words) for words in ciel_invocations(step["run"])]
    return invocations


# The CLI's click command tree (typer.main.get_command). Typer may bring its own copy of
# click, so groups and options are recognized by what they have, not by their class.
def _subcommands(command) -> dict | None:
    """A group's commands by name; None for a command."""
    commands = getattr(command, "commands", None)
    return commands if isinstance(commands, dict) else None


def _options(command) -> dict:
    return {name: param for param in command.params if param.param_type_name == "option"
            for name in (*param.opts, *param.secondary_opts)}


def check_invocation(root, invocation: Invocation) -> tuple[tuple[str, ...], list[str]]:
    """The command path `invocation` names and what is wrong with it: an unknown command,
    a group named without a command, an option its command does not have."""
    command = root
    path: list[str] = []
    problems: list[str] = []
    arguments = list(invocation.words[1:])
    index = 0
    while index < len(arguments):
        word = arguments[index]
        index += 1
        if word == "--":
            break
        if word.startswith("-") and word != "-":
            name = word.split("=", 1)[0]
            if name == "--help":
                continue
            option = _options(command).get(name)
            if option is None:
                known = ", ".join(sorted(_options(command))) or "none"
                problems.append(f"`{' '.join(['ciel', *path])}` has no option {name} (it has: {known})")
            elif not (option.is_flag or option.count or "=" in word):
                index += option.nargs  # its value
            continue
        if _subcommands(command) is not None:
            sub = _subcommands(command).get(word)
            if sub is None:
                problems.append(f"`{' '.join(['ciel', *path])}` has no command {word!r} "
                                f"(it has: {', '.join(sorted(_subcommands(command)))})")
                return tuple(path), problems
            command = sub
            path.append(word)
        # else: an argument of the command
    if _subcommands(command) is not None and "--help" not in invocation.words:
        problems.append(f"`{' '.join(['ciel', *path])}` is a group: name one of its commands "
                        f"({', '.join(sorted(_subcommands(command)))})")
    return tuple(path), problems


@pytest.fixture(scope="module")
def cli():
    from ciel.cli import app

    command = typer.main.get_command(app)
    assert _subcommands(command), "the ciel command has no subcommands"
    return command


def problems_of(cli, invocations: list[Invocation]) -> list[str]:
    return [f"{invocation.where}: `{invocation.text}`: {problem}"
            for invocation in invocations for problem in check_invocation(cli, invocation)[1]]


def all_invocations() -> list[Invocation]:
    return [invocation for path in WORKFLOWS for invocation in workflow_invocations(path)]


def test_every_ciel_command_in_the_workflows_exists_with_its_options(cli):
    invocations = all_invocations()
    # The checker found what the workflows run (so it cannot pass by finding nothing).
    named = {invocation.text for invocation in invocations}
    for expected in ("ciel plan", "ciel db migrate", "ciel deploy phase1", "ciel deploy phase2", "ciel verify"):
        assert any(text.startswith(f"{expected} ") for text in named), (expected, named)
    problems = problems_of(cli, invocations)
    assert not problems, "workflows run ciel commands the CLI does not have:\n" + "\n".join(problems)


SYNTHETIC = textwrap.dedent("""\
    on: push
    jobs:
      deploy:
        runs-on: ubuntu-latest
        steps:
          - name: fine
            run: |
              echo "ciel nothing: a word in a string, not a command"
              .venv/bin/ciel plan --env ${{ matrix.env }} \\
                --offline 2>&1 | tee plan.txt
              python -c '
              import ciel
              ' "$X"
              case "$PHASE" in
                1) CIEL_ENGINE=tofu ciel deploy phase1 --env=dev -y ;;
              esac
          - name: renamed option
            run: ciel deploy phase1 --env dev --image-tags 1.4.2 --yes
          - name: unknown command
            run: if true; then ciel deploy phase3 --env dev; fi
          - name: group only
            run: echo "$(ciel migrate)"
          - name: the cutover
            run: ciel migrate cutover --env prod --yes
    """)


def test_the_checker_reports_a_renamed_option_and_an_unknown_command(cli):
    invocations = workflow_invocations(Path("synthetic.yml"), SYNTHETIC)
    assert [invocation.text for invocation in invocations] == [
        f"ciel plan --env {PLACEHOLDER} --offline",
        "ciel deploy phase1 --env=dev -y",
        "ciel deploy phase1 --env dev --image-tags 1.4.2 --yes",
        "ciel deploy phase3 --env dev",
        "ciel migrate",
        "ciel migrate cutover --env prod --yes",
    ]
    problems = problems_of(cli, invocations)
    assert len(problems) == 3, problems
    assert "step renamed option" in problems[0] and "has no option --image-tags" in problems[0]
    assert "step unknown command" in problems[1] and "has no command 'phase3'" in problems[1]
    assert "step group only" in problems[2] and "`ciel migrate` is a group" in problems[2]
    assert cutover_runs(invocations, cli) == ["synthetic.yml: job deploy, step the cutover"]


# --- the release pipeline's rules -----------------------------------------------------------

def cutover_runs(invocations: list[Invocation], cli) -> list[str]:
    return [invocation.where for invocation in invocations
            if check_invocation(cli, invocation)[0][:2] == ("migrate", "cutover")]


def test_no_workflow_runs_the_cutover(cli):
    """The cutover moves production traffic: a person runs it, watching."""
    assert cutover_runs(all_invocations(), cli) == []
    for path in WORKFLOWS:
        for job_id, job in _load(path)["jobs"].items():
            for step in job.get("steps") or []:
                assert not re.search(r"migrate\s+cutover", step.get("run", "")), f"{path.name}: job {job_id}"


@dataclass(frozen=True)
class DeployJob:
    job_id: str  # in deploy.yml
    needs: tuple[str, ...]
    environment: object
    concurrency: object


def _substitute(value, inputs: dict):
    """`value` with `${{ inputs.NAME }}` replaced by the caller's `with:` values."""
    if isinstance(value, str):
        return re.sub(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}", lambda match: str(inputs[match.group(1)]), value)
    if isinstance(value, dict):
        return {key: _substitute(item, inputs) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, inputs) for item in value]
    return value


def deploy_jobs(cli) -> list[DeployJob]:
    """The jobs of deploy.yml that run `ciel deploy`, a reusable workflow's job read with
    its caller's inputs (its environment and concurrency are the called job's, or the
    caller's)."""
    jobs = []
    for job_id, job in _load(WORKFLOWS_DIR / "deploy.yml")["jobs"].items():
        needs = job.get("needs") or []
        needs = (needs,) if isinstance(needs, str) else tuple(needs)
        if str(job.get("uses", "")).startswith("./"):
            called = _load(REPO_ROOT / job["uses"])
            runs = [_substitute(inner, job.get("with") or {}) for inner in called["jobs"].values()]
        else:
            runs = [job]
        for run in runs:
            scripts = [step["run"] for step in run.get("steps") or [] if "run" in step]
            commands = [check_invocation(cli, Invocation(job_id, words))[0]
                        for script in scripts for words in ciel_invocations(script)]
            if any(command[:1] == ("deploy",) for command in commands):
                jobs.append(DeployJob(job_id, needs, run.get("environment"),
                                      run.get("concurrency", job.get("concurrency"))))
    return jobs


def test_each_environment_is_deployed_once_in_order_one_deploy_at_a_time(cli):
    jobs = deploy_jobs(cli)
    by_environment = {}
    for job in jobs:
        environment = job.environment["name"] if isinstance(job.environment, dict) else job.environment
        assert environment in known_environments(), f"job {job.job_id}: environment {environment!r}"
        assert environment not in by_environment, f"{environment} is deployed by two jobs"
        by_environment[environment] = job
        concurrency = job.concurrency
        assert isinstance(concurrency, dict), f"job {job.job_id}: no concurrency group"
        assert concurrency.get("group") == f"deploy-{environment}", f"job {job.job_id}: {concurrency}"
        assert concurrency.get("cancel-in-progress") is False, f"job {job.job_id}: {concurrency}"
    assert sorted(by_environment) == known_environments() == ["dev", "prod", "staging"]
    for before, after in (("dev", "staging"), ("staging", "prod")):
        first, then = by_environment[before], by_environment[after]
        assert first.job_id in then.needs, f"{after}'s job ({then.job_id}) does not need {before}'s ({first.job_id})"


def test_the_pull_request_plans_every_environment(cli):
    workflow = _load(WORKFLOWS_DIR / "pr.yml")
    (job,) = workflow["jobs"].values()
    assert sorted(job["strategy"]["matrix"]["env"]) == known_environments()
    commands = {check_invocation(cli, invocation)[0] for invocation in workflow_invocations(WORKFLOWS_DIR / "pr.yml")}
    assert commands == {("plan",)}  # plans only: nothing is applied from a pull request


def test_the_build_refuses_the_moving_tags_the_configuration_refuses():
    build = _load(WORKFLOWS_DIR / "deploy.yml")["jobs"]["build"]
    scripts = "\n".join(step.get("run", "") for step in build["steps"])
    listed = re.search(r'^moving_tags="([^"]*)"$', scripts, re.MULTILINE)
    assert listed, "deploy.yml's build names no moving_tags"
    assert set(listed.group(1).split()) == MUTABLE_IMAGE_TAGS


def test_workflows_use_only_pinned_actions_of_github_and_minimal_permissions():
    for path in WORKFLOWS:
        workflow = _load(path)
        permissions = workflow.get("permissions")
        assert isinstance(permissions, dict), f"{path.name}: no top-level permissions"
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes <= ({"pull-requests"} if path.name == "pr.yml" else set()), f"{path.name}: {permissions}"
        for job_id, job in workflow["jobs"].items():
            assert "permissions" not in job, f"{path.name}: job {job_id} widens its permissions"
            for step in job.get("steps") or []:
                if "uses" in step:
                    assert re.fullmatch(r"actions/[a-z-]+@v\d+", step["uses"]), f"{path.name}: {step['uses']}"


def test_each_environment_migrates_its_database_before_it_deploys():
    """A failed migration stops the job before the new version serves; the deploy never
    runs against a schema nobody migrated."""
    steps = _load(REPO_ROOT / ".github/workflows/deploy-environment.yml")["jobs"]["deploy"]["steps"]
    runs = [step.get("run", "") for step in steps]
    migrate = next(index for index, run in enumerate(runs) if "ciel db migrate" in run)
    deploys = [index for index, run in enumerate(runs) if "ciel deploy phase" in run]
    assert deploys and migrate < min(deploys)
    assert "continue-on-error" not in steps[migrate] and "|| true" not in runs[migrate]
    assert '--image-tag "$IMAGE_TAG"' in runs[migrate]
    # Only "nothing runs migrations yet" (exit 4) lets the deploy go first; then it migrates.
    assert '"$status" -eq 4' in runs[migrate] and 'exit "$status"' in runs[migrate]
    after = [index for index, run in enumerate(runs) if "ciel db migrate" in run and index > max(deploys)]
    assert len(after) == 1 and steps[after[0]]["if"] == "${{ steps.migrate.outputs.after_deploy == 'true' }}"
    from ciel.db_migrate import NoRunnerYet

    assert NoRunnerYet.exit_code == 4
