"""Limit orders: resting orders priced around the current BEST quote; some cross as prices move, some are
cancelled, the rest expire.

Each task reads GET /api/quotes/{pair} and places LIMIT_ORDERS_PER_USER orders on that pair at once, each at
BEST × (1 + offset), offset uniform in [LIMIT_OFFSET_MIN_BPS, LIMIT_OFFSET_MAX_BPS] (default −5..+10 bps:
a selling order triggers when BEST ≥ its limit, so about a third cross on the next tick and others only if the
price walks up to them). Every order expires LIMIT_EXPIRY_MIN_S..MAX_S after it is placed; a share
LIMIT_CANCEL_SHARE is cancelled (DELETE) after LIMIT_CANCEL_AFTER_MIN_S..MAX_S if still resting. Each order
is followed on its WebSocket to the end, all of them concurrently (one greenlet each).

Rows in the reports:
- `GET quotes`, `POST limit submit`, `DELETE limit cancel`   HTTP latencies (a 409 on cancel is not a failure:
                                                             the order triggered first; see the OUTCOME rows);
- `ORDER limit triggered→confirmed`   from the `triggered` event's timestamp to the arrival of `confirmed`;
- `ORDER limit expiresAt→expired`     from the order's expiresAt to the arrival of `expired` (expiry lag);
- `OUTCOME limit confirmed|cancelled|expired|cancel lost race`   counts; time = the order's life, submit → end;
- a failure of `OUTCOME limit unexpected end`: an order that failed, timed out, or ended other than its plan.

    make load SCENARIO=limit USERS=10 RATE=5 DURATION=30s
"""

from __future__ import annotations

import random
import time
from decimal import Decimal

import gevent
from gevent.pool import Group
from locust import FastHttpUser, between, task

from loadtests.locustfiles import knobs
from loadtests.locustfiles.orders import best_price, cancel, limit_body, price_near, random_pair, submit
from loadtests.locustfiles.reporting import ORDER, OUTCOME, OrderFailed, OrderTimedOut, record
from loadtests.locustfiles.streams import OrderStream, event_time, follow_order, ws_base

ORDERS_PER_TASK = knobs.env_int("LIMIT_ORDERS_PER_USER", 4)
OFFSET_MIN_BPS = knobs.env_float("LIMIT_OFFSET_MIN_BPS", -5)
OFFSET_MAX_BPS = knobs.env_float("LIMIT_OFFSET_MAX_BPS", 10)
EXPIRY_MIN_S = knobs.env_float("LIMIT_EXPIRY_MIN_S", 5)
EXPIRY_MAX_S = knobs.env_float("LIMIT_EXPIRY_MAX_S", 15)
CANCEL_SHARE = knobs.env_float("LIMIT_CANCEL_SHARE", 0.25)
CANCEL_AFTER_MIN_S = knobs.env_float("LIMIT_CANCEL_AFTER_MIN_S", 1)
CANCEL_AFTER_MAX_S = knobs.env_float("LIMIT_CANCEL_AFTER_MAX_S", 4)


class LimitTrader(FastHttpUser):
    wait_time = between(knobs.THINK_MIN_S, knobs.THINK_MAX_S)

    @task
    def rest_orders_around_best(self) -> None:
        token_in, token_out = random_pair()
        best = best_price(self.client, token_in, token_out)
        if best is None:
            return
        group = Group()
        try:
            for _ in range(ORDERS_PER_TASK):
                group.spawn(self.one_order, token_in, token_out, best)
            group.join()
        finally:
            group.kill()  # the user is stopping: its followers and cancellers go with it

    def one_order(self, token_in: str, token_out: str, best: Decimal) -> None:
        expires_in = random.uniform(EXPIRY_MIN_S, EXPIRY_MAX_S)
        limit_price = price_near(best, random.uniform(OFFSET_MIN_BPS, OFFSET_MAX_BPS))
        started = time.time()
        order_id = submit(self.client, limit_body(token_in, token_out, limit_price, expires_in), "limit submit")
        if order_id is None:
            return
        canceller = None
        if random.random() < CANCEL_SHARE:
            delay = random.uniform(CANCEL_AFTER_MIN_S, CANCEL_AFTER_MAX_S)
            canceller = gevent.spawn_later(delay, cancel, self.client, order_id, "limit cancel")
        try:
            stream = follow_order(ws_base(self.host), order_id, expires_in + knobs.ORDER_TIMEOUT_S)
            cancel_won = canceller.get() if canceller is not None else None
        finally:
            if canceller is not None:
                canceller.kill()
        report_limit_outcome(stream, started, started + expires_in, cancel_won)


def report_limit_outcome(stream: OrderStream, started: float, expires_at: float, cancel_won: bool | None) -> None:
    terminal = stream.terminal
    life_ms = ((terminal.at if terminal else time.time()) - started) * 1000
    if cancel_won is False:
        record(OUTCOME, "limit cancel lost race", life_ms)
    if terminal is None:
        why = stream.error or f"no terminal event (close code {stream.close_code}, timed out: {stream.timed_out})"
        record(OUTCOME, "limit unexpected end", life_ms, error=OrderTimedOut(why))
        return
    status = terminal.message["status"]
    expected = {True: {"cancelled"}, False: {"confirmed", "expired"}, None: {"confirmed", "expired"}}[cancel_won]
    if status not in expected:
        error = terminal.message.get("error")
        record(
            OUTCOME, "limit unexpected end", life_ms, error=OrderFailed(f"{status} (cancel won: {cancel_won}) {error}")
        )
        return
    record(OUTCOME, f"limit {status}", life_ms)
    if status == "confirmed" and (triggered := stream.first("triggered")):
        record(ORDER, "limit triggered→confirmed", (terminal.at - event_time(triggered.message)) * 1000)
    elif status == "expired":
        record(ORDER, "limit expiresAt→expired", (terminal.at - expires_at) * 1000)
