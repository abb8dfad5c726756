"""Custom locust request types: what is not one HTTP request still gets a row (and percentiles) in the reports.

Locust keys its statistics by (request type, name). Every timing here goes through `record`, so the CSV's
`Type` column says what was measured and `Name` says of what:

- `ORDER`  end-to-end times of one order, e.g. "market submit→confirmed" (a failure: the order failed or
           timed out; its message says which);
- `OUTCOME` one row per way an order ended, e.g. "limit cancelled"; the count is the number of such orders,
           the response time how long the order lived;
- `WS`     one row per WebSocket measurement, e.g. "user feed lag" (per message: now − its `timestamp`).
"""

from __future__ import annotations

from locust import events

ORDER = "ORDER"
OUTCOME = "OUTCOME"
WS = "WS"


class OrderFailed(Exception):
    """The order ended `failed`, or in a state the scenario did not expect; the message says which."""


class OrderTimedOut(Exception):
    """No terminal event arrived in time."""


def record(request_type: str, name: str, ms: float, *, error: Exception | None = None, length: int = 0) -> None:
    events.request.fire(
        request_type=request_type,
        name=name,
        response_time=max(ms, 0.0),
        response_length=length,
        exception=error,
        context={},
    )
