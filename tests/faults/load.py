"""A steady stream of market, limit, sniper and conditional (stop, trailing stop, OCO) orders over HTTP that
rides out crashes of what it talks to.

Each submission has its own Idempotency-Key and body, fixed before the first try; a try that gets no
answer (refused, reset, timed out) or a 5xx/429 is repeated with the same key and body, so once the API
answers again the client learns the orderId of an order that was accepted just before a crash. Only a
200 counts as accepted; a 4xx is a rejection (e.g. `expiresAt` passed while the API was down); a
submission still unanswered at its deadline is given up. The driver runs on its own thread and event loop,
so the test's thread is free to kill and restart things.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

#: Tokens the simulation launches during the run, in launch order (see shared/domain/tokens.py).
LAUNCHED_TOKENS = ("WIF", "POPCAT", "MEW", "PNUT")
#: Market orders: pair and the range of amounts of tokenIn.
MARKET_PAIRS = (
    ("SOL", "USDC", Decimal("0.1"), Decimal("2")),
    ("USDC", "SOL", Decimal("5"), Decimal("200")),
    ("SOL", "USDT", Decimal("0.1"), Decimal("2")),
    ("JUP", "USDC", Decimal("5"), Decimal("100")),
    # Large enough to split across both venues (one transaction, every leg or none) and to move the pools.
    ("SOL", "USDC", Decimal("300"), Decimal("1000")),
    ("USDC", "SOL", Decimal("45000"), Decimal("150000")),
)
#: Limit orders rest on these streamed pairs, priced around the last BEST quote.
LIMIT_PAIRS = (("SOL", "USDC"), ("USDC", "SOL"))
RETRY_PAUSE_S = 0.3
REQUEST_TIMEOUT_S = 5.0


@dataclass
class Submission:
    kind: str
    body: dict[str, Any]
    key: str = field(default_factory=lambda: f"faults-{uuid.uuid4()}")
    tries: int = 0
    order_id: str | None = None
    outcome: str = "pending"  # accepted | rejected:<code> | gave_up
    #: Every try: (sent, answered or given up, HTTP status or None for no answer), on time.monotonic().
    answers: list[tuple[float, float, int | None]] = field(default_factory=list)

    @property
    def sent_at(self) -> float | None:
        return self.answers[0][0] if self.answers else None

    @property
    def answered_at(self) -> float | None:
        """When its last try was answered (200 or a 4xx) or given up; None while it is still in progress."""
        return self.answers[-1][1] if self.answers and self.outcome != "pending" else None


@dataclass
class LoadStats:
    submissions: int = 0
    tries: int = 0
    retries_after_no_answer: int = 0
    retries_after_5xx: int = 0
    rejected: Counter = field(default_factory=Counter)
    gave_up: int = 0


def _amount(low: str | Decimal, high: str | Decimal, rng: random.Random) -> str:
    low, high = Decimal(low), Decimal(high)
    return str((low + (high - low) * Decimal(rng.random())).quantize(Decimal("0.01")))


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


class LoadDriver:
    def __init__(self, api_url: str, *, rate_per_s: float = 6.0, senders: int = 6, seed: int = 7,
                 give_up_after_s: float = 60.0) -> None:  # fmt: skip
        self.api_url = api_url
        self.rate_per_s = rate_per_s
        self.senders = senders
        self.give_up_after_s = give_up_after_s
        self.rng = random.Random(seed)
        self.submissions: list[Submission] = []
        self.stats = LoadStats()
        self.prices: dict[tuple[str, str], Decimal] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- control, from the test's thread ----------------------------------------------------------------
    def start(self) -> LoadDriver:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="load-driver", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 90.0) -> None:
        """Stop sending new orders; submissions in progress keep retrying until answered or given up."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    @property
    def accepted(self) -> dict[str, str]:
        """orderId -> order type, for every submission answered 200."""
        return {s.order_id: s.kind for s in self.submissions if s.outcome == "accepted" and s.order_id}

    def accepted_by_type(self) -> dict[str, int]:
        return dict(Counter(self.accepted.values()))

    # --- the loop -------------------------------------------------------------------------------------
    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.api_url, timeout=REQUEST_TIMEOUT_S) as client:
            prices = asyncio.create_task(self._follow_prices(client))
            await asyncio.gather(*(self._send_loop(client) for _ in range(self.senders)))
            prices.cancel()

    async def _send_loop(self, client: httpx.AsyncClient) -> None:
        period = self.senders / self.rate_per_s
        while not self._stop.is_set():
            started = time.monotonic()
            submission = self._next_submission()
            self.submissions.append(submission)
            self.stats.submissions += 1
            await self._submit(client, submission)
            await asyncio.sleep(max(0.0, period * (0.5 + self.rng.random()) - (time.monotonic() - started)))

    async def _submit(self, client: httpx.AsyncClient, submission: Submission) -> None:
        deadline = time.monotonic() + self.give_up_after_s
        while time.monotonic() < deadline:
            submission.tries += 1
            self.stats.tries += 1
            sent = time.monotonic()
            try:
                response = await client.post(
                    "/api/orders/execute", json=submission.body, headers={"Idempotency-Key": submission.key}
                )
            except httpx.HTTPError:
                submission.answers.append((sent, time.monotonic(), None))
                self.stats.retries_after_no_answer += 1
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            submission.answers.append((sent, time.monotonic(), response.status_code))
            if response.status_code == 200:
                submission.order_id = response.json()["orderId"]
                submission.outcome = "accepted"
                return
            if response.status_code >= 500 or response.status_code == 429:
                self.stats.retries_after_5xx += 1
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            code = _error_code(response)
            submission.outcome = f"rejected:{code}"
            self.stats.rejected[code] += 1
            return
        submission.outcome = "gave_up"
        self.stats.gave_up += 1

    async def _follow_prices(self, client: httpx.AsyncClient) -> None:
        """Keep the last BEST price of each limit pair, so limit orders sit near the market."""
        while True:
            for token_in, token_out in LIMIT_PAIRS:
                try:
                    response = await client.get(f"/api/quotes/{token_in}-{token_out}")
                    if response.status_code == 200:
                        self.prices[(token_in, token_out)] = Decimal(str(_best_price(response.json())))
                except (httpx.HTTPError, KeyError, TypeError, ValueError, ArithmeticError):
                    pass
            await asyncio.sleep(1.0)

    # --- what to send ---------------------------------------------------------------------------------
    def _next_submission(self) -> Submission:
        draw = self.rng.random()
        if draw < 0.25 and self.prices:
            return self._limit()
        if draw < 0.42 and self.prices:
            return self._conditional()
        if draw < 0.55:
            return self._sniper()
        return self._market()

    def _market(self) -> Submission:
        token_in, token_out, low, high = self.rng.choice(MARKET_PAIRS)
        body = {"type": "market", "tokenIn": token_in, "tokenOut": token_out, "amount": _amount(low, high, self.rng)}
        return Submission("market", body)

    def _limit(self) -> Submission:
        pair = self.rng.choice(sorted(self.prices))
        # Mostly at or below the market (sell triggers when BEST >= limit): many trigger at once or soon.
        offset = Decimal(str(self.rng.uniform(-0.004, 0.006)))
        price = (self.prices[pair] * (1 + offset)).quantize(Decimal("0.000001"))
        amount = _amount(Decimal("0.1"), Decimal("1"), self.rng) if pair[0] == "SOL" else _amount("5", "100", self.rng)
        body = {"type": "limit", "tokenIn": pair[0], "tokenOut": pair[1], "amount": amount, "limitPrice": str(price)}
        if self.rng.random() < 0.6:
            body["expiresAt"] = _in(self.rng.uniform(8, 40))
        return Submission("limit", body)

    def _conditional(self) -> Submission:
        """Stops, trailing stops and OCOs near the market: the ±0.2 % a price walks in seconds, so most fire
        during a run (some on their first tick), under whatever fault is injected then, and some expire."""
        pair = self.rng.choice(sorted(self.prices))
        market = self.prices[pair]

        def near(low: float, high: float) -> str:
            return str((market * (1 + Decimal(str(self.rng.uniform(low, high))))).quantize(Decimal("0.000001")))

        amount = _amount(Decimal("0.1"), Decimal("1"), self.rng) if pair[0] == "SOL" else _amount("5", "100", self.rng)
        body: dict[str, Any] = {"tokenIn": pair[0], "tokenOut": pair[1], "amount": amount, "slippageBps": 200}
        kind = self.rng.choice(("stop", "trailing_stop", "oco"))
        if kind == "stop":
            body["stopPrice"] = near(-0.003, 0.001)
        elif kind == "trailing_stop":
            body["trailBps"] = self.rng.randrange(2, 30)
            if self.rng.random() < 0.3:
                body["activationPrice"] = near(-0.001, 0.002)
        else:
            body["stopPrice"], body["takeProfitPrice"] = near(-0.003, -0.0005), near(0.0005, 0.003)
        if self.rng.random() < 0.5:
            body["expiresAt"] = _in(self.rng.uniform(8, 40))
        return Submission(kind, {"type": kind, **body})

    def _sniper(self) -> Submission:
        token = self.rng.choice(LAUNCHED_TOKENS)
        draw = self.rng.random()
        if draw < 0.55:
            trigger: dict[str, str] = {"kind": "listing"}
        elif draw < 0.9 and token == "WIF":
            trigger = {"kind": "liquidity", "minLiquidity": str(self.rng.randrange(20_000, 400_000))}
        else:
            trigger = {"kind": "liquidity", "minLiquidity": "999999999999"}  # never met: it expires or rests
        body = {"type": "sniper", "tokenIn": "SOL", "tokenOut": token, "amount": _amount("0.05", "0.5", self.rng),
                "trigger": trigger}  # fmt: skip
        never_met = trigger.get("minLiquidity") == "999999999999"
        # Most never-met orders expire; the few that do not stay resting, which the checker must accept.
        if (never_met and self.rng.random() < 0.8) or (not never_met and self.rng.random() < 0.3):
            body["expiresAt"] = _in(self.rng.uniform(8, 40))
        return Submission("sniper", body)


def _best_price(quotes: dict[str, Any]) -> Any:
    return quotes["best"]["price"]


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error") or response.status_code)
    except ValueError:
        return str(response.status_code)
