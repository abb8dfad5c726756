"""The Venue port over the simulated market: latency, transient failures, submission and landing.

Every random choice is a hash of the deployment's seed and the call, so a run with a fixed seed replays the
same latencies and failures, and a transaction lands at the same moment whichever process confirms it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from functools import lru_cache
from uuid import UUID

import base58
from loguru import logger
from redis.asyncio import Redis

from shared import redis_keys
from shared.domain.slippage import within_slippage
from shared.domain.tokens import TOKENS
from shared.redis_client import REDIS_UNAVAILABLE
from shared.settings import Settings
from shared.venues.base import (
    BLOCKHASH_EXPIRED,
    BlockhashExpired,
    Dex,
    LegResult,
    NoPool,
    Quote,
    QuoteRequest,
    Submission,
    SwapLeg,
    SwapTransaction,
    TxOutcome,
    TxStatus,
    VenueUnavailable,
)
from shared.venues.ledger import Ledger, PoolId, PoolMove, PoolMoved, TxRecord
from shared.venues.market import pool_at, quote_at
from shared.venues.pool_shift import UNMOVED, PoolShift
from shared.venues.price_walk import seeded_uniform, significant
from shared.venues.slots import (
    BLOCKHASH_VALID_SLOTS,
    SLOT_S,
    RecentBlockhash,
    certainly_expired_at,
    recent_blockhash,
    slot_at,
)

#: Unscaled latency ranges in ms. Quote + send + landing add up to the 2–3 s a Solana swap takes end to end.
QUOTE_LATENCY_MS = (150, 250)
SEND_LATENCY_MS = (50, 150)
LANDING_LATENCY_MS = (1_700, 2_600)
#: Transactions this venue sent and has not confirmed yet, remembered so that confirming one needs no read
#: of the ledger (a round trip per order). More in flight than this just read the ledger as before.
RECENT_SUBMISSIONS = 10_000
#: Settles of one transaction refused because another swap moved its pools first, before giving up (a retry
#: of the whole attempt follows); each refusal means another swap settled, so this is never reached by load.
SETTLE_TRIES = 50
#: Back-off while Redis cannot be read at start-up.
SIM_CONFIG_RETRY_MIN_S, SIM_CONFIG_RETRY_MAX_S = 0.2, 2.0


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: str
    #: UTC epoch seconds at which prices equal the token registry's.
    epoch: float
    latency_scale: Decimal = Decimal(1)
    failure_rate: Decimal = Decimal("0.02")
    daily_vol: Decimal = Decimal("0.05")
    #: Token launches: the first this long after the epoch, then one per interval; liquidity steps.
    launch_first_s: float = 30.0
    launch_interval_s: float = 90.0
    liquidity_step_s: float = 10.0
    #: How fast arbitrage undoes what swaps did to a pool's price: half the displacement is gone after this.
    arbitrage_half_life_s: float = 15.0
    #: Chance that a sent transaction never lands (dropped by the leader): it expires with its blockhash. No drops
    #: unless configured (SIM_DROP_RATE sets a deployment's), so a test's venue waits out no expiry by chance.
    drop_rate: Decimal = Decimal(0)
    blockhash_valid_slots: int = BLOCKHASH_VALID_SLOTS


async def load_sim_config(redis: Redis, settings: Settings, clock: Callable[[], float] = time.time) -> SimConfig:
    """The deployment's simulation: the first process to start fixes the epoch, and the seed unless set.

    Every service reads it first thing, so a service (re)started while Redis is away waits here for Redis
    instead of exiting: a supervisor's restart loop would otherwise give up on it.
    """
    delay = SIM_CONFIG_RETRY_MIN_S
    while True:
        try:
            seed = settings.sim_seed or await _shared_value(redis, redis_keys.SIM_SEED, secrets.token_hex(16))
            epoch = await _shared_value(redis, redis_keys.SIM_EPOCH, repr(clock()))
            break
        except REDIS_UNAVAILABLE as exc:  # READONLY too: a failover in progress
            logger.warning("Redis does not answer yet ({!r}); trying again in {} s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, SIM_CONFIG_RETRY_MAX_S)
    return SimConfig(
        seed=seed,
        epoch=float(epoch),
        latency_scale=settings.sim_latency_scale,
        failure_rate=settings.sim_failure_rate,
        daily_vol=settings.sim_daily_volatility,
        launch_first_s=settings.sim_launch_first_s,
        launch_interval_s=settings.sim_launch_interval_s,
        liquidity_step_s=settings.sim_liquidity_step_s,
        arbitrage_half_life_s=settings.sim_arbitrage_half_life_s,
        drop_rate=settings.sim_drop_rate,
        blockhash_valid_slots=settings.sim_blockhash_valid_slots,
    )


async def _shared_value(redis: Redis, key: str, proposal: str) -> str:
    await redis.set(key, proposal, nx=True)
    value = await redis.get(key)
    return value.decode() if isinstance(value, bytes) else str(value)


@lru_cache(maxsize=4096)  # the executor builds an attempt's transaction twice: at `building` and to send it
def build_swap_transaction(
    order_id: UUID,
    attempt: int,
    legs: tuple[SwapLeg, ...],
    token_in: str,
    token_out: str,
    min_amount_out: Decimal,
    native_sol_in: bool,
    native_sol_out: bool,
    *,
    recent: RecentBlockhash,
) -> SwapTransaction:
    """The signed swap for one attempt on a recent blockhash; rebuilding it from the same parts yields the same
    tx_hash, so resending it is harmless, and building it on a new blockhash makes a new transaction."""
    if not legs:
        raise ValueError("a swap needs at least one leg")
    route = ",".join(f"{leg.dex.value}={leg.amount_in}" for leg in legs)
    signed = f"{order_id}:{attempt}:{route}:{min_amount_out}:{recent.blockhash}"
    digest = hashlib.blake2b(signed.encode(), digest_size=64).digest()
    # Native SOL cannot enter a pool: it is wrapped to wSOL first and unwrapped after the swap.
    instructions = (
        *(("wrapSol",) if native_sol_in else ()),
        *(f"swap:{leg.dex.value}" for leg in legs),
        *(("unwrapSol",) if native_sol_out else ()),
    )
    return SwapTransaction(
        order_id=order_id,
        attempt=attempt,
        legs=legs,
        token_in=token_in,
        token_out=token_out,
        min_amount_out=min_amount_out,
        blockhash=recent.blockhash,
        last_valid_slot=recent.last_valid_slot,
        tx_hash=base58.b58encode(digest).decode(),
        instructions=instructions,
    )


class SimulatedVenue:
    """A Raydium- or Meteora-like venue; the ledger is the chain it shares with other processes."""

    def __init__(
        self,
        dex: Dex,
        sim: SimConfig,
        ledger: Ledger,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.dex = Dex(dex)
        self._sim = sim
        self._ledger = ledger
        self._clock = clock
        self._sleep = sleep
        # Numbers this venue's calls so a replay with the same seed draws the same latencies and failures.
        self._calls = itertools.count()
        self._sent: OrderedDict[str, TxRecord] = OrderedDict()

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        latency_ms = await self._answer_quote_request("quote")
        now = self._clock()
        (shift,) = await self._ledger.pool_shifts([PoolId.of(self.dex, token_in, token_out)], max_age_s=SLOT_S)
        log_shift = shift.at_time(now, self._sim.arbitrage_half_life_s)
        quote = quote_at(self.dex, token_in, token_out, amount_in, now, self._sim, log_shift)
        return replace(quote, latency_ms=latency_ms)

    async def quote_many(self, requests: Sequence[QuoteRequest]) -> list[Quote | VenueUnavailable]:
        # One latency and one failure draw for the whole request: a poller pays one round trip per venue.
        latency_ms = await self._answer_quote_request("quotes")
        now = self._clock()
        pools = [PoolId.of(self.dex, r.token_in, r.token_out) for r in requests]
        shifts = await self._ledger.pool_shifts(pools, max_age_s=SLOT_S)
        answers: list[Quote | VenueUnavailable] = []
        for request, shift in zip(requests, shifts, strict=True):
            log_shift = shift.at_time(now, self._sim.arbitrage_half_life_s)
            try:
                quote = quote_at(
                    self.dex, request.token_in, request.token_out, request.amount_in, now, self._sim, log_shift
                )
            except NoPool as exc:  # this pair has no pool here (yet): the others still have their quotes
                answers.append(exc)
            else:
                answers.append(replace(quote, latency_ms=latency_ms))
        return answers

    def recent_blockhash(self) -> RecentBlockhash:
        return recent_blockhash(self._sim.seed, self._clock(), self._sim.epoch, self._sim.blockhash_valid_slots)

    async def submit(self, tx: SwapTransaction) -> Submission:
        if all(leg.dex != self.dex for leg in tx.legs):
            raise ValueError(f"a transaction with no {self.dex.value} leg cannot be sent to {self.dex.value}")
        call = next(self._calls)
        send_ms = self._latency_ms(SEND_LATENCY_MS, "send", tx.tx_hash, call)
        await self._pause(send_ms)
        if self._fails("send", tx.tx_hash, call):
            raise VenueUnavailable(f"{self.dex.value} RPC dropped transaction {tx.tx_hash}")
        submitted_at = self._clock()
        slot = slot_at(submitted_at, self._sim.epoch)
        if slot > tx.last_valid_slot:
            raise BlockhashExpired(f"blockhash {tx.blockhash} expired after slot {tx.last_valid_slot}; now {slot}")
        # Drawn from the hash alone: a resend cannot change when the transaction lands.
        landing_ms = self._latency_ms(LANDING_LATENCY_MS, "land", tx.tx_hash)
        record = TxRecord(
            tx_hash=tx.tx_hash,
            order_id=str(tx.order_id),
            attempt=tx.attempt,
            legs=tx.legs,
            token_in=tx.token_in,
            token_out=tx.token_out,
            min_amount_out=tx.min_amount_out,
            submitted_at=submitted_at,
            lands_at=submitted_at + landing_ms / 1000,
            blockhash=tx.blockhash,
            last_valid_slot=tx.last_valid_slot,
        )
        stored = await self._ledger.record_submission(record)
        self._sent[stored.tx_hash] = stored
        if len(self._sent) > RECENT_SUBMISSIONS:
            self._sent.popitem(last=False)
        return Submission(stored.tx_hash, send_ms, slot_at(stored.submitted_at, self._sim.epoch))

    async def was_sent(self, tx_hash: str) -> bool:
        return tx_hash in self._sent or await self._ledger.get(tx_hash) is not None

    async def confirm(self, tx_hash: str) -> TxOutcome:
        # A record never changes once written but for its outcome, which `settle` reads afresh anyway.
        record = self._sent.pop(tx_hash, None) or await self._ledger.get(tx_hash)
        if record is None:
            return TxOutcome(
                tx_hash,
                TxStatus.FAILED,
                error="tx_not_found",
                message=f"no transaction {tx_hash} was ever submitted",
            )
        if record.outcome is not None:
            return record.outcome
        expires_at = certainly_expired_at(record.last_valid_slot, self._sim.epoch)
        if self._dropped(tx_hash) or record.lands_at >= expires_at:
            # It will never land, but nobody can know that before its blockhash expires: wait until then.
            await self._sleep_until(expires_at)
            return await self._ledger.settle(tx_hash, expired(record, expires_at), order_id=record.order_id)
        await self._sleep_until(record.lands_at)
        pools = [PoolId.of(leg.dex, record.token_in, record.token_out) for leg in record.legs]
        for _ in range(SETTLE_TRIES):
            shifts = await self._ledger.pool_shifts(pools)
            outcome, moves = execute(record, self._sim, dict(zip(pools, shifts, strict=True)))
            try:
                return await self._ledger.settle(tx_hash, outcome, order_id=record.order_id, moves=moves)
            except PoolMoved:
                continue  # another swap moved a pool this one crosses: price it on the new state
        raise VenueUnavailable(f"transaction {tx_hash}: its pools kept moving under {SETTLE_TRIES} settles")

    async def _answer_quote_request(self, kind: str) -> int:
        """Take a quote request's simulated time (its latency in ms), or fail it as the venue may."""
        call = next(self._calls)
        latency_ms = self._latency_ms(QUOTE_LATENCY_MS, kind, call)
        await self._pause(latency_ms)
        if self._fails(kind, call):
            raise VenueUnavailable(f"{self.dex.value} did not answer the quote request")
        return latency_ms

    async def _sleep_until(self, moment: float) -> None:
        wait_s = moment - self._clock()
        if wait_s > 0:
            await self._sleep(wait_s)

    def _dropped(self, tx_hash: str) -> bool:
        """Drawn from the hash alone: whoever confirms the transaction agrees on its fate."""
        return Decimal(seeded_uniform(self._sim.seed, "drop", tx_hash)) < self._sim.drop_rate

    def _latency_ms(self, bounds: tuple[int, int], *parts: object) -> int:
        low, high = bounds
        drawn = low + (high - low) * seeded_uniform(self._sim.seed, self.dex.value, *parts)
        return round(drawn * float(self._sim.latency_scale))

    def _fails(self, *parts: object) -> bool:
        draw = seeded_uniform(self._sim.seed, self.dex.value, "fail", *parts)
        return Decimal(draw) < self._sim.failure_rate

    async def _pause(self, latency_ms: int) -> None:
        if latency_ms > 0:
            await self._sleep(latency_ms / 1000)


