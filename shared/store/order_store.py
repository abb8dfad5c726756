"""Live orders in Redis: the accepted request, the current state, and the event log.

Every change goes through one Lua script, so the hash, the per-order event list and the global event
stream never disagree. Writers name the seq they last saw; a stale writer changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared import redis_keys
from shared.domain.events import OrderEvent, iso_utc
from shared.domain.lifecycle import OrderStatus, check_transition, is_terminal
from shared.domain.orders import CONDITION_FIELDS, Order
from shared.domain.partitions import all_partitions, partition_of, scope_partition
from shared.redis_client import REDIS_UNAVAILABLE
from shared.redis_replicas import barrier
from shared.settings import Settings
from shared.store.leases import Lease
from shared.store.replies import RawHash, raw_members, text
from shared.store.scripts import NO_KEY, CreateOrderArgs, TransitionArgs, lua_source, run

#: The order-hash field naming who a resting order counts against (MAX_RESTING_PER_OWNER; transition.lua reads it).
#: Back-off between sends of a create that is riding out a failover (`OrderStore.create`'s `ride_out_s`).
CREATE_RETRY_MIN_S = 0.05
CREATE_RETRY_MAX_S = 0.5
REST_OWNER_FIELD = "restOwner"


#: What create_order.lua is sent as the cap when the owner's other partitions already hold all of it.
NONE_LEFT = -1


class CreateOutcome(StrEnum):
    CREATED = "created"
    REPLAYED = "replayed"
    KEY_CONFLICT = "key_conflict"
    OVERLOADED = "overloaded"
    TOO_MANY_RESTING = "too_many_resting"


@dataclass(frozen=True, slots=True)
class CreateResult:
    outcome: CreateOutcome
    order_id: UUID


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A dramatiq message to enqueue atomically with the order (id, encoded bytes)."""

    redis_message_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class RestingPlace:
    """Where a resting order waits: a member of a sorted set, maybe in an index of sets, maybe expiring.

    Whoever ends the rest (a trigger, a cancel, an expiry) must claim it with a ZREM that succeeds, inside
    the same script that appends its event: exactly one of them can.
    """

    key: str
    member: str
    score: str = "0"
    index_key: str = ""
    index_member: str = ""
    index_score: str = "0"
    expiries_key: str = ""
    expires_at_ms: int | None = None
    #: Rung when the order is placed (shared/store/doorbell.py): its key, and when ('always', 'earlier').
    doorbell_key: str = ""
    ring: str = ""
    #: A second set the order rests in, claimed along with the first: an OCO's take-profit side, a trailing
    #: stop's activation (docs/conditional-orders.md). Only the first decides who wins the claim.
    second_key: str = ""
    second_member: str = ""
    second_score: str = "0"

    def to_fields(self) -> dict[str, str]:
        fields = {
            "restKey": self.key,
            "restMember": self.member,
            "restIndexKey": self.index_key,
            "restIndexMember": self.index_member,
            "restExpiriesKey": self.expiries_key,
        }
        if self.second_key:
            fields |= {"restSecondKey": self.second_key, "restSecondMember": self.second_member}
        return fields

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> RestingPlace | None:
        if not fields.get("restKey"):
            return None
        return cls(
            key=fields["restKey"],
            member=fields["restMember"],
            index_key=fields.get("restIndexKey", ""),
            index_member=fields.get("restIndexMember", ""),
            expiries_key=fields.get("restExpiriesKey", ""),
            second_key=fields.get("restSecondKey", ""),
            second_member=fields.get("restSecondMember", ""),
        )


