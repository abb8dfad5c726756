"""The KEYS and ARGV of the store's Lua scripts (shared/store/lua/), by name.

Lua reads its arguments by position only. Each description below names them, and its `render` is the one
place in Python that lists them in the order the script's header comment (`-- KEYS: …  ARGV: …`) gives;
tests/unit/test_store_scripts.py holds the two together. Redis wants every slot filled, so an absent key is
`NO_KEY` and an absent argument '' (or 0): what each script reads as "none".

On a Redis Cluster every key a script declares must be in one slot, absent ones too: `run` sends an absent
key as the script's first key, which is. A script never touches a key it was sent as absent: it learns that a
key is absent from its arguments (or from `KEYS[i] == KEYS[1]`), never from the key's name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

LUA_DIR = Path(__file__).parent / "lua"
NO_KEY = "-"

#: One ARGV value as the scripts are sent it (redis-py encodes ints as their decimal text).
ScriptArg = str | int | bytes
#: A script's KEYS, then its ARGV.
ScriptCall = tuple[list[str], list[ScriptArg]]


class ScriptArgs(Protocol):
    def render(self) -> ScriptCall: ...


def lua_source(script: str) -> str:
    return (LUA_DIR / script).read_text()


async def run(script: AsyncScript, args: ScriptArgs, client: Redis | None = None) -> Any:
    """Run a registered script (on `client`, e.g. a pipeline, if given); its reply is as untyped as Lua's."""
    keys, argv = args.render()
    return await script(keys=in_one_slot(keys), args=argv, client=client)


def in_one_slot(keys: list[str]) -> list[str]:
    """`keys` with each absent one (`NO_KEY`) sent as the first: a declared key outside the script's slot is an
    error on a cluster even if the script never touches it."""
    return [keys[0] if key == NO_KEY else key for key in keys] if keys else keys


def _pairs(fields: Mapping[str, str]) -> Iterator[str]:
    for name, value in fields.items():
        yield name
        yield value


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateOrderArgs:
    """create_order.lua: accept an order with its first event(s), and its execution message or resting place."""

    SCRIPT: ClassVar[str] = "create_order.lua"

    # KEYS
    order: str
    events: str
    events_stream: str
    idempotency_key: str
    dramatiq_queue: str
    dramatiq_msgs: str
    rest_zset: str = NO_KEY
    rest_index_zset: str = NO_KEY
    expiries_zset: str = NO_KEY
    resting_count_per_owner: str = NO_KEY  # the partition's resting_per_owner, for an order that rests (or did)
    doorbell: str = NO_KEY
    second_rest_zset: str = NO_KEY
    # ARGV
    use_idem: bool
    idem_value: str
    idem_ttl_s: int
    max_queue_depth: int  # 0 = no back-pressure check
    order_id: str
    user_id: str
    spec_json: bytes
    first_event_json: bytes
    message_id: str = ""  # '' = no execution message
    message_data: bytes = b""
    resting_event_json: bytes = b""  # b'' = not resting
    rest_member: str = ""
    rest_score: str = "0"
    index_member: str = ""  # '' = no index
    index_score: str = "0"
    expiry_score: int | None = None  # epoch ms
    rest_owner: str = ""  # '' = not counted against anyone's resting cap
    max_resting: int = 0  # 0 = no cap, < 0 = none left
    ring: str = ""  # '' = never, 'always', 'earlier' (shared/store/doorbell.py)
    second_rest_member: str = ""  # '' = rests in one set only
    second_rest_score: str = "0"
    order_hash: Mapping[str, str]

    def render(self) -> ScriptCall:
        keys = [
            self.order,
            self.events,
            self.events_stream,
            self.idempotency_key,
            self.dramatiq_queue,
            self.dramatiq_msgs,
            self.rest_zset,
            self.rest_index_zset,
            self.expiries_zset,
            self.resting_count_per_owner,
            self.doorbell,
            self.second_rest_zset,
        ]
        argv: list[ScriptArg] = [
            "1" if self.use_idem else "0",
            self.idem_value,
            self.idem_ttl_s,
            self.max_queue_depth,
            self.order_id,
            self.user_id,
            self.spec_json,
            self.first_event_json,
            self.message_id,
            self.message_data,
            self.resting_event_json,
            self.rest_member,
            self.rest_score,
            self.index_member,
            self.index_score,
            "" if self.expiry_score is None else self.expiry_score,
            self.rest_owner,
            self.max_resting,
            self.ring,
            self.second_rest_member,
            self.second_rest_score,
            *_pairs(self.order_hash),
        ]
        return keys, argv


