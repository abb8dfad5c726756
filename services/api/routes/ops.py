"""Probes, metrics and the quote cache."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from services.api.deps import ApiContext, Context
from services.api.errors import ApiError
from services.api.responses import JsonResponse
from shared import redis_keys
from shared.domain import tokens
from shared.execution.backlog import read_backlog
from shared.redis_memory import RedisMemoryWatch
from shared.shared_result import SharedResult

router = APIRouter(tags=["operations"])

VENUES = ("RAYDIUM", "METEORA", "BEST")
PROBE_TIMEOUT_S = 2.0
#: /ready's answer is reused this long: however many probes arrive, PostgreSQL sees at most one SELECT 1 per
#: period and the API's pool keeps its connections for the history reads.
READY_CACHE_S = 1.0
#: Prometheus scrapes every few seconds and a person reloads by hand; a burst of ten, then ten a second, is
#: fresh for both, while a flood of scrapes costs at most ten renders a second.
METRICS_RENDERS_PER_S = 10.0


def install_probes(ctx: ApiContext) -> None:
    """Give the context its shared probe reads (they need the context itself, so they come last)."""
    ctx.memory = RedisMemoryWatch(ctx.redis, ctx.settings.redis_memory_high_fraction)
    ctx.readiness = SharedResult(lambda: _check_ready(ctx), READY_CACHE_S)
    # Not cached (a scrape after a change must see it), only shared, and rendered at most METRICS_RENDERS_PER_S
    # times a second: /metrics is exempt from the rate limit, so a flood of scrapes must not own the event loop.
    ctx.metrics_page = SharedResult(lambda: _render_metrics(ctx), 0, max_per_s=METRICS_RENDERS_PER_S)


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok", "service": "api"}


@router.get("/ready")
async def ready(ctx: Context) -> JsonResponse:
    """Readiness: 200 only when both Redis and PostgreSQL answer (checked at most once a second)."""
    checks, ok = await ctx.readiness.get()
    reading = await ctx.memory.reading()
    memory = "unknown" if reading is None else "unlimited" if not reading.maxmemory else f"{reading.fraction:.3f}"
    body: dict[str, str | bool] = {"status": "ready" if ok else "not_ready", **checks, "redisMemory": memory}
    if await ctx.memory.high():
        body["redisMemoryHigh"] = True  # still ready: reads, streams and orders already accepted go on
    return JsonResponse(body, 200 if ok else 503)


async def _check_ready(ctx: ApiContext) -> tuple[dict[str, str], bool]:
    async def redis_ok() -> bool:
        return bool(await ctx.redis.ping())

    async def postgres_ok() -> bool:
        async with ctx.db.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True

    checks = {}
    for name, probe in (("redis", redis_ok), ("postgres", postgres_ok)):
        try:
            checks[name] = "ok" if await asyncio.wait_for(probe(), PROBE_TIMEOUT_S) else "down"
        except Exception as exc:  # any failure to answer means not ready
            checks[name] = f"down: {type(exc).__name__}"
    return checks, all(value == "ok" for value in checks.values())


@router.get("/metrics")
async def metrics(ctx: Context) -> Response:
    """Prometheus text format. Queue and dead-letter depths are read from Redis now, in one round trip shared
    by concurrent scrapes; Redis memory is the reading the submissions use (at most a second old)."""
    return Response(await ctx.metrics_page.get(), media_type=CONTENT_TYPE_LATEST)


async def _render_metrics(ctx: ApiContext) -> bytes:
    ctx.metrics.observe_backlog(await read_backlog(ctx.redis, ctx.settings.partitions))
    ctx.metrics.observe_redis_memory(await ctx.memory.reading())
    ctx.metrics.events_delivered.set(ctx.hub.delivered)
    return generate_latest(ctx.metrics.registry)


@router.get("/api/quotes/{pair}", tags=["quotes"])
async def quotes(pair: str, ctx: Context) -> JsonResponse:
    """The quote stream's cached per-venue and BEST quotes for `tokenIn-tokenOut`, with their age."""
    token_in_name, sep, token_out_name = pair.partition("-")
    if not sep:
        raise ApiError(400, "invalid_pair", "the pair must look like SOL-USDC")
    try:
        token_in, token_out = tokens.resolve(token_in_name), tokens.resolve(token_out_name)
    except tokens.UnknownToken as exc:
        raise ApiError(400, "unknown_token", str(exc)) from None
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for venue in VENUES:
            pipe.hgetall(redis_keys.quotes(token_in.symbol, token_out.symbol, venue))
        raw = await pipe.execute()
    now = time.time()
    venues = {}
    for venue, fields in zip(VENUES, raw, strict=True):
        if fields:
            quote = {k.decode(): v.decode() for k, v in fields.items()}
            quote["ageMs"] = max(0, round((now - float(quote["ts"])) * 1000))
            venues[venue.lower()] = quote
    if not venues:
        raise ApiError(404, "no_quotes", f"no quotes cached for {token_in.symbol}-{token_out.symbol} yet")
    return JsonResponse(
        {
            "pair": f"{token_in.symbol}-{token_out.symbol}",
            "tokenIn": token_in.symbol,
            "tokenOut": token_out.symbol,
            "best": venues.pop("best", None),
            "venues": venues,
        }
    )
