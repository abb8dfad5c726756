"""API keys: who may place, read, cancel and stream which orders.

A key is shown once, when it is made; only its SHA-256 is ever stored (in settings or in Redis).
Keys are 256-bit random strings, so a plain hash is enough: there is nothing to brute-force that a slow
password hash would protect. An order placed with a key belongs to the key's public id (`key_id`), a
prefix of the hash that is safe to log, store on the order and show in history.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import orjson
from redis.asyncio import Redis

from shared import redis_keys

#: Every key starts with this, so a leaked one is easy to recognise (and to grep for in a repository).
KEY_PREFIX = "oek_"
#: Characters of the hash that make the public key id: 48 bits, unique among any realistic number of keys.
KEY_ID_LENGTH = 12
KEY_NAME_MAX = 64


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A known key, by its hash. `key_id` is what orders record as their owner."""

    key_hash: str
    name: str
    role: Role
    created_at: str | None = None

    @property
    def key_id(self) -> str:
        return key_id(self.key_hash)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def to_record(self) -> bytes:
        return orjson.dumps({"name": self.name, "role": self.role.value, "createdAt": self.created_at})

    def to_view(self) -> dict[str, str | None]:
        return {"keyId": self.key_id, "name": self.name, "role": self.role.value, "createdAt": self.created_at}


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id(key_hash: str) -> str:
    return key_hash[:KEY_ID_LENGTH]


def parse_configured(text: str) -> dict[str, ApiKey]:
    """Keys from settings: comma-separated `name:role:sha256hex` entries (role `user` or `admin`)."""
    keys: dict[str, ApiKey] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3:
            raise ValueError(f"API key entry {parts[0]!r}… must be name:role:sha256hex")
        name, role, key_hash = (part.strip() for part in parts)
        if not name or len(name) > KEY_NAME_MAX:
            raise ValueError("an API key name must be 1-64 characters")
        if role not in Role.__members__.values():
            raise ValueError(f"API key {name!r}: role must be user or admin, not {role!r}")
        if len(key_hash) != 64 or any(c not in "0123456789abcdef" for c in key_hash.lower()):
            raise ValueError(f"API key {name!r}: give the SHA-256 of the key (64 hex digits), never the key")
        keys[key_hash.lower()] = ApiKey(key_hash.lower(), name, Role(role))
    return keys


class KeyRing:
    """Configured keys (read-only) plus keys made at run time with the CLI, kept hashed in Redis."""

    def __init__(self, redis: Redis, configured: dict[str, ApiKey] | None = None) -> None:
        self.redis = redis
        self.configured = configured or {}

    async def find(self, secret: str) -> ApiKey | None:
        if not secret.startswith(KEY_PREFIX) or len(secret) > 128:
            return None
        # A lookup by hash, not a comparison with the secret: timing reveals nothing an attacker can use.
        key_hash = hash_key(secret)
        if key_hash in self.configured:
            return self.configured[key_hash]
        raw = await self.redis.hget(redis_keys.API_KEYS, key_hash)
        if raw is None:
            return None
        record = orjson.loads(raw)
        return ApiKey(key_hash, record["name"], Role(record["role"]), record.get("createdAt"))

    async def create(self, name: str, role: Role) -> tuple[str, ApiKey]:
        """A new key: (the secret, to show once; its record, which is all that is stored)."""
        if not 1 <= len(name) <= KEY_NAME_MAX or not name.isprintable():
            raise ValueError("a key name must be 1-64 printable characters")
        secret = new_secret()
        created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        key = ApiKey(hash_key(secret), name, role, created)
        await self.redis.hset(redis_keys.API_KEYS, key.key_hash, key.to_record())
        return secret, key

    async def list(self) -> list[ApiKey]:
        stored = await self.redis.hgetall(redis_keys.API_KEYS)
        keys = list(self.configured.values())
        for raw_hash, raw in stored.items():
            record = orjson.loads(raw)
            key_hash = raw_hash.decode() if isinstance(raw_hash, bytes) else raw_hash
            keys.append(ApiKey(key_hash, record["name"], Role(record["role"]), record.get("createdAt")))
        return sorted(keys, key=lambda key: (key.name, key.key_id))

    # builtins.list: inside the class body `list` is the method above.
    async def revoke(self, key_id_or_name: str) -> builtins.list[ApiKey]:
        """Remove run-time keys whose id or name matches; configured keys are removed from settings."""
        revoked = [key for key in await self.list() if key_id_or_name in (key.key_id, key.name)]
        stored = [key for key in revoked if key.key_hash not in self.configured]
        if stored:
            await self.redis.hdel(redis_keys.API_KEYS, *(key.key_hash for key in stored))
        return stored
