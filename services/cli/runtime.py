"""What every command shares: settings, a Redis client, running a coroutine, and turning failures into a
clear message and a documented exit code."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from deploy.local import local_redis_url
from services.cli.errors import CliError, ExitCode
from services.cli.output import fail
from shared.logging import setup_logging
from shared.redis_client import REDIS_UNAVAILABLE, redis_client, redis_location
from shared.settings import Settings

T = TypeVar("T")

#: How long a command waits for Redis before saying it is unreachable.
REDIS_TIMEOUT_S = 5.0


def load_settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        raise CliError(f"invalid settings: {exc}") from None
    # Beside a `make run` engine, REDIS_URL is unset and its Redis is on a port and password of its own: the
    # runner leaves the URL in its data dir, readable only by the user who started it. (Sentinels name a
    # Redis of their own: never the runner's.)
    if not os.environ.get("REDIS_URL") and not settings.redis_sentinels and (local := local_redis_url()):
        settings = settings.model_copy(update={"redis_url": local})
    setup_logging("cli", settings)
    return settings


def run_with_redis(settings: Settings, work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run `work(redis)` to completion on a fresh event loop; Redis failures become CliErrors."""

    async def session() -> T:
        redis = redis_client(settings, socket_connect_timeout=REDIS_TIMEOUT_S)
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(session())
    except REDIS_UNAVAILABLE as exc:  # READONLY included: a failover in progress, try again shortly
        raise CliError(
            f"cannot reach Redis at {redis_location(settings)}: {exc}", ExitCode.UNAVAILABLE, "unavailable"
        ) from None
    except RedisError as exc:
        raise CliError(f"Redis refused the command: {exc}", ExitCode.FAILED, "redis_error") from None


def run_command(as_json: bool, work: Callable[[Settings, Redis], Awaitable[T]]) -> T:
    """Load the settings, run `work(settings, redis)`; a CliError is reported and exits with its code."""
    try:
        settings = load_settings()
        return run_with_redis(settings, lambda redis: work(settings, redis))
    except CliError as exc:
        raise fail(exc, as_json) from None
