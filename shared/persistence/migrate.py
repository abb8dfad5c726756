"""Bring the history schema to the newest revision: `python -m shared.persistence.migrate`.

Safe to run from several processes at once (each service may run it at start): the upgrade happens
inside a transaction that holds a PostgreSQL advisory lock, so one process migrates and the others wait
for it and then find nothing to do. No alembic.ini is needed; the Config is built here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from loguru import logger

from shared.logging import setup_logging
from shared.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")
#: Arbitrary, fixed key of the advisory lock taken around every upgrade ("orderdb" in ASCII).
LOCK_KEY = 0x6F72646572_6462


def _sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the database at `database_url` to `revision`, serialised by an advisory lock."""
    engine = sa.create_engine(_sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def main() -> int:
    settings = Settings()
    setup_logging("migrate", settings)
    upgrade(settings.database_url)
    logger.info("database schema is at head")
    return 0


if __name__ == "__main__":
    sys.exit(main())
