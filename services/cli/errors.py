"""How a command fails: a message for people, a stable code for scripts, a documented exit code."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    #: The operation was refused or failed (the message says why): an invalid order (checked here or by the
    #: API), any other 4xx from the API, a refused replay.
    FAILED = 1
    #: Wrong usage (click's own code for bad arguments).
    USAGE = 2
    #: No such order (or dead letter, or key): the API's 404.
    NOT_FOUND = 3
    #: Redis or the API did not answer, the API answered 5xx, or `health` found it not ready.
    UNAVAILABLE = 4
    #: No answer, or no end state, within the time allowed (`--timeout`).
    TIMEOUT = 5
    #: The order ended `failed` (`submit`, `watch`).
    ORDER_FAILED = 6
    #: The order ended `cancelled`.
    ORDER_CANCELLED = 7
    #: The order ended `expired`.
    ORDER_EXPIRED = 8
    #: Ctrl-C (the shell's convention, 128 + SIGINT). Stops watching; the order carries on.
    INTERRUPTED = 130


class CliError(Exception):
    def __init__(
        self,
        message: str,
        exit_code: ExitCode = ExitCode.FAILED,
        code: str = "failed",
        *,
        status: int | None = None,
        details: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code
        #: The API's HTTP status, when the API refused.
        self.status = status
        #: The API's `details` (one per invalid field), when it gave them.
        self.details = details
