"""Alembic environment: the SQLModel metadata of `shared.persistence.models`.

`shared.persistence.migrate.upgrade()` hands over an open connection (holding the advisory lock) in
`config.attributes["connection"]`; the alembic CLI instead gets `sqlalchemy.url` or DATABASE_URL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from shared.persistence.models import metadata
from shared.settings import Settings

config = context.config


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings().sqlalchemy_url


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = sa.create_engine(_url(), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
