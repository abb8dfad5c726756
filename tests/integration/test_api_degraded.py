"""The API when PostgreSQL does not answer: clean 503s, never a 500, and orders are still accepted."""

from fastapi.testclient import TestClient

from services.api.app import create_app
from shared.settings import Settings
from tests.support.processes import free_port


def test_history_and_readiness_say_503_while_orders_are_still_accepted(redis_url):
    dead_postgres = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    app = create_app(Settings(redis_url=redis_url, database_url=dead_postgres))
    with TestClient(app) as client:
        history = client.get("/api/orders")
        assert history.status_code == 503 and history.headers["Retry-After"]
        assert history.json()["success"] is False and history.json()["error"] == "unavailable"
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["redis"] == "ok" and ready.json()["postgres"] != "ok"
        accepted = client.post("/api/orders/execute", json={"tokenIn": "SOL", "tokenOut": "USDC", "amount": "1"})
        assert accepted.status_code == 200  # acceptance needs Redis only; db-sync catches up later
        order_id = accepted.json()["orderId"]
        assert client.get(f"/api/orders/{order_id}").json()["status"] == "pending"
