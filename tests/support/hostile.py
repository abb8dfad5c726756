"""What every answer to bad input must look like (issue 13, "Bad input"), for the API tests and the fuzz test.

An HTTP refusal is a 4xx with the contract's error body and no long echo of the input; a WebSocket refusal is
one `{"type":"error"}` message, then a close in the 4xxx range (never a silent 1000 after a traceback).
"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

#: services/api/errors.py MAX_MESSAGE_CHARS plus the clip marker: no answer quotes more of the input.
MAX_MESSAGE_CHARS = 520
MAX_DETAIL_CHARS = 220


def assert_refused(response: httpx.Response, status: int | None = None, error: str | None = None) -> dict[str, Any]:
    """The contract's 4xx error body, short whatever was sent; returns it."""
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if status is not None:
        assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["success"] is False and isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["message"], str) and 0 < len(body["message"]) <= MAX_MESSAGE_CHARS, body["message"][:600]
    assert isinstance(body["details"], list) and len(body["details"]) <= 20
    for detail in body["details"]:
        assert all(len(str(value)) <= MAX_DETAIL_CHARS for value in detail.values()), detail
        assert "input" not in detail
    if error is not None:
        assert body["error"] == error, body
    return body


def assert_contract_answer(response: httpx.Response) -> None:
    """Either not an error at all, or a well-formed 4xx: never a 5xx."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        assert_refused(response)


def websocket_refusal(client: TestClient, path: str) -> tuple[dict[str, Any], int]:
    """Connect to `path`, expecting a refusal: the error message and the close code that follows it."""
    with client.websocket_connect(path) as socket:
        message = socket.receive_json(mode="binary")
        try:
            socket.receive_bytes()
        except WebSocketDisconnect as closed:
            return message, closed.code
    raise AssertionError(f"{path}: a message after the error, and no close")


def assert_websocket_refused(client: TestClient, path: str, code: int, error: str | None = None) -> dict[str, Any]:
    message, closed_with = websocket_refusal(client, path)
    assert message["type"] == "error" and message["error"] and message["message"], message
    assert len(message["message"]) <= MAX_MESSAGE_CHARS
    assert closed_with == code, (path[:200], message, closed_with)
    if error is not None:
        assert message["error"] == error, message
    return message
