"""What route handlers may ask for: built once in the lifespan, injected per request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.metrics import ApiMetrics
from shared.auth.api_keys import KeyRing
from shared.event_feed import EventHub
from shared.redis_memory import RedisMemoryWatch
from shared.settings import Settings
from shared.shared_result import SharedResult
from shared.store.order_store import OrderStore
from shared.venues.simulated import SimConfig


@dataclass
class ApiContext:
    settings: Settings
    redis: Redis
    store: OrderStore
    hub: EventHub
    db: AsyncEngine
    metrics: ApiMetrics
    sim: SimConfig
    keys: KeyRing
    # Built after the rest (routes/ops.py `install_probes`, from this context): shared, rate-bounded reads.
    # Not parameters and never None: the lifespan installs them before the first request.
    memory: RedisMemoryWatch = field(init=False, repr=False)
    readiness: SharedResult[tuple[dict[str, str], bool]] = field(init=False, repr=False)
    metrics_page: SharedResult[bytes] = field(init=False, repr=False)


async def _context(request: Request) -> ApiContext:  # async: a sync dependency costs a thread hop
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(_context)]
