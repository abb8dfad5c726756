"""Driving one order from pending (or triggered) to a terminal state.

Each stage persists its event before the next side effect, so whoever picks the order up again (a
retry, a re-delivered message after a crash) continues from the last persisted stage instead of
starting over:

    pending/triggered → routing (both venues quoted, best chosen) → building (transaction signed)
    → submitted (sent; txHash) → confirmed | failed

Submitting is idempotent (the transaction hash is derived from order and attempt) and the venue lets
at most one transaction per order execute, so a stage repeated after a crash cannot execute twice.
A transient venue failure raises `VenueUnavailable`: dramatiq retries the message with back-off and
the next attempt re-routes with fresh quotes; the last attempt marks the order failed first and then
lets the message go to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TypedDict
from uuid import UUID, uuid4

from shared.domain.events import OrderEvent
from shared.domain.lifecycle import OrderStatus
from shared.execution.order_route import (
    quote_expired,
    quoted_outputs,
    resends,
    route_legs,
    route_shape,
    routing_fields,
)
from shared.logging import order_logger
from shared.observability.orders import ExecutionMetrics, NoExecutionMetrics
from shared.redis_client import REDIS_UNAVAILABLE
from shared.routing import choose_route
from shared.store.leases import Lease, LeaseKeeper, OrderLeases
from shared.store.order_store import LeaseLost, OrderState, OrderStore, StaleWrite
from shared.venues.base import (
    BLOCKHASH_EXPIRED,
    Dex,
    LegResult,
    Quote,
    SwapLeg,
    SwapTransaction,
    TxOutcome,
    TxStatus,
    Venue,
    VenueUnavailable,
)
from shared.venues.slots import RecentBlockhash

if TYPE_CHECKING:  # annotations only: typing has Unpack from 3.12
    from typing_extensions import Unpack

S = OrderStatus

#: How often a worker waiting for another's lease on the same order looks again.
LEASE_POLL_S = 0.25
#: Transactions of one attempt that may expire unlanded before the order fails with "blockhash_expired": each
#: one took a blockhash's whole validity (about a minute) to be known dead.
MAX_RESENDS = 3
#: Back-off while Redis cannot take the `failed` of an order's last attempt.
MARK_FAILED_MIN_S, MARK_FAILED_MAX_S = 0.5, 5.0
#: How long an execution that lost Redis mid-way (a connection error, or READONLY from a demoted master)
#: waits for it and drives on from the stored state, in the same attempt, before counting the attempt as
#: failed. Longer than a Sentinel failover takes with common settings (down-after 5-10 s, then an election
#: and a promotion of a few seconds), so a failover costs an order time, never one of its attempts.
REDIS_RIDE_OUT_S = 30.0
#: Back-off between those tries.
REDIS_RETRY_MIN_S, REDIS_RETRY_MAX_S = 0.1, 2.0


class TransactionBuilder(Protocol):
    """Signs the swap of one attempt (`shared.venues.simulated.build_swap_transaction`)."""

    def __call__(
        self,
        *,
        order_id: UUID,
        attempt: int,
        legs: tuple[SwapLeg, ...],
        token_in: str,
        token_out: str,
        min_amount_out: Decimal,
        native_sol_in: bool,
        native_sol_out: bool,
        recent: RecentBlockhash,
    ) -> SwapTransaction: ...


class ExecutionFailed(Exception):
    """The order ended `failed` after its last attempt; raised so dramatiq dead-letters the message."""


class EventFields(TypedDict, total=False):
    """The fields of an `OrderEvent` a stage sets; the rest come from the order's state."""

    attempt: int | None
    dex: str | None
    quotes: dict[str, Any] | None
    tx_hash: str | None
    executed_price: Decimal | None
    amount_out: Decimal | None
    error: str | None
    error_message: str | None
    extra: dict[str, Any] | None


