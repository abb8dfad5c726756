"""Schemathesis throws generated requests, valid and invalid, at every operation of the API's own OpenAPI
document: no answer may be a 5xx, and every 4xx must carry the contract's error body.

The app is the real one, in-process with its lifespan, on the suite's real Redis and PostgreSQL. The
schema is taken from the same `create_app` without starting it, so collecting the tests needs no server.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from services.api.app import create_app
from shared.settings import Settings

#: Examples per operation and generation mode: about 20 s for the whole API on a small machine.
EXAMPLES_PER_OPERATION = 80

schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
schema.config.update(base_url="http://testserver")
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=EXAMPLES_PER_OPERATION,
)


@pytest.fixture(scope="module")
def fuzzed_app(redis_url, database_url):
    from redis import Redis
    from schemathesis.python import asgi

    Redis.from_url(redis_url).flushdb()
    settings = Settings(
        redis_url=redis_url, database_url=database_url, sim_latency_scale=0, sim_failure_rate=0, sim_seed="fuzz"
    )
    app = create_app(settings)
    yield app
    asgi.shutdown_lifespans()  # schemathesis keeps each app's lifespan running until told


def contract_answer(ctx, response, case):
    """No server error; a client error has the contract's body (and Retry-After where the contract says)."""
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return
    body = response.json()
    assert body["success"] is False, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["details"], list), body
    assert "Traceback" not in response.text
    if response.status_code in (429, 503):
        assert response.headers.get("Retry-After", "").isdigit(), response.headers


@schema.parametrize()
@hypothesis_settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_5xx_or_a_bare_error(case, fuzzed_app):
    case.call_and_validate(app=fuzzed_app, checks=[contract_answer])
