"""Idempotency-Key namespaces: no key a client may send lands in another caller's namespace or the engine's."""

from __future__ import annotations

import string
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain import idempotency
from shared.domain.orders import idempotency_scope
from shared.execution.replay_policy import replay_key, replay_scope

#: What a client may send: 1-128 printable ASCII characters, not starting with the engine's prefix.
client_keys = st.text(alphabet=string.printable[:95], min_size=1, max_size=128).filter(
    lambda key: idempotency.client_key_problem(key) is None
)
owners = st.one_of(st.none(), st.from_regex(r"[0-9a-f]{12}", fullmatch=True))  # key ids: hash prefixes


@given(owners, client_keys, owners, client_keys)
def test_two_different_callers_or_keys_never_share_an_entry(owner_a, key_a, owner_b, key_b):
    if (owner_a, key_a) != (owner_b, key_b):
        assert idempotency_scope(owner_a, key_a) != idempotency_scope(owner_b, key_b)


@given(owners, client_keys)
def test_no_client_key_lands_in_the_engines_namespace(owner, key):
    assert not idempotency_scope(owner, key).startswith(idempotency.ENGINE)


def test_the_collision_of_the_old_layout_is_gone():
    assert idempotency_scope(None, "abc123def456/xyz") != idempotency_scope("abc123def456", "xyz")
    assert idempotency_scope(None, "xyz") == "c:xyz"
    assert idempotency_scope("abc123def456", "xyz") == "k:abc123def456:xyz"


def test_a_replay_is_remembered_in_the_engines_namespace_whoever_owned_the_order():
    order_id = uuid4()
    expected = f"e:replay:{order_id}"
    assert replay_scope(order_id) == expected
    assert idempotency_scope(None, replay_key(order_id)) == idempotency_scope("abc123def456", replay_key(order_id))
    assert idempotency_scope("abc123def456", replay_key(order_id)) == expected


@pytest.mark.parametrize("key", ["", "x" * 129, "tab\there", "é", "replay:123"])
def test_keys_clients_may_not_send(key):
    assert idempotency.client_key_problem(key) is not None


@pytest.mark.parametrize("owner", ["", "a:b"])
def test_an_owner_is_a_key_id(owner):
    with pytest.raises(ValueError):
        idempotency.scope(owner, "k")