@dataclass(frozen=True, slots=True)
class OrderState:
    order: Order
    status: OrderStatus
    seq: int
    attempt: int
    fields: dict[str, str]

    @property
    def terminal(self) -> bool:
        return is_terminal(self.status)

    def json_field(self, name: str) -> object:
        raw = self.fields.get(name)
        return orjson.loads(raw) if raw else None

    def to_view(self) -> dict[str, object]:
        """The order as GET /api/orders/{id} shows it (events are added by the caller)."""
        spec = self.order.to_spec()
        return {
            "orderId": spec["orderId"],
            "status": self.status.value,
            "type": spec["type"],
            "tokenIn": spec["tokenIn"],
            "tokenOut": spec["tokenOut"],
            "amount": spec["amount"],
            "slippageBps": spec["slippageBps"],
            "userId": spec["userId"],
            "clientOrderId": spec["clientOrderId"],
            # As history shows them: a resting order's terms, and when it expires (always set: a default applies).
            "limitPrice": spec["limitPrice"],
            "trigger": spec["trigger"],
            **{name: spec.get(name) for name in CONDITION_FIELDS},
            "expiresAt": spec["expiresAt"],
            "createdAt": spec["createdAt"],
            "updatedAt": self.fields.get("updatedAt"),
            "attempt": self.attempt or None,
            "dex": self.fields.get("dex") or None,
            "txHash": self.fields.get("txHash") or None,
            "executedPrice": self.fields.get("executedPrice") or None,
            "amountOut": self.fields.get("amountOut") or None,
            "error": self.fields.get("error") or None,
            "errorMessage": self.fields.get("errorMessage") or None,
        }


class ClaimLost(Exception):
    """Someone else (a trigger, a cancel, an expiry) took the order from its resting place first."""


class LeaseLost(Exception):
    """A fenced write found its lease gone: it expired (the writer was away from Redis longer than its TTL)
    and may be another execution's now."""


class StaleWrite(Exception):
    """The order moved on since the writer last looked (another writer, or a duplicate delivery)."""

    def __init__(self, order_id: UUID, expected_seq: int, actual_seq: int) -> None:
        super().__init__(f"order {order_id} is at seq {actual_seq}, writer expected {expected_seq}")
        self.actual_seq = actual_seq


#: One independent append of `OrderStore.append_many`: state, event, remember, claim, message.
Change = tuple[OrderState, OrderEvent, Mapping[str, object] | None, RestingPlace | None, QueuedMessage | None]

#: A not-resting order's resting place: fills create_order.lua's and transition.lua's slots with their "none".
_NOWHERE = RestingPlace(key=NO_KEY, member="")


def _hash_fields(fields: Mapping[str, object]) -> dict[str, str]:
    """Order-hash fields as the scripts write them: text, JSON for dicts and lists; None leaves a field as it was."""
    flat: dict[str, str] = {}
    for name, value in fields.items():
        if value is None:
            continue
        flat[name] = orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)
    return flat


def _result_fields(event: OrderEvent) -> dict[str, object]:
    return {
        "status": event.status.value,
        "seq": event.seq,
        "updatedAt": iso_utc(event.timestamp),
        "attempt": event.attempt,
        "dex": event.dex,
        "txHash": event.tx_hash,
        "executedPrice": event.executed_price,
        "amountOut": event.amount_out,
        "error": event.error,
        "errorMessage": event.error_message,
    }


