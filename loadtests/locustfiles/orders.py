"""Order bodies and their submission over HTTP, shared by the scenarios."""

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
