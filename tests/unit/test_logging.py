import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from loguru import logger

from shared.logging import BatchedStderr, flush, order_logger, setup_logging
from shared.settings import Settings


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    logger.remove()
    logger.add(sys.stderr)
    logging.root.handlers.clear()


def test_text_lines_carry_the_service_and_order_id(capsys):
    setup_logging("execution-worker", Settings(log_json=False))
    order_logger("0a0a43c5-9398-47fc-bf36-7ee564f57b8b").info("routing attempt 1")
    flush()
    line = capsys.readouterr().err.strip()
    assert "execution-worker" in line and "orderId=0a0a43c5-9398-47fc-bf36-7ee564f57b8b" in line
    assert line.endswith("routing attempt 1") and "\n" not in line


def test_info_lines_are_batched_and_a_warning_writes_them_at_once_in_order(capsys):
    setup_logging("api", Settings(log_flush_ms=60_000))
    logger.info("first")
    assert capsys.readouterr().err == ""
    logger.warning("second")
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.rsplit(" ", 1)[-1] for line in lines] == ["first", "second"]


def test_the_flusher_writes_a_batch_once_it_began_and_every_later_batch_too():
    """The flusher sleeps until a line lands in an empty batch: each batch is written about one interval
    after its first line, however long the service was quiet before it."""
    written: list[str] = []

    class Stream:
        def write(self, text: str) -> None:
            written.append(text)

        def flush(self) -> None:
            pass

    sink = BatchedStderr(0.01)
    original, sys.stderr = sys.stderr, Stream()  # type: ignore[assignment]
    try:
        for batch in ("one", "two"):
            logger_sink_line(sink, batch)
            deadline = time.monotonic() + 5
            while not any(batch in text for text in written) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert any(batch in text for text in written), f"{batch!r} never written: {written}"
            time.sleep(0.05)  # quiet: the flusher is asleep again before the next batch
    finally:
        sys.stderr = original


def logger_sink_line(sink: BatchedStderr, text: str) -> None:
    """Hand `sink` one info line, as loguru would."""
    handler = logger.add(sink, level="INFO", format="{message}")
    try:
        logger.info(text)
    finally:
        logger.remove(handler)


def json_lines(err: str) -> list[dict]:
    """Every line of `err` as a JSON object; split on "\n" only, as jq and docker do."""
    return [json.loads(line) for line in err.split("\n") if line]


def test_log_json_gives_one_flat_json_object_per_line(capsys):
    setup_logging("api", Settings(log_json=True))
    order_logger("abc").info("accepted")
    logger.info("no order here")
    flush()
    first, second = json_lines(capsys.readouterr().err)
    assert list(first) == ["ts", "level", "service", "msg", "orderId"]
    assert (first["level"], first["service"], first["msg"], first["orderId"]) == ("INFO", "api", "accepted", "abc")
    assert list(second) == ["ts", "level", "service", "msg"] and second["msg"] == "no order here"


def test_log_json_ts_is_utc_with_milliseconds_and_a_z_whatever_the_local_zone(capsys, monkeypatch):
    monkeypatch.setenv("TZ", "IST-05:30")
    time.tzset()
    try:
        setup_logging("api", Settings(log_json=True, log_flush_ms=0))
        before = datetime.now(UTC)
        logger.info("now")
        (line,) = json_lines(capsys.readouterr().err)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    ts = datetime.fromisoformat(line["ts"])
    assert ts.utcoffset() == timedelta(0) and abs(ts - before) < timedelta(seconds=5)


def test_log_json_keeps_other_bound_fields_after_the_order_id_and_serialises_any_value(capsys):
    setup_logging("execution-worker", Settings(log_json=True, log_flush_ms=0))
    order_id = uuid.UUID("0a0a43c5-9398-47fc-bf36-7ee564f57b8b")
    order_logger(order_id).bind(venue="raydium", amount=Decimal("1.50"), attempt=2, at=datetime(2026, 1, 2)).info("x")
    logger.bind(orderId="direct").info("bound as orderId")
    first, second = json_lines(capsys.readouterr().err)
    assert list(first) == ["ts", "level", "service", "msg", "orderId", "venue", "amount", "attempt", "at"]
    assert first["orderId"] == str(order_id) and first["amount"] == "1.50" and first["attempt"] == 2
    assert first["at"].startswith("2026-01-02T00:00:00")
    assert second["orderId"] == "direct" and list(second) == ["ts", "level", "service", "msg", "orderId"]


def test_log_json_puts_the_traceback_inside_the_one_line(capsys):
    setup_logging("db-sync", Settings(log_json=True, log_flush_ms=0))
    try:
        raise KeyError("a bug")
    except KeyError:
        order_logger("abc").exception("sync failed")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    (line,) = json_lines(err)
    assert list(line) == ["ts", "level", "service", "msg", "orderId", "exception"] and line["level"] == "ERROR"
    assert line["exception"].startswith("Traceback") and "KeyError: 'a bug'" in line["exception"]


def test_log_json_escapes_newlines_and_keeps_non_ascii(capsys):
    setup_logging("api", Settings(log_json=True, log_flush_ms=0))
    logger.info('accepted 1 SOL → USDC\nsecond line {"not": "json"} <red>')
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "→" in err
    (line,) = json_lines(err)
    assert line["msg"] == 'accepted 1 SOL → USDC\nsecond line {"not": "json"} <red>'


def test_log_json_routes_stdlib_loggers_flat_with_the_service(capsys):
    setup_logging("api", Settings(log_json=True, log_flush_ms=0))
    logging.getLogger("uvicorn.error").warning("socket %s closed", 7)
    (line,) = json_lines(capsys.readouterr().err)
    assert list(line) == ["ts", "level", "service", "msg"]
    assert (line["level"], line["service"], line["msg"]) == ("WARNING", "api", "socket 7 closed")


def test_log_json_lines_are_batched_like_text_lines(capsys):
    setup_logging("api", Settings(log_json=True, log_flush_ms=60_000))
    order_logger("abc").info("first")
    assert capsys.readouterr().err == ""
    logger.warning("second")
    assert [line["msg"] for line in json_lines(capsys.readouterr().err)] == ["first", "second"]


def test_one_call_with_order_ids_writes_a_text_line_per_order(capsys):
    setup_logging("limit-worker", Settings(log_json=False, log_flush_ms=0))
    ids = [uuid.UUID(int=n) for n in (1, 2, 3)]
    logger.info("triggered {} order: handed to execution", "limit", order_ids=ids)
    lines = capsys.readouterr().err.strip("\n").split("\n")
    assert len(lines) == 3
    for line, order_id in zip(lines, ids, strict=True):
        assert "limit-worker" in line and f"orderId={order_id} " in line
        assert line.endswith("triggered limit order: handed to execution")


def test_one_call_with_order_ids_writes_a_json_line_per_order_shaped_as_a_bound_one(capsys):
    setup_logging("limit-worker", Settings(log_json=True, log_flush_ms=0))
    ids = [uuid.UUID(int=n) for n in (1, 2)]
    logger.info("triggered", order_ids=ids, price="101.5")
    order_logger(ids[0]).bind(price="101.5").info("triggered")
    first, second, bound = json_lines(capsys.readouterr().err)
    assert [first["orderId"], second["orderId"]] == [str(order_id) for order_id in ids]
    assert list(first) == list(bound) == ["ts", "level", "service", "msg", "orderId", "price"]
    assert {**first, "ts": None} == {**bound, "ts": None}
