"""The simulated chain's memory: which transactions were submitted and what became of them, and how far
executed swaps have pushed each pool (pool_shift.py).

Two adapters share one port, like a broker and its stub: `RedisLedger` so that every process of a deployment
sees the same chain, and `InMemoryLedger` for tests and single-process runs. Both enforce the chain's
promises: a transaction is recorded once and settled once (first settle wins); an order executes at most
once whatever number of transactions were sent for it: a confirmed settle claims the order's durable nonce,
and a second claimant is turned into a failure ("nonce_used"); and a confirmed swap moves its pools in the
same step as it settles, priced on the pool states it read: if another swap moved one of them since, the
settle is refused (`PoolMoved`) and the swap is priced again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

import orjson
from redis.asyncio import Redis

from shared import redis_keys
from shared.venues.base import Dex, Legged, LegResult, SwapLeg, TxOutcome, TxStatus
from shared.venues.pool_shift import UNMOVED, PoolShift

NONCE_USED = "nonce_used"
#: A transaction recorded before transactions carried blockhashes lands whenever it lands.
NEVER_EXPIRES = 2**62
#: How long the chain remembers what an order sent past the order's own retention in Redis: as long as
#: dramatiq keeps a dead letter (7 days), since replaying one reads the order's transactions to tell whether it
#: executed; and far longer than any order stays in flight, which the nonce must outlive. A real chain never
#: forgets; a Redis that never forgets fills up.
RETENTION_MARGIN_S = 7 * 86_400
DEFAULT_RETENTION_S = 86_400 + RETENTION_MARGIN_S


#: How long a pool's displacement is kept after its last move, in half-lives (2⁻⁶⁴ of it is left by then), and
#: at least SHIFT_MIN_TTL_S.
SHIFT_KEPT_HALF_LIVES = 64
SHIFT_MIN_TTL_S = 3_600


def shift_ttl_s(half_life_s: float) -> int:
    """The lifetime of a pool's displacement key after its last move."""
    return max(SHIFT_MIN_TTL_S, math.ceil(SHIFT_KEPT_HALF_LIVES * half_life_s))


@dataclass(frozen=True, slots=True)
class PoolId:
    """One venue's pool of a pair, named by its canonical (sorted) symbols whatever the trade's direction."""

    dex: Dex
    base: str
    quote: str

    @classmethod
    def of(cls, dex: Dex, token_in: str, token_out: str) -> PoolId:
        base, quote = sorted((token_in, token_out))
        return cls(Dex(dex), base, quote)

    @property
    def key(self) -> str:
        return redis_keys.venue_pool_shift(self.dex.value, self.base, self.quote)


#: A confirmed swap's effect on one pool: its shift as the swap was priced on, and after the swap.
PoolMove = tuple[PoolId, PoolShift, PoolShift]


class PoolMoved(Exception):
    """A pool the settle would move changed after the swap was priced: price it again on the new state."""


def retention_s(order_retention_s: int) -> int:
    """The ledger's key lifetime for orders kept `order_retention_s` in Redis after they end."""
    return order_retention_s + RETENTION_MARGIN_S


@dataclass(frozen=True, slots=True)
class TxRecord(Legged):
    tx_hash: str
    order_id: str
    attempt: int
    #: Largest first, as the transaction lists them.
    legs: tuple[SwapLeg, ...]
    token_in: str
    token_out: str
    min_amount_out: Decimal
    #: UTC epoch seconds the chain accepted the transaction, and when it lands (executes) unless it is dropped
    #: or its blockhash expires first.
    submitted_at: float
    lands_at: float
    outcome: TxOutcome | None = None
    blockhash: str = ""
    #: The last slot it may land in; recorded before blockhashes: never expires.
    last_valid_slot: int = NEVER_EXPIRES

    def to_fields(self) -> dict[str, str]:
        """The record as a Redis hash, without the outcome (settling adds those fields)."""
        return {
            "tx_hash": self.tx_hash,
            "order_id": self.order_id,
            "attempt": str(self.attempt),
            "dex": self.dex.value,
            "legs": orjson.dumps([[leg.dex.value, str(leg.amount_in)] for leg in self.legs]).decode(),
            "token_in": self.token_in,
            "token_out": self.token_out,
            "amount_in": str(self.amount_in),
            "min_amount_out": str(self.min_amount_out),
            "submitted_at": repr(self.submitted_at),
            "lands_at": repr(self.lands_at),
            "blockhash": self.blockhash,
            "last_valid_slot": str(self.last_valid_slot),
        }

    @classmethod
    def from_fields(cls, raw: Mapping[bytes | str, bytes | str]) -> TxRecord:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return cls(
            tx_hash=fields["tx_hash"],
            order_id=fields["order_id"],
            attempt=int(fields["attempt"]),
            legs=_legs(fields),
            token_in=fields["token_in"],
            token_out=fields["token_out"],
            min_amount_out=Decimal(fields["min_amount_out"]),
            submitted_at=float(fields["submitted_at"]),
            lands_at=float(fields["lands_at"]),
            outcome=outcome_from_fields(fields) if fields.get("status") else None,
            blockhash=fields.get("blockhash", ""),
            last_valid_slot=int(fields.get("last_valid_slot") or NEVER_EXPIRES),
        )


