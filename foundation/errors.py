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
