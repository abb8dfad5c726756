"""Loguru for every service: one prefix per line, `orderId` when bound, JSON with LOG_JSON=1.

Call `setup_logging("<service>", settings)` once in a service's entry point; stdlib logging (dramatiq,
uvicorn, alembic) is routed into loguru so every line has the same shape.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from loguru import logger

_TEXT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <cyan>{extra[service]}</cyan> "
    "<level>{level: <7}</level> {extra[order_tag]}<level>{message}</level>"
)


class _InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = logging.currentframe(), 2
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame, depth = frame.f_back, depth + 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def _patch(record: Any) -> None:
    order_id = record["extra"].get("order_id")
    if order_id is not None:
        record["extra"]["orderId"] = str(order_id)
    record["extra"]["order_tag"] = f"orderId={order_id} " if order_id is not None else ""


def setup_logging(service: str, settings: Any = None) -> None:
    """Configure loguru for `service`; `settings` gives `log_level`, `log_json` (default INFO, text)."""
    level = str(getattr(settings, "log_level", "INFO")).upper()
    as_json = bool(getattr(settings, "log_json", False))
    logger.remove()
    logger.configure(extra={"service": service}, patcher=_patch)
    if as_json:
        logger.add(sys.stderr, level=level, format=_TEXT, colorize=False, serialize=True, diagnose=False)
    else:
        logger.add(sys.stderr, level=level, format=_TEXT, colorize=None, backtrace=False, diagnose=False)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "dramatiq", "alembic"):
        std = logging.getLogger(name)
        std.handlers, std.propagate = [], True
    # Per-request and per-WebSocket chatter ("connection open", access lines) is not an event of ours.
    for chatty in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def order_logger(order_id: object):
    """A logger whose every line carries this orderId."""
    return logger.bind(order_id=str(order_id))
