"""The API's HTTP connections, bounded before any request exists: per address, and in how long they take.

uvicorn keeps a connection open for as long as its client likes until the first request's headers are in
(its keep-alive timeout starts only after a response), and accepts as many as the process has file
descriptors. So one client could hold every descriptor with connections that send nothing, send a header
a byte at a time (slowloris) or announce a body and never send it, and every other client, `/health`
included, would be refused. Here:

- a connection must send a whole request, headers and body, within `HTTP_REQUEST_TIMEOUT_S` of connecting
  (or of the first byte of its next request), else it is closed (with a 408 when nothing was being
  answered; a route waiting for the body hears the client leave);
- a request's line and headers are at most `HTTP_MAX_HEADER_BYTES` (httptools buffers them without a limit:
  one connection could push hundreds of megabytes in seconds), else 431 and the connection is closed;
- one address holds at most `HTTP_MAX_CONNECTIONS_PER_CLIENT` connections to this process that are not
  WebSockets (those are counted by the guard, `WS_MAX_PER_CLIENT`, once upgraded); one more is closed at
  once. Proxies trusted in `FORWARDED_ALLOW_IPS` are exempt: every client behind them shares their address.

Per address, not per API key: no request (hence no key) has been read yet when a connection is counted.

uvicorn has no hook for any of this, so `GuardedHttpProtocol` subclasses its httptools protocol, which is
not a public API: the hooks it overrides (`connection_made`, `data_received`, `connection_lost`,
`on_message_begin`, `on_headers_complete`, `on_message_complete`, `handle_websocket_upgrade`) and the
attributes it reads (`client`, `cycle.response_complete`, `transport`, `loop`, `parser`, `url`, `scope`).
Tested with uvicorn `UVICORN_TESTED_RANGE` (the pin in pyproject.toml); tests/unit/test_uvicorn_internals.py
fails, naming what moved, when an upgrade moves any of them.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS

from services.api.guards.open_sockets import OpenSockets
from shared.settings import Settings

#: The uvicorn versions `GuardedHttpProtocol` was tested with (the pin in pyproject.toml).
UVICORN_TESTED_RANGE = ">=0.54,<0.55"
#: uvicorn's protocol hooks `GuardedHttpProtocol` overrides, each calling uvicorn's own.
OVERRIDDEN_HOOKS = (
    "connection_made",
    "data_received",
    "connection_lost",
    "on_message_begin",
    "on_headers_complete",
    "on_message_complete",
    "handle_websocket_upgrade",
)

HEADERS_TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 30\r\nconnection: close\r\n\r\nrequest headers are too large\n"
)
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 24\r\nconnection: close\r\n\r\nrequest took too long.\r\n"
)


def websocket_handshake_parses(target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the `websockets` parser uvicorn re-reads an upgrade request with takes it: at most
    MAX_NUM_HEADERS headers and no line over MAX_LINE_LENGTH (its own limits, so both stay in step)."""
    request_line = len(b"GET ") + len(target) + len(b" HTTP/1.1")
    header_lines = [len(name) + 2 + len(value) for name, value in headers]
    longest_header = max(header_lines, default=0)
    return len(header_lines) <= MAX_NUM_HEADERS and max(request_line, longest_header) + len(b"\r\n") <= MAX_LINE_LENGTH


def _trusted(forwarded_allow_ips: str) -> tuple[bool, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """(every peer trusted, the trusted networks) from FORWARDED_ALLOW_IPS; names that are not addresses
    (uvicorn also takes unix socket paths) trust nothing here."""
    networks = []
    for item in (part.strip() for part in forwarded_allow_ips.split(",")):
        if item == "*":
            return True, []
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            continue
    return False, networks


@dataclass(frozen=True)
class ConnectionBounds:
    """One server's bounds, from its settings, and its count of open connections per address."""

    open_connections: OpenSockets
    request_timeout_s: float
    max_header_bytes: int
    everyone_trusted: bool
    trusted_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionBounds:
        everyone_trusted, trusted_networks = _trusted(settings.forwarded_allow_ips)
        return cls(
            OpenSockets(settings.http_max_connections_per_client),
            settings.http_request_timeout_s,
            settings.http_max_header_bytes,
            everyone_trusted,
            trusted_networks,
        )

    def trusts(self, host: str) -> bool:
        """Whether `host` is a proxy of FORWARDED_ALLOW_IPS (exempt from the per-address count)."""
        if self.everyone_trusted:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_networks)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds above. `guarded_protocol` gives each server a subclass with
    its own `bounds`, whose count is shared by every connection of the process."""

    bounds: ClassVar[ConnectionBounds]

    # uvicorn's own override narrows asyncio's BaseTransport the same way; mypy counts only ours.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._counted_as: str | None = None
        self._request_timer: asyncio.TimerHandle | None = None
        self._headers_in = False  # of the request being received
        self._head_bytes = 0  # received while its headers were not complete
        host = self.client[0] if self.client else None
        if host is not None and not self.bounds.trusts(host):
            if not self.bounds.open_connections.admit(host):
                transport.abort()  # before any request: nothing to answer, and no descriptor kept
                return
            self._counted_as = host
        self._arm_request_timer()

    def data_received(self, data: bytes) -> None:
        # Counted before the parser sees them (it keeps a header whole until its end, however long). The
        # first bytes of a kept-alive connection's next request go uncounted (its headers were complete
        # until the parser saw them): one read, at most the transport's buffer, over the limit.
        if not self._headers_in:
            self._head_bytes += len(data)
            if self._head_bytes > self.bounds.max_header_bytes:
                self._disarm_request_timer()
                if self.cycle is None or self.cycle.response_complete:
                    self.transport.write(HEADERS_TOO_LARGE_RESPONSE)
                self.transport.close()
                self.parser = None  # type: ignore[assignment]  # nothing more is parsed, or kept
                return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_request_timer()
        self._release()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_in, self._head_bytes = False, 0
        self._arm_request_timer()  # a kept-alive connection's next request has the same time

    def on_headers_complete(self) -> None:
        self._headers_in = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm_request_timer()  # the whole request is in: the rest is the route's time, not the client's
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        # From here the socket is a WebSocket, counted (and capped) by the guard, and the transport's
        # protocol is uvicorn's WebSocket one: this one hears of neither its messages nor its end.
        self._disarm_request_timer()
        self._release()
        if not websocket_handshake_parses(self.url, self.scope["headers"]):
            # uvicorn's WebSocket protocol would hand this handshake to a parser that refuses it and then
            # never send the refusal: the connection would hang for ever, counted nowhere (no longer an
            # HTTP connection, never a WebSocket the guard sees), one descriptor per such handshake.
            self.transport.write(HEADERS_TOO_LARGE_RESPONSE)
            self.transport.close()
            return
        super().handle_websocket_upgrade()

    def _release(self) -> None:
        if self._counted_as is not None:
            self.bounds.open_connections.release(self._counted_as)
            self._counted_as = None

    def _arm_request_timer(self) -> None:
        self._disarm_request_timer()
        self._request_timer = self.loop.call_later(self.bounds.request_timeout_s, self._request_too_slow)

    def _disarm_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_too_slow(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        # A 408 only while no request of this message is known: once its headers are in, the route may
        # have answered already (a 413 before the body) or be waiting for the body, which hears the close.
        if not self._headers_in and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()


def guarded_protocol(settings: Settings) -> type[GuardedHttpProtocol]:
    """The protocol class to give uvicorn (`http=`): one per server, with that server's bounds."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"bounds": ConnectionBounds.from_settings(settings)})
