"""Conditional orders: stops, trailing stops and OCO orders resting around the current BEST quote; some fire as
prices move, some are cancelled, the rest expire.

Each task reads GET /api/quotes/{pair} and places COND_ORDERS_PER_USER orders on that pair at once, each of a
type drawn by weight (COND_STOP_WEIGHT, COND_TRAILING_WEIGHT, COND_OCO_WEIGHT; default 5 : 3 : 2, stops
being the common protective order) and priced from BEST:

- stop: stopPrice = BEST × (1 − offset), offset uniform in [COND_STOP_OFFSET_MIN_BPS, MAX] (default −5..+10 bps:
  a selling stop fires once BEST ≤ stopPrice, so about a third fire on the next tick, others if the price
  walks down to them);
- oco: takeProfitPrice BEST + [COND_OCO_GAP_MIN_BPS, MAX] (default 2..12 bps), stopPrice BEST − the same
  range, drawn independently: whichever side the walk reaches first fires, and the other side goes with it;
- trailing_stop: trailBps drawn from COND_TRAIL_BPS (default 3,5,8,12: a few round widths, as traders
  choose them, so the book keeps a few width sets rather than one per order); a share COND_ACTIVATION_SHARE
  (default 0.3) arms only once BEST reaches an activationPrice of BEST + [0, COND_ACTIVATION_MAX_BPS]
  (default 5 bps), the rest at the next tick.

The offsets are basis points because the simulated walk moves a few bps a second (SIM_DAILY_VOLATILITY 5 %
a day): real stops sit percents away and would never fire within a load test. Every order expires
COND_EXPIRY_MIN_S..MAX_S after it is placed; a share COND_CANCEL_SHARE is cancelled (DELETE) after
COND_CANCEL_AFTER_MIN_S..MAX_S if still resting. Each order is followed on its WebSocket to the end, all of
them concurrently (one greenlet each).

Rows in the reports (`<type>` is stop, trailing_stop or oco):
- `GET quotes`, `POST <type> submit`, `DELETE <type> cancel`  HTTP latencies (a 409 on cancel is not a
                                                             failure: the order fired first);
- `ORDER <type> triggered→confirmed`     from the `triggered` event's timestamp to the arrival of `confirmed`;
- `ORDER conditional expiresAt→expired`  from the order's expiresAt to the arrival of `expired` (expiry lag);
- `OUTCOME <type> fired by stop|take_profit|trail`   confirmed orders by the condition that fired them (time =
                                                     the order's life, submit → confirmed);
- `OUTCOME <type> cancelled|expired|cancel lost race`   counts; time = the order's life, submit → end;
- a failure of `OUTCOME conditional unexpected end`: an order that failed, timed out, or ended other than its
  plan; of `OUTCOME conditional fired off its condition`: a `triggered` event whose condition does not
  belong to the type, or whose BEST price does not satisfy it (a stop above its stopPrice, a trail above
  its level).

    make load SCENARIO=conditional USERS=10 RATE=5 DURATION=30s
"""

from __future__ import annotations

import random
import time
from decimal import Decimal, InvalidOperation

import gevent
from gevent.pool import Group
from locust import FastHttpUser, between, task

from loadtests.locustfiles import knobs
from loadtests.locustfiles.orders import best_price, cancel, conditional_body, price_near, random_pair, submit
from loadtests.locustfiles.reporting import ORDER, OUTCOME, OrderFailed, OrderTimedOut, record
from loadtests.locustfiles.streams import OrderStream, event_time, follow_order, ws_base

ORDERS_PER_TASK = knobs.env_int("COND_ORDERS_PER_USER", 4)
#: Order type → its weight in the mix.
MIX = {
    "stop": knobs.env_float("COND_STOP_WEIGHT", 5),
    "trailing_stop": knobs.env_float("COND_TRAILING_WEIGHT", 3),
    "oco": knobs.env_float("COND_OCO_WEIGHT", 2),
}
STOP_OFFSET_MIN_BPS = knobs.env_float("COND_STOP_OFFSET_MIN_BPS", -5)
STOP_OFFSET_MAX_BPS = knobs.env_float("COND_STOP_OFFSET_MAX_BPS", 10)
OCO_GAP_MIN_BPS = knobs.env_float("COND_OCO_GAP_MIN_BPS", 2)
OCO_GAP_MAX_BPS = knobs.env_float("COND_OCO_GAP_MAX_BPS", 12)
TRAIL_BPS = tuple(int(bps) for bps in knobs.env_str("COND_TRAIL_BPS", "3,5,8,12").split(","))
ACTIVATION_SHARE = knobs.env_float("COND_ACTIVATION_SHARE", 0.3)
ACTIVATION_MAX_BPS = knobs.env_float("COND_ACTIVATION_MAX_BPS", 5)
EXPIRY_MIN_S = knobs.env_float("COND_EXPIRY_MIN_S", 5)
EXPIRY_MAX_S = knobs.env_float("COND_EXPIRY_MAX_S", 15)
CANCEL_SHARE = knobs.env_float("COND_CANCEL_SHARE", 0.25)
CANCEL_AFTER_MIN_S = knobs.env_float("COND_CANCEL_AFTER_MIN_S", 1)
CANCEL_AFTER_MAX_S = knobs.env_float("COND_CANCEL_AFTER_MAX_S", 4)

#: Which conditions may fire each type (the `trigger` of its `triggered` event).
CONDITIONS = {"stop": {"stop"}, "oco": {"stop", "take_profit"}, "trailing_stop": {"trail"}}
BPS = 10_000
#: How far past a trailing stop's level the book may fire (docs/conditional-orders.md, "Prices as doubles").
DOUBLE_SLACK = Decimal("1e-14")