def _legs(fields: Mapping[str, str]) -> tuple[SwapLeg, ...]:
    if "legs" not in fields:  # recorded before transactions had legs: one venue took it all
        return (SwapLeg(Dex(fields["dex"]), Decimal(fields["amount_in"])),)
    return tuple(SwapLeg(Dex(dex), Decimal(amount)) for dex, amount in orjson.loads(fields["legs"]))


def outcome_fields(outcome: TxOutcome) -> dict[str, str]:
    return {
        "status": outcome.status.value,
        "amount_out": "" if outcome.amount_out is None else str(outcome.amount_out),
        "executed_price": "" if outcome.executed_price is None else str(outcome.executed_price),
        "error": outcome.error or "",
        "message": outcome.message or "",
        "latency_ms": str(outcome.latency_ms),
        "leg_results": orjson.dumps(
            [[leg.dex.value, str(leg.amount_in), str(leg.amount_out)] for leg in outcome.legs]
        ).decode(),
    }


def outcome_from_fields(fields: Mapping[str, str]) -> TxOutcome:
    return TxOutcome(
        tx_hash=fields["tx_hash"],
        status=TxStatus(fields["status"]),
        amount_out=Decimal(fields["amount_out"]) if fields.get("amount_out") else None,
        executed_price=Decimal(fields["executed_price"]) if fields.get("executed_price") else None,
        error=fields.get("error") or None,
        message=fields.get("message") or None,
        latency_ms=int(fields.get("latency_ms") or 0),
        legs=tuple(
            LegResult(Dex(dex), Decimal(amount_in), Decimal(amount_out))
            for dex, amount_in, amount_out in orjson.loads(fields.get("leg_results") or "[]")
        ),
    )


def nonce_used(tx_hash: str, order_id: str, owner: str, latency_ms: int) -> TxOutcome:
    return TxOutcome(
        tx_hash=tx_hash,
        status=TxStatus.FAILED,
        error=NONCE_USED,
        message=_nonce_message(order_id) + owner,
        latency_ms=latency_ms,
    )


def _nonce_message(order_id: str) -> str:
    # Redis appends the owning tx_hash inside its script, so both adapters share this prefix.
    return f"order {order_id} was already executed by transaction "


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Ledger(Protocol):
    async def record_submission(self, record: TxRecord) -> TxRecord:
        """Store the record unless its tx_hash is known; return whichever record is stored."""

    async def get(self, tx_hash: str) -> TxRecord | None: ...

    async def pool_shifts(self, pools: Sequence[PoolId], max_age_s: float = 0.0) -> list[PoolShift]:
        """Each pool's displacement as its last swap left it (unmoved pools: `UNMOVED`); an answer read up to
        `max_age_s` ago may stand in, as an RPC node answers from the last slot it saw."""

    async def settle(
        self,
        tx_hash: str,
        outcome: TxOutcome,
        order_id: str | None = None,
        moves: Sequence[PoolMove] = (),
    ) -> TxOutcome:
        """Keep the first outcome settled, under the nonce rule, and return the stored one; a confirmed
        outcome also moves its pools (`moves`) in the same step.

        `order_id`, when the caller knows it (from the record), saves looking it up.
        Raises LookupError for a transaction that was never recorded, and PoolMoved when a pool's shift is no
        longer the one in its move (nothing is written then).
        """

    async def transactions_for(self, order_id: str) -> list[TxRecord]:
        """Every transaction recorded for the order, in attempt order."""

    async def executions_for(self, order_id: str) -> list[TxRecord]:
        """The order's confirmed transactions: never more than one."""


