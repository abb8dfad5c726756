"""Market orders: each user submits one over HTTP, follows it on its WebSocket to the terminal event, pauses,
and again.

Rows in the reports:
- `POST market submit`                      HTTP latency of POST /api/orders/execute (a non-200 is a failure);
- `ORDER market submit→confirmed`           from just before the POST to the arrival of `confirmed`; an order
                                            that ends `failed`, or has no terminal event within
                                            LOAD_ORDER_TIMEOUT_S, is a failure of this row;
- `ORDER market submit→routing`             from the POST to the arrival of `routing` (queue pick-up + quotes).

    make load SCENARIO=market USERS=20 RATE=5 DURATION=30s
"""

from __future__ import annotations

import time

from locust import FastHttpUser, between, task

from loadtests.locustfiles import knobs
from loadtests.locustfiles.orders import market_body, random_pair, submit
from loadtests.locustfiles.reporting import ORDER, OrderFailed, OrderTimedOut, record
from loadtests.locustfiles.streams import follow_order, ws_base


class MarketTrader(FastHttpUser):
    wait_time = between(knobs.THINK_MIN_S, knobs.THINK_MAX_S)

    @task
    def market_order(self) -> None:
        started = time.time()
        order_id = submit(self.client, market_body(*random_pair()), "market submit")
        if order_id is None:
            return
        stream = follow_order(ws_base(self.host), order_id, knobs.ORDER_TIMEOUT_S)
        report_market_outcome(stream, started)


def report_market_outcome(stream, started: float) -> None:
    if routing := stream.first("routing"):
        record(ORDER, "market submit→routing", (routing.at - started) * 1000)
    terminal = stream.terminal
    elapsed_ms = ((terminal.at if terminal else time.time()) - started) * 1000
    name = "market submit→confirmed"
    if terminal is None:
        why = stream.error or f"no terminal event after {knobs.ORDER_TIMEOUT_S:g}s (close code {stream.close_code})"
        record(ORDER, name, elapsed_ms, error=OrderTimedOut(why))
    elif terminal.message["status"] != "confirmed":
        error = terminal.message.get("error") or {}
        code = error.get("code") if isinstance(error, dict) else error
        record(ORDER, name, elapsed_ms, error=OrderFailed(f"{terminal.message['status']}: {code}"))
    else:
        record(ORDER, name, elapsed_ms, length=terminal.size)
