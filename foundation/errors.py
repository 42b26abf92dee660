"""Errors the CLI shows as one actionable line instead of a traceback."""

from __future__ import annotations


class CielError(Exception):
    """A problem the user can fix; the message says what to do."""

    exit_code = 1


class UsageError(CielError):
    """Bad input (unknown environment, invalid config value): stopped before any engine or API call."""

    exit_code = 2


class ToolchainError(CielError):
    """A tool is missing or could not be built; `ciel setup` or `ciel doctor` helps."""

    exit_code = 3


class CielWarning(UserWarning):
    """Not an error, but probably not what the user meant (a setting another setting
    switches off); the CLI prints it as one `warning:` line and carries on."""


def shown(value: object, limit: int = 80) -> str:
    """A user's value as an error may echo it: repr, so a trailing newline or a control
    character is visible, and cut to `limit` so a huge value cannot flood the terminal."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 1]}…"