class InMemoryLedger:
    """A process-local chain. Methods never await inside, so each one is atomic under asyncio."""

    def __init__(self) -> None:
        self._records: dict[str, TxRecord] = {}
        self._nonces: dict[str, str] = {}
        self._by_order: dict[str, list[str]] = {}
        self._shifts: dict[PoolId, PoolShift] = {}

    async def record_submission(self, record: TxRecord) -> TxRecord:
        if record.tx_hash not in self._records:
            self._records[record.tx_hash] = replace(record, outcome=None)
            self._by_order.setdefault(record.order_id, []).append(record.tx_hash)
        return self._records[record.tx_hash]

    async def get(self, tx_hash: str) -> TxRecord | None:
        return self._records.get(tx_hash)

    async def pool_shifts(self, pools: Sequence[PoolId], max_age_s: float = 0.0) -> list[PoolShift]:
        return [self._shifts.get(pool, UNMOVED) for pool in pools]

    async def settle(
        self,
        tx_hash: str,
        outcome: TxOutcome,
        order_id: str | None = None,
        moves: Sequence[PoolMove] = (),
    ) -> TxOutcome:
        record = self._records.get(tx_hash)
        if record is None:
            raise LookupError(f"unknown transaction {tx_hash}")
        if record.outcome is not None:
            return record.outcome
        if any(self._shifts.get(pool, UNMOVED) != before for pool, before, _ in moves):
            raise PoolMoved(tx_hash)
        if outcome.status is TxStatus.CONFIRMED:
            owner = self._nonces.setdefault(record.order_id, tx_hash)
            if owner == tx_hash:
                self._shifts.update({pool: after for pool, _, after in moves})
            else:
                outcome = nonce_used(tx_hash, record.order_id, owner, outcome.latency_ms)
        self._records[tx_hash] = replace(record, outcome=outcome)
        return outcome

    async def transactions_for(self, order_id: str) -> list[TxRecord]:
        records = [self._records[h] for h in self._by_order.get(str(order_id), [])]
        return sorted(records, key=lambda r: (r.attempt, r.tx_hash))

    async def executions_for(self, order_id: str) -> list[TxRecord]:
        return [r for r in await self.transactions_for(order_id) if _confirmed(r)]


def _confirmed(record: TxRecord) -> bool:
    return record.outcome is not None and record.outcome.status is TxStatus.CONFIRMED


# KEYS: tx hash, order's transaction set. ARGV: tx_hash, ttl_s, then the record's field/value pairs.
_RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: tx hash, order's nonce, then the pools the swap moves. ARGV: tx_hash, status, amount_out, executed_price,
# error, message, latency_ms, nonce_used message, ttl_s (the nonce's, from its claim), leg_results, the pools'
# ttl_s, then per pool its shift before and after the swap ('' when never moved). Claiming the nonce, storing
# the outcome and moving the pools happen in one step, so two transactions of one order settling at once cannot
# both confirm, and no swap is priced on a pool another swap has moved meanwhile.
_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if redis.call('HEXISTS', KEYS[1], 'status') == 1 then return redis.call('HGETALL', KEYS[1]) end
for i = 3, #KEYS do
  if (redis.call('GET', KEYS[i]) or '') ~= ARGV[12 + 2 * (i - 3)] then return 'moved' end
end
local status, amount_out, price, err, msg, legs = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[10]
if status == 'confirmed' and not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[9]) then
  local owner = redis.call('GET', KEYS[2])
  if owner ~= ARGV[1] then
    status, amount_out, price, err, msg, legs = 'failed', '', '', 'nonce_used', ARGV[8] .. owner, '[]'
  end
end
if status == 'confirmed' then
  for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[13 + 2 * (i - 3)], 'EX', ARGV[11]) end
end
redis.call('HSET', KEYS[1], 'status', status, 'amount_out', amount_out, 'executed_price', price,
  'error', err, 'message', msg, 'latency_ms', ARGV[7], 'leg_results', legs)
