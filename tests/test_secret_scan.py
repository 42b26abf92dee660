"""A secret scan with gitleaks: the repository's history, and everything an offline run of
the real CLI writes (synthesized stacks of every environment in both phases, rendered
Kubernetes YAML, the offline deploy's workspace and plan, the commands' output).

Also: PASETO keys supplied through TF_VAR_* reach the engine and no file or output of
ours, and a control that a planted private key is reported, so that a broken scanner
invocation cannot pass silently. gitleaks is built by `./setup.sh --test-tools`; when it
is missing these tests fail with the command that builds it, they never skip.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import textwrap
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from foundation import paths
from tests.conftest import CIEL, REPO_ROOT
from toolchain.gotools import build_hint, tool_path

pytestmark = pytest.mark.engine  # the offline deploy runs the real engine and provider

# A repository-level gitleaks configuration, used for every scan when present (it must
# keep gitleaks' default rules: `[extend] useDefault = true`; the controls below check it).
CONFIG = REPO_ROOT / ".gitleaks.toml"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
ENVIRONMENTS = sorted(path.stem for path in paths.ENVIRONMENTS_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def gitleaks() -> Path:
    binary = tool_path("gitleaks")
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"gitleaks is not built ({binary} is missing); build it with:\n  ./setup.sh --test-tools\n"
                    f"or only gitleaks:\n  {build_hint('gitleaks')}")
    return binary


@dataclass(frozen=True)
class Scan:
    findings: list[dict]
    log: str  # gitleaks' own log (stderr), colours stripped


def scan(gitleaks: Path, mode: str, target: Path, work: Path) -> Scan:
    """`gitleaks git|dir target` with a redacted JSON report. Fails the test when gitleaks
    did not run properly (an error, an exit code other than 0 or 1, nothing scanned):
    `gitleaks git` on a folder that is not a repository exits 0 with "no leaks found"."""
    work.mkdir(parents=True, exist_ok=True)
    report = work / f"gitleaks-{mode}-report.json"
    config = ["--config", str(CONFIG)] if CONFIG.exists() else []
    # No configuration or ignore file from the caller's environment or folder.
    env = {name: value for name, value in os.environ.items() if not name.startswith("GITLEAKS_")}
    result = subprocess.run(
        [str(gitleaks), mode, "--no-banner", "--no-color", "--redact", "--report-format", "json",
         "--report-path", str(report), *config, str(target)],
        cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
    log = ANSI.sub("", result.stderr + result.stdout)
    assert result.returncode in (0, 1), f"gitleaks {mode} failed (exit {result.returncode}):\n{log}"
    assert not re.search(r"\b(ERR|FTL)\b", log), f"gitleaks {mode} reported an error:\n{log}"
    if mode == "git":
        commits = re.search(r"(\d+) commits scanned", log)
        assert commits and int(commits.group(1)) > 0, f"gitleaks scanned no commit of {target}:\n{log}"
    scanned = re.search(r"scanned ~(\d+) bytes", log)
    assert scanned and int(scanned.group(1)) > 0, f"gitleaks scanned nothing in {target}:\n{log}"
    findings = json.loads(report.read_text())
    assert (result.returncode == 1) == bool(findings), f"exit {result.returncode} with {len(findings)} finding(s)"
    return Scan(findings, log)


def described(findings: list[dict], base: Path | None = None) -> str:
    """One line per finding: where, which rule, the match with the secret redacted."""
    lines = []
    for finding in findings:
        where = finding["File"]
        if base is not None and where.startswith(str(base)):
            where = os.path.relpath(where, base)
        commit = f" (commit {finding['Commit'][:12]})" if finding.get("Commit") else ""
        lines.append(f"  {where}:{finding['StartLine']}{commit}: rule {finding['RuleID']}: {finding['Match']}")
    return "\n".join(lines)


# --- the repository's history -------------------------------------------------------------


def test_the_repository_history_holds_no_secret(gitleaks, tmp_path):
    result = scan(gitleaks, "git", REPO_ROOT, tmp_path)
    assert not result.findings, f"gitleaks found secrets in the git history:\n{described(result.findings)}"


# --- everything an offline run writes ------------------------------------------------------


@dataclass(frozen=True)
class OfflineRuns:
    root: Path  # every workspace, synthesized stack, plan, rendered YAML and log is under it
    keys: tuple[str, ...]  # the PASETO keys supplied to every run
    outputs: dict[str, str]  # run name -> its stdout and stderr


def _fresh_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory) -> OfflineRuns:
    """The real CLI, offline, once per artefact: `synth` of every environment in both
    phases, `k8s render` of every environment, one `deploy phase1 --env dev` (placeholder
    credentials, a plan, nothing applied). Each command has its own work folder (a phase-2
    synth would overwrite the phase-1 stack of the same environment), all under one root."""
    root = tmp_path_factory.mktemp("secret-scan")
    logs = root / "logs"
    logs.mkdir()
    keys = (_fresh_key(), _fresh_key())
    # No Scaleway credentials or CLI profile, no inherited inputs or work folders.
    base_env = {name: value for name, value in os.environ.items()
                if not name.startswith(("SCW_", "TF_VAR_")) and name not in ("CIEL_WORK_DIR", "CIEL_ENVIRONMENTS_DIR")}
    base_env.update({"SCW_CONFIG_PATH": str(root / "no-scw-config.yaml"), "COLUMNS": "200",
                     # The stack's sensitive inputs, with values known to this test.
                     "TF_VAR_paseto_access_key": keys[0], "TF_VAR_paseto_refresh_key": keys[1]})

    commands: dict[str, list[str]] = {}
    for env in ENVIRONMENTS:
        for phase in (1, 2):
            commands[f"synth-{env}-phase{phase}"] = ["synth", "--env", env, "--phase", str(phase)]
        commands[f"k8s-render-{env}"] = ["k8s", "render", "--env", env, "--out", str(root / "rendered" / env)]
    commands["deploy-phase1-dev"] = ["deploy", "phase1", "--env", "dev"]

    def run(name: str) -> subprocess.CompletedProcess:
        env = {**base_env, "CIEL_WORK_DIR": str(root / "work" / name)}
        result = subprocess.run([CIEL, *commands[name]], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                check=False, timeout=900)
        (logs / f"{name}.stdout.log").write_text(result.stdout)
        (logs / f"{name}.stderr.log").write_text(result.stderr)
        return result

    # Two at a time (the machine has two cores): each command is mostly a Node start-up.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(commands, pool.map(run, commands)))
    outputs = {}
    for name, result in results.items():
        outputs[name] = result.stdout + result.stderr
        assert result.returncode == 0, (f"ciel {' '.join(commands[name])} failed (exit {result.returncode}):\n"
                                        f"{result.stderr[-3000:]}")
    assert "OFFLINE: nothing was applied" in outputs["deploy-phase1-dev"]
    return OfflineRuns(root, keys, outputs)


def test_the_offline_runs_wrote_what_the_scan_is_meant_to_cover(offline_runs):
    root = offline_runs.root
    for env in ENVIRONMENTS:
        assert (root / "work" / f"synth-{env}-phase1" / "offline" / "cdktf.out" / "stacks" / f"ciel-{env}-core"
                / "cdk.tf.json").is_file()
        assert (root / "work" / f"synth-{env}-phase2" / "offline" / "cdktf.out" / "stacks" / f"ciel-{env}-workloads"
                / "cdk.tf.json").is_file()
        assert list((root / "rendered" / env).glob("*.yaml"))
    plans = list((root / "work" / "deploy-phase1-dev").rglob("plan.tfplan"))
    assert plans and all(plan.stat().st_mode & 0o777 == 0o600 for plan in plans)  # it holds the inputs


def test_nothing_an_offline_run_writes_holds_a_secret(gitleaks, offline_runs, tmp_path):
    result = scan(gitleaks, "dir", offline_runs.root, tmp_path)
    assert not result.findings, (f"gitleaks found secrets in what an offline run writes (under "
                                 f"{offline_runs.root}):\n{described(result.findings, offline_runs.root)}")


# The engine's saved plan (a zip archive) must hold every input variable and the planned
# values, sensitive ones included, so that `apply` runs exactly the plan that was shown:
# Terraform and OpenTofu document saved plans as sensitive files. It is where the supplied
# keys must be (the proof that they reached the engine), and the only place.
ENGINE_PLAN = "plan.tfplan"


def _forms(key: str) -> list[bytes]:
    """The ways a value can appear in a file: as is, JSON-escaped, decoded, in hex."""
    raw = base64.b64decode(key)
    return [key.encode(), key.replace("/", "\\/").encode(), key.replace("+", "\\u002b").encode(), raw,
            raw.hex().encode()]


def _holders(root: Path, key: str) -> set[str]:
    """Files under root (and members of zip archives among them) that hold `key` in any form."""
    forms = _forms(key)
    found = set()
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue  # the engine's provider links point into the per-machine mirror
        data = path.read_bytes()
        name = str(path.relative_to(root))
        if any(form in data for form in forms):
            found.add(name)
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    content = archive.read(member)
                    if any(form in content for form in forms):
                        found.add(f"{name}!{member}")
    return found


def test_supplied_secret_values_reach_the_engine_and_no_file_or_output_of_ours(offline_runs):
    for key in offline_runs.keys:
        for name, output in offline_runs.outputs.items():
            assert not any(form.decode(errors="ignore") in output for form in _forms(key)[:3]), (
                f"a supplied PASETO key appears in the output of ciel {name}")
        holders = _holders(offline_runs.root, key)
        in_plan = {holder for holder in holders if holder.split("!")[0].endswith("/" + ENGINE_PLAN)}
        assert in_plan, (
            f"a supplied PASETO key did not reach the engine: no {ENGINE_PLAN} holds it ({sorted(holders)})")
        assert holders == in_plan, (
            f"a supplied PASETO key appears outside the engine's saved plan: {sorted(holders - in_plan)}")


# --- controls: the scan can fail -------------------------------------------------------------


def _planted_private_key() -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(secrets.token_bytes(121)).decode(), 64))
    return f"-----BEGIN EC PRIVATE KEY-----\n{body}\n-----END EC PRIVATE KEY-----\n"


def test_the_directory_scan_reports_a_planted_private_key(gitleaks, tmp_path):
    planted = tmp_path / "planted" / "deploy-key.pem"
    planted.parent.mkdir()
    planted.write_text(_planted_private_key())
    (tmp_path / "planted" / "notes.txt").write_text("nothing to see here\n")
    result = scan(gitleaks, "dir", planted.parent, tmp_path / "scan")
    assert [(Path(f["File"]).name, f["RuleID"], f["StartLine"]) for f in result.findings] == [
        ("deploy-key.pem", "private-key", 1)], described(result.findings)
    assert all(f["Secret"] == "REDACTED" for f in result.findings)  # --redact: no secret in the report


def test_the_history_scan_reports_a_planted_private_key(gitleaks, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com",
           "-c", "commit.gpgsign=false"]
    env = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    subprocess.run([*git, "init", "-q"], check=True, env=env)
    (repo / "README.md").write_text("a repository\n")
    subprocess.run([*git, "add", "README.md"], check=True, env=env)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True, env=env)
    (repo / "deploy-key.pem").write_text(_planted_private_key())
    subprocess.run([*git, "add", "deploy-key.pem"], check=True, env=env)
    subprocess.run([*git, "commit", "-q", "-m", "a key"], check=True, env=env)
    subprocess.run([*git, "rm", "-q", "deploy-key.pem"], check=True, env=env)
    subprocess.run([*git, "commit", "-q", "-m", "removed again: still in the history"], check=True, env=env)
    result = scan(gitleaks, "git", repo, tmp_path / "scan")
    assert [(f["File"], f["RuleID"]) for f in result.findings] == [("deploy-key.pem", "private-key")], (
        described(result.findings))
