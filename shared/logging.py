"""Loguru for every service: one prefix per line, `orderId` when bound, JSON with LOG_JSON=1.

A call with `order_ids=[…]` writes its line once per order, each with its own `orderId`: the same record,
built once, for a step that many orders take together (a hand-over of thousands of triggered orders spent a
quarter of its CPU building one loguru record per order).

Call `setup_logging("<service>", settings)` once in a service's entry point; stdlib logging (dramatiq,
uvicorn, alembic) is routed into loguru so every line has the same shape.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
import traceback
from datetime import UTC
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import orjson
from loguru import logger

if TYPE_CHECKING:  # loguru defines these in its stub only
    from loguru import FormatFunction, Logger, Message, Record

_TEXT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <cyan>{extra[service]}</cyan> "
    "<level>{level: <7}</level> {extra[order_tag]}<level>{message}</level>\n"
)


class _InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame: FrameType | None = logging.currentframe()
        depth = 2
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame, depth = frame.f_back, depth + 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def _patch(record: Record) -> None:
    if record["extra"].get("order_ids") is not None:
        record["extra"]["order_ids"] = [str(order_id) for order_id in record["extra"]["order_ids"]]
    order_id = record["extra"].get("order_id")
    if order_id is not None:
        record["extra"]["orderId"] = str(order_id)
    record["extra"]["order_tag"] = f"orderId={order_id} " if order_id is not None else ""


#: Extra keys that are ours, not the caller's: never copied into a JSON line as fields.
_INTERNAL_EXTRA = frozenset({"order_id", "orderId", "order_ids", "order_tag", "service", "json_line"})


def _text_line(record: Record) -> str:
    """The text format: `_TEXT`, once per id of `order_ids` when the call gave them, then any traceback."""
    order_ids = record["extra"].get("order_ids")
    if order_ids is None:
        return _TEXT + "{exception}"
    # Ids are UUID text (no braces, no angle brackets): safe inside the template loguru formats and colours.
    lines = (_TEXT.replace("{extra[order_tag]}", f"orderId={order_id} ") for order_id in order_ids)
    return "".join(lines) + "{exception}"


def _json_line(record: Record) -> str:
    """LOG_JSON's format: one flat object a line (ts, level, service, msg, orderId, other extras, exception)."""
    # Flat, not `serialize=True`: its {"text", "record": {...}} nesting cannot be filtered with jq select(.orderId==…).
    # The line is handed back through `extra` (loguru would parse a returned string for `{}` and `<tags>`), and a
    # format function, unlike a format string, gets no "\n{exception}" appended: the traceback stays inside the line.
    extra, t = record["extra"], record["time"].astimezone(UTC)
    line: dict[str, Any] = {
        "ts": f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z",
        "level": record["level"].name,
        "service": extra.get("service"),
        "msg": record["message"],
    }
    if extra.get("orderId") is not None:
        line["orderId"] = str(extra["orderId"])
    line.update((k, v) for k, v in extra.items() if k not in _INTERNAL_EXTRA and k not in line)
    exc = record["exception"]
    if exc is not None and exc.type is not None:  # opt(exception=True) outside an except: (None, None, None)
        line["exception"] = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
    order_ids = extra.get("order_ids")
    if order_ids is None:
        extra["json_line"] = _dumps(line)
    else:
        head = {key: line.pop(key) for key in ("ts", "level", "service", "msg")}
        extra["json_line"] = "\n".join(_dumps({**head, "orderId": order_id, **line}) for order_id in order_ids)
    return "{extra[json_line]}\n"


def _dumps(line: dict[str, Any]) -> str:
    try:
        return orjson.dumps(line, default=str).decode()
    except TypeError:  # what `default` cannot mend: an int over 64 bits, a dict with non-str keys
        return orjson.dumps({k: v if isinstance(v, str) else str(v) for k, v in line.items()}).decode()


#: Lines at this level and above are written at once, with everything batched before them.
_FLUSH_AT_ONCE_LEVEL = logging.WARNING


class BatchedStderr:
    """A loguru sink that collects lines and writes them to stderr together, `interval_s` after the first.

    Writing (and flushing) stderr per line is a system call on the caller's thread, and when stderr is a
    pipe whose reader is busy (the `make run` supervisor, a log shipper) it blocks the event loop, under load
    for a visible share of its time. Appending to a list instead costs next to nothing. Warnings and errors
    are written at once (with what came before them), and whatever is left is written at exit; a SIGKILL
    loses at most `interval_s` of info lines. The flusher sleeps until a line arrives: an idle service
    does not wake for it.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # keeps batches in order between the flusher and a warning
        self._waiting = threading.Event()  # set when a line lands in an empty batch
        threading.Thread(target=self._flush_forever, name="log-flusher", daemon=True).start()
        atexit.register(self.flush)

    def __call__(self, message: Message) -> None:
        with self._lock:
            first = not self._lines
            self._lines.append(str(message))
        if message.record["level"].no >= _FLUSH_AT_ONCE_LEVEL:
            self.flush()
        elif first:
            self._waiting.set()

    def flush(self) -> None:
        with self._write_lock:
            with self._lock:
                text, self._lines = "".join(self._lines), []
            if text:
                stream = sys.stderr  # looked up now: tests swap it
                stream.write(text)
                stream.flush()

    def _flush_forever(self) -> None:
        while True:
            self._waiting.wait()
            time.sleep(self.interval_s)  # the rest of the batch gathers meanwhile
            # Cleared before the flush takes the batch: a line that lands after the flush finds the batch
            # empty and sets it again; one that lands before is in this flush.
            self._waiting.clear()
            self.flush()


_batched: BatchedStderr | None = None


def flush() -> None:
    """Write every log line collected so far (see `BatchedStderr`)."""
    if _batched is not None:
        _batched.flush()


def setup_logging(service: str, settings: Any = None) -> None:
    """Configure loguru for `service`; `settings` gives `log_level`, `log_json` (default INFO, text) and
    `log_flush_ms` (0 = write every line at once)."""
    global _batched
    level = str(getattr(settings, "log_level", "INFO")).upper()
    as_json = bool(getattr(settings, "log_json", False))
    flush_ms = int(getattr(settings, "log_flush_ms", 0))
    logger.remove()
    logger.configure(extra={"service": service}, patcher=_patch)
    sink: TextIO | BatchedStderr = sys.stderr
    if flush_ms > 0:
        if _batched is None:
            _batched = BatchedStderr(flush_ms / 1000)
        _batched.interval_s = flush_ms / 1000
        sink = _batched
    colorize = False if as_json else (None if sink is sys.stderr else sys.stderr.isatty())
    line_format: FormatFunction = _json_line if as_json else _text_line
    logger.add(sink, level=level, format=line_format, colorize=colorize, backtrace=False, diagnose=False)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "dramatiq", "alembic"):
        std = logging.getLogger(name)
        std.handlers, std.propagate = [], True
    # Per-request and per-WebSocket chatter ("connection open", access lines) is not an event of ours.
    for chatty in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def order_logger(order_id: object) -> Logger:
    """A logger whose every line carries this orderId."""
    return logger.bind(order_id=str(order_id))
