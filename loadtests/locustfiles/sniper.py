"""Sniper orders in launch bursts: every user places a `listing` sniper order on the next simulated token
launch, follows it on its WebSocket, and when it is done places one on the launch after. So each launch fires
about USERS orders at once.

The next launch and the moment its pool appeared come from `launches.LaunchWatcher` (API probes every
100 ms; the pool's creation time is known to ± half that). Run the engine with short launch settings so
launches fall inside the run, e.g. SIM_LAUNCH_FIRST_S=20 SIM_LAUNCH_INTERVAL_S=20 on a fresh DATA_DIR (the
schedule counts from the deployment's epoch, which Redis keeps); after the four launch tokens have launched
the users have nothing left to do and idle.

Rows in the reports:
- `POST sniper submit`                   HTTP latency of placing the order;
- `POST launch probe`                    the watcher's probes (each a 400, counted as success);
- `ORDER sniper pool_created→triggered`  from the pool's creation to the order's `triggered` event timestamp;
- `ORDER sniper pool_created→confirmed`  from the pool's creation to the arrival of `confirmed` (a failure:
                                         the order failed or saw no terminal event within SNIPER_TIMEOUT_S);
- `OUTCOME sniper confirmed, fired by pool_created|already_met` counts (time = how long the order waited,
  submit → confirmed): the sniper worker fires a burst on the quote stream's `pool_created` event, or, when its
  once-a-second sweep notices the new pool first, with `venueEvent.kind = already_met`;
- `OUTCOME sniper placed after the launch`: an order submitted after its token's pool appeared (the watcher had
  not yet seen it); not a failure, but left out of the launch timings.

    make load SCENARIO=sniper USERS=30 RATE=10 DURATION=60s
"""

from __future__ import annotations

import time

import gevent
from locust import FastHttpUser, constant, events, task

from loadtests.locustfiles import knobs
from loadtests.locustfiles.launches import Listing, stop_watchers, watcher_for
from loadtests.locustfiles.orders import sniper_body, submit
from loadtests.locustfiles.reporting import ORDER, OUTCOME, OrderFailed, OrderTimedOut, record
from loadtests.locustfiles.streams import OrderStream, event_time, follow_order, ws_base

#: Longest wait for one order: through the launch interval to its launch, then execution.
TIMEOUT_S = knobs.env_float("SNIPER_TIMEOUT_S", 150)
#: How long a user sleeps when every token has launched.
IDLE_S = 5


@events.test_stop.add_listener
def _stop_launch_watchers(**_kwargs) -> None:
    stop_watchers()


class LaunchSniper(FastHttpUser):
    # Orders go in as soon as the previous one ends: the launch itself paces the users.
    wait_time = constant(0)

    @task
    def snipe_next_launch(self) -> None:
        watcher = watcher_for(self.host)
        token = watcher.next_launch()
        if token is None:
            gevent.sleep(IDLE_S)
            return
        started = time.time()
        order_id = submit(self.client, sniper_body(token, {"kind": "listing"}), "sniper submit")
        if order_id is None:
            gevent.sleep(1)
            return
        stream = follow_order(ws_base(self.host), order_id, TIMEOUT_S)
        report_sniper_outcome(stream, started, watcher.listing(token))


def report_sniper_outcome(stream: OrderStream, started: float, listing: Listing | None) -> None:
    terminal, triggered = stream.terminal, stream.first("triggered")
    name = "sniper pool_created→confirmed"
    if terminal is None or terminal.message["status"] != "confirmed":
        since = listing.created_at if listing else started
        elapsed_ms = ((terminal.at if terminal else time.time()) - since) * 1000
        if terminal is None:
            why = stream.error or f"no terminal event after {TIMEOUT_S:g}s (close code {stream.close_code})"
            record(ORDER, name, elapsed_ms, error=OrderTimedOut(why))
        else:
            status, error = terminal.message["status"], terminal.message.get("error")
            record(ORDER, name, elapsed_ms, error=OrderFailed(f"{status}: {error}"))
        return
    if listing is None or listing.uncertainty_s == float("inf") or started > listing.created_at:
        record(OUTCOME, "sniper placed after the launch", (terminal.at - started) * 1000)
        return
    # The venue event fires the burst, unless the engine's 1 s sweep sees the pool first (`already_met`).
    cause = (triggered.message.get("venueEvent") or {}).get("kind") if triggered else None
    record(OUTCOME, f"sniper confirmed, fired by {cause}", (terminal.at - started) * 1000)
    if triggered:
        record(ORDER, "sniper pool_created→triggered", (event_time(triggered.message) - listing.created_at) * 1000)
    record(ORDER, name, (terminal.at - listing.created_at) * 1000, length=terminal.size)
