"""Which requests the API serves directly (plain ASGI) and which it leaves to FastAPI: exactly the paths
FastAPI's own routes would have matched for them, so moving them changed no URL."""

from __future__ import annotations

import pytest

from services.api.routes import streams
from services.api.routes.direct import direct_endpoint
from services.api.routes.orders import serve_submit


def scope(kind: str, path: str, method: str = "GET", root_path: str = "") -> dict:
    found = {"type": kind, "path": path, "root_path": root_path}
    if kind == "http":
        found["method"] = method
    return found


@pytest.mark.parametrize(
    ("kind", "path", "method", "endpoint"),
    [
        ("http", "/api/orders/execute", "POST", serve_submit),
        ("http", "/api/orders/execute", "GET", None),  # FastAPI answers (405, or the {orderId} route)
        ("http", "/api/orders/execute/", "POST", None),  # FastAPI's redirect_slashes, as before
        ("http", "/api/orders", "GET", None),
        ("http", "/ws", "GET", None),
        ("websocket", "/ws", "GET", streams.user_feed),
        ("websocket", "/api/orders/execute", "GET", streams.order_feed_by_query),
        ("websocket", "/ws/orders/3f1c", "GET", streams.order_feed),
        ("websocket", "/ws/orders/", "GET", None),  # {order_id} matches one or more characters
        ("websocket", "/ws/orders/a/b", "GET", None),  # ... and no slash
        ("websocket", "/ws/", "GET", None),
        ("websocket", "/nowhere", "GET", None),
    ],
)
def test_requests_find_their_endpoint(kind, path, method, endpoint):
    assert direct_endpoint(scope(kind, path, method)) is endpoint


def test_the_order_id_is_a_path_parameter_as_starlette_gives_it():
    found = scope("websocket", "/ws/orders/\x00\ufffd")
    assert direct_endpoint(found) is streams.order_feed
    assert found["path_params"] == {"order_id": "\x00\ufffd"}


def test_a_root_path_is_not_part_of_the_route():
    assert direct_endpoint(scope("http", "/engine/api/orders/execute", "POST", root_path="/engine")) is serve_submit
