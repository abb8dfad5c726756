from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from shared.domain.limits import (
    RestingLimit,
    bucket_floor,
    bucket_of,
    crossed_buckets,
    crosses,
    order_id_of,
    rest_member,
    tick_size,
    trigger_order,
)

D = Decimal


@pytest.mark.parametrize(
    ("pair", "tick"),
    [
        (("SOL", "USDC"), D("0.1")),
        (("USDC", "SOL"), D("0.000001")),
        (("BONK", "SOL"), D("1e-10")),
        (("JUP", "USDC"), D("0.0001")),
        (("USDC", "USDT"), D("0.001")),
    ],
)
def test_tick_is_a_power_of_ten_about_a_thousandth_of_the_price(pair, tick):
    assert tick_size(*pair) == tick


@pytest.mark.parametrize(
    ("price", "tick", "bucket"),
    [
        (D("150.27"), D("0.1"), 1502),
        (D("150.2"), D("0.1"), 1502),
        (D("150.1999"), D("0.1"), 1501),
        (D("0.0066667"), D("0.000001"), 6666),
        (D("0.1"), D("0.1"), 1),
    ],
)
def test_bucket_arithmetic(price, tick, bucket):
    assert bucket_of(price, tick) == bucket
    assert bucket_floor(bucket, tick) <= price < bucket_floor(bucket + 1, tick)


@pytest.mark.parametrize(
    ("best", "limit", "expected"),
    [
        (D("150"), D("149.9"), True),
        (D("150"), D("150"), True),
        (D("150"), D("150.0001"), False),
        # the other side: buying SOL with USDC sells USDC, priced in SOL per USDC
        (D("0.00670"), D("0.00666"), True),
        (D("0.00660"), D("0.00666"), False),
    ],
)
def test_an_order_crosses_when_best_reaches_its_limit(best, limit, expected):
    assert crosses(best, limit) is expected


def test_crossed_buckets_are_those_with_a_floor_at_or_below_the_price():
    floors = [(1503, D("150.3")), (1500, D("150.0")), (1501, D("150.1")), (1510, D("151.0"))]
    assert crossed_buckets(floors, D("150.15")) == [1500, 1501]
    assert crossed_buckets(floors, D("149")) == []


def test_trigger_order_is_best_price_then_oldest():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    old_high, new_low, old_low, never = (
        RestingLimit(uuid4(), D(p), start + timedelta(seconds=s))
        for p, s in (("150.1", 0), ("149.5", 5), ("149.5", 1), ("151", 0))
    )
    assert trigger_order([old_high, new_low, old_low, never], D("150.2")) == [old_low, new_low, old_high]


def test_rest_members_sort_by_time_and_carry_the_order_id():
    first, second = uuid4(), uuid4()
    earlier = rest_member(datetime(2026, 1, 1, tzinfo=UTC), second)
    later = rest_member(datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), first)
    assert earlier < later
    assert order_id_of(later) == first and order_id_of(earlier.encode()) == second
