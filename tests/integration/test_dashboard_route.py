"""The dashboard's routes through the whole app (guard included): the page and its files need no API key,
every other route still does, and no odd request for them is ever a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from shared.auth.api_keys import hash_key, new_secret


@pytest.fixture(params=[False, True], ids=["keys-off", "keys-on"])
def client(request, settings, redis):
    secret = new_secret()
    app = create_app(
        settings.model_copy(update={"auth_enabled": request.param, "api_keys": f"desk:user:{hash_key(secret)}"})
    )
    with TestClient(app) as test_client:
        test_client.auth_enabled = request.param
        yield test_client


def test_the_page_is_served_without_a_key(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert '"authEnabled":' + ("true" if client.auth_enabled else "false") in response.text
    assert '<script type="module" src="/dashboard/js/main.js">' in response.text


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/dashboard/js/main.js", "javascript"),
        ("/dashboard/js/rules.js", "javascript"),
        ("/dashboard/style.css", "css"),
    ],
)
def test_its_files_are_served_without_a_key(client, path, content_type):
    response = client.get(path)
    assert response.status_code == 200 and content_type in response.headers["content-type"]
    assert client.head(path).status_code == 200


def test_keys_still_guard_the_data_the_page_reads(client):
    history = client.get("/api/orders")
    assert history.status_code == (401 if client.auth_enabled else 200)
    # Quotes are public market data, as before the dashboard.
    assert client.get("/api/quotes/SOL-USDC").status_code in (200, 404)


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/nope.js",
        "/dashboard/",
        "/dashboard",
        "/dashboard/../app.py",
        "/dashboard/%2e%2e/app.py",
        "/dashboard/js/../../__init__.py",
        "/dashboard/js/main.js%00.txt",
        "/dashboard/" + "a" * 300,
    ],
)
def test_anything_else_under_it_is_a_contract_404(client, path):
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert response.json()["success"] is False


def test_other_methods_on_the_page_are_refused_cleanly(client):
    for method in ("POST", "PUT", "DELETE"):
        response = client.request(method, "/")
        assert response.status_code == 405 and response.json()["success"] is False


def test_the_page_stays_out_of_the_api_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(path.startswith("/dashboard") for path in paths)
