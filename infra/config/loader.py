"""Loading and validating an environment's YAML file, with errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from foundation.errors import UsageError
from foundation.paths import REPO_ROOT, environments_dir
from infra.config.schema import EnvironmentConfig
from infra.config.tiers import preset


def known_environments(directory: Path | None = None) -> list[str]:
    directory = directory or environments_dir()
    return sorted(p.stem for p in directory.glob("*.yaml"))


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(file)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(f for f in EnvironmentConfig.model_fields if f != "name"))
        return f"{location}: unknown key; allowed keys: {allowed}"
    if error["type"] == "literal_error":
        return f"{location}: {error.get('input')!r} is not allowed; {message[0].lower()}{message[1:]}"
    return f"{location}: {message}"


def load_environment(name: str, directory: Path | None = None) -> EnvironmentConfig:
    """The validated configuration of environment `name`, or a UsageError saying what to fix."""
    directory = directory or environments_dir()
    known = known_environments(directory)
    if name not in known:
        raise UsageError(f"unknown environment {name!r}: choose one of {', '.join(known)} (files in {_display(directory)}/)")
    path = directory / f"{name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"{_display(path)}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{_display(path)}: expected a mapping of settings at the top level")
    if "name" in raw:
        raise UsageError(f"{_display(path)}: name: do not set it, the environment is named after its file ({name})")
    try:
        # The tier's preset fills the scaling variables; the file's own keys win.
        tier = raw.get("tier", "mvp")
        return EnvironmentConfig(name=name, **{**preset(tier if isinstance(tier, str) else ""), **raw})
    except ValidationError as error:
        problems = "; ".join(_describe(e) for e in error.errors())
        raise UsageError(f"{_display(path)}: {problems}") from None


def record_settings(name: str, directory: Path | None = None, **settings: object) -> Path:
    """Record settings that the tool itself decides (the phase, where traffic goes) in the
    environment's file, keeping every other line and comment. They are persistent
    properties of the environment: the next deploy reads them."""
    directory = directory or environments_dir()
    path = directory / f"{name}.yaml"
    lines = path.read_text().splitlines()
    for key, value in settings.items():
        rendered = str(value).lower() if isinstance(value, bool) else str(value)
        entry = f"{key}: {rendered}  # recorded by ciel"
        for index, line in enumerate(lines):
            if line.startswith(f"{key}:"):
                lines[index] = entry
                break
        else:
            lines.append(entry)
    path.write_text("\n".join(lines) + "\n")
    load_environment(name, directory)  # the file must still be valid
    return path


def record_phase(name: str, phase: int, directory: Path | None = None) -> Path:
    return record_settings(name, directory, phase=phase)