return redis.call('HGETALL', KEYS[1])
"""


order_transactions_key = redis_keys.venue_order_transactions


class RedisLedger:
    """The chain every process shares. Its keys expire `retention_s` after they are written (see
    `retention_s()`): a transaction, its order's set of transactions, a claimed nonce; a pool's displacement
    `shift_ttl_s` after its last move (see `shift_ttl_s()`)."""

    def __init__(
        self, redis: Redis, retention_s: int = DEFAULT_RETENTION_S, shift_ttl_s: int = SHIFT_MIN_TTL_S
    ) -> None:
        self._redis = redis
        self.retention_s = retention_s
        self.shift_ttl_s = shift_ttl_s
        #: The last shift read of each pool, and when (monotonic): quotes may use one read within a slot.
        self._read: dict[PoolId, tuple[PoolShift, float]] = {}
        self._record = redis.register_script(_RECORD)
        self._settle = redis.register_script(_SETTLE)

    async def record_submission(self, record: TxRecord) -> TxRecord:
        flat = [item for pair in record.to_fields().items() for item in pair]
        keys = [redis_keys.venue_transaction(record.tx_hash), order_transactions_key(record.order_id)]
        stored = await self._record(keys=keys, args=[record.tx_hash, self.retention_s, *flat])
        return TxRecord.from_fields(_pairs(stored))

    async def get(self, tx_hash: str) -> TxRecord | None:
        raw = await self._redis.hgetall(redis_keys.venue_transaction(tx_hash))
        return TxRecord.from_fields(raw) if raw else None

    async def pool_shifts(self, pools: Sequence[PoolId], max_age_s: float = 0.0) -> list[PoolShift]:
        now = time.monotonic()
        known = [self._read.get(pool) for pool in pools]
        if all(entry is not None and now - entry[1] <= max_age_s for entry in known):
            return [entry[0] for entry in known if entry is not None]
        shifts = [PoolShift.from_text(raw) for raw in await self._redis.mget([pool.key for pool in pools])]
        self._read.update({pool: (shift, now) for pool, shift in zip(pools, shifts, strict=True)})
        return shifts

    async def settle(
        self,
        tx_hash: str,
        outcome: TxOutcome,
        order_id: str | None = None,
        moves: Sequence[PoolMove] = (),
    ) -> TxOutcome:
        key = redis_keys.venue_transaction(tx_hash)
        if order_id is None:
            # order_id never changes once recorded, so reading it outside the script is safe.
            raw_order_id = await self._redis.hget(key, "order_id")
            if raw_order_id is None:
                raise LookupError(f"unknown transaction {tx_hash}")
            order_id = _text(raw_order_id)
        fields = outcome_fields(outcome)
        names = ("status", "amount_out", "executed_price", "error", "message", "latency_ms")
        args: list[str | int] = [
            tx_hash,
            *(fields[name] for name in names),
            _nonce_message(order_id),
            self.retention_s,
            fields["leg_results"],
            self.shift_ttl_s,
        ]
        for _, before, after in moves:
            args += ["" if before == UNMOVED else before.to_text(), after.to_text()]
        keys = [key, redis_keys.venue_nonce(order_id), *(pool.key for pool, _, _ in moves)]
        stored = await self._settle(keys=keys, args=args)
        if not stored:
            raise LookupError(f"unknown transaction {tx_hash}")
        if stored in (b"moved", "moved"):
            raise PoolMoved(tx_hash)
        return outcome_from_fields({_text(k): _text(v) for k, v in _pairs(stored).items()})

    async def transactions_for(self, order_id: str) -> list[TxRecord]:
        hashes = await self._redis.smembers(order_transactions_key(str(order_id)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for tx_hash in hashes:
                pipe.hgetall(redis_keys.venue_transaction(_text(tx_hash)))
            rows = await pipe.execute()
        records = [TxRecord.from_fields(row) for row in rows if row]
        return sorted(records, key=lambda r: (r.attempt, r.tx_hash))

    async def executions_for(self, order_id: str) -> list[TxRecord]:
        return [r for r in await self.transactions_for(order_id) if _confirmed(r)]


def _pairs(flat: list[bytes | str]) -> dict[bytes | str, bytes | str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
