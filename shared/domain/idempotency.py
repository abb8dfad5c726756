"""Idempotency-Keys as the engine remembers them: one namespace per kind of key, so that no key a client may
send can ever name an entry of another namespace (another API key's, or the engine's own).

A remembered key is `idem:<scope>` (shared/redis_keys.py), where the scope is
- `c:<key>`          a client's key sent without an API key (AUTH_ENABLED off: every caller is anonymous);
- `k:<keyId>:<key>`  a client's key sent with an API key (`keyId`: 12 hex digits, never a `:`);
- `e:<key>`          the engine's own keys: a dead-letter replay is created under `replay:<orderId>`.

Every scope starts with its namespace's tag, and inside `k:` the owner ends at the first `:`, so two
different (namespace, owner, key) triples never give the same scope whatever the key holds. What keeps a
client out of `e:` is that the API (and the CLI, before sending) refuse client keys starting `replay:`.

Until this layout, scopes were `<key>` and `<keyId>/<key>`: an anonymous client's `abc/xyz` was the same
entry as key `abc`'s `xyz`. Entries in the old layout are not read any more and expire after
IDEMPOTENCY_TTL_S (24 h by default); a client retrying, across the upgrade, a request first sent before it
gets a new order instead of the first one's id.
"""

from __future__ import annotations

ANONYMOUS = "c:"
KEYED = "k:"
ENGINE = "e:"
#: Idempotency-Keys starting with this are the engine's (shared/execution/replay_policy.py): clients get 400.
RESERVED_PREFIX = "replay:"
MAX_LENGTH = 128


def client_key_problem(key: str) -> str | None:
    """Why a client may not send `key` as its Idempotency-Key (the text of a 400), or None when it may."""
    if not 1 <= len(key) <= MAX_LENGTH or not key.isprintable() or not key.isascii():
        return f"Idempotency-Key must be 1-{MAX_LENGTH} printable ASCII characters"
    if key.startswith(RESERVED_PREFIX):
        return f"Idempotency-Keys starting {RESERVED_PREFIX!r} are reserved"
    return None


def scope(owner: str | None, key: str) -> str:
    """The key as remembered, for an order placed by `owner` (an API key's id; None without keys)."""
    if key.startswith(RESERVED_PREFIX):
        # Unique by itself (it names an order id), and the same whoever replays: not per owner.
        return ENGINE + key
    if owner is None:
        return ANONYMOUS + key
    if not owner or ":" in owner:
        raise ValueError(f"an order owner is an API key id, not {owner!r}")
    return f"{KEYED}{owner}:{key}"
