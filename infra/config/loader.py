"""Loading and validating an environment's YAML file, with errors that name the fix."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from pydantic import ValidationError

from foundation.errors import CielWarning, UsageError, shown
from foundation.paths import REPO_ROOT, environment_name, environments_dir
from infra.config.schema import EnvironmentConfig
from infra.config.tiers import preset
from infra.config.yaml_strict import read_mapping

# Every key at most once, plus room for a few typos that the schema then names: a file
# with thousands of keys is refused while it is read, not after.
MAX_KEYS = len(EnvironmentConfig.model_fields) + 20
MAX_PROBLEMS = 5  # listed in one error; the rest are counted


def known_environments(directory: Path | None = None) -> list[str]:
    directory = directory or environments_dir()
    return sorted(p.stem for p in directory.glob("*.yaml"))


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _location(parts: tuple) -> str:
    return ".".join(part if isinstance(part, str) and re.fullmatch(r"[a-z0-9_]{1,64}", part) else shown(part)
                    for part in parts)


# What a strict type error means in a YAML file, by the type expected and the type found.
_TYPE_HINTS = {
    "int_type": "a whole number", "int_from_float": "a whole number", "float_type": "a number",
    "bool_type": "true or false", "string_type": "text", "list_type": "a list (- item lines, or [a, b])",
}


def _describe(error: dict) -> str:
    location = _location(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if not location:  # a cross-field rule: its message starts with the key it is about
        return message
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key"
    if error["type"] in _TYPE_HINTS:
        expected = _TYPE_HINTS[error["type"]]
        if value is None:
            return f"{location}: empty; write {expected}"
        if isinstance(value, str) and error["type"] != "list_type":
            return f"{location}: {shown(value)} is quoted text; write {expected} without quotes"
        if error["type"] == "string_type" and isinstance(value, (bool, int, float)):
            return f"{location}: YAML read {shown(value)} as {type(value).__name__}; quote the value to keep it as text"
        return f"{location}: {shown(value)} is not {expected}"
    if error["type"] == "literal_error":
        return f"{location}: {shown(value)} is not allowed; {message[0].lower()}{message[1:]}"
    if error["type"] == "string_pattern_mismatch":
        return f"{location}: {shown(value)} does not match the allowed pattern {error['ctx']['pattern']}"
    return f"{location}: {message}"


def _problems(errors: list[dict]) -> str:
    described = [_describe(e) for e in errors if e["type"] != "extra_forbidden"]
    unknown = [_location(e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:  # named together, with the allowed keys once
        allowed = ", ".join(sorted(f for f in EnvironmentConfig.model_fields if f != "name"))
        listed = ", ".join(unknown[:MAX_PROBLEMS]) + (f" and {len(unknown) - MAX_PROBLEMS} more" if len(unknown) > MAX_PROBLEMS else "")
        described.insert(0, f"{listed}: unknown key{'s' if len(unknown) > 1 else ''}; allowed keys: {allowed}")
    more = len(described) - MAX_PROBLEMS
    return "; ".join(described[:MAX_PROBLEMS]) + (f"; and {more} more problem{'s' if more > 1 else ''}" if more > 0 else "")


def load_environment(name: str, directory: Path | None = None) -> EnvironmentConfig:
    """The validated configuration of environment `name`, or a UsageError saying what to fix."""
    environment_name(name)
    directory = directory or environments_dir()
    known = known_environments(directory)
    if name not in known:
        raise UsageError(f"unknown environment {name!r}: choose one of {', '.join(known)} (files in {_display(directory)}/)")
    path = directory / f"{name}.yaml"
    # A link out of the folder (or a device, a FIFO) is not an environment file.
    if not path.is_file() or not path.resolve().is_relative_to(directory.resolve()):
        raise UsageError(f"{_display(path)}: not a regular file inside {_display(directory)}/")
    raw = read_mapping(path, _display(path), max_keys=MAX_KEYS)
    if "name" in raw:
        raise UsageError(f"{_display(path)}: name: do not set it, the environment is named after its file ({name})")
    try:
        # The tier's preset fills the scaling variables; the file's own keys win. Strict:
        # a quoted "3" is text, not 3 (the file says something other than what it means).
        tier = raw.get("tier", "mvp")
        config = EnvironmentConfig.model_validate(
            {"name": name, **preset(tier if isinstance(tier, str) else ""), **raw}, strict=True)
    except ValidationError as error:
        raise UsageError(f"{_display(path)}: {_problems(error.errors())}") from None
    for key, reason in config.ignored_settings(raw):
        # Raised here, not at the caller: the same warning from every load of a command shows once.
        warnings.warn(f"{_display(path)}: {key} is ignored because {reason}", CielWarning)
    return config


def record_settings(name: str, directory: Path | None = None, **settings: object) -> Path:
    """Record settings that the tool itself decides (the phase, where traffic goes) in the
    environment's file, keeping every other line and comment. They are persistent
    properties of the environment: the next deploy reads them."""
    directory = directory or environments_dir()
    path = directory / f"{environment_name(name)}.yaml"
    lines = path.read_text().splitlines()
    for key, value in settings.items():
        if isinstance(value, bool):
            rendered = str(value).lower()
        elif isinstance(value, str):  # quoted: a tag such as 2 or 1.10 would read back as a number
            rendered = json.dumps(value)
        else:
            rendered = str(value)
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


def record_image_tag(name: str, image_tag: str, directory: Path | None = None) -> Path | None:
    """After a live deploy with --image-tag: the file says what runs, so that the next
    deploy without the option does not roll back. Returns the file when it changed."""
    if load_environment(name, directory).image_tag == image_tag:
        return None
    return record_settings(name, directory, image_tag=image_tag)