def expired(record: TxRecord, expired_at: float) -> TxOutcome:
    """A transaction that did not land while its blockhash was valid: it never will, and nothing executed."""
    return TxOutcome(
        tx_hash=record.tx_hash,
        status=TxStatus.FAILED,
        error=BLOCKHASH_EXPIRED,
        message=f"the transaction did not land before its blockhash expired after slot {record.last_valid_slot}",
        latency_ms=round((expired_at - record.submitted_at) * 1000),
    )


def execute(
    record: TxRecord, sim: SimConfig, shifts: Mapping[PoolId, PoolShift] | None = None
) -> tuple[TxOutcome, list[PoolMove]]:
    """What the transaction does when it lands: every leg at its pool's price at lands_at (moved by what earlier
    swaps left, `shifts`), and how it moves those pools; or, when the legs' total falls short of the minimum, a
    slippage failure in which no leg executes and no pool moves."""
    latency_ms = round((record.lands_at - record.submitted_at) * 1000)
    half_life_s, t = sim.arbitrage_half_life_s, record.lands_at
    legs: list[LegResult] = []
    moves: list[PoolMove] = []
    for leg in record.legs:
        pool_id = PoolId.of(leg.dex, record.token_in, record.token_out)
        before = (shifts or {}).get(pool_id, UNMOVED)
        pool = pool_at(leg.dex, record.token_in, record.token_out, t, sim, before.at_time(t, half_life_s))
        out = pool.amount_out(leg.amount_in).quantize(TOKENS[record.token_out].unit, rounding=ROUND_DOWN)
        legs.append(LegResult(leg.dex, leg.amount_in, out))
        after = before.moved(
            t, half_life_s, pool.mid_price, pool.mid_after(leg.amount_in), selling_base=record.token_in == pool_id.base
        )
        moves.append((pool_id, before, after))
    amount_out = sum((leg.amount_out for leg in legs), Decimal(0))
    if not within_slippage(amount_out, record.min_amount_out):
        failed = TxOutcome(
            tx_hash=record.tx_hash,
            status=TxStatus.FAILED,
            error="slippage_exceeded",
            message=(
                f"the swap would pay {amount_out} {record.token_out}, below the minimum of {record.min_amount_out}"
            ),
            latency_ms=latency_ms,
        )
        return failed, []
    confirmed = TxOutcome(
        tx_hash=record.tx_hash,
        status=TxStatus.CONFIRMED,
        amount_out=amount_out,
        executed_price=significant(amount_out / record.amount_in),
        latency_ms=latency_ms,
        legs=tuple(legs),
    )
    return confirmed, moves
