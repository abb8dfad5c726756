"""db-sync replicas: an event whose order's first entry another (perhaps dead) consumer holds is not dropped."""

from __future__ import annotations

import redis as sync_redis
import sqlalchemy as sa

from shared.domain.lifecycle import OrderStatus
from shared.execution.executor import next_event
from shared.persistence.models import events_table, orders_table
from shared.persistence.sync import StreamSyncer, make_engine
from shared.redis_keys import events_stream
from tests.support.orders import make_store, place_market_order

EVENTS_STREAM = events_stream(0)


async def test_an_event_whose_first_entry_a_dead_consumer_holds_reaches_postgres(redis, redis_url, database_url):
    store = make_store(redis)
    order = await place_market_order(store)  # seq 1: pending, with the order's spec
    state = await store.load(order.order_id)
    await store.append(state, next_event(state, OrderStatus.ROUTING, attempt=1, dex="raydium"))  # seq 2
    client = sync_redis.Redis.from_url(redis_url)
    engine = make_engine(database_url)
    try:
        client.xgroup_create(EVENTS_STREAM, "orphans", id="0")
        client.xreadgroup("orphans", "dead", {EVENTS_STREAM: ">"}, count=1)  # takes seq 1, then dies
        # No grace at all: before, the orphan seq 2 was dropped for good once the grace ran out.
        syncer = StreamSyncer(engine, client, group="orphans", consumer="alive", orphan_grace_s=0, min_backoff_s=0.01)
        assert syncer.step() == 1
        with engine.connect() as conn:
            row = conn.execute(sa.select(orders_table).where(orders_table.c.order_id == order.order_id)).one()
            seqs = conn.execute(
                sa.select(events_table.c.seq).where(events_table.c.order_id == order.order_id).order_by("seq")
            ).scalars()
            assert (row.status, row.last_seq, list(seqs)) == ("routing", 2, [1, 2])
    finally:
        client.close()
        engine.dispose()
