import json
import logging
import sys

import pytest
from loguru import logger

from shared.logging import flush, order_logger, setup_logging
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


def test_log_json_gives_one_json_object_per_line(capsys):
    setup_logging("api", Settings(log_json=True))
    order_logger("abc").info("accepted")
    logger.info("no order here")
    flush()
    first, second = (json.loads(line) for line in capsys.readouterr().err.strip().splitlines())
    assert first["record"]["extra"]["service"] == "api" and first["record"]["extra"]["orderId"] == "abc"
    assert first["record"]["message"] == "accepted" and second["record"]["message"] == "no order here"
