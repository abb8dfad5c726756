"""What must hold for every accepted order, whatever crashed: the checker behind the fault suite.

Reading (`collect`) is kept apart from judging (`judge`), so the rules can be tested on hand-made bad
histories. For each order:

- lost: the client was answered 200 for it, or PostgreSQL has it, but Redis does not;
- stuck: it is neither terminal nor legitimately resting (`waiting` in its resting place, not past its
  `expiresAt`);
- duplicated: the simulated chain executed more than one transaction for it, or a second transaction of it
  reached landing while another could still land (the chain's nonce refused it: `nonce_used`), which the
  engine's blockhash discipline must never let happen;
- execution mismatch: confirmed without exactly one execution of the same txHash, or ended otherwise
  although the chain executed it;
- gap: its events are not seq 1..n, a transition is illegal under `TRANSITIONS`, or its hash disagrees
  with its own event log;
- mismatch: PostgreSQL does not hold the same status, last seq and events as Redis.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared import redis_keys
from shared.domain.lifecycle import OrderStatus, can_transition, is_terminal
from shared.persistence.models import events_table, orders_table
from shared.venues.ledger import NONCE_USED, order_transactions_key

#: An order this far past its expiresAt should have been expired by the sweepers (they run every 200 ms).
EXPIRY_GRACE = timedelta(seconds=5)

VIOLATION_KINDS = ("lost", "stuck", "duplicated", "execution_mismatch", "gap", "mismatch")


@dataclass
class RedisSide:
    status: str
    seq: int
    events: list[dict[str, Any]]
    order_type: str
    expires_at: datetime | None = None
    tx_hash: str | None = None
    #: For a `waiting` order: its member is still in the set it rests in (so a trigger can find it).
    in_resting_place: bool = False


@dataclass
class PgSide:
    status: str
    last_seq: int
    events: list[dict[str, Any]]  # payloads, in seq order


@dataclass
class OrderHistory:
    order_id: str
    redis: RedisSide | None = None
    pg: PgSide | None = None
    #: tx_hash of every transaction the simulated chain confirmed (executed) for this order.
    executions: list[str] = field(default_factory=list)
    #: The client was answered 200 for it (else it was found in Redis or PostgreSQL only).
    acknowledged: bool = False
    #: tx_hash of every transaction of this order the chain's nonce refused: sent while another could land.
    refused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Violation:
    kind: str
    order_id: str
    detail: str


# --- judging (pure) -----------------------------------------------------------------------------------
def sequence_problems(events: list[dict[str, Any]]) -> list[str]:
    """Why an event log is not gapless and legal (empty when it is)."""
    problems = []
    seqs = [e.get("seq") for e in events]
    if seqs != list(range(1, len(events) + 1)):
        problems.append(f"seqs {seqs} are not 1..{len(events)}")
    previous: OrderStatus | None = None
    for event in events:
        try:
            status = OrderStatus(event.get("status"))
        except ValueError:
            problems.append(f"unknown status {event.get('status')!r}")
            return problems
        if not can_transition(previous, status):
            problems.append(f"illegal transition {previous} -> {status} at seq {event.get('seq')}")
        previous = status
    return problems


def legitimately_resting(side: RedisSide, now: datetime) -> bool:
    if side.status != OrderStatus.WAITING or not side.in_resting_place:
        return False
    return side.expires_at is None or now < side.expires_at + EXPIRY_GRACE


def judge(history: OrderHistory, now: datetime) -> list[Violation]:
    """Every invariant this order breaks."""
    oid, found, found_pg = history.order_id, history.redis, history.pg
    if found is None:
        if history.acknowledged or found_pg is not None:
            return [Violation("lost", oid, "accepted (200 or in PostgreSQL) but not in Redis")]
        return []
    violations = []
    if not is_terminal(found.status) and not legitimately_resting(found, now):
        where = "in its resting place" if found.in_resting_place else "not in its resting place"
        violations.append(Violation("stuck", oid, f"{found.status} ({where}, expiresAt {found.expires_at})"))
    if len(history.executions) > 1:
        violations.append(Violation("duplicated", oid, f"executed by {len(history.executions)} transactions"))
    if history.refused:
        violations.append(Violation("duplicated", oid, f"a second transaction tried to land: {history.refused}"))
    if found.status == OrderStatus.CONFIRMED:
        if history.executions != [found.tx_hash]:
            violations.append(
                Violation("execution_mismatch", oid, f"confirmed {found.tx_hash}, chain executed {history.executions}")
            )
    elif history.executions and is_terminal(found.status):
        violations.append(Violation("execution_mismatch", oid, f"{found.status} but executed {history.executions}"))
    problems = sequence_problems(found.events)
    if found.events and (found.seq != len(found.events) or found.status != found.events[-1].get("status")):
        problems.append(f"hash says {found.status}@{found.seq}, log ends at {found.events[-1].get('status')}")
    violations += [Violation("gap", oid, problem) for problem in problems]
    if found_pg is None:
        violations.append(Violation("mismatch", oid, "not in PostgreSQL"))
    else:
        if (found_pg.status, found_pg.last_seq) != (found.status, found.seq):
            violations.append(
                Violation(
                    "mismatch",
                    oid,
                    f"PostgreSQL {found_pg.status}@{found_pg.last_seq}, Redis {found.status}@{found.seq}",
                )
            )
        if found_pg.events != found.events:
            pg_seqs, redis_seqs = [e.get("seq") for e in found_pg.events], [e.get("seq") for e in found.events]
            what = f"seqs {pg_seqs} vs {redis_seqs}" if pg_seqs != redis_seqs else "payloads differ"
            violations.append(Violation("mismatch", oid, f"events: PostgreSQL vs Redis {what}"))
    return violations


@dataclass
class Verdict:
    orders: int
    acknowledged: int
    unacknowledged_found: int
    by_status: dict[str, int]
    violations: list[Violation]

    def counts(self) -> dict[str, int]:
        """Per kind of violation, how many orders break it."""
        return {kind: len({v.order_id for v in self.violations if v.kind == kind}) for kind in VIOLATION_KINDS}

    @property
    def ok(self) -> bool:
        return not self.violations


def judge_all(histories: dict[str, OrderHistory], now: datetime | None = None) -> Verdict:
    now = now or datetime.now(UTC)
    violations = [v for history in histories.values() for v in judge(history, now)]
    by_status = Counter(h.redis.status if h.redis else "missing" for h in histories.values())
    acknowledged = sum(1 for h in histories.values() if h.acknowledged)
    return Verdict(
        orders=len(histories),
        acknowledged=acknowledged,
        unacknowledged_found=len(histories) - acknowledged,
        by_status=dict(sorted(by_status.items())),
        violations=violations,
    )


# --- reading ------------------------------------------------------------------------------------------
def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def order_ids_in_redis(client: redis.Redis) -> set[str]:
    """Every order Redis holds (hash keys `redis_keys.order`, not their event lists)."""
    ids = set()
    for key in client.scan_iter(match=f"{redis_keys.ORDER_KEY_PREFIX}*", count=1000):
        if (order_id := redis_keys.order_id_of(_text(key))) is not None:
            ids.add(order_id)
    return ids


def order_ids_in_pg(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {str(row[0]) for row in conn.execute(sa.select(orders_table.c.order_id))}


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def read_redis(client: redis.Redis, order_ids: list[str]) -> dict[str, tuple[RedisSide | None, list[str], list[str]]]:
    """Per order: its Redis side (None if missing), the chain's executions for it, and its transactions the
    chain's nonce refused."""
    pipe = client.pipeline(transaction=False)
    for oid in order_ids:
        pipe.hgetall(redis_keys.order(oid))
        pipe.lrange(redis_keys.order_events(oid), 0, -1)
        pipe.smembers(order_transactions_key(oid))
    raw = pipe.execute()
    result: dict[str, tuple[RedisSide | None, list[str], list[str]]] = {}
    places = client.pipeline(transaction=False)
    waiting: list[tuple[str, RedisSide]] = []
    tx_pipe = client.pipeline(transaction=False)
    tx_owner: list[tuple[str, str]] = []
    for i, oid in enumerate(order_ids):
        fields = {_text(k): _text(v) for k, v in raw[3 * i].items()}
        events = [orjson.loads(e) for e in raw[3 * i + 1]]
        for tx_hash in sorted(_text(t) for t in raw[3 * i + 2]):
            tx_pipe.hmget(redis_keys.venue_transaction(tx_hash), "status", "error")
            tx_owner.append((oid, tx_hash))
        if not fields:
            result[oid] = (None, [], [])
            continue
        spec = orjson.loads(fields["spec"])
        side = RedisSide(
            status=fields["status"],
            seq=int(fields["seq"]),
            events=events,
            order_type=spec.get("type", "market"),
            expires_at=_parse_time(spec.get("expiresAt")),
            tx_hash=fields.get("txHash") or None,
        )
        if side.status == OrderStatus.WAITING and fields.get("restKey"):
            places.zscore(fields["restKey"], fields["restMember"])
            waiting.append((oid, side))
        result[oid] = (side, [], [])
    for (_oid, side), score in zip(waiting, places.execute(), strict=True):
        side.in_resting_place = score is not None
    for (oid, tx_hash), (status, error) in zip(tx_owner, tx_pipe.execute(), strict=True):
        if status is not None and _text(status) == "confirmed":
            result[oid][1].append(tx_hash)
        if error is not None and _text(error) == NONCE_USED:
            result[oid][2].append(tx_hash)
    return result


