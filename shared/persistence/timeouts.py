"""PostgreSQL's statement_timeout, set per connection when it is opened.

Set in the startup packet (libpq `options`), not with a SET after connecting: it holds for every statement
of every pooled connection, including the first, and costs no round trip. A statement over the limit fails
with `QueryCanceled` (SQLSTATE 57014), which the API answers as 503 and db-sync retries.
"""

from __future__ import annotations


def statement_timeout(timeout_ms: int) -> dict[str, str]:
    """Connect arguments (psycopg) that limit every statement to `timeout_ms`; none for 0 (no limit)."""
    if timeout_ms <= 0:
        return {}
    return {"options": f"-c statement_timeout={int(timeout_ms)}"}
