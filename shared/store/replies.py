"""Redis replies as the store's clients get them.

redis-py types a reply as bytes or str (str when a client sets decode_responses) and a range as members or
(member, score) pairs; the store's clients never decode and never ask for scores. These narrow the types
by checking, so a client that did would fail here, loudly, instead of somewhere downstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: A hash as HGETALL returns it: bytes on the store's clients (redis-py's types also allow str).
RawHash = Mapping[bytes, bytes] | Mapping[bytes | str, bytes | str]


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def members(reply: Iterable[object]) -> list[str]:
    """The members of a range reply (without scores), as text."""
    return [text(_member(item)) for item in reply]


def raw_members(reply: Iterable[object]) -> list[bytes]:
    """The members of a list or range reply, as the bytes Redis holds."""
    out = []
    for item in reply:
        if not isinstance(item, bytes):
            raise TypeError(f"expected bytes from Redis, got {type(item).__name__}: a client with decode_responses?")
        out.append(item)
    return out


def _member(item: object) -> bytes | str:
    if not isinstance(item, (bytes, str)):
        raise TypeError(f"expected a member, got {item!r}: a range read with scores?")
    return item