def read_pg(engine: Engine, order_ids: list[str]) -> dict[str, PgSide]:
    found: dict[str, PgSide] = {}
    with engine.connect() as conn:
        for start in range(0, len(order_ids), 1000):
            chunk = order_ids[start : start + 1000]
            rows = conn.execute(
                sa.select(orders_table.c.order_id, orders_table.c.status, orders_table.c.last_seq).where(
                    orders_table.c.order_id.in_(chunk)
                )
            )
            for oid, status, last_seq in rows:
                found[str(oid)] = PgSide(status, last_seq, [])
            events = conn.execute(
                sa.select(events_table.c.order_id, events_table.c.payload)
                .where(events_table.c.order_id.in_(chunk))
                .order_by(events_table.c.order_id, events_table.c.seq)
            )
            for oid, payload in events:
                if str(oid) in found:
                    found[str(oid)].events.append(payload)
    return found


def collect(client: redis.Redis, engine: Engine, acknowledged: set[str]) -> dict[str, OrderHistory]:
    """Every order the client was told about, or that Redis or PostgreSQL holds, with all sides of it."""
    order_ids = sorted(acknowledged | order_ids_in_redis(client) | order_ids_in_pg(engine))
    redis_sides = read_redis(client, order_ids)
    pg_sides = read_pg(engine, order_ids)
    histories = {}
    for oid in order_ids:
        side, executions, refused = redis_sides[oid]
        histories[oid] = OrderHistory(
            oid, side, pg_sides.get(oid), executions, acknowledged=oid in acknowledged, refused=refused
        )
    return histories


