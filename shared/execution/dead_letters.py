"""The execution queue's dead letters, for operators: list, show, replay, purge (the API and the CLI use this).

A message is dead-lettered when its last attempt fails; the executor has then already persisted the order
as `failed` with its reason. dramatiq keeps dead letters in the sorted set `dramatiq:execution.XQ` (score =
when, epoch ms) and the hash `dramatiq:execution.XQ.msgs`, for 7 days; it never re-queues them. Operators
address dead letters by orderId.

Replaying an order's dead letter(s) does one of three things, chosen from the order's current state
(`replay_policy.decide`):

- **requeued** — the order is not terminal (it was dead-lettered by a crash, an age limit, or a `failed`
  event that could not be written). Its original execution message (same ids, delivery count reset) goes
  back on the queue; the executor resumes from the last persisted stage, with at most MAX_ATTEMPTS per
  order counted from the order's own events. The order lease, the seq compare-and-set and the ledger's
  per-order nonce keep it at-most-once even if another delivery of it is still around.
- **recreated** — the order ended `failed`. A terminal order has no outgoing transitions, so it stays
  failed; a *new* order with the same request is created through `OrderStore.create` as the API creates
  one (market → execution queue; limit/sniper → resting again), under the Idempotency-Key
  `replay:<orderId>`, its `pending` event carrying `replayOf: <orderId>`. Refused (`may_have_executed`)
  while a transaction of the original was sent and never settled or executed, and (`expired`) once a
  resting order's expiresAt has passed.
- **discarded** — the order is confirmed, cancelled or expired: it already has its one terminal state, so
  the dead letter is only removed.

Each replay is one optimistic transaction (WATCH the order, its replay record and the replay's
Idempotency-Key; MULTI; re-enqueue or create; remove the order's dead letters; write the replay record;
EXEC). So the effect and the removal of the dead letter commit together, and of two concurrent replays of
one order exactly one commits: the other retries, finds no dead letter, and answers with the first one's
record (`alreadyReplayed: true`, same `newOrderId`). The record is kept as long as dramatiq keeps dead
letters. Refused dead letters stay until purged.
"""

from __future__ import annotations

import asyncio
import builtins
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import orjson
from dramatiq.brokers.redis import DEFAULT_DEAD_MESSAGE_TTL
from loguru import logger
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError
from redis.typing import ZSetRangeResponse

from shared import redis_keys
from shared.domain.events import iso_utc, utc_now
from shared.domain.lifecycle import OrderStatus
from shared.domain.orders import Order
from shared.domain.partitions import all_partitions, partition_of
from shared.execution.dramatiq_internals import hand_enqueue
from shared.execution.replay_policy import (
    REPLAY_BODY_HASH,
    DeadLetter,
    NotReplayable,
    ReplayAction,
    ReplayResult,
    decide,
    replay_key,
    replay_link,
    replay_order,
    replay_scope,
    requeue_message,
    summary,
)
from shared.logging import order_logger
from shared.redis_keys import EXECUTION_QUEUE
from shared.store.order_store import REST_OWNER_FIELD, CreateOutcome, OrderState, OrderStore
from shared.store.placement import placement
from shared.store.replies import text
from shared.venues.ledger import Ledger

#: How many dead letters a listing shows unless asked for more (newest first).
DEFAULT_LIST_LIMIT = 100
#: How many dead letters one `replay --all` takes on (oldest first), so one call stays short.
DEFAULT_REPLAY_BATCH = 100
#: The most one listing or batch replay may ask for.
MAX_BATCH = 1000
#: How long a replay's record answers repeated replays: as long as dramatiq keeps the dead letters themselves.
REPLAY_RECORD_TTL_S = DEFAULT_DEAD_MESSAGE_TTL // 1000
#: Optimistic-transaction retries when another writer touched the same order meanwhile (each one re-reads).
MAX_REPLAY_TRIES = 20
REPLAY_RETRY_PAUSE_S = 0.01
#: Dead letters read per HSCAN step when looking for one order's (dead letters are found by orderId by
#: scanning their hash: fine at operator scale; an index kept at nack time would be the next step).
SCAN_COUNT = 500
#: Dead letters removed per purge script call, so one call never blocks Redis for long.
PURGE_BATCH = 500

# KEYS: dead-letter zset, dead-letter messages. ARGV: cutoff (epoch ms), batch size.
_PURGE_OLDER = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('HDEL', KEYS[2], unpack(ids))
end
return #ids
"""


class DeadLetterNotFound(LookupError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"no dead letter for order {order_id}")
        self.order_id = order_id


class ReplayContended(RuntimeError):
    """The order kept changing under the replay: try again later."""


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One order of a `replay_all`: what happened, or why it was refused."""

    order_id: str | None
    result: ReplayResult | None = None
    error: NotReplayable | None = None

    def to_view(self) -> dict[str, Any]:
        if self.result is not None:
            return {"success": True, **self.result.to_view()}
        assert self.error is not None
        return {"success": False, "orderId": self.order_id, "error": self.error.code, "message": self.error.message}


