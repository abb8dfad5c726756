"""The dramatiq broker every execution-side process builds the same way."""

from __future__ import annotations

from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Retries

from shared.redis_keys import DRAMATIQ_NAMESPACE
from shared.settings import Settings


def build_broker(settings: Settings) -> RedisBroker:
    # TimeLimit, ShutDown and Callbacks are left out on purpose: they track work per worker thread,
    # and our coroutine actors do not run on the thread that picked their message up.
    middleware = [
        AgeLimit(),
        Retries(
            max_retries=settings.max_attempts - 1,
            min_backoff=settings.retry_min_backoff_ms,
            max_backoff=settings.retry_max_backoff_ms,
        ),
    ]
    return RedisBroker(
        url=settings.redis_url,
        namespace=DRAMATIQ_NAMESPACE,
        middleware=middleware,
        heartbeat_timeout=settings.worker_heartbeat_timeout_ms,
        maintenance_chance=settings.worker_maintenance_chance,
    )