class OrderStore:
    def __init__(self, redis: Redis, *, retention_s: int, idempotency_ttl_s: int, partitions: int = 1) -> None:
        self.redis = redis
        self.partitions = partitions  # where an idempotency key's record is (shared/domain/partitions.py)
        self.retention_s = retention_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self._create = redis.register_script(lua_source(CreateOrderArgs.SCRIPT))
        self._transition = redis.register_script(lua_source(TransitionArgs.SCRIPT))
        self._read_heads = redis.register_script(_READ_HEADS)

    @classmethod
    def from_settings(cls, redis: Redis, settings: Settings) -> OrderStore:
        return cls(
            redis,
            retention_s=settings.order_retention_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            partitions=settings.partitions,
        )

    async def create(
        self,
        order: Order,
        first_event: OrderEvent,
        *,
        body_hash: str = "",
        message: QueuedMessage | None = None,
        resting: tuple[OrderEvent, RestingPlace] | None = None,
        max_queue_depth: int = 0,
        rest_owner: str = "",
        max_resting: int = 0,
        ride_out_s: float = 0.0,
    ) -> CreateResult:
        """Accept the order: with an execution message (it runs now) or a resting place (it waits).

        A resting order with a `rest_owner` counts against that owner's resting orders until it stops
        waiting; with `max_resting` > 0, the one past the cap is refused (TOO_MANY_RESTING).

        For up to `ride_out_s`, Redis being away (a failover, a write its replicas did not acknowledge) is
        waited out and the same create sent again: the order id makes it idempotent, so the caller gets the
        outcome rather than an error that leaves it unsure whether the order exists."""
        if resting is not None and rest_owner and max_resting > 0 and self.partitions > 1:
            elsewhere = await self._resting_elsewhere(rest_owner, partition_of(order.order_id))
            # None left is refused by the script, after it recognises a create sent before or a remembered key.
            left = max_resting - elsewhere
            max_resting = left if left > 0 else NONE_LEFT
        args = self._create_args(
            order, first_event, body_hash, message, resting, max_queue_depth, rest_owner, max_resting
        )
        deadline = time.monotonic() + ride_out_s
        delay, sent_before = CREATE_RETRY_MIN_S, False
        while True:
            try:
                reply = await run(self._create, args)
            except REDIS_UNAVAILABLE:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay, sent_before = min(delay * 2, CREATE_RETRY_MAX_S), True
                continue
            return self.create_outcome(order, body_hash, reply, sent_before=sent_before)

    async def _resting_elsewhere(self, rest_owner: str, partition: int) -> int:
        """How many of the owner's orders rest in partitions other than `partition`. Each partition counts its
        own in the script that changes it; the cap is on their sum, so the create is given what is left of it.
        Read just before, not in the same script (a cluster puts partitions on other slots): an owner's
        submissions racing each other into different partitions may overshoot the cap by as many as race."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for other in all_partitions(self.partitions):
                if other != partition:
                    pipe.hget(redis_keys.resting_per_owner(other), rest_owner)
            counts = await pipe.execute()
        return sum(int(count) for count in counts if count is not None)

    async def queue_create(
        self,
        pipe: Pipeline,
        order: Order,
        first_event: OrderEvent,
        *,
        body_hash: str = "",
        message: QueuedMessage | None = None,
        resting: tuple[OrderEvent, RestingPlace] | None = None,
        rest_owner: str = "",
    ) -> None:
        """`create`, queued in the caller's MULTI so it commits with the caller's other writes (e.g. the
        removal of a dead letter); read its outcome from the EXEC reply with `create_outcome`. A resting
        order with a `rest_owner` is counted against that owner's resting orders, never refused: an
        operator chose to place it (and an EXEC cannot be refused half-way)."""
        args = self._create_args(order, first_event, body_hash, message, resting, 0, rest_owner, 0)
        await run(self._create, args, client=pipe)

    def _create_args(
        self,
        order: Order,
        first_event: OrderEvent,
        body_hash: str,
        message: QueuedMessage | None,
        resting: tuple[OrderEvent, RestingPlace] | None,
        max_queue_depth: int,
        rest_owner: str,
        max_resting: int,
    ) -> CreateOrderArgs:
        check_transition(None, first_event.status)
        last_event, place, place_fields = first_event, _NOWHERE, {}
        if resting is not None:
            last_event, place = resting
            check_transition(first_event.status, last_event.status)
            place_fields = place.to_fields() | ({REST_OWNER_FIELD: rest_owner} if rest_owner else {})
        scope = order.idempotency_scope
        partition = partition_of(order.order_id)
        return CreateOrderArgs(
            order=redis_keys.order(order.order_id),
            events=redis_keys.order_events(order.order_id),
            events_stream=redis_keys.events_stream(partition),
            idempotency_key=redis_keys.idempotency(scope or "-", partition),
            dramatiq_queue=redis_keys.dramatiq_queue(partition),
            dramatiq_msgs=redis_keys.dramatiq_messages(partition),
            rest_zset=place.key,
            rest_index_zset=place.index_key or NO_KEY,
            expiries_zset=place.expiries_key or NO_KEY,
            doorbell=place.doorbell_key or NO_KEY,
            use_idem=bool(scope),
            idem_value=f"{order.order_id} {body_hash}",
            idem_ttl_s=self.idempotency_ttl_s,
            max_queue_depth=max_queue_depth,
            order_id=str(order.order_id),
            user_id=order.stream_user,
            spec_json=order.spec_json(),
            first_event_json=first_event.to_json(),
            message_id=message.redis_message_id if message else "",
            message_data=message.data if message else b"",
            resting_event_json=last_event.to_json() if resting is not None else b"",
            rest_member=place.member,
            rest_score=place.score,
            index_member=place.index_member,
            index_score=place.index_score,
            expiry_score=place.expires_at_ms,
            rest_owner=rest_owner if resting is not None else "",
            resting_count_per_owner=redis_keys.resting_per_owner(partition)
            if resting is not None and rest_owner
            else NO_KEY,
            max_resting=max_resting,
            ring=place.ring if resting is not None else "",
            second_rest_zset=place.second_key or NO_KEY,
            second_rest_member=place.second_member,
            second_rest_score=place.second_score,
            order_hash=_hash_fields({"spec": order.spec_json().decode(), **_result_fields(last_event), **place_fields}),
        )

    async def remembered(self, scope: str, body_hash: str) -> CreateResult | None:
        """What an Idempotency-Key (as scoped by `Order.idempotency_scope`) already stands for, if anything."""
        existing = await self.redis.get(redis_keys.idempotency(scope, scope_partition(scope, self.partitions)))
        if existing is None:
            return None
        existing_id, _, existing_hash = text(existing).partition(" ")
        same = existing_hash == body_hash
        return CreateResult(CreateOutcome.REPLAYED if same else CreateOutcome.KEY_CONFLICT, UUID(existing_id))

    @staticmethod
    def create_outcome(
        order: Order, body_hash: str, reply: Sequence[bytes | str], *, sent_before: bool = False
    ) -> CreateResult:
        """What the create script's reply means for `order`; `sent_before`: this create was sent before, and
        its reply lost, so finding the order means that earlier send created it."""
        raw_outcome, existing = reply
        outcome = text(raw_outcome)
        if outcome == "created":
            return CreateResult(CreateOutcome.CREATED, order.order_id)
        if outcome == "busy":
            return CreateResult(CreateOutcome.OVERLOADED, order.order_id)
        if outcome == "too_many_resting":
            return CreateResult(CreateOutcome.TOO_MANY_RESTING, order.order_id)
        if outcome == "exists":
            existing_id, _, existing_hash = text(existing).partition(" ")
            same = existing_hash == body_hash
            return CreateResult(CreateOutcome.REPLAYED if same else CreateOutcome.KEY_CONFLICT, UUID(existing_id))
        if sent_before:
            return CreateResult(CreateOutcome.CREATED, order.order_id)
        raise RuntimeError(f"order {order.order_id} already exists")

    async def append(
        self,
        state: OrderState,
        event: OrderEvent,
        remember: Mapping[str, object] | None = None,
        *,
        claim: RestingPlace | None = None,
        message: QueuedMessage | None = None,
        release: Lease | None = None,
        fence: Lease | None = None,
        client: Redis | None = None,
    ) -> OrderState:
        """Append `event` (whose seq must be state.seq + 1) and return the new state.

        `remember` adds fields to the order hash that a resumed worker needs (e.g. the quoted output);
        `claim` takes the order from its resting place (ClaimLost if someone else already did);
        `message` enqueues its execution in the same step; `release` gives up the writer's lease on the
        order in the same step (a terminal event's); `fence` writes only while that lease still holds the
        order (LeaseLost if not). `client` may be a pipeline (see `append_many`).
        """
        return await self.append_steps(
            state, [(event, remember)], claim=claim, message=message, release=release, fence=fence, client=client
        )

    async def append_steps(
        self,
        state: OrderState,
        steps: Sequence[tuple[OrderEvent, Mapping[str, object] | None]],
        *,
        claim: RestingPlace | None = None,
        message: QueuedMessage | None = None,
        release: Lease | None = None,
        fence: Lease | None = None,
        client: Redis | None = None,
    ) -> OrderState:
        """Append consecutive events (each with its `remember`) atomically, in one round trip: for stages
        with no side effect between them, such as routing and building."""
        args, after = self._transition_args(state, steps, claim, message, release, fence)
        _raise_for(await run(self._transition, args, client=client), state)
        return after

    @staticmethod
    def advanced(state: OrderState, event: OrderEvent, remember: Mapping[str, object] | None = None) -> OrderState:
        """The state `event` leads to (nothing is written): for building the next step before appending."""
        return _advanced(state, event, _step_fields(event, remember))

    async def append_many(
        self,
        changes: Sequence[Change],
    ) -> list[Exception | None]:
        """Several independent appends in one round trip; per change, None or the exception it met."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for state, event, remember, claim, message in changes:
                args, _ = self._transition_args(state, [(event, remember)], claim, message, None, with_state=False)
                await run(self._transition, args, client=pipe)
            results = await pipe.execute(raise_on_error=False)
        outcomes: list[Exception | None] = []
        for (state, *_), result in zip(changes, results, strict=True):
            try:
                if isinstance(result, Exception):
                    raise result
                _raise_for(result, state)
                outcomes.append(None)
            except Exception as exc:  # reported per change: one failure must not hide the others
                outcomes.append(exc)
        return outcomes

    def _transition_args(
        self,
        state: OrderState,
        steps: Sequence[tuple[OrderEvent, Mapping[str, object] | None]],
        claim: RestingPlace | None,
        message: QueuedMessage | None,
        release: Lease | None,
        fence: Lease | None = None,
        *,
        with_state: bool = True,
    ) -> tuple[TransitionArgs, OrderState]:
        """The script's arguments for appending `steps`, and the state they lead to (`state` itself when
        not `with_state`: the steps are checked all the same, but the new state is not built)."""
        after, events, fields = state, [], {}
        for event, remember in steps:
            changed = _step_fields(event, remember)
            after = _advanced(after, event, changed) if with_state else _checked(after, event)
            events.append(event.to_json())
            fields.update(changed)
        order_id, place = str(state.order.order_id), claim or _NOWHERE  # formatted once: UUID.__str__ is slow
        partition = partition_of(order_id)
        args = TransitionArgs(
            order=redis_keys.order(order_id),
            events=redis_keys.order_events(order_id),
            events_stream=redis_keys.events_stream(partition),
            dramatiq_queue=redis_keys.dramatiq_queue(partition),
            dramatiq_msgs=redis_keys.dramatiq_messages(partition),
            rest_zset=place.key,
            rest_index_zset=place.index_key or NO_KEY,
            expiries_zset=place.expiries_key or NO_KEY,
            second_rest_zset=place.second_key or NO_KEY,
            second_rest_member=place.second_member,
            lease=redis_keys.order_lease(order_id),
            # Given back only in the step that takes the order out of `waiting` (the seq CAS makes this state
            # the stored one whenever the script gets that far).
            resting_count_per_owner=(
                redis_keys.resting_per_owner(partition_of(state.order.order_id))
                if state.status is OrderStatus.WAITING
                else NO_KEY
            ),
            expected_seq=state.seq,
            order_id=order_id,
            user_id=state.order.stream_user,
            expire_s=self.retention_s if is_terminal(steps[-1][0].status) else 0,
            rest_member=place.member,
            index_member=place.index_member,
            message_id=message.redis_message_id if message else "",
            message_data=message.data if message else b"",
            lease_token=release.token if release else "",
            fence_token=fence.token if fence else "",
            event_jsons=events,
            order_hash=fields,
        )
        return args, after

    async def load(self, order_id: UUID) -> OrderState | None:
        return self.state_from(await self.redis.hgetall(redis_keys.order(order_id)))

    async def load_heads(self, order_ids: Sequence[UUID]) -> list[OrderState | None]:
        """What appending a step to each of many orders needs, in one round trip: the spec and where each
        stands (status, seq, attempt). Their `fields` hold only those four: a hand-over of thousands spent
        a third of its reading on fields it never looks at."""
        if not order_ids:
            return []
        # One script per partition: on a cluster a script's keys are in one slot (a book's members always are).
        by_partition: dict[int, list[int]] = {}
        for index, order_id in enumerate(order_ids):
            by_partition.setdefault(partition_of(order_id), []).append(index)
        replies = await asyncio.gather(
            *(
                self._read_heads(keys=[redis_keys.order(order_ids[i]) for i in indexes], args=_HEAD)
                for indexes in by_partition.values()
            )
        )
        heads: list[Any] = [None] * len(order_ids)
        for indexes, reply in zip(by_partition.values(), replies, strict=True):
            for index, head in zip(indexes, reply, strict=True):
                heads[index] = head
        return [None if head[0] is None else _state_of(_present(head)) for head in heads]

    @staticmethod
    def state_from(raw: RawHash) -> OrderState | None:
        """An order's state from its hash as HGETALL returns it (None for a missing order)."""
        if not raw:
            return None
        return _state_of({text(k): text(v) for k, v in raw.items()})

    async def events(self, order_id: UUID, after_seq: int = 0) -> list[bytes]:
        """Raw event messages with seq > after_seq, in seq order (the list index is seq - 1), once the replicas
        hold them: what a caller passes on, a failover cannot take back (shared/redis_replicas.py)."""
        events = raw_members(await self.redis.lrange(redis_keys.order_events(order_id), max(after_seq, 0), -1))
        if events:
            await barrier(self.redis)
        return events


#: The ARGV fields of every order hash KEYS names, as HMGET gives each (false, i.e. nil, for a missing one).
_READ_HEADS = (
    "local out = {} for i, key in ipairs(KEYS) do out[i] = redis.call('HMGET', key, unpack(ARGV)) end return out"
)
_HEAD = ("spec", "status", "seq", "attempt")


def _present(head: list[bytes | None]) -> dict[str, str]:
    """An order's head as its hash's fields: the `_HEAD` fields it has."""
    return {name: value.decode() for name, value in zip(_HEAD, head, strict=True) if value is not None}


def _state_of(fields: dict[str, str]) -> OrderState:
    return OrderState(
        order=Order.from_spec(orjson.loads(fields["spec"])),
        status=OrderStatus(fields["status"]),
        seq=int(fields["seq"]),
        attempt=int(fields.get("attempt") or 0),
        fields=fields,
    )


def _step_fields(event: OrderEvent, remember: Mapping[str, object] | None) -> dict[str, str]:
    """The order-hash fields one event sets."""
    return _hash_fields({**_result_fields(event), **(remember or {})})


def _advanced(state: OrderState, event: OrderEvent, changed: dict[str, str]) -> OrderState:
    _checked(state, event)
    return OrderState(state.order, event.status, event.seq, event.attempt or state.attempt, {**state.fields, **changed})


def _checked(state: OrderState, event: OrderEvent) -> OrderState:
    """`state`, once `event` is found a legal next step of it."""
    check_transition(state.status, event.status)
    if event.seq != state.seq + 1:
        raise ValueError(f"event seq {event.seq} does not follow {state.seq}")
    return state


def _raise_for(result: int, state: OrderState) -> None:
    if result == -2:
        raise ClaimLost(f"order {state.order.order_id} was already taken from where it rested")
    if result == -3:
        raise LeaseLost(f"order {state.order.order_id}: the writer's lease no longer holds it")
    if result != 0:
        raise StaleWrite(state.order.order_id, state.seq, int(result))
