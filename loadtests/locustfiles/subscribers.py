"""WebSocket subscribers: many sockets, each message timed from the engine's `timestamp` to its arrival.

Three user classes share the run:
- `OrderDriver` (exactly DRIVERS of them) places market orders at DRIVER_ORDERS_PER_S in total, each tagged
  with one of SUBSCRIBER_USER_IDS userIds (`load-user-0…`), round robin, and hands each orderId to the
  order subscribers;
- `UserFeedSubscriber` holds `/ws?userId=` open for one of those userIds, reconnecting every
  SUBSCRIBER_HOLD_S (so the run also sees connection churn);
- `OrderSubscriber` takes the next orderId the driver placed and follows `/ws/orders/{id}` to its end.
The USERS beyond the drivers are split between the two subscriber kinds (weights 1:1).

Clocks are one machine's, so lag = arrival − the event's `timestamp` (millisecond precision). Rows:
- `WS user feed lag`, `WS order feed lag`   per live message; their percentiles are the delivery lag;
- `WS order feed replay`                    events older than the socket (replayed on connect): time from
                                            opening the socket to their arrival;
- `WS user feed connect`                    the handshake (a failure: refused, e.g. close 4429 when over
                                            WS_MAX_PER_CLIENT sockets from one address);
- `ORDER order feed incomplete`             failure only: an order socket that ended without a terminal event;
- `POST driver submit`                      the driver's HTTP submissions.

Sockets are the point here, not the engine's throughput: all come from one address, so keep users under
the engine's WS_MAX_PER_CLIENT (256 per API process) or raise it for the run.

    make load SCENARIO=subscribers USERS=60 RATE=20 DURATION=30s
"""

from __future__ import annotations

import itertools
import time

import gevent
import gevent.queue
import orjson
import websocket
from locust import FastHttpUser, User, constant, constant_throughput, task

from loadtests.locustfiles import knobs
from loadtests.locustfiles.orders import market_body, random_pair, submit
from loadtests.locustfiles.reporting import ORDER, WS, OrderTimedOut, record
from loadtests.locustfiles.streams import Received, event_time, follow_order, lag_ms, open_socket, receive, ws_base

DRIVERS = knobs.env_int("DRIVERS", 1)
ORDERS_PER_S = knobs.env_float("DRIVER_ORDERS_PER_S", 10)
USER_IDS = [f"load-user-{n}" for n in range(knobs.env_int("SUBSCRIBER_USER_IDS", 10))]
HOLD_S = knobs.env_float("SUBSCRIBER_HOLD_S", 10)
#: A user-feed socket's read timeout: how often a quiet socket checks whether its hold is over.
POLL_S = 1.0

#: orderIds placed by the drivers, waiting for an order subscriber; bounded so that idle subscribers cannot
#: make it grow without end (the oldest are dropped: their events would be all replay by then anyway).
placed_orders: gevent.queue.Queue = gevent.queue.Queue(maxsize=1000)
_next_user_id = itertools.cycle(USER_IDS)
_subscriber_numbers = itertools.count()


class OrderDriver(FastHttpUser):
    fixed_count = DRIVERS
    wait_time = constant_throughput(ORDERS_PER_S / max(DRIVERS, 1))

    @task
    def place_market_order(self) -> None:
        order_id = submit(self.client, market_body(*random_pair(), userId=next(_next_user_id)), "driver submit")
        if order_id is None:
            return
        if placed_orders.full():
            placed_orders.get_nowait()
        placed_orders.put_nowait(order_id)


class UserFeedSubscriber(User):
    weight = 1
    wait_time = constant(0)

    def on_start(self) -> None:
        # Spread the sockets evenly over the userIds, whichever order locust starts them in.
        self.user_id = USER_IDS[next(_subscriber_numbers) % len(USER_IDS)]

    @task
    def hold_user_feed(self) -> None:
        url = f"{ws_base(self.host)}/ws?userId={self.user_id}"
        started = time.perf_counter()
        try:
            sock = open_socket(url, timeout_s=10)
        except (OSError, websocket.WebSocketException) as exc:
            record(WS, "user feed connect", (time.perf_counter() - started) * 1000, error=exc)
            gevent.sleep(1)
            return
        record(WS, "user feed connect", (time.perf_counter() - started) * 1000)
        try:
            self.read_until(sock, time.monotonic() + HOLD_S)
        finally:
            sock.close()

    def read_until(self, sock: websocket.WebSocket, deadline: float) -> None:
        sock.settimeout(POLL_S)
        while time.monotonic() < deadline:
            try:
                data, code = receive(sock)
            except websocket.WebSocketTimeoutException:
                continue
            except (OSError, websocket.WebSocketException) as exc:
                record(WS, "user feed lag", 0, error=exc)
                return
            if code is not None:  # the server closed a socket that should stay open as long as we want
                record(WS, "user feed lag", 0, error=ConnectionError(f"closed by the server with {code}"))
                return
            if data:
                record(WS, "user feed lag", lag_ms(orjson.loads(data), time.time()), length=len(data))


class OrderSubscriber(User):
    weight = 1
    wait_time = constant(0)

    @task
    def follow_next_order(self) -> None:
        try:
            order_id = placed_orders.get(timeout=POLL_S)
        except gevent.queue.Empty:
            return
        opened = time.time()

        def time_event(got: Received) -> None:
            if event_time(got.message) >= opened:
                record(WS, "order feed lag", lag_ms(got.message, got.at), length=got.size)
            else:
                record(WS, "order feed replay", (got.at - opened) * 1000, length=got.size)

        stream = follow_order(ws_base(self.host), order_id, knobs.ORDER_TIMEOUT_S, on_event=time_event)
        if stream.terminal is None:
            why = stream.error or f"close code {stream.close_code}, timed out: {stream.timed_out}"
            record(ORDER, "order feed incomplete", (time.time() - opened) * 1000, error=OrderTimedOut(why))
