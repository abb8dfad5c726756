"""Schemathesis throws generated requests, valid and invalid, at every operation of the API's own OpenAPI
document: no answer may be a 5xx, and every 4xx must carry the contract's error body.

The app is the real one, in-process with its lifespan, on the suite's real Redis and PostgreSQL. The
schema is taken from the same `create_app` without starting it, so collecting the tests needs no server.
The contract's routes are fuzzed with keys disabled (the default); the admin routes, which need an admin
key whatever the settings, against an app with keys enabled, with one.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from services.api.app import create_app
from shared.auth.api_keys import hash_key, new_secret
from shared.settings import Settings

#: Examples per operation and generation mode: about 20 s for the whole API on a small machine.
EXAMPLES_PER_OPERATION = 80

schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
schema.config.update(base_url="http://testserver")
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=EXAMPLES_PER_OPERATION,
)

#: Operations fuzzed against the keys-enabled app, with ADMIN_SECRET (configured by its hash, as in production).
ADMIN_PATHS = "^/api/admin/"
ADMIN_SECRET = new_secret()


@pytest.fixture(scope="module")
def fuzz_settings(redis_url, database_url):
    from redis import Redis
    from schemathesis.python import asgi

    Redis.from_url(redis_url).flushdb()
    yield Settings(
        redis_url=redis_url, database_url=database_url, sim_latency_scale=0, sim_failure_rate=0, sim_seed="fuzz"
    )
    asgi.shutdown_lifespans()  # schemathesis keeps each app's lifespan running until told


@pytest.fixture(scope="module")
def fuzzed_app(fuzz_settings):
    return create_app(fuzz_settings)


@pytest.fixture(scope="module")
def admin_app(fuzz_settings):
    configured = f"fuzz-admin:admin:{hash_key(ADMIN_SECRET)}"
    return create_app(fuzz_settings.model_copy(update={"auth_enabled": True, "api_keys": configured}))


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


def admin_key_accepted(ctx, response, case):
    """The admin routes were reached, not refused at the door: otherwise they would go unfuzzed."""
    assert response.status_code not in (401, 403), f"{case.method} {case.formatted_path}: {response.text}"


@schema.exclude(path_regex=ADMIN_PATHS).parametrize()
@hypothesis_settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_5xx_or_a_bare_error(case, fuzzed_app):
    case.call_and_validate(app=fuzzed_app, checks=[contract_answer])


@schema.include(path_regex=ADMIN_PATHS).parametrize()
@hypothesis_settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_no_admin_operation_answers_a_5xx_or_a_bare_error(case, admin_app):
    case.call_and_validate(
        app=admin_app, headers={"X-API-Key": ADMIN_SECRET}, checks=[contract_answer, admin_key_accepted]
    )
