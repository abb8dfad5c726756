"""Order bodies, their submission and cancellation over HTTP, and BEST prices, shared by the scenarios."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

#: The pairs the quote stream publishes by default (QUOTE_PAIRS): limit orders may rest only on these.
COMMON_PAIRS = (
    ("SOL", "USDC"),
    ("USDC", "SOL"),
    ("SOL", "USDT"),
    ("USDT", "SOL"),
    ("JUP", "USDC"),
    ("USDC", "JUP"),
    ("BONK", "SOL"),
    ("SOL", "BONK"),
)

#: About $75 of each token: small against every pool, so price impact stays far inside the slippage.
ORDER_SIZE = {"SOL": "0.5", "USDC": "75", "USDT": "75", "JUP": "80", "BONK": "3500000"}

#: Generous slippage: a load test measures the engine, not how often a random walk beats a tight bound.
SLIPPAGE_BPS = 100

#: Significant digits of a resting price: plenty for a 1 bps offset on any pair's price, and well inside the
#: 15 digits a resting price may have.
PRICE_DIGITS = 9

SUBMIT_PATH = "/api/orders/execute"


def market_body(token_in: str, token_out: str, **extra) -> dict:
    return {
        "type": "market",
        "tokenIn": token_in,
        "tokenOut": token_out,
        "amount": ORDER_SIZE[token_in],
        "slippageBps": SLIPPAGE_BPS,
        **extra,
    }


def limit_body(token_in: str, token_out: str, limit_price: Decimal, expires_in_s: float | None) -> dict:
    body = {
        "type": "limit",
        "tokenIn": token_in,
        "tokenOut": token_out,
        "amount": ORDER_SIZE[token_in],
        "limitPrice": str(limit_price),
        "slippageBps": SLIPPAGE_BPS,
    }
    if expires_in_s is not None:
        body["expiresAt"] = rfc3339(datetime.now(UTC) + timedelta(seconds=expires_in_s))
    return body


def conditional_body(
    order_type: str, token_in: str, token_out: str, terms: dict[str, object], expires_in_s: float | None
) -> dict:
    """A stop, trailing_stop or oco order; `terms` are its own fields (stopPrice, trailBps, …)."""
    body = {
        "type": order_type,
        "tokenIn": token_in,
        "tokenOut": token_out,
        "amount": ORDER_SIZE[token_in],
        "slippageBps": SLIPPAGE_BPS,
        **terms,
    }
    if expires_in_s is not None:
        body["expiresAt"] = rfc3339(datetime.now(UTC) + timedelta(seconds=expires_in_s))
    return body


def sniper_body(token_out: str, trigger: dict, token_in: str = "SOL", amount: str = "0.1") -> dict:
    # Launched pools start at $20k a side: 300 bps leaves room for the impact of a burst of buys.
    return {
        "type": "sniper",
        "tokenIn": token_in,
        "tokenOut": token_out,
        "amount": amount,
        "trigger": trigger,
        "slippageBps": 300,
    }


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def random_pair() -> tuple[str, str]:
    return random.choice(COMMON_PAIRS)


def submit(client, body: dict, name: str) -> str | None:
    """POST the order with locust's HTTP client (timed as `name`); its orderId, or None after a failure that
    locust has already counted (any non-200, or a 200 without an orderId)."""
    with client.post(SUBMIT_PATH, json=body, name=name, catch_response=True) as response:
        if response.status_code != 200:
            response.failure(f"{response.status_code}: {(response.text or '')[:200]}")
            return None
        order_id = (response.json() or {}).get("orderId")
        if not order_id:
            response.failure(f"no orderId in {(response.text or '')[:200]}")
        return order_id


def price_near(best: Decimal, offset_bps: float) -> Decimal:
    """BEST moved by `offset_bps` basis points (negative: below), to PRICE_DIGITS significant digits."""
    price = best * (1 + Decimal(offset_bps) / 10_000)
    return round(price, PRICE_DIGITS - price.adjusted() - 1)


def best_price(client, token_in: str, token_out: str) -> Decimal | None:
    """The pair's BEST price from GET /api/quotes/{pair} (timed as `quotes`); None after a counted failure."""
    with client.get(f"/api/quotes/{token_in}-{token_out}", name="quotes", catch_response=True) as response:
        best = (response.json() or {}).get("best") if response.status_code == 200 else None
        if not best:
            response.failure(f"no BEST quote: {response.status_code} {(response.text or '')[:200]}")
            return None
        return Decimal(best["price"])


def cancel(client, order_id: str, name: str) -> bool | None:
    """DELETE the order (timed as `name`). True: cancelled; False: it was no longer resting (a 409: it triggered
    or expired first, not a failure); None after a counted failure."""
    with client.delete(f"/api/orders/{order_id}", name=name, catch_response=True) as response:
        if response.status_code == 200:
            return True
        if response.status_code == 409:
            response.success()
            return False
        response.failure(f"{response.status_code}: {(response.text or '')[:200]}")
        return None
