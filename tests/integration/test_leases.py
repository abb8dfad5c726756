"""Order leases against a real Redis: one holder at a time, and one keeper renewing all of a process's."""

import asyncio
from uuid import uuid4

from shared import redis_keys
from shared.store.leases import Lease, LeaseKeeper, OrderLeases


async def test_take_reads_the_order_and_only_the_holder_may_renew_or_release(redis):
    leases = OrderLeases(redis, ttl_ms=5000)
    order_id = uuid4()
    await redis.hset(redis_keys.order(order_id), mapping={"status": "pending", "seq": "1"})
    lease, raw = await leases.take_and_read(order_id)
    assert lease is not None and raw == {b"status": b"pending", b"seq": b"1"}
    second, raw_again = await leases.take_and_read(order_id)
    assert second is None and raw_again == raw  # the state is read either way
    impostor = Lease(order_id, "someone-else")
    assert not await leases.renew(impostor) and not await leases.release(impostor)
    assert await leases.renew(lease) and await leases.release(lease)
    assert await leases.take(order_id) is not None


async def test_the_keeper_renews_what_is_held_reports_what_was_lost_and_stops_when_idle(redis):
    leases = OrderLeases(redis, ttl_ms=300)  # renewed every 100 ms
    lost: list[Lease] = []
    keeper = LeaseKeeper(leases, on_lost=lost.append)
    kept, stolen = await leases.take(uuid4()), await leases.take(uuid4())
    keeper.hold(kept)
    keeper.hold(stolen)
    await redis.set(stolen.key, "another-worker")  # its lease expired and someone else took the order
    await asyncio.sleep(0.7)  # more than twice the TTL: only renewals keep `kept` alive
    assert await redis.get(kept.key) == kept.token.encode()
    assert lost == [stolen] and await redis.get(stolen.key) == b"another-worker"
    keeper.let_go(kept)
    await asyncio.sleep(0.25)
    assert keeper._task is None  # nothing held: no timer left behind
    keeper.hold(kept)  # and holding again starts one
    assert keeper._task is not None
    keeper.let_go(kept)


async def test_a_holder_back_from_an_outage_retakes_an_expired_lease_but_never_anothers(redis):
    leases = OrderLeases(redis, ttl_ms=5000)
    order_id = uuid4()
    lease = await leases.take(order_id)
    await redis.delete(lease.key)  # expired while its holder could not renew it
    assert await leases.retake(lease) and await redis.get(lease.key) == lease.token.encode()
    assert await leases.renew(lease)  # the same token holds it again
    await redis.set(lease.key, "another-worker")  # expired, and another execution took the order
    assert not await leases.retake(lease) and await redis.get(lease.key) == b"another-worker"


async def test_a_take_sent_again_after_its_reply_was_lost_finds_the_lease_its_own(redis):
    leases = OrderLeases(redis, ttl_ms=5000)
    order_id = uuid4()
    candidate = Lease(order_id, "one-token")
    first, _ = await leases.take_and_read(order_id, candidate)
    again, _ = await leases.take_and_read(order_id, candidate)  # as after a reply lost to a failover
    assert first == again == candidate
    other, _ = await leases.take_and_read(order_id)
    assert other is None and await redis.get(candidate.key) == b"one-token"
