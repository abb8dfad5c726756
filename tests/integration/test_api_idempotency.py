"""A retry with the same Idempotency-Key and body gets the same order, even once the body would be refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from services.api.app import create_app


def test_a_retry_after_the_orders_expiry_still_gets_its_order(settings, redis):
    expires = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat().replace("+00:00", "Z")
    body = {"type": "limit", "tokenIn": "SOL", "tokenOut": "USDC", "amount": "1", "limitPrice": "999999"}
    body["expiresAt"] = expires
    headers = {"Idempotency-Key": "retry-me"}
    with TestClient(create_app(settings)) as client:
        first = client.post("/api/orders/execute", json=body, headers=headers)
        assert first.status_code == 200, first.text
        time.sleep(2)
        fresh = client.post("/api/orders/execute", json=body)
        assert fresh.status_code == 400  # as a new order the body no longer passes
        retry = client.post("/api/orders/execute", json=body, headers=headers)
        assert retry.status_code == 200, retry.text
        assert retry.json()["orderId"] == first.json()["orderId"] and retry.json()["type"] == "limit"
        assert retry.headers["Idempotent-Replayed"] == "true"
        other = client.post("/api/orders/execute", json={**body, "amount": "2"}, headers=headers)
        assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"
