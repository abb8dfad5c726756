"""The API gateway: builds its clients in the lifespan so tests can build as many apps as they like."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from loguru import logger
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import Receive, Scope, Send

from services.api import dashboard, errors, openapi
from services.api.deps import ApiContext
from services.api.guards import Guard
from services.api.metrics import ApiMetrics
from services.api.responses import JsonResponse
from services.api.routes import admin, ops, orders, quote
from services.api.routes.direct import direct_endpoint
from shared.auth.api_keys import KeyRing, parse_configured
from shared.event_feed import EventHub
from shared.persistence.timeouts import CONNECT_TIMEOUT_S, client_deadline_options, statement_timeout
from shared.redis_client import redis_client
from shared.settings import Settings
from shared.store.order_store import OrderStore
from shared.venues.simulated import load_sim_config

#: How long a request waits for a free Redis connection before it is answered 503.
REDIS_POOL_WAIT_S = 5
#: Logged once at start-up with keys disabled (the default), so that nobody exposes the port unawares.
AUTH_DISABLED_WARNING = (
    "AUTH_ENABLED=false: order routes are open to anyone who reaches this port; admin routes are disabled"
)


class EngineApi(FastAPI):
    """FastAPI declares every HTTP route (the OpenAPI document is its own) and serves most of them; in front
    of it one guard applies every client limit, and the order submission and the WebSocket streams are
    served directly (routes/direct.py), without FastAPI's middleware stack and dependency solving."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._front = Guard(self._route, settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await self._front(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = direct_endpoint(scope)
        if endpoint is None:
            await super().__call__(scope, receive, send)
        else:
            await endpoint(scope, receive, send)


def create_app(settings: Settings) -> EngineApi:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Bounded: a burst of requests or WebSocket handshakes waits for a connection instead of opening
        # hundreds that then idle in the pool, each holding its own buffers.
        redis = redis_client(
            settings,
            max_connections=settings.api_redis_connections,
            wait_for_connection_s=REDIS_POOL_WAIT_S,
            health_check_interval=30,
        )
        # The event reader has a connection of its own: it sends an XREAD every few milliseconds, and taking
        # and returning a pooled connection costs more than the command (lock, timeout, liveness check).
        reader_redis = redis_client(settings, single_connection=True, health_check_interval=30)
        db = create_async_engine(
            settings.sqlalchemy_url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT_S,
                **statement_timeout(settings.database_statement_timeout_ms),
            },
            # A server that does not answer enforces no statement_timeout: history reads give up on their own.
            execution_options=client_deadline_options(settings.database_statement_timeout_ms),
        )
        store = OrderStore.from_settings(redis, settings)
        hub = EventHub(reader_redis, partitions=settings.partitions)
        reader = asyncio.create_task(hub.run(), name="event-reader")
        sim = await load_sim_config(redis, settings)
        keys = KeyRing(redis, parse_configured(settings.api_keys))
        app.state.context = ApiContext(settings, redis, store, hub, db, ApiMetrics(), sim, keys)
        ops.install_probes(app.state.context)
        logger.info("listening on http://{}:{}", settings.api_host, settings.api_port)
        if not settings.auth_enabled:
            logger.warning(AUTH_DISABLED_WARNING)
        try:
            yield
        finally:
            await hub.stop(reader)
            await reader_redis.aclose()
            await redis.aclose()
            await db.dispose()

    app = EngineApi(
        settings,
        title="DEX order execution engine",
        version="0.1.0",
        description="Market orders routed to the better of two simulated Solana venues, streamed live.",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    errors.install(app)
    app.include_router(orders.router)
    app.include_router(ops.router)
    app.include_router(quote.router)
    app.include_router(admin.router)
    openapi.install(app)
    dashboard.install(app, settings)
    return app
