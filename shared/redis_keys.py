"""Every Redis key and stream the services share, in one place.

The `quotes:*` names are part of the public contract; the rest are ours to change (together).
"""

from __future__ import annotations

from uuid import UUID

from shared.domain.partitions import order_tag, tag

#: What every partition's dramatiq namespace is named after (dramatiq's default namespace), and the queue the
#: execution worker consumes in each.
DRAMATIQ_PREFIX = "dramatiq"
EXECUTION_QUEUE = "execution"

#: The consumer group db-sync reads each partition's event stream with.
DBSYNC_GROUP = "db-sync"
#: What every partition's event stream is named after (a pattern, for tools that look for them all).
EVENTS_STREAM_PREFIX = "stream:events:"


def events_stream(partition: int) -> str:
    """Stream: every lifecycle event of the partition's orders, in commit order. db-sync consumes it with a
    consumer group and trims what it has persisted; each API process tails every partition's once, to fan
    events out to its WebSockets."""
    return f"{EVENTS_STREAM_PREFIX}{tag(partition)}"


#: BEST price ticks published by the quote stream for services that react to prices.
TICKS_STREAM = "stream:ticks"
TICKS_MAXLEN = 10_000

#: Hash: SHA-256 of an API key → its name, role and creation time (keys made with `order-engine keys`).
API_KEYS = "auth:api-keys"

#: Prefix of the API's per-client rate-limit counters (sliding windows kept by the `limits` library).
RATE_LIMIT_PREFIX = "ratelimit"

#: Shared simulation parameters, so that every process sees the same seeded market.
#: The simulated chain's hash tag: a settle touches a transaction, its order's nonce and every pool it moved, so
#: all of the simulator's keys share one slot (docs/sharding.md, "The simulated chain").
SIM_TAG = "{chain}"
SIM_SEED = f"sim:{SIM_TAG}:seed"
SIM_EPOCH = f"sim:{SIM_TAG}:epoch"


#: What every order hash is named after (a pattern, for tools that look for them all; it finds their event lists too).
ORDER_KEY_PREFIX = "order:"


# An order's own keys carry its partition's hash tag (shared/domain/partitions.py): on a Cluster they share a slot.
def order(order_id: UUID | str) -> str:
    """Hash: the order's accepted request, current status, last seq and results."""
    return f"{ORDER_KEY_PREFIX}{order_tag(order_id)}:{order_id}"


def order_id_of(key: str) -> str | None:
    """The order id an `order(...)` key names; None for any other key (an order's event list, say)."""
    prefix, _, rest = key.partition(":")
    tag, _, order_id = rest.partition(":")
    if f"{prefix}:" != ORDER_KEY_PREFIX or not tag.startswith("{") or not order_id or ":" in order_id:
        return None
    return order_id


def order_events(order_id: UUID | str) -> str:
    """List: the order's event messages (JSON), index = seq - 1."""
    return f"{order(order_id)}:events"


def order_lease(order_id: UUID | str) -> str:
    """String: the execution worker currently driving this order (token), with a TTL."""
    return f"lease:{order_tag(order_id)}:{order_id}"


def idempotency(scope: str, partition: int) -> str:
    """String: `<orderId> <bodyHash>` for an Idempotency-Key (as scoped by its owner), 24 h; in the partition
    of the order it names (`shared.domain.partitions.scope_partition`)."""
    return f"idem:{tag(partition)}:{scope}"


def quotes(token_in: str, token_out: str, venue: str) -> str:
    """Hash: the latest quote of one venue (RAYDIUM, METEORA) or the BEST of both for a pair."""
    return f"quotes:{token_in}-{token_out}:{venue}"


def dramatiq_namespace(partition: int) -> str:
    """The dramatiq namespace of one partition's execution queue (a broker each). dramatiq names every key of
    its own from it (the queue, `.msgs`, `.DQ`, `.XQ`, `__acks__.*`, `__heartbeats__`): the partition's hash
    tag in it puts them all on the partition's slot, with the orders whose messages they hold."""
    return f"{DRAMATIQ_PREFIX}:{tag(partition)}"


def dramatiq_queue(partition: int, queue: str = EXECUTION_QUEUE) -> str:
    """List (dramatiq's): message ids ready to be fetched."""
    return f"{dramatiq_namespace(partition)}:{queue}"


def dramatiq_messages(partition: int, queue: str = EXECUTION_QUEUE) -> str:
    """Hash (dramatiq's): message id → message, for the queue's messages."""
    return f"{dramatiq_queue(partition, queue)}.msgs"


