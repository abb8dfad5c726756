"""Which simulated token launches next, and when each one happened, learnt through the API alone.

The API has no launch-schedule route, but it answers a limit order on a pair differently before and after
the pair's pool exists: `400 pair_not_listed` before, `400 pair_not_streamed` after (launched pairs are not
in QUOTE_PAIRS, so no order is created; if they are, the probe order rests and is cancelled at once). One
watcher greenlet per locust process probes the next unlaunched token every LAUNCH_PROBE_INTERVAL_S, so it
knows the pool appeared between its last "not listed" request and its first "listed" answer: the midpoint
of that window is the pool's creation time, give or take half the window (shown in the log).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import gevent
import gevent.event
import requests

from loadtests.locustfiles import knobs
from loadtests.locustfiles.reporting import record
from shared.domain.tokens import TOKENS

PROBE_INTERVAL_S = knobs.env_float("LAUNCH_PROBE_INTERVAL_S", 0.1)
LAUNCH_QUOTE = "SOL"
#: The tokens the simulated venues launch, in launch order (the token registry is public, not the schedule).
LAUNCH_ORDER = tuple(
    t.symbol for t in sorted(TOKENS.values(), key=lambda t: t.launch_slot or 0) if t.launch_slot is not None
)

log = logging.getLogger(__name__)


@dataclass
class Listing:
    created_at: float  # best estimate of the pool's creation, epoch seconds
    uncertainty_s: float  # half the window it lies in; infinite when it was listed before the watcher looked


@dataclass
class LaunchWatcher:
    host: str
    listings: dict[str, Listing] = field(default_factory=dict)
    #: When the watcher last heard "not listed" for the token it is watching: the window's opening.
    unlisted_at: dict[str, float] = field(default_factory=dict)
    probed_once: gevent.event.Event = field(default_factory=gevent.event.Event)
    greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill()

    def next_launch(self, wait_s: float = 10) -> str | None:
        """The first token in launch order without a pool yet; None when every one has launched."""
        self.probed_once.wait(wait_s)
        return next((token for token in LAUNCH_ORDER if token not in self.listings), None)

    def listing(self, token: str, wait_s: float = 2) -> Listing | None:
        """The token's listing; waits up to `wait_s` for the watcher to see it (it probes every 100 ms)."""
        deadline = time.monotonic() + wait_s
        while token not in self.listings and time.monotonic() < deadline:
            gevent.sleep(PROBE_INTERVAL_S / 2)
        return self.listings.get(token)

    def _run(self) -> None:
        session = requests.Session()
        while (token := self.next_launch(wait_s=0)) is not None:
            sent = time.time()
            listed = self._probe(session, token)
            answered = time.time()
            if listed is False:
                self.unlisted_at[token] = sent
            elif listed:
                opened = self.unlisted_at.get(token)
                if opened is None:
                    self.listings[token] = Listing(answered, float("inf"))
                    log.info("launch watcher: %s-%s was already listed", LAUNCH_QUOTE, token)
                else:
                    self.listings[token] = Listing((opened + answered) / 2, (answered - opened) / 2)
                    log.info(
                        "launch watcher: %s-%s pool created at %.3f ± %.0f ms",
                        LAUNCH_QUOTE,
                        token,
                        self.listings[token].created_at,
                        self.listings[token].uncertainty_s * 1000,
                    )
            self.probed_once.set()
            if listed is None or token not in self.listings:  # a listing found: check the next token at once
                gevent.sleep(PROBE_INTERVAL_S)
        log.info("launch watcher: every launch has happened (%s)", ", ".join(LAUNCH_ORDER))
        self.probed_once.set()

    def _probe(self, session: requests.Session, token: str) -> bool | None:
        """True when a venue lists SOL-token, False when none does yet, None when the API did not say."""
        body = {"type": "limit", "tokenIn": LAUNCH_QUOTE, "tokenOut": token, "amount": "0.01", "limitPrice": "1e9"}
        started = time.perf_counter()
        try:
            response = session.post(f"{self.host}/api/orders/execute", json=body, timeout=5)
        except requests.RequestException as exc:
            record("POST", "launch probe", (time.perf_counter() - started) * 1000, error=exc)
            return None
        elapsed_ms = (time.perf_counter() - started) * 1000
        code = response.json().get("error") if response.status_code == 400 else None
        if response.status_code == 200:  # the pair is streamed here: the probe order rests; take it back
            session.delete(f"{self.host}/api/orders/{response.json()['orderId']}", timeout=5)
        elif code not in ("pair_not_listed", "pair_not_streamed"):
            record(
                "POST", "launch probe", elapsed_ms, error=RuntimeError(f"{response.status_code} {response.text[:200]}")
            )
            return None
        record("POST", "launch probe", elapsed_ms)
        return code != "pair_not_listed"


_watchers: dict[str, LaunchWatcher] = {}


def watcher_for(host: str) -> LaunchWatcher:
    """The process's one watcher for `host`, started on first use."""
    if host not in _watchers:
        _watchers[host] = LaunchWatcher(host.rstrip("/"))
        _watchers[host].start()
    return _watchers[host]


def stop_watchers() -> None:
    for watcher in _watchers.values():
        watcher.stop()
    _watchers.clear()
