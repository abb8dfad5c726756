"""How a command fails: a message for people, a stable code for scripts, a documented exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: The operation was refused or failed (the message says why).
    FAILED = 1
    #: Wrong usage (click's own code for bad arguments).
    USAGE = 2
    NOT_FOUND = 3
    #: Redis did not answer.
    UNAVAILABLE = 4


class CliError(Exception):
    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED, code: str = "failed") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code
