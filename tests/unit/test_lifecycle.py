import itertools

import pytest

from shared.domain.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    OrderStatus,
    can_transition,
    check_transition,
)

S = OrderStatus

LEGAL = {
    (S.PENDING, S.ROUTING),
    (S.PENDING, S.WAITING),
    (S.PENDING, S.FAILED),
    (S.WAITING, S.TRIGGERED),
    (S.WAITING, S.CANCELLED),
    (S.WAITING, S.EXPIRED),
    (S.WAITING, S.FAILED),
    (S.TRIGGERED, S.ROUTING),
    (S.TRIGGERED, S.FAILED),
    (S.ROUTING, S.BUILDING),
    (S.ROUTING, S.ROUTING),
    (S.ROUTING, S.FAILED),
    (S.BUILDING, S.SUBMITTED),
    (S.BUILDING, S.ROUTING),
    (S.BUILDING, S.FAILED),
    (S.SUBMITTED, S.CONFIRMED),
    (S.SUBMITTED, S.FAILED),
    (S.SUBMITTED, S.ROUTING),
}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(S, S)))
def test_every_pair_is_legal_exactly_when_the_contract_says(current, new):
    expected = (current, new) in LEGAL
    assert can_transition(current, new) is expected
    if expected:
        check_transition(current, new)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(current, new)


@pytest.mark.parametrize("new", list(S))
def test_an_order_can_only_begin_pending(new):
    assert can_transition(None, new) is (new is S.PENDING)


def test_terminal_states_have_no_way_out_and_every_state_is_in_the_table():
    assert set(TRANSITIONS) == set(S)
    assert {S.CONFIRMED, S.FAILED, S.CANCELLED, S.EXPIRED} == TERMINAL
    assert all(not TRANSITIONS[t] for t in TERMINAL)


def test_market_happy_path_is_legal():
    path = [S.PENDING, S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED]
    assert all(can_transition(a, b) for a, b in itertools.pairwise(path))
