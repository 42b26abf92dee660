"""Running the engine (init, validate, plan, apply) in one synthesized stack's folder."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ciel.credentials import Credentials
from foundation.errors import CielError
from foundation.process import run, say
from toolchain import mirror
from toolchain.engine import Engine


@dataclass(frozen=True)
class ResourceChange:
    address: str
    type: str
    actions: tuple[str, ...]  # e.g. ("create",), ("delete", "create")
    name: str | None = None  # the resource's `name` argument before the change (what the console shows)

    @property
    def deletes_only(self) -> bool:
        """Deleted without a successor (a replacement is a delete and a create)."""
        return "delete" in self.actions and "create" not in self.actions


@dataclass(frozen=True)
class PlanResult:
    plan_file: Path
    changes: list[ResourceChange]
    raw: dict  # `show -json` of the plan, for tests and policy checks

    def count(self, action: str) -> int:
        return sum(1 for change in self.changes if action in change.actions)

    @property
    def destroys(self) -> list[ResourceChange]:
        return [change for change in self.changes if "delete" in change.actions]


class StackWorkspace:
    def __init__(self, engine: Engine, directory: Path, credentials: Credentials, provider_source: str = "mirror",
                 variables: dict[str, str] | None = None) -> None:
        self.engine = engine
        self.directory = directory
        self.credentials = credentials
        self.provider_source = provider_source
        self.env = {
            "TF_CLI_CONFIG_FILE": str(mirror.cli_config_path(provider_source)),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            # The Scaleway provider gives its S3 and SQS clients an HTTP client of its own, to
            # which the AWS SDK refuses to add a CA bundle: a machine-wide AWS_CA_BUNDLE makes
            # every bucket and queue fail. Empty means unset to the Go SDK; system CAs apply.
            "AWS_CA_BUNDLE": "",
            **credentials.engine_environment(),
            # Inputs of the stack (values may be secrets: the environment, never argv or files).
            **{f"TF_VAR_{name}": value for name, value in (variables or {}).items()},
        }
        self.color = [] if sys.stdout.isatty() else ["-no-color"]

    def _run(self, *args: str, capture: bool = False, quiet: bool = False, what: str | None = None, check: bool = True):
        return run([self.engine.path, *args], cwd=self.directory, env=self.env, capture=capture, quiet=quiet,
                   what=what or f"{self.engine.name} {args[0]}", check=check)

    def init(self) -> None:
        say(f"→ {self.engine.name} init (providers from the "
            f"{'local mirror' if self.provider_source == 'mirror' else 'registry'})")
        try:
            self._run("init", "-input=false", *self.color, quiet=True)
        except CielError as error:
            if "Backend configuration changed" not in str(error):
                raise
            # Never migrate state silently: say what changed and how to move it.
            raise CielError(
                f"the state backend of {self.directory.name} changed since this folder was initialized "
                f"(for example local → Object Storage). To move the existing state there, run: "
                f"{self.engine.name} -chdir={self.directory} init -migrate-state — or delete {self.directory} "
                "if the old state is a throw-away one") from None

    def validate(self) -> None:
        say(f"→ {self.engine.name} validate")
        result = self._run("validate", "-json", capture=True, check=False)
        try:
            report = json.loads(result.stdout)
        except ValueError:
            raise CielError(f"{self.engine.name} validate failed: {(result.stderr or result.stdout).strip()[-2000:]}") from None
        if not report.get("valid"):
            details = "; ".join(
                f"{d.get('summary', '')}: {d.get('detail', '')} ({d.get('address') or d.get('range', {}).get('filename', '')}"
                f":{d.get('range', {}).get('start', {}).get('line', '?')})" for d in report.get("diagnostics", []))
            raise CielError(f"the synthesized stack {self.directory.name} is invalid: {details}")

    def plan(self, targets: list[str] | tuple[str, ...] = ()) -> PlanResult:
        """The whole stack's plan, or (targets) the plan `apply_targets(targets)` would run."""
        say(f"→ {self.engine.name} plan ({self.credentials.mode})" + (f" of {len(targets)} target(s)" if targets else ""))
        plan_file = self.directory / "plan.tfplan"
        # A saved plan holds every input and planned value, sensitive ones included: only
        # this user may read it (the engine keeps the mode of a file it overwrites).
        plan_file.unlink(missing_ok=True)
        plan_file.touch(mode=0o600)
        lock = [] if self.credentials.live else ["-lock=false"]
        self._run("plan", "-input=false", *lock, *self.color, *(f"-target={t}" for t in targets),
                  f"-out={plan_file.name}")
        shown = json.loads(self._run("show", "-json", plan_file.name, capture=True).stdout)
        changes = [
            ResourceChange(address=rc["address"], type=rc["type"], actions=tuple(rc["change"]["actions"]),
                           name=(rc["change"].get("before") or {}).get("name"))
            for rc in shown.get("resource_changes", [])
            if rc["change"]["actions"] != ["no-op"] and rc.get("mode", "managed") == "managed"
        ]
        return PlanResult(plan_file=plan_file, changes=changes, raw=shown)

    def apply(self, plan: PlanResult) -> None:
        say(f"→ {self.engine.name} apply")
        self._run("apply", "-input=false", *self.color, plan.plan_file.name)
        plan.plan_file.unlink(missing_ok=True)  # applied: its secrets need not stay on disk

    def apply_targets(self, addresses: list[str]) -> None:
        """Apply these resources (and what they depend on) — used by the rolling replacement,
        after the user approved the whole plan. What depends on a target is NOT included:
        list every resource of the unit (ciel/rollout.py)."""
        say(f"→ {self.engine.name} apply " + " ".join(f"-target={a}" for a in addresses))
        self._run("apply", "-input=false", "-auto-approve", *self.color, *(f"-target={a}" for a in addresses))

    def outputs(self, *, include_sensitive: bool = False) -> dict[str, object]:
        """Current outputs of the stack's state. Sensitive ones only when asked (they are
        handed to another stack's engine through its environment, never printed)."""
        shown = json.loads(self._run("output", "-json", capture=True).stdout or "{}")
        return {name: item["value"] for name, item in shown.items() if include_sensitive or not item.get("sensitive")}