def check(client: redis.Redis, engine: Engine, acknowledged: set[str]) -> Verdict:
    return judge_all(collect(client, engine, acknowledged))


def settle(client: redis.Redis, engine: Engine, acknowledged: set[str], timeout_s: float) -> tuple[Verdict, float]:
    """Check until everything holds (orders finished, db-sync caught up) or `timeout_s`: the last verdict and
    the seconds waited."""
    started = time.monotonic()
    while True:
        try:
            verdict = check(client, engine, acknowledged)
        except (redis.RedisError, OSError) as exc:  # pragma: no cover - only if a server is still coming back
            print(f"[settle] cannot check yet: {exc!r}", flush=True)
            time.sleep(2)
            continue
        waited = time.monotonic() - started
        if verdict.ok or waited > timeout_s:
            return verdict, waited
        print(f"[settle +{waited:5.1f}s] {verdict.counts()} {verdict.by_status}", flush=True)
        time.sleep(3)


def executing(client: redis.Redis) -> Callable[[], int | None]:
    """How many execution messages workers hold unacknowledged (orders mid-execution or awaiting a retry);
    None while Redis does not answer."""

    def count() -> int | None:
        try:
            keys = list(client.scan_iter(match=f"{redis_keys.DRAMATIQ_PREFIX}:*:__acks__.*", count=1000))
            return sum(client.scard(key) for key in keys)
        except (redis.RedisError, OSError):
            return None

    return count
