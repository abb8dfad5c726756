"""`python -m services.api`: the HTTP and WebSocket gateway."""

from __future__ import annotations

import uvicorn

from services.api.app import create_app
from services.api.connections import guarded_protocol
from services.api.server import serve
from shared.logging import setup_logging
from shared.settings import Settings


def main() -> None:
    settings = Settings()
    setup_logging("api", settings)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        ws_max_size=settings.ws_max_message_bytes,
        # Connections bounded per address and in how long their headers take (services/api/connections.py).
        http=guarded_protocol(settings),
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 unless told otherwise; the client's identity (its rate
        # limit) must not be a header it can set, so only the proxies named in FORWARDED_ALLOW_IPS are trusted.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        # Events are a few hundred bytes of JSON: compressing them saves little, and each socket's zlib state
        # costs tens of kilobytes of memory, which thousands of sockets multiply.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
    )
    serve(config)  # uvicorn.run's one-process path, on a server that wakes on signals (services/api/server.py)


if __name__ == "__main__":
    main()
