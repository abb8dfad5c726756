"""What an API process pays to read events no socket of its own wants: the fan-out's floor per event.

Every API process tails every partition's event stream (shared/event_feed.py) and drops what none of its
sockets asks for, so each process's reading cost grows with the whole engine's event rate, not its own share.
This fills the event streams of a scratch Redis database with `--events` events spread over `--partitions`,
then times (process CPU) one `EventHub` reading them all, with no listener:

    uv run python loadtests/event_read_cost.py --redis-url redis://127.0.0.1:6379/15 --events 200000

It empties that database first and last: give it one nothing else uses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from shared import redis_keys  # noqa: E402
from shared.event_feed import EventHub  # noqa: E402
from shared.redis_client import redis_client  # noqa: E402

FILL_CHUNK = 5_000


class FromTheStart(EventHub):
    """The API's reader, except that it starts at each stream's beginning: the streams are filled first, so
    that only reading is timed."""

    async def _ends(self, streams: list[str]) -> dict[str | bytes, bytes | str]:
        return dict.fromkeys(streams, b"0-0")


async def fill(redis, events: int, partitions: int, last: uuid.UUID) -> None:
    """`events` events spread over the partitions' streams, then one event of order `last` in each."""
    event = orjson.dumps({"orderId": str(uuid.uuid4()), "seq": 3, "status": "routing", "type": "market"})
    for start in range(0, events, FILL_CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + FILL_CHUNK, events)):
                stream = redis_keys.events_stream(i % partitions)
                pipe.xadd(stream, {"o": str(uuid.uuid4()), "u": f"user-{i % 1000}", "e": event})
            await pipe.execute()
    for partition in range(partitions):
        await redis.xadd(redis_keys.events_stream(partition), {"o": str(last), "u": "last", "e": event})


async def measure(args: argparse.Namespace) -> float:
    redis = redis_client(args.redis_url)
    await redis.flushdb()
    last = uuid.uuid4()
    await fill(redis, args.events, args.partitions, last)
    reader = redis_client(args.redis_url, single_connection=True)
    hub = FromTheStart(reader, partitions=args.partitions)
    with hub.subscribe_order(last) as arrivals:
        began_cpu = time.process_time()
        task = asyncio.create_task(hub.run())
        for _ in range(args.partitions):  # each stream's last event: the reader is through it
            await arrivals.get()
        cpu_s = time.process_time() - began_cpu
    await hub.stop(task)
    await redis.flushdb()
    await redis.aclose()
    await reader.aclose()
    return cpu_s * 1000 / args.events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args()
    ms = asyncio.run(measure(args))
    print(f"{args.events} events over {args.partitions} partition(s): {ms * 1000:.1f} µs of reader CPU per event")


if __name__ == "__main__":
    main()
