"""The docs say what the code does: each page that describes a table in the code is checked against it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from shared import redis_keys
from shared.domain.lifecycle import TERMINAL, TRANSITIONS
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: What each parameter of a key-building function stands for in docs/redis-keys.md.
KEY_PLACEHOLDERS = {
    "order_id": "{orderId}",
    "key": "{key}",
    "token_in": "{tokenIn}",
    "token_out": "{tokenOut}",
    "venue": "RAYDIUM",
    "pair": "{pair}",
    "bucket": "{bucket}",
    "tx_hash": "{txHash}",
    "event_id": "{eventId}",
}


def test_the_state_diagram_is_the_transition_table_edge_for_edge():
    text = (DOCS / "state-machine.md").read_text()
    diagram = text.split("```mermaid", 1)[1].split("```", 1)[0]
    edges = set(re.findall(r"^\s*(\S+)\s*-->\s*(\S+)\s*$", diagram, flags=re.MULTILINE))
    expected = {(current.value, new.value) for current, news in TRANSITIONS.items() for new in news}
    expected |= {("[*]", "pending")} | {(status.value, "[*]") for status in TERMINAL}
    assert edges == expected


def _documented_keys() -> list[str]:
    keys = []
    for name, value in vars(redis_keys).items():
        if name.isupper() and isinstance(value, str):
            keys.append(value)
        elif inspect.isfunction(value) and value.__module__ == redis_keys.__name__:
            parameters = inspect.signature(value).parameters
            keys.append(value(**{p: KEY_PLACEHOLDERS[p] for p in parameters if p in KEY_PLACEHOLDERS}))
    return keys


@pytest.mark.parametrize("key", _documented_keys())
def test_every_shared_redis_key_is_in_the_keys_page(key):
    assert key in (DOCS / "redis-keys.md").read_text(), f"docs/redis-keys.md does not mention {key!r}"


def _openapi_operations() -> list[tuple[str, str]]:
    from services.api.app import create_app

    paths = create_app(Settings()).openapi()["paths"]
    return [(method.upper(), path) for path, operations in paths.items() for method in operations]


@pytest.mark.parametrize(("method", "path"), _openapi_operations())
def test_the_http_collection_has_a_request_for_every_operation(method, path):
    requests = re.findall(r"^(GET|POST|PUT|PATCH|DELETE) \{\{base\}\}(\S+)$", (DOCS / "engine.http").read_text(), re.M)
    template = re.sub(r"\\\{[^}]+\\\}", r"[^/?]+", re.escape(path))
    pattern = re.compile(f"{template}(\\?.*)?")
    assert any(verb == method and pattern.fullmatch(url) for verb, url in requests), f"no {method} {path}"


def test_the_http_collection_covers_the_contracts_websockets():
    sockets = re.findall(r"^WEBSOCKET \{\{ws\}\}(\S+)$", (DOCS / "engine.http").read_text(), re.M)
    for prefix in ("/ws/orders/", "/api/orders/execute?orderId=", "/ws?userId="):
        assert any(url.startswith(prefix) for url in sockets), prefix


def test_the_readme_configuration_table_names_every_setting():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", " ".join(first_cells)))
    missing = {name.upper() for name in Settings.model_fields} - documented
    assert not missing, f"README's Configuration table lacks {sorted(missing)}"
