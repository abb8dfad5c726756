"""Publishing the simulated launch schedule on `stream:{chain}:venue-events`: each event once, and an idle quote
stream asks Redis nothing between the schedule's moments."""

import time

from shared import redis_keys
from shared.venue_events import VenueEventPublisher
from shared.venues.launches import events_between
from shared.venues.simulated import SimConfig


def schedule_started(ago_s: float) -> SimConfig:
    return SimConfig(seed="events", epoch=time.time() - ago_s, launch_first_s=0, launch_interval_s=5)


async def command_calls(redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_each_due_event_is_published_once_whoever_publishes_it(redis):
    sim = schedule_started(ago_s=30)
    now = time.time()
    first, second = VenueEventPublisher(redis, sim), VenueEventPublisher(redis, sim)
    published = await first.publish_due(now)
    assert [e.event_id for e in published] == [e.event_id for e in events_between(sim, sim.epoch, now)]
    assert published and await second.publish_due(now) == []
    assert await redis.xlen(redis_keys.VENUE_EVENTS_STREAM) == len(published)


async def test_between_the_schedules_moments_a_publisher_sends_nothing(redis):
    sim = schedule_started(ago_s=100_000)  # every launch grown long ago: no moment ahead
    publisher = VenueEventPublisher(redis, sim)
    await publisher.publish_due(time.time())
    gets = await command_calls(redis, "get")
    for _ in range(5):
        assert await publisher.publish_due(time.time()) == []
    assert await command_calls(redis, "get") == gets