def next_event(state: OrderState, status: OrderStatus, **fields: Unpack[EventFields]) -> OrderEvent:
    return OrderEvent(
        order_id=state.order.order_id,
        seq=state.seq + 1,
        status=status,
        order_type=state.order.type.value,
        client_order_id=state.order.client_order_id,
        **fields,
    )


class OrderExecutor:
    def __init__(
        self,
        store: OrderStore,
        leases: OrderLeases,
        venues: Mapping[Dex, Venue],
        build_transaction: TransactionBuilder,
        *,
        max_attempts: int,
        metrics: ExecutionMetrics | NoExecutionMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.leases = leases
        self.venues = venues
        self.build_transaction = build_transaction
        self.max_attempts = max_attempts
        self.metrics = metrics or NoExecutionMetrics()
        self.clock = clock
        self.keeper = LeaseKeeper(leases, on_lost=self._lost_lease)

    async def execute(self, order_id: UUID, attempt: int) -> None:
        log = order_logger(order_id)
        lease, state = await self._take_lease(order_id)
        if lease is None:
            return
        self.keeper.hold(lease)
        released = False
        try:
            if state is None or state.terminal:
                return
            attempt = max(attempt, state.attempt)
            try:
                released = await self._drive_riding_out_redis(state, lease, attempt)
            except StaleWrite as exc:
                log.warning("another writer moved the order on ({}); leaving it to them", exc)
            except Exception as exc:
                await self._after_failure(order_id, attempt, exc)
        finally:
            self.keeper.let_go(lease)
            if not released:
                await self.leases.release(lease)

    async def _take_lease(self, order_id: UUID) -> tuple[Lease | None, OrderState | None]:
        """The order's lease and its state; waits while another live execution holds the lease, and gives
        up (None) when the order turns out to be gone or finished.

        Redis away (a failover, writes its replicas cannot acknowledge yet) is waited out for up to
        REDIS_RIDE_OUT_S, as mid-execution: nothing has happened yet, and an attempt spent on it would
        bring a short outage to the dead letters, the order still pending, once it outlasted the retries."""
        deadline = time.monotonic() + REDIS_RIDE_OUT_S
        delay = REDIS_RETRY_MIN_S
        # One token throughout: a take whose reply was lost is sent again as it was, and finds the lease its own.
        candidate = Lease(order_id, uuid4().hex)
        while True:
            try:
                lease, raw = await self.leases.take_and_read(order_id, candidate)
            except REDIS_UNAVAILABLE as exc:
                if time.monotonic() + delay > deadline:
                    raise
                order_logger(order_id).warning("cannot take the order's lease yet ({!r}); again in {} s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REDIS_RETRY_MAX_S)
                continue
            state = self.store.state_from(raw)
            if lease is not None:
                return lease, state
            if state is None or state.terminal:
                return None, state
            await asyncio.sleep(LEASE_POLL_S)

    async def _drive_riding_out_redis(self, state: OrderState, lease: Lease, attempt: int) -> bool:
        """`_drive`, driven on from the order's stored state when Redis goes away mid-way (a failover, a
        restart) and comes back within REDIS_RIDE_OUT_S; after that the error is the attempt's.

        Driving on is what a redelivered message would do: each stage persisted its event before the next
        side effect, a submission is idempotent per order and attempt, and every append is a compare-and-set
        on `seq`, so a write whose reply was lost is seen in the stored state instead of being made twice."""
        order_id = state.order.order_id
        deadline = time.monotonic() + REDIS_RIDE_OUT_S
        delay = REDIS_RETRY_MIN_S
        current: OrderState | None = state
        while True:
            try:
                if current is None:
                    # Away longer than the lease, this execution may have been replaced (its message handed to
                    # another worker, which took the lease): driving on would make two writers race, with only
                    # the seq CAS between them. Go on only as the lease's holder, again if need be.
                    if not await self.leases.renew(lease):
                        log = order_logger(order_id)
                        if not await self.leases.retake(lease):
                            log.warning("lost the order's lease while away from Redis; another execution holds it now")
                            return False
                        log.warning("lost the order's lease while away from Redis; nobody took it: took it back")
                        self.keeper.hold(lease)  # the keeper stopped renewing it when a renewal was refused
                    current = await self.store.load(order_id)
                    if current is None or current.terminal:
                        return False
                return await self._drive(current, lease, max(attempt, current.attempt))
            except LeaseLost:  # a write was fenced off: the lease expired while this execution was away
                current = None
            except REDIS_UNAVAILABLE as exc:
                if time.monotonic() + delay > deadline:
                    raise
                order_logger(order_id).warning(
                    "lost Redis mid-execution ({!r}); driving on from the stored state in {} s", exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, REDIS_RETRY_MAX_S)
                current = None

    @staticmethod
    def _lost_lease(lease: Lease) -> None:
        order_logger(lease.order_id).warning("lost the order's lease; the event CAS keeps it safe")

    async def _drive(self, state: OrderState, lease: Lease, attempt: int) -> bool:
        """Drive the order as far as it goes; True when the final append also released the lease.

        Each stage's latency is reported from the events' own timestamps; a stage this execution resumed
        (after a crash or a retry) starts at the timestamp of the last event persisted before it."""
        stale_attempt = state.attempt < attempt
        # A transaction a failed attempt sent decides the order, not a second one; asked only of a retry, since a
        # fresh execution's `building` is its own.
        sent = stale_attempt and state.status is S.BUILDING and await self._was_sent(state)
        if sent:
            stale_attempt = False
        order_type = state.order.type.value
        # When the stage in hand began: the last persisted event (building follows routing within µs).
        stage_began = _updated_at(state)
        if state.status in (S.PENDING, S.TRIGGERED) or (stale_attempt and state.status in (S.ROUTING, S.BUILDING)):
            waited_in = state.status if state.status in (S.PENDING, S.TRIGGERED) else None
            state, routed_at = await self._route_and_build(state, lease, attempt)
            if waited_in is not None:
                self.metrics.stage(order_type, f"{waited_in.value}_to_routing", stage_began, routed_at)
            stage_began = routed_at
        elif state.status is S.ROUTING:
            state = await self.store.append_steps(state, [self._build(state)], fence=lease)
        if state.status is S.BUILDING and not sent and self._quote_expired(state) and not await self._was_sent(state):
            # Resumed long after routing (a crash, a Redis outage ridden out): the pools have moved since.
            state, stage_began = await self._route_and_build(state, lease, state.attempt, requote="quote_expired")
        while state.status in (S.BUILDING, S.SUBMITTED):
            if state.status is S.BUILDING:
                state, submitted = await self._submit(state, lease)
                self.metrics.stage(order_type, "routing_to_submitted", stage_began, submitted.timestamp)
                stage_began = submitted.timestamp
            expired = await self._confirm(state, lease, submitted_at=stage_began)
            if expired is None:
                return True
            # Its blockhash is past its last valid slot, so it can never land: only now is a new one safe.
            state, stage_began = await self._route_and_build(
                state, lease, state.attempt, requote="blockhash_expired", expired=expired
            )
        return False

    async def _route_and_build(
        self,
        state: OrderState,
        lease: Lease,
        attempt: int,
        *,
        requote: str | None = None,
        expired: TxOutcome | None = None,
    ) -> tuple[OrderState, datetime]:
        """Route and build in one write (building is pure: nothing leaves the process before `submitted`)."""
        routing = await self._route(state, attempt, requote=requote, expired=expired)
        steps = [routing, self._build(self.store.advanced(state, *routing))]
        return await self.store.append_steps(state, steps, fence=lease), routing[0].timestamp

    async def _route(
        self, state: OrderState, attempt: int, *, requote: str | None = None, expired: TxOutcome | None = None
    ) -> tuple[OrderEvent, dict[str, object]]:
        order = state.order
        results = await asyncio.gather(
            *(venue.quote(order.token_in, order.token_out, order.amount) for venue in self.venues.values()),
            return_exceptions=True,
        )
        quotes = [r for r in results if isinstance(r, Quote)]
        for failure in (r for r in results if isinstance(r, BaseException)):
            if not isinstance(failure, VenueUnavailable):
                raise failure
        routed = choose_route(quotes, order.token_in, order.token_out, order.amount)
        extra, remember = routing_fields(
            state, routed, requote=requote, expired_tx_hash=expired.tx_hash if expired else None
        )
        order_logger(order.order_id).info(
            "routing attempt {}: {} → {} ({}, impact {} %)",
            attempt,
            " | ".join(f"{q.dex.value} out={q.amount_out} fee={q.fee}" for q in quotes),
            " + ".join(f"{leg.dex.value} {leg.amount_in}" for leg in routed.legs),
            routed.shape,
            extra["priceImpactPct"],
        )
        self.metrics.routed(routed.shape, Decimal(extra["priceImpactPct"]))
        if requote:
            self.metrics.requoted(requote)
        event = next_event(
            state,
            S.ROUTING,
            attempt=attempt,
            dex=routed.dex.value,
            quotes=routed.decision.quotes_message(),
            extra={"venueLatencyMs": max(q.latency_ms for q in quotes), **extra},
        )
        return event, remember

    def _transaction(self, state: OrderState, recent: RecentBlockhash | None = None) -> SwapTransaction:
        """The order's transaction as built: on `recent`, or on the blockhash `building` persisted."""
        order = state.order
        if recent is None:
            recent = RecentBlockhash(state.fields["blockhash"], int(state.fields["lastValidSlot"]))
        return self.build_transaction(
            order_id=order.order_id,
            attempt=state.attempt,
            legs=route_legs(state),
            token_in=order.token_in,
            token_out=order.token_out,
            min_amount_out=Decimal(state.fields["minOut"]),
            native_sol_in=order.native_sol_in,
            native_sol_out=order.native_sol_out,
            recent=recent,
        )

    def _build(self, state: OrderState) -> tuple[OrderEvent, dict[str, object]]:
        legs = route_legs(state)
        recent = self.venues[legs[0].dex].recent_blockhash()
        tx = self._transaction(state, recent)
        event = next_event(
            state, S.BUILDING, attempt=state.attempt, dex=tx.dex.value, extra={"transaction": tx.as_dict()}
        )
        return event, {"blockhash": recent.blockhash, "lastValidSlot": recent.last_valid_slot}

    def _quote_expired(self, state: OrderState) -> bool:
        return quote_expired(state, self.clock())

    async def _was_sent(self, state: OrderState) -> bool:
        """Whether the built transaction already reached the chain (sent, then the worker stopped before it
        persisted `submitted`): then it stands, however old its quote, since a second one must not follow."""
        tx = self._transaction(state)
        return await self.venues[tx.dex].was_sent(tx.tx_hash)

    async def _submit(self, state: OrderState, lease: Lease) -> tuple[OrderState, OrderEvent]:
        tx = self._transaction(state)
        sent = await self.venues[tx.dex].submit(tx)
        event = next_event(
            state,
            S.SUBMITTED,
            attempt=state.attempt,
            dex=tx.dex.value,
            tx_hash=sent.tx_hash,
            extra={"venueLatencyMs": sent.latency_ms, "slot": sent.slot},
        )
        if "quotedAt" in state.fields:
            self.metrics.sent(route_shape(state), self.clock() - float(state.fields["quotedAt"]))
        return await self.store.append(state, event, fence=lease), event

    async def _confirm(self, state: OrderState, lease: Lease, *, submitted_at: datetime | None) -> TxOutcome | None:
        """Settle the order with its transaction's outcome; or, when the transaction expired unlanded and the
        order may still be re-sent, return that outcome instead (nothing is written)."""
        dex = Dex(state.fields["dex"])
        outcome = await self.venues[dex].confirm(state.fields["txHash"])
        if outcome.error == BLOCKHASH_EXPIRED:
            self.metrics.blockhash_expired(route_shape(state))
            if resends(state) < MAX_RESENDS:
                order_logger(state.order.order_id).warning(
                    "transaction {} expired without landing: re-sending on a fresh blockhash", outcome.tx_hash
                )
                return outcome
        fields: EventFields = {
            "attempt": state.attempt,
            "dex": dex.value,
            "tx_hash": outcome.tx_hash,
            "extra": {"venueLatencyMs": outcome.latency_ms},
        }
        if outcome.status is TxStatus.CONFIRMED:
            status = S.CONFIRMED
            fields["executed_price"] = outcome.executed_price
            fields["amount_out"] = outcome.amount_out
            fields["extra"] = {"venueLatencyMs": outcome.latency_ms, "legs": [leg.as_dict() for leg in outcome.legs]}
        else:
            status = S.FAILED
            fields["error"] = outcome.error
            fields["error_message"] = outcome.message
        event = next_event(state, status, **fields)
        await self.store.append(state, event, release=lease, fence=lease)
        self.metrics.stage(state.order.type.value, f"submitted_to_{event.status.value}", submitted_at, event.timestamp)
        self.metrics.ended(state.order, event)
        if outcome.status is TxStatus.CONFIRMED:
            self._report_legs(state, outcome.legs)
        order_logger(state.order.order_id).info(
            "{} on {}: {}",
            event.status.value,
            " + ".join(f"{leg.dex.value} {leg.amount_out}" for leg in outcome.legs)
            if len(outcome.legs) > 1
            else dex.value,
            outcome.amount_out or outcome.error,
        )
        return None

    def _report_legs(self, state: OrderState, legs: tuple[LegResult, ...]) -> None:
        """Each leg's output against what routing quoted for it."""
        quoted = quoted_outputs(state)
        shape = route_shape(state)
        for leg in legs:
            if leg.dex in quoted:
                self.metrics.leg_settled(leg.dex.value, shape, quoted[leg.dex], leg.amount_out)

    async def _after_failure(self, order_id: UUID, attempt: int, exc: Exception) -> None:
        """Let dramatiq retry; on the last attempt, persist `failed` first so no order is left hanging."""
        log = order_logger(order_id)
        transient = isinstance(exc, VenueUnavailable)  # includes NoQuotes: every venue failed
        if attempt < self.max_attempts:
            self.metrics.retried(transient)
            log.warning(
                "attempt {} failed{}: {!r}; dramatiq will retry", attempt, " transiently" if transient else "", exc
            )
            raise exc
        code = "venue_unavailable" if transient else "execution_error"
        await self._mark_failed(order_id, attempt, code, f"gave up after {attempt} attempts: {exc}")
        self.metrics.dead_lettered()
        raise ExecutionFailed(f"order {order_id} failed after {attempt} attempts") from exc

    async def _mark_failed(self, order_id: UUID, attempt: int, code: str, message: str) -> None:
        """Persist `failed`, waiting out a Redis outage: the last attempt often failed *because* Redis was
        away, and giving up here would dead-letter the message with the order stuck mid-lifecycle."""
        log = order_logger(order_id)
        delay = MARK_FAILED_MIN_S
        while True:
            try:
                state = await self.store.load(order_id)
                if state is None or state.terminal:
                    return
                event = next_event(state, S.FAILED, attempt=attempt, error=code, error_message=message)
                await self.store.append(state, event)
                self.metrics.ended(state.order, event)
                log.error("failed: {}", message)
                return
            except StaleWrite:
                continue  # another writer moved it on: look again
            except REDIS_UNAVAILABLE as exc:
                log.warning("cannot persist failed yet ({!r}); trying again in {} s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MARK_FAILED_MAX_S)


def _updated_at(state: OrderState) -> datetime | None:
    """The timestamp of the order's last persisted event (the hash's `updatedAt`, as its event carries it);
    None if it cannot be read, since a latency sample is never worth failing an order for."""
    try:
        return datetime.fromisoformat(state.fields["updatedAt"])
    except (KeyError, ValueError):
        return None
