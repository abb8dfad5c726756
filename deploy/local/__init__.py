"""Zero-install local mode: embedded Redis/PostgreSQL and the `make run` process supervisor."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: Every engine process: its name (in the log prefix, in `--only`, and as in compose.yaml) -> its module.
SERVICES: dict[str, str] = {
    "api": "services.api",
    "quote-stream": "services.quote_stream",
    "execution-worker": "services.execution_worker",
    "db-sync": "services.db_sync",
    "limit-worker": "services.limit_worker",
    "sniper-worker": "services.sniper_worker",
    # add new processes here and in compose.yaml
}

ROOT = Path(__file__).resolve().parents[2]
#: In the embedded Redis's folder while it runs: its URL, password included (mode 0600).
REDIS_URL_FILE = "redis.url"


def data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where `make run` keeps its embedded servers' data: DATA_DIR, else `.data/` in the project."""
    return Path(env.get("DATA_DIR") or ROOT / ".data").resolve()


def local_redis_url(env: Mapping[str, str] = os.environ) -> str | None:
    """The URL (password included) of the Redis a `make run` engine on this data dir started, while it runs:
    what CLI commands use when REDIS_URL is unset. Only the user who started it can read the file."""
    try:
        return (data_dir(env) / "redis" / REDIS_URL_FILE).read_text().strip() or None
    except OSError:
        return None
