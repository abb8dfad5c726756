"""The fault suite's checker must be able to fail: hand-made histories, good and bad, judged without servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.faults.invariants import OrderHistory, PgSide, RedisSide, judge, judge_all

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MARKET = ["pending", "routing", "building", "submitted", "confirmed"]
TX = "tx-1"


def events(*statuses: str) -> list[dict]:
    return [{"seq": i, "status": s, "orderId": "o"} for i, s in enumerate(statuses, 1)]


def history(statuses=MARKET, *, executions=(TX,), pg="same", acknowledged=True, **redis_fields) -> OrderHistory:
    log = events(*statuses)
    side = RedisSide(
        status=statuses[-1],
        seq=len(log),
        events=log,
        order_type="market",
        tx_hash=TX if statuses[-1] == "confirmed" else None,
    )
    for name, value in redis_fields.items():
        setattr(side, name, value)
    pg_side = PgSide(side.status, side.seq, [dict(e) for e in log]) if pg == "same" else pg
    return OrderHistory("o", side, pg_side, list(executions), acknowledged)


def kinds(h: OrderHistory) -> list[str]:
    return sorted({v.kind for v in judge(h, NOW)})


def test_a_clean_confirmed_order_passes():
    assert kinds(history()) == []


def test_a_failed_order_that_never_executed_passes():
    assert kinds(history(["pending", "routing", "failed"], executions=())) == []


def test_two_executions_are_a_duplicate():
    assert "duplicated" in kinds(history(executions=(TX, "tx-2")))


def test_a_second_transaction_the_nonce_refused_is_a_duplicate_too():
    tried_twice = history()
    tried_twice.refused = ["tx-2"]
    assert kinds(tried_twice) == ["duplicated"]


def test_confirmed_without_an_execution_or_failed_after_one_are_caught():
    assert kinds(history(executions=())) == ["execution_mismatch"]
    assert kinds(history(executions=("tx-other",))) == ["execution_mismatch"]
    assert kinds(history(["pending", "routing", "building", "submitted", "failed"])) == ["execution_mismatch"]


@pytest.mark.parametrize(
    "log",
    [
        [{"seq": 1, "status": "pending"}, {"seq": 3, "status": "routing"}],  # a gap
        [{"seq": 1, "status": "pending"}, {"seq": 1, "status": "routing"}],  # a repeated seq
        events("pending", "building"),  # skips routing: illegal
        events("pending", "routing", "building", "submitted", "building"),  # rebuilt while submitted: illegal
        events("routing", "building"),  # does not begin as pending
    ],
)
def test_gaps_and_illegal_transitions_are_caught(log):
    h = history(MARKET, executions=())
    h.redis.events, h.redis.seq, h.redis.status, h.redis.tx_hash = log, len(log), log[-1]["status"], None
    h.pg = PgSide(h.redis.status, h.redis.seq, log)
    assert "gap" in kinds(h)


def test_a_hash_that_disagrees_with_its_own_log_is_a_gap():
    assert "gap" in kinds(history(seq=4))


def test_postgres_behind_or_different_is_a_mismatch():
    assert kinds(history(pg=None)) == ["mismatch"]
    assert kinds(history(pg=PgSide("submitted", 4, events(*MARKET[:4])))) == ["mismatch"]
    different = events(*MARKET)
    different[2]["dex"] = "meteora"
    assert kinds(history(pg=PgSide("confirmed", 5, different))) == ["mismatch"]


def test_a_non_terminal_order_is_stuck():
    assert kinds(history(["pending", "routing", "building"], executions=())) == ["stuck"]


def test_a_waiting_order_rests_legitimately_only_where_a_trigger_can_find_it_and_before_its_deadline():
    waiting = ["pending", "waiting"]
    assert kinds(history(waiting, executions=(), in_resting_place=True)) == []
    assert kinds(history(waiting, executions=(), in_resting_place=False)) == ["stuck"]
    overdue = NOW - timedelta(seconds=30)
    assert kinds(history(waiting, executions=(), in_resting_place=True, expires_at=overdue)) == ["stuck"]
    later = NOW + timedelta(seconds=30)
    assert kinds(history(waiting, executions=(), in_resting_place=True, expires_at=later)) == []


def test_an_acknowledged_order_missing_from_redis_is_lost():
    lost = OrderHistory("o", None, None, [], acknowledged=True)
    assert kinds(lost) == ["lost"]
    only_in_pg = OrderHistory("o", None, PgSide("pending", 1, events("pending")), [], acknowledged=False)
    assert kinds(only_in_pg) == ["lost"]


def test_the_verdict_counts_orders_per_kind_and_statuses():
    verdict = judge_all(
        {"a": history(), "b": history(executions=(TX, "tx-2")), "c": OrderHistory("c", None, None, [], True)}, NOW
    )
    assert not verdict.ok
    assert verdict.counts()["duplicated"] == 1
    assert verdict.counts()["lost"] == 1
    assert verdict.by_status == {"confirmed": 2, "missing": 1}