@dataclass(frozen=True, slots=True, kw_only=True)
class TransitionArgs:
    """transition.lua: append consecutive events if the order is still at `expected_seq` (with its side steps)."""

    SCRIPT: ClassVar[str] = "transition.lua"

    # KEYS
    order: str
    events: str
    events_stream: str
    rest_zset: str = NO_KEY
    rest_index_zset: str = NO_KEY
    expiries_zset: str = NO_KEY
    dramatiq_queue: str
    dramatiq_msgs: str
    lease: str
    resting_count_per_owner: str = NO_KEY  # the partition's resting_per_owner, for an order that rests (or did)
    second_rest_zset: str = NO_KEY
    # ARGV
    expected_seq: int
    order_id: str
    user_id: str
    expire_s: int = 0  # 0 = keep the order's keys
    rest_member: str = ""  # '' = no claim
    index_member: str = ""
    message_id: str = ""  # '' = no execution message
    message_data: bytes = b""
    lease_token: str = ""  # '' = keep the lease
    fence_token: str = ""  # '' = no fence; else the write is refused unless this token holds the lease
    second_rest_member: str = ""  # '' = none; removed along with a successful claim
    event_jsons: Sequence[bytes]  # sent after their count, n
    order_hash: Mapping[str, str]

    def render(self) -> ScriptCall:
        keys = [
            self.order,
            self.events,
            self.events_stream,
            self.rest_zset,
            self.rest_index_zset,
            self.expiries_zset,
            self.dramatiq_queue,
            self.dramatiq_msgs,
            self.lease,
            self.resting_count_per_owner,
            self.second_rest_zset,
        ]
        argv: list[ScriptArg] = [
            self.expected_seq,
            self.order_id,
            self.user_id,
            self.expire_s,
            self.rest_member,
            self.index_member,
            self.message_id,
            self.message_data,
            self.lease_token,
            self.fence_token,
            self.second_rest_member,
            len(self.event_jsons),
            *self.event_jsons,
            *_pairs(self.order_hash),
        ]
        return keys, argv


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseArgs:
    """lease.lua: take, renew or release an order's lease."""

    SCRIPT: ClassVar[str] = "lease.lua"

    # KEYS
    lease: str
    order: str = NO_KEY  # read only when taking
    # ARGV
    op: Literal["take", "renew", "release"]
    token: str
    ttl_ms: int

    def render(self) -> ScriptCall:
        return [self.lease, self.order], [self.op, self.token, self.ttl_ms]


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeCrossedArgs:
    """take_crossed.lua: move every limit order a price crosses, in the buckets named, into the hand-off set."""

    SCRIPT: ClassVar[str] = "take_crossed.lua"

    # KEYS
    bucket_index: str
    hand_off_set: str
    # ARGV
    price: str
    now_ms: int
    buckets: Sequence[tuple[str, str]]  # (bucket key, bucket number), as the index lists them

    def render(self) -> ScriptCall:
        keys = [self.bucket_index, self.hand_off_set, *(key for key, _ in self.buckets)]
        return keys, [self.price, self.now_ms, *(number for _, number in self.buckets)]


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeRangeArgs:
    """take_range.lua: move the members of one sniper trigger set scored up to `max_score` into the hand-off set."""

    SCRIPT: ClassVar[str] = "take_range.lua"

    # KEYS
    trigger_set: str
    hand_off_set: str
    index_of_non_empty_trigger_sets: str
    # ARGV
    max_score: str  # '+inf' takes them all
    now_ms: int

    def render(self) -> ScriptCall:
        keys = [self.trigger_set, self.hand_off_set, self.index_of_non_empty_trigger_sets]
        return keys, [self.max_score, self.now_ms]


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeConditionalArgs:
    """take_conditional.lua: apply a batch of one pair's ticks to its conditional orders, taking those that fire."""

    SCRIPT: ClassVar[str] = "take_conditional.lua"

    # KEYS
    stops: str
    take_profits: str
    activations: str
    trail_widths: str
    records_by_price: str
    records_by_tick: str
    tick_state: str
    hand_off_set: str
    # ARGV
    now_ms: int
    trails: Sequence[tuple[str, str]]  # (width's set key, width), as the widths index lists them
    ticks: Sequence[tuple[str, str]]  # (stream id, price), in stream order

    def render(self) -> ScriptCall:
        keys = [
            self.stops,
            self.take_profits,
            self.activations,
            self.trail_widths,
            self.records_by_price,
            self.records_by_tick,
            self.tick_state,
            self.hand_off_set,
            *(key for key, _ in self.trails),
        ]
        argv: list[ScriptArg] = [
            self.now_ms,
            len(self.trails),
            *(width for _, width in self.trails),
            *(item for tick in self.ticks for item in tick),
        ]
        return keys, argv
