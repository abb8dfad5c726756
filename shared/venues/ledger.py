"""The simulated chain's memory: which transactions were submitted and what became of them.

Two adapters share one port, like a broker and its stub: `RedisLedger` so that every process of a deployment
sees the same chain, and `InMemoryLedger` for tests and single-process runs. Both enforce the chain's two
promises: a transaction is recorded once and settled once (first settle wins), and an order executes at most
once whatever number of transactions were sent for it: a confirmed settle claims the order's durable nonce,
and a second claimant is turned into a failure ("nonce_used").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

from redis.asyncio import Redis

from shared import redis_keys
from shared.venues.base import Dex, TxOutcome, TxStatus

NONCE_USED = "nonce_used"
#: How long the chain remembers what an order sent past the order's own retention in Redis: as long as
#: dramatiq keeps a dead letter (7 days), since replaying one reads the order's transactions to tell whether it
#: executed; and far longer than any order stays in flight, which the nonce must outlive. A real chain never
#: forgets; a Redis that never forgets fills up.
RETENTION_MARGIN_S = 7 * 86_400
DEFAULT_RETENTION_S = 86_400 + RETENTION_MARGIN_S


def retention_s(order_retention_s: int) -> int:
    """The ledger's key lifetime for orders kept `order_retention_s` in Redis after they end."""
    return order_retention_s + RETENTION_MARGIN_S


@dataclass(frozen=True, slots=True)
class TxRecord:
    tx_hash: str
    order_id: str
    attempt: int
    dex: Dex
    token_in: str
    token_out: str
    amount_in: Decimal
    min_amount_out: Decimal
    #: UTC epoch seconds the chain accepted the transaction, and when it lands (executes).
    submitted_at: float
    lands_at: float
    outcome: TxOutcome | None = None

    def to_fields(self) -> dict[str, str]:
        """The record as a Redis hash, without the outcome (settling adds those fields)."""
        return {
            "tx_hash": self.tx_hash,
            "order_id": self.order_id,
            "attempt": str(self.attempt),
            "dex": self.dex.value,
            "token_in": self.token_in,
            "token_out": self.token_out,
            "amount_in": str(self.amount_in),
            "min_amount_out": str(self.min_amount_out),
            "submitted_at": repr(self.submitted_at),
            "lands_at": repr(self.lands_at),
        }

    @classmethod
    def from_fields(cls, raw: Mapping[bytes | str, bytes | str]) -> TxRecord:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return cls(
            tx_hash=fields["tx_hash"],
            order_id=fields["order_id"],
            attempt=int(fields["attempt"]),
            dex=Dex(fields["dex"]),
            token_in=fields["token_in"],
            token_out=fields["token_out"],
            amount_in=Decimal(fields["amount_in"]),
            min_amount_out=Decimal(fields["min_amount_out"]),
            submitted_at=float(fields["submitted_at"]),
            lands_at=float(fields["lands_at"]),
            outcome=outcome_from_fields(fields) if fields.get("status") else None,
        )


def outcome_fields(outcome: TxOutcome) -> dict[str, str]:
    return {
        "status": outcome.status.value,
        "amount_out": "" if outcome.amount_out is None else str(outcome.amount_out),
        "executed_price": "" if outcome.executed_price is None else str(outcome.executed_price),
        "error": outcome.error or "",
        "message": outcome.message or "",
        "latency_ms": str(outcome.latency_ms),
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

    async def settle(self, tx_hash: str, outcome: TxOutcome, order_id: str | None = None) -> TxOutcome:
        """Keep the first outcome settled, under the nonce rule, and return the stored one.

        `order_id`, when the caller knows it (from the record), saves looking it up.
        Raises LookupError for a transaction that was never recorded.
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

    async def record_submission(self, record: TxRecord) -> TxRecord:
        if record.tx_hash not in self._records:
            self._records[record.tx_hash] = replace(record, outcome=None)
            self._by_order.setdefault(record.order_id, []).append(record.tx_hash)
        return self._records[record.tx_hash]

    async def get(self, tx_hash: str) -> TxRecord | None:
        return self._records.get(tx_hash)

    async def settle(self, tx_hash: str, outcome: TxOutcome, order_id: str | None = None) -> TxOutcome:
        record = self._records.get(tx_hash)
        if record is None:
            raise LookupError(f"unknown transaction {tx_hash}")
        if record.outcome is not None:
            return record.outcome
        if outcome.status is TxStatus.CONFIRMED:
            owner = self._nonces.setdefault(record.order_id, tx_hash)
            if owner != tx_hash:
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

# KEYS: tx hash, order's nonce. ARGV: tx_hash, status, amount_out, executed_price, error, message, latency_ms,
# nonce_used message, ttl_s (the nonce's, from its claim). Claiming the nonce and storing the outcome happen in
# one step, so two transactions of one order settling at once cannot both confirm.
_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if redis.call('HEXISTS', KEYS[1], 'status') == 1 then return redis.call('HGETALL', KEYS[1]) end
local status, amount_out, price, err, msg = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if status == 'confirmed' and not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[9]) then
  local owner = redis.call('GET', KEYS[2])
  if owner ~= ARGV[1] then
    status, amount_out, price, err, msg = 'failed', '', '', 'nonce_used', ARGV[8] .. owner
  end
end
redis.call('HSET', KEYS[1], 'status', status, 'amount_out', amount_out, 'executed_price', price,
  'error', err, 'message', msg, 'latency_ms', ARGV[7])
return redis.call('HGETALL', KEYS[1])
"""


order_transactions_key = redis_keys.venue_order_transactions


class RedisLedger:
    """The chain every process shares. Its keys expire `retention_s` after they are written (see
    `retention_s()`): a transaction, its order's set of transactions, a claimed nonce."""

    def __init__(self, redis: Redis, retention_s: int = DEFAULT_RETENTION_S) -> None:
        self._redis = redis
        self.retention_s = retention_s
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

    async def settle(self, tx_hash: str, outcome: TxOutcome, order_id: str | None = None) -> TxOutcome:
        key = redis_keys.venue_transaction(tx_hash)
        if order_id is None:
            # order_id never changes once recorded, so reading it outside the script is safe.
            raw_order_id = await self._redis.hget(key, "order_id")
            if raw_order_id is None:
                raise LookupError(f"unknown transaction {tx_hash}")
            order_id = _text(raw_order_id)
        fields = outcome_fields(outcome)
        names = ("status", "amount_out", "executed_price", "error", "message", "latency_ms")
        args: list[str | int] = [tx_hash, *(fields[name] for name in names), _nonce_message(order_id), self.retention_s]
        stored = await self._settle(keys=[key, redis_keys.venue_nonce(order_id)], args=args)
        if not stored:
            raise LookupError(f"unknown transaction {tx_hash}")
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