# redis-py types each reply for any client (`bytes | str`) and any option (WITHSCORES or not, NOVALUES or not).
# The engine's clients never decode (no decode_responses), so the casts below name the one shape each call gets.


def _scored(reply: ZSetRangeResponse) -> list[tuple[bytes, float]]:
    """A ZRANGE ... WITHSCORES reply: (member, score) pairs."""
    return cast("list[tuple[bytes, float]]", reply)


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """One partition's execution queue and dead letters (dramatiq's keys, shared/redis_keys.py)."""

    queue: str
    messages: str
    dead: str
    dead_messages: str

    @classmethod
    def of(cls, partition: int, queue: str = EXECUTION_QUEUE) -> QueueKeys:
        return cls(
            redis_keys.dramatiq_queue(partition, queue),
            redis_keys.dramatiq_messages(partition, queue),
            redis_keys.dramatiq_dead_letters(partition, queue),
            redis_keys.dramatiq_dead_letter_messages(partition, queue),
        )


class DeadLetters:
    """The dead letters of every partition's execution queue (`store.partitions` of them): listed and counted
    across all, an order's found, replayed and purged in its own partition."""

    def __init__(
        self,
        redis: Redis,
        store: OrderStore,
        ledger: Ledger,
        *,
        queue: str = EXECUTION_QUEUE,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.redis = redis
        self.store = store
        self.ledger = ledger
        self.clock = clock
        self.queue = queue
        self.partitions = [QueueKeys.of(partition, queue) for partition in all_partitions(store.partitions)]
        self._purge_older = redis.register_script(_PURGE_OLDER)

    def _of(self, order_id: str) -> QueueKeys:
        return QueueKeys.of(partition_of(order_id), self.queue)

    # --- reading --------------------------------------------------------------------------------------

    async def count(self) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys in self.partitions:
                pipe.zcard(keys.dead)
            return sum(await pipe.execute())

    async def list(self, limit: int = DEFAULT_LIST_LIMIT) -> list[dict[str, Any]]:
        """The newest `limit` dead letters, each with its order's status, type, pair and last error."""
        letters = await self._ends(limit, newest=True)
        states = await self._states([letter.order_id for letter in letters])
        return [summary(letter, states.get(letter.order_id) if letter.order_id else None) for letter in letters]

    async def show(self, order_id: UUID | str) -> dict[str, Any]:
        """The order's dead letters (whole messages), its current state and every event, and its last replay."""
        order_id = str(order_id)
        letters = await self._find(order_id, self.redis, self._of(order_id))
        record = await self.redis.get(redis_keys.dead_letter_replay(order_id))
        if not letters and record is None:
            raise DeadLetterNotFound(order_id)
        state = (await self._states([order_id])).get(order_id)
        events = await self.redis.lrange(redis_keys.order_events(order_id), 0, -1)
        return {
            "orderId": order_id,
            "deadLetters": [
                {**letter.to_view(with_message=True), "lastError": summary(letter, state)["lastError"]}
                for letter in letters
            ],
            "order": state.to_view() if state else None,
            "events": [orjson.loads(raw) for raw in events],
            "lastReplay": ReplayResult.from_record(record).to_view() if record else None,
        }

    # --- replaying ------------------------------------------------------------------------------------

    async def replay(self, order_id: UUID | str) -> ReplayResult:
        """Replay the order's dead letter(s) once, whatever the number of callers (see the module docstring).

        Raises DeadLetterNotFound (no dead letter and no earlier replay), NotReplayable, ReplayContended.
        """
        order_id = str(order_id)
        for _ in range(MAX_REPLAY_TRIES):
            try:
                return await self._replay_once(order_id)
            except WatchError:
                await asyncio.sleep(REPLAY_RETRY_PAUSE_S * random.uniform(1, 2))
        raise ReplayContended(f"order {order_id} kept changing while being replayed; try again")

    async def replay_all(self, limit: int = DEFAULT_REPLAY_BATCH) -> builtins.list[BatchItem]:
        """Replay the orders of the oldest `limit` dead letters, one transaction per order."""
        letters = await self._ends(min(limit, MAX_BATCH), newest=False)
        items: builtins.list[BatchItem] = []
        for order_id in dict.fromkeys(letter.order_id for letter in letters):
            if order_id is None:
                unreadable = NotReplayable("unreadable_message", "a dead letter without an orderId: purge it")
                items.append(BatchItem(None, error=unreadable))
                continue
            try:
                items.append(BatchItem(order_id, result=await self.replay(order_id)))
            except NotReplayable as exc:
                items.append(BatchItem(order_id, error=exc))
            except DeadLetterNotFound:
                continue  # purged meanwhile
            except ReplayContended as exc:
                items.append(BatchItem(order_id, error=NotReplayable("contended", str(exc))))
        return items

    async def _replay_once(self, order_id: str) -> ReplayResult:
        record_key = redis_keys.dead_letter_replay(order_id)
        order_key = redis_keys.order(order_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            # Watched: a second replay writes the record; the executor writes the order; a replay that got
            # as far as creating the new order wrote the key. Any of them makes this EXEC fail and retry.
            await pipe.watch(record_key, order_key)
            keys = self._of(order_id)
            letters = await self._find(order_id, pipe, keys)
            if not letters:
                record = await pipe.get(record_key)
                if record is None:
                    raise DeadLetterNotFound(order_id)
                return ReplayResult.from_record(record)
            state = OrderStore.state_from(await pipe.hgetall(order_key))
            now = self.clock()
            action, new_order_id = await self._decide(order_id, state, now, pipe)
            pipe.multi()  # type: ignore[no-untyped-call]  # unannotated in redis-py's asyncio Pipeline
            new_order = await self._queue_action(pipe, keys, order_id, action, letters, state, new_order_id, now)
            if new_order is not None:
                new_order_id = str(new_order.order_id)
            ids = [letter.message_id for letter in letters]
            pipe.zrem(keys.dead, *ids)
            pipe.hdel(keys.dead_messages, *ids)
            result = ReplayResult(order_id, action, iso_utc(now), new_order_id, len(ids))
            pipe.set(record_key, result.to_record(), ex=REPLAY_RECORD_TTL_S)
            replies = await pipe.execute()
        if new_order is not None:
            created = OrderStore.create_outcome(new_order, REPLAY_BODY_HASH, replies[0])
            if created.outcome is not CreateOutcome.CREATED:  # cannot happen: the key was watched and free
                raise RuntimeError(f"replay of {order_id} did not create its order: {created.outcome}")
            order_logger(str(new_order.order_id)).info("created as the replay of failed order {}", order_id)
        order_logger(order_id).info(
            "dead letter replayed: {}{}", action.value, f" as {new_order_id}" if new_order_id else ""
        )
        return result

    async def _decide(
        self, order_id: str, state: OrderState | None, now: datetime, pipe: Pipeline
    ) -> tuple[ReplayAction, str | None]:
        """What replaying means for the order (`decide`), and the order an earlier replay already created, if
        any. Watches the replay's Idempotency-Key, so a replay creating that order meanwhile fails the EXEC."""
        idempotency_key = redis_keys.idempotency(replay_scope(order_id), partition_of(order_id))
        await pipe.watch(idempotency_key)
        failed = state is not None and state.status is OrderStatus.FAILED
        transactions = await self.ledger.transactions_for(order_id) if failed else []
        try:
            action = decide(state, transactions, now)
        except NotReplayable as exc:
            order_logger(order_id).warning("dead letter not replayed ({}): {}", exc.code, exc.message)
            raise
        earlier = await pipe.get(idempotency_key) if action is ReplayAction.RECREATE else None
        return action, None if earlier is None else self._earlier_replay(order_id, text(earlier))

    async def _queue_action(
        self,
        pipe: Pipeline,
        keys: QueueKeys,
        order_id: str,
        action: ReplayAction,
        letters: builtins.list[DeadLetter],
        state: OrderState | None,
        earlier_replay: str | None,
        now: datetime,
    ) -> Order | None:
        """Queue the replay's writes in `pipe`'s MULTI: the newest message back on the queue (REQUEUE), or a new
        order (RECREATE, unless an earlier replay made it: that one stands). The new order, if one is made."""
        if action is ReplayAction.REQUEUE:
            newest = max(letters, key=lambda letter: letter.dead_lettered_at or now)
            message = requeue_message(newest)
            hand_enqueue(pipe, keys.queue, keys.messages, message.redis_message_id, message.data)
            return None
        if action is not ReplayAction.RECREATE or earlier_replay is not None:
            return None
        assert state is not None  # decide() refuses an order that is gone
        new_order = replay_order(state.order, now)
        plan = placement(new_order, replay_link(order_id))
        await self.store.queue_create(
            pipe,
            new_order,
            plan.first_event,
            body_hash=REPLAY_BODY_HASH,
            message=plan.message,
            resting=plan.resting,
            # The client's order, resting again: it takes one of the client's resting slots (else a
            # replayed limit or sniper order would rest beside MAX_RESTING_PER_OWNER others).
            rest_owner=state.fields.get(REST_OWNER_FIELD, ""),
        )
        return new_order

    @staticmethod
    def _earlier_replay(order_id: str, idempotency_value: str) -> str:
        """The order an earlier replay created under the replay's Idempotency-Key (or refuse: someone else's)."""
        existing_id, _, body_hash = idempotency_value.partition(" ")
        if body_hash != REPLAY_BODY_HASH:
            raise NotReplayable(
                "idempotency_key_taken",
                f"the Idempotency-Key {replay_key(order_id)} was used by a client for order {existing_id}",
            )
        return existing_id

    # --- purging --------------------------------------------------------------------------------------

    async def purge_older_than(self, age_s: float) -> int:
        """Remove dead letters older than `age_s` seconds (dramatiq itself drops them after 7 days)."""
        if not math.isfinite(age_s) or age_s < 0:
            raise ValueError(f"age must be a finite number of seconds, not {age_s!r}")
        cutoff_ms = max(0, int((self.clock().timestamp() - age_s) * 1000))
        removed = 0
        for keys in self.partitions:
            while True:
                batch: int = await self._purge_older(
                    keys=[keys.dead, keys.dead_messages], args=[cutoff_ms, PURGE_BATCH]
                )
                removed += batch
                if batch < PURGE_BATCH:
                    break
        logger.info("purged {} dead letters older than {}s", removed, age_s)
        return removed

    async def purge_order(self, order_id: UUID | str) -> int:
        """Remove the order's dead letters without replaying them (e.g. ones replay refuses)."""
        order_id = str(order_id)
        keys = self._of(order_id)
        ids = [letter.message_id for letter in await self._find(order_id, self.redis, keys)]
        if not ids:
            raise DeadLetterNotFound(order_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.dead, *ids)
            pipe.hdel(keys.dead_messages, *ids)
            removed: int
            removed, _ = await pipe.execute()
        order_logger(order_id).info("purged {} dead letters without replaying them", removed)
        return removed

    # --- helpers --------------------------------------------------------------------------------------

    async def _ends(self, limit: int, *, newest: bool) -> builtins.list[DeadLetter]:
        """The newest (or oldest) `limit` dead letters of all partitions: each partition's, merged."""
        letters: builtins.list[DeadLetter] = []
        for keys in self.partitions:
            read = self.redis.zrevrange if newest else self.redis.zrange
            letters += await self._letters(keys, _scored(await read(keys.dead, 0, limit - 1, withscores=True)))
        letters.sort(key=lambda letter: letter.dead_lettered_at or datetime.min.replace(tzinfo=UTC), reverse=newest)
        return letters[:limit]

    async def _letters(self, keys: QueueKeys, members: builtins.list[tuple[bytes, float]]) -> builtins.list[DeadLetter]:
        """Dead letters for (id, score) members of the dead-letter zset, skipping ones gone meanwhile."""
        if not members:
            return []
        ids = [text(member) for member, _ in members]
        datas = cast("builtins.list[bytes | None]", await self.redis.hmget(keys.dead_messages, ids))
        return [
            DeadLetter.parse(message_id, data, score)
            for message_id, data, (_, score) in zip(ids, datas, members, strict=True)
            if data is not None
        ]

    async def _find(self, order_id: str, client: Redis, keys: QueueKeys) -> builtins.list[DeadLetter]:
        """Every dead letter of one order. A scan of its partition's whole (small, operator-sized) dead-letter
        hash."""
        needle = order_id.encode()
        found: dict[str, bytes] = {}
        cursor = 0
        while True:
            cursor, page = await client.hscan(keys.dead_messages, cursor, count=SCAN_COUNT)
            for message_id, data in cast("dict[bytes, bytes]", page).items():  # HSCAN without NOVALUES
                if needle in data:  # cheap filter before parsing
                    found[text(message_id)] = data
            if cursor == 0:
                break
        if not found:
            return []
        ids = list(found)
        scores = await client.zmscore(keys.dead, ids)
        letters = [DeadLetter.parse(i, found[i], score) for i, score in zip(ids, scores, strict=True)]
        return [letter for letter in letters if letter.order_id == order_id]

    async def _states(self, order_ids: builtins.list[str | None]) -> dict[str, OrderState]:
        wanted = [order_id for order_id in dict.fromkeys(order_ids) if order_id]
        if not wanted:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in wanted:
                pipe.hgetall(redis_keys.order(order_id))
            raws = await pipe.execute()
        states = {}
        for order_id, raw in zip(wanted, raws, strict=True):
            state = OrderStore.state_from(raw)
            if state is not None:
                states[order_id] = state
        return states
