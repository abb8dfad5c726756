"""PostgreSQL's statement_timeout, set per connection when it is opened.

Set in the startup packet (libpq `options`), not with a SET after connecting: it holds for every statement
of every pooled connection, including the first, and costs no round trip. A statement over the limit fails
with `QueryCanceled` (SQLSTATE 57014), which the API answers as 503 and db-sync retries.

That limit is the server's to enforce: a server that does not answer at all (SIGSTOPped, a host that froze,
a network that drops packets) enforces nothing, and a history read waited for it for ever (more than 30 s
seen, the pooled connection and the request held meanwhile). So the API's reads also have a deadline of
their own, `client_deadline`: the statement timeout plus a margin, after which they give up (TimeoutError,
503). psycopg then tries to cancel the query for up to 10 s more before it drops the connection: one read
is bounded by about statement timeout + margin + 10 s, and the pool gets its connection back.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

#: An execution option of the API's engine (SQLAlchemy passes unknown ones through): its reads' deadline.
CLIENT_DEADLINE_OPTION = "engine_client_deadline_s"
#: How much longer than the statement timeout a read may take (connect, queue for the pool, transfer).
CLIENT_DEADLINE_MARGIN_S = 2.0
#: libpq `connect_timeout` of the API's connections: a server that does not answer the handshake.
CONNECT_TIMEOUT_S = 5


def statement_timeout(timeout_ms: int) -> dict[str, str]:
    """Connect arguments (psycopg) that limit every statement to `timeout_ms`; none for 0 (no limit)."""
    if timeout_ms <= 0:
        return {}
    return {"options": f"-c statement_timeout={int(timeout_ms)}"}


def client_deadline_options(timeout_ms: int) -> dict[str, float]:
    """Execution options that give an engine's reads a deadline (`client_deadline`); none for 0."""
    if timeout_ms <= 0:
        return {}
    return {CLIENT_DEADLINE_OPTION: timeout_ms / 1000 + CLIENT_DEADLINE_MARGIN_S}


def client_deadline(engine: Any) -> AbstractAsyncContextManager[Any]:
    """`async with client_deadline(engine):` around a read: TimeoutError past the engine's deadline, if it
    has one (`client_deadline_options`)."""
    deadline_s = engine.get_execution_options().get(CLIENT_DEADLINE_OPTION)
    return nullcontext() if deadline_s is None else asyncio.timeout(deadline_s)
