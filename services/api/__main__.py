"""`python -m services.api`: the HTTP and WebSocket gateway."""

from __future__ import annotations

import uvicorn

from services.api.app import create_app
from shared.logging import setup_logging
from shared.settings import Settings


def main() -> None:
    settings = Settings()
    setup_logging("api", settings)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        ws_max_size=64 * 1024,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