def dramatiq_delayed(partition: int, queue: str = EXECUTION_QUEUE) -> str:
    """List (dramatiq's, with its `.msgs` hash): retries waiting out their back-off."""
    return f"{dramatiq_queue(partition, queue)}.DQ"


def dramatiq_dead_letters(partition: int, queue: str = EXECUTION_QUEUE) -> str:
    """Sorted set (dramatiq's): dead-lettered message ids, score = when they were dead-lettered (epoch ms)."""
    return f"{dramatiq_queue(partition, queue)}.XQ"


def dramatiq_dead_letter_messages(partition: int, queue: str = EXECUTION_QUEUE) -> str:
    """Hash (dramatiq's): dead-lettered message id → the message as it was last enqueued."""
    return f"{dramatiq_dead_letters(partition, queue)}.msgs"


def dead_letter_replay(order_id: UUID | str) -> str:
    """String: what replaying the order's dead letter did (JSON), so a second replay answers the same."""
    return f"dlq:replayed:{order_tag(order_id)}:{order_id}"


def venue_transaction(tx_hash: str) -> str:
    """Hash: a swap transaction as the simulated chain recorded it (submitted, landed, outcome)."""
    return f"sim:{SIM_TAG}:tx:{tx_hash}"


def venue_nonce(order_id: UUID | str) -> str:
    """String: the one transaction allowed to execute for an order (a durable nonce, in Solana terms)."""
    return f"sim:{SIM_TAG}:nonce:{order_id}"


def venue_pool_shift(dex: str, base: str, quote: str) -> str:
    """String: how far executed swaps have pushed one venue's pool off its arbitraged price, and since when."""
    return f"sim:{SIM_TAG}:pool-shift:{dex}:{base}-{quote}"


def venue_order_transactions(order_id: UUID | str) -> str:
    """Set: every tx_hash the simulated chain recorded for an order (to count its executions)."""
    return f"sim:{SIM_TAG}:order-txs:{order_id}"


# --- resting orders: every partition has its own books (docs/sharding.md, "Books split by partition") ----
# A resting order waits in its own partition's book for its pair, so the script that places it, the one that
# takes it on a tick and the one that ends its rest each touch one slot: the order's.


def resting_per_owner(partition: int) -> str:
    """Hash: owner (`key:<keyId>` or `ip:<address>`) → how many of its orders rest in the partition (`waiting`).
    Up when an order starts resting, down in the step that ends its rest; a field at 0 is deleted. The cap
    (MAX_RESTING_PER_OWNER) is on the sum over partitions."""
    return f"resting:{tag(partition)}:per-owner"


# --- resting limit orders ----------------------------------------------------------------------------
def limit_expiries(partition: int) -> str:
    """Sorted set: the partition's limit orders whose deadline is set, member = orderId, score = expiry (ms)."""
    return f"limit:{tag(partition)}:expiries"


def limit_handoff(partition: int) -> str:
    """Sorted set: orders taken out of their bucket by a tick and not yet handed to execution, member = rest
    member, score = when they were taken (ms). A limit worker that dies in between leaves them for recovery."""
    return f"limit:{tag(partition)}:handoff"


def limit_doorbell(partition: int) -> str:
    """List of at most one element, pushed when a placed order's deadline is the partition's new earliest:
    wakes the limit workers' housekeeping, which sleeps until its next deadline (shared/store/doorbell.py)."""
    return f"limit:{tag(partition)}:doorbell"


def limit_buckets(pair: str, partition: int) -> str:
    """Sorted set: the pair's non-empty buckets, member = bucket number, score = the bucket's floor price."""
    return f"limit:{tag(partition)}:{pair}:buckets"


def limit_bucket_prefix(pair: str, partition: int) -> str:
    return f"limit:{tag(partition)}:{pair}:b:"


def limit_bucket(pair: str, bucket: int, partition: int) -> str:
    """Sorted set: one bucket's orders, member = `<createdAt µs>:<orderId>`, score = exact limit price."""
    return f"{limit_bucket_prefix(pair, partition)}{bucket}"


# --- simulated venue events ----------------------------------------------------------------------------
#: Pool created / liquidity changed, published by the quote stream from the simulated launch schedule.
VENUE_EVENTS_STREAM = f"stream:{SIM_TAG}:venue-events"
VENUE_EVENTS_MAXLEN = 10_000
#: How far (epoch seconds) the schedule's events have been published; each event is published once.
SIM_EVENTS_PUBLISHED_UNTIL = f"sim:{SIM_TAG}:venue-events:until"


def sim_venue_event(event_id: str) -> str:
    return f"sim:{SIM_TAG}:venue-event:{event_id}"