def conditional_terms(order_type: str, best: Decimal) -> dict[str, object]:
    """An `order_type` order's own fields, priced from `best` as the module's docstring says."""
    if order_type == "stop":
        return {"stopPrice": str(price_near(best, -random.uniform(STOP_OFFSET_MIN_BPS, STOP_OFFSET_MAX_BPS)))}
    if order_type == "oco":
        return {
            "takeProfitPrice": str(price_near(best, random.uniform(OCO_GAP_MIN_BPS, OCO_GAP_MAX_BPS))),
            "stopPrice": str(price_near(best, -random.uniform(OCO_GAP_MIN_BPS, OCO_GAP_MAX_BPS))),
        }
    terms: dict[str, object] = {"trailBps": random.choice(TRAIL_BPS)}
    if random.random() < ACTIVATION_SHARE:
        terms["activationPrice"] = str(price_near(best, random.uniform(0, ACTIVATION_MAX_BPS)))
    return terms


def fired_off_its_condition(order_type: str, terms: dict[str, object], triggered: dict) -> str | None:
    """Why a `triggered` event contradicts the order's type and terms; None when it holds."""
    condition = triggered.get("trigger")
    if condition not in CONDITIONS[order_type]:
        return f"{order_type} fired by {condition!r}"
    try:
        price = Decimal(str(triggered["triggerPrice"]))
        if condition == "stop" and price > Decimal(str(terms["stopPrice"])):
            return f"stop fired at {price} > stopPrice {terms['stopPrice']}"
        if condition == "take_profit" and price < Decimal(str(terms["takeProfitPrice"])):
            return f"take-profit fired at {price} < takeProfitPrice {terms['takeProfitPrice']}"
        if condition == "trail":
            high, bps = Decimal(str(triggered["highWaterMark"])), int(str(terms["trailBps"]))
            # The book compares in doubles: a level that is not a double fires within 1e-15 of it.
            if price * BPS > high * (BPS - bps) * (1 + DOUBLE_SLACK):
                return f"trail fired at {price}, above {bps} bps under its high {high}"
    except (KeyError, InvalidOperation, ValueError) as exc:
        return f"{order_type} triggered without a readable {exc}: {triggered}"
    return None


class ConditionalTrader(FastHttpUser):
    wait_time = between(knobs.THINK_MIN_S, knobs.THINK_MAX_S)

    @task
    def rest_conditional_orders_around_best(self) -> None:
        token_in, token_out = random_pair()
        best = best_price(self.client, token_in, token_out)
        if best is None:
            return
        group = Group()
        try:
            for order_type in random.choices(list(MIX), weights=list(MIX.values()), k=ORDERS_PER_TASK):
                group.spawn(self.one_order, order_type, token_in, token_out, best)
            group.join()
        finally:
            group.kill()  # the user is stopping: its followers and cancellers go with it

    def one_order(self, order_type: str, token_in: str, token_out: str, best: Decimal) -> None:
        expires_in = random.uniform(EXPIRY_MIN_S, EXPIRY_MAX_S)
        terms = conditional_terms(order_type, best)
        body = conditional_body(order_type, token_in, token_out, terms, expires_in)
        started = time.time()
        order_id = submit(self.client, body, f"{order_type} submit")
        if order_id is None:
            return
        canceller = None
        if random.random() < CANCEL_SHARE:
            delay = random.uniform(CANCEL_AFTER_MIN_S, CANCEL_AFTER_MAX_S)
            canceller = gevent.spawn_later(delay, cancel, self.client, order_id, f"{order_type} cancel")
        try:
            stream = follow_order(ws_base(self.host), order_id, expires_in + knobs.ORDER_TIMEOUT_S)
            cancel_won = canceller.get() if canceller is not None else None
        finally:
            if canceller is not None:
                canceller.kill()
        report_conditional_outcome(order_type, terms, stream, started, started + expires_in, cancel_won)


def report_conditional_outcome(
    order_type: str,
    terms: dict[str, object],
    stream: OrderStream,
    started: float,
    expires_at: float,
    cancel_won: bool | None,
) -> None:
    terminal = stream.terminal
    life_ms = ((terminal.at if terminal else time.time()) - started) * 1000
    if cancel_won is False:
        record(OUTCOME, f"{order_type} cancel lost race", life_ms)
    triggered = stream.first("triggered")
    if triggered and (contradiction := fired_off_its_condition(order_type, terms, triggered.message)):
        record(OUTCOME, "conditional fired off its condition", life_ms, error=OrderFailed(contradiction))
    if terminal is None:
        why = stream.error or f"no terminal event (close code {stream.close_code}, timed out: {stream.timed_out})"
        record(OUTCOME, "conditional unexpected end", life_ms, error=OrderTimedOut(why))
        return
    status = terminal.message["status"]
    expected = {True: {"cancelled"}, False: {"confirmed", "expired"}, None: {"confirmed", "expired"}}[cancel_won]
    if status not in expected:
        error = terminal.message.get("error")
        why = f"{order_type} {status} (cancel won: {cancel_won}) {error}"
        record(OUTCOME, "conditional unexpected end", life_ms, error=OrderFailed(why))
        return
    if status == "confirmed" and triggered:
        record(OUTCOME, f"{order_type} fired by {triggered.message.get('trigger')}", life_ms)
        record(ORDER, f"{order_type} triggered→confirmed", (terminal.at - event_time(triggered.message)) * 1000)
        return
    record(OUTCOME, f"{order_type} {status}", life_ms)
    if status == "expired":
        record(ORDER, "conditional expiresAt→expired", (terminal.at - expires_at) * 1000)
