"""Publishing the simulated venues' events (pool created, liquidity changed) on a Redis stream, once each.

The schedule is pure (shared/venues/launches.py); this turns the events whose moment has come into
stream entries. Each event is published at most once, even by several quote-stream replicas, thanks to a
marker key set in the same script as the XADD.
"""

from __future__ import annotations

from redis.asyncio import Redis

from shared import redis_keys
from shared.venues.launches import LaunchParams, VenueEvent, events_between, next_moment_after

_PUBLISH_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', 604800) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 2))
end
return false
"""


class VenueEventPublisher:
    def __init__(self, redis: Redis, sim: LaunchParams) -> None:
        self.redis = redis
        self.sim = sim
        self._publish = redis.register_script(_PUBLISH_ONCE)
        # How far this publisher has seen the schedule published: until the schedule's next moment comes,
        # a call has nothing to publish and asks Redis nothing.
        self._seen_until: float | None = None

    async def publish_due(self, now: float) -> list[VenueEvent]:
        """Publish every event up to `now` not published yet; returns those this call published."""
        if self._seen_until is not None:
            upcoming = next_moment_after(self.sim, self._seen_until)
            if upcoming is None or upcoming > now:
                return []
        raw = await self.redis.get(redis_keys.SIM_EVENTS_PUBLISHED_UNTIL)
        since = float(raw) if raw else self.sim.epoch
        published = []
        for event in events_between(self.sim, since, now):
            flat = [item for pair in event.to_fields().items() for item in pair]
            entry = await self._publish(
                keys=[redis_keys.sim_venue_event(event.event_id), redis_keys.VENUE_EVENTS_STREAM],
                args=[redis_keys.VENUE_EVENTS_MAXLEN, *flat],
            )
            if entry:
                published.append(event)
        await self.redis.set(redis_keys.SIM_EVENTS_PUBLISHED_UNTIL, repr(now))
        self._seen_until = now
        return published
