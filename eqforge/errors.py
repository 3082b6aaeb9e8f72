"""User-facing errors.

Every error a user can cause (bad data, bad flags, unreachable server) is raised as an
``EqforgeError`` carrying a one-line message and an exit code, so the CLI can print it
without a traceback and scripts can tell data errors (2) from runtime failures (1).
"""

from __future__ import annotations


class EqforgeError(Exception):
    """An error whose message is written for the user: one line, says what to do."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ProblemError(EqforgeError):
    """Invalid problem definition or data (exit code 2)."""

    exit_code = 2


class ConfigError(EqforgeError):
    """Invalid configuration file or flag (exit code 2)."""

    exit_code = 2


class BackendError(EqforgeError):
    """An LLM backend could not be created or reached."""

    exit_code = 1