# --- resting sniper orders -------------------------------------------------------------------------------
#: The last venue-event stream id the sniper workers have acted on, to catch up after a restart.
SNIPER_EVENTS_CURSOR = "sniper:events-cursor"


def sniper_expiries(partition: int) -> str:
    return f"sniper:{tag(partition)}:expiries"


def sniper_handoff(partition: int) -> str:
    return f"sniper:{tag(partition)}:handoff"


def sniper_doorbell(partition: int) -> str:
    """As `limit_doorbell`, pushed on every sniper placement: its condition may already hold."""
    return f"sniper:{tag(partition)}:doorbell"


def sniper_resting(partition: int) -> str:
    """Sorted set of the partition's trigger sets below that hold orders (so a sweep can visit each one)."""
    return f"sniper:{tag(partition)}:resting"


SNIPER_SET_PREFIX = "sniper:"


def sniper_listing(pair: str, partition: int) -> str:
    """Sorted set: orders waiting for the pair's first pool, member = rest member, score = time."""
    return f"{SNIPER_SET_PREFIX}{tag(partition)}:listing:{pair}"


def sniper_set_trigger(key: str, partition: int) -> tuple[str, str]:
    """What a partition's sniper trigger set (`sniper_listing`, `sniper_liquidity`) waits for: (kind, pair)."""
    kind, _, pair = key.removeprefix(f"{SNIPER_SET_PREFIX}{tag(partition)}:").partition(":")
    return kind, pair


def sniper_liquidity(pair: str, partition: int) -> str:
    """Sorted set: orders waiting for liquidity, member = rest member, score = minLiquidity in tokenOut."""
    return f"{SNIPER_SET_PREFIX}{tag(partition)}:liquidity:{pair}"


# --- resting conditional orders (docs/conditional-orders.md) ---------------------------------------------
#: The last `stream:ticks` id every partition's conditional book has applied: where a restarted worker resumes
#: reading (each book also skips ticks it has applied, so a partial round is safe to read again).
COND_TICKS_CURSOR = "cond:ticks-cursor"


def cond_expiries(partition: int) -> str:
    return f"cond:{tag(partition)}:expiries"


def cond_handoff(partition: int) -> str:
    """As `limit_handoff`, for conditional orders; a member says why its order fired (shared/domain/conditional.py
    `Taken`), so a recovered hand-over is exactly the one the worker that died would have made."""
    return f"cond:{tag(partition)}:handoff"


def cond_doorbell(partition: int) -> str:
    return f"cond:{tag(partition)}:doorbell"


def _cond(pair: str, partition: int) -> str:
    return f"cond:{tag(partition)}:{pair}"


def cond_stops(pair: str, partition: int) -> str:
    """Sorted set: stop orders and the stop side of OCO orders, member = rest member, score = stopPrice."""
    return f"{_cond(pair, partition)}:stops"


def cond_take_profits(pair: str, partition: int) -> str:
    """Sorted set: the take-profit side of OCO orders, member = rest member, score = takeProfitPrice."""
    return f"{_cond(pair, partition)}:take-profits"


def cond_activations(pair: str, partition: int) -> str:
    """Sorted set: trailing stops not armed yet, member = `<trailBps>/<rest member>`,
    score = activationPrice (0 = none)."""
    return f"{_cond(pair, partition)}:activations"


def cond_trail_widths(pair: str, partition: int) -> str:
    """Sorted set: the trail widths that have orders, member = score = trailBps."""
    return f"{_cond(pair, partition)}:trail-widths"


def cond_trail_prefix(pair: str, partition: int) -> str:
    return f"{_cond(pair, partition)}:trail:"


def cond_trail(pair: str, trail_bps: int, partition: int) -> str:
    """Sorted set: trailing stops of one width, member = rest member, score = the tick armed at (+inf: not yet)."""
    return f"{cond_trail_prefix(pair, partition)}{trail_bps}"


def cond_highs(pair: str, partition: int) -> str:
    """Sorted set: the pair's record ticks (priced above every later tick), member = tick number, score = price.
    Each partition keeps its own, from the same ticks, cut back to what its own trailing stops need."""
    return f"{_cond(pair, partition)}:highs"


def cond_highs_at(pair: str, partition: int) -> str:
    """Sorted set: the same records, member = the price as ticked, score = tick number."""
    return f"{_cond(pair, partition)}:highs-at"


def cond_ticks(pair: str, partition: int) -> str:
    """Hash: `lastId` (the last tick id applied to the pair's book) and `seq` (its tick count)."""
    return f"{_cond(pair, partition)}:ticks"
