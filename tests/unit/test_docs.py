"""The docs say what the code does: each page that describes a table in the code is checked against it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from shared import redis_keys
from shared.domain.lifecycle import TERMINAL, TRANSITIONS, OrderStatus
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: An order id standing for any: in partition 0, whose tag the page writes `{p<k>}` (shared/domain/partitions.py).
ANY_ORDER_ID = "00000000-0000-4000-8000-000000000000"
#: What each parameter of a key-building function stands for in docs/redis-keys.md.
KEY_PLACEHOLDERS = {
    "order_id": ANY_ORDER_ID,
    "partition": 0,
    "scope": "{scope}",
    "key": "{key}",
    "token_in": "{tokenIn}",
    "token_out": "{tokenOut}",
    "venue": "RAYDIUM",
    "dex": "{dex}",
    "base": "{base}",
    "quote": "{quote}",
    "pair": "{pair}",
    "bucket": "{bucket}",
    "tx_hash": "{txHash}",
    "event_id": "{eventId}",
    "trail_bps": "{trailBps}",
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
            if inspect.signature(value).return_annotation != "str":  # it reads a key, it does not name one
                continue
            parameters = inspect.signature(value).parameters
            key = value(**{p: KEY_PLACEHOLDERS[p] for p in parameters if p in KEY_PLACEHOLDERS})
            keys.append(key.replace(ANY_ORDER_ID, "{orderId}").replace("{p0}", "{p<k>}"))
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


#: The contract's WebSockets (served as plain ASGI, so not in the OpenAPI document).
WEBSOCKETS = ("/ws/orders/", "/api/orders/execute?orderId=", "/ws?userId=")


def test_the_http_collection_covers_the_contracts_websockets():
    sockets = re.findall(r"^WEBSOCKET \{\{ws\}\}(\S+)$", (DOCS / "engine.http").read_text(), re.M)
    for prefix in WEBSOCKETS:
        assert any(url.startswith(prefix) for url in sockets), prefix


def test_the_configuration_page_names_every_setting():
    first_cells = [line.split("|")[1] for line in (DOCS / "configuration.md").read_text().splitlines()
                   if line.startswith("| `")]  # fmt: skip
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", " ".join(first_cells)))
    missing = {name.upper() for name in Settings.model_fields} - documented
    assert not missing, f"docs/configuration.md's table lacks {sorted(missing)}"


# --- docs/contract.md, the public contract ---------------------------------------------------------------
def _contract() -> str:
    """The contract's served part (what is listed as planned, if anything, is not served yet)."""
    served, _, planned = (DOCS / "contract.md").read_text().partition("\n## Planned additions")
    return served + ("\n## " + planned.split("\n## ", 1)[1] if planned else "")


def _contract_section(title: str) -> str:
    return _contract().split(f"\n## {title}", 1)[1].split("\n## ", 1)[0]


def test_every_route_of_the_contract_is_served():
    from services.api.app import create_app

    app = create_app(Settings())
    pages = {route.path for route in app.routes if getattr(route, "path", None)}  # /, /docs: not in the schema
    operations = _openapi_operations()
    named = re.findall(r"`(GET|POST|DELETE) (/[^`\s]*)", _contract())
    assert len(named) >= 10, named
    for method, named_path in named:
        if any(named_path.startswith(socket) for socket in WEBSOCKETS):
            continue  # checked against docs/engine.http's WebSockets above
        path = named_path.split("?", 1)[0]  # an example's query string is not part of the route
        served = (method, _placeholders_blank(path)) in {(verb, _placeholders_blank(op)) for verb, op in operations}
        assert served or (method == "GET" and path in pages), f"{method} {path} is in the contract, not served"
    for socket in WEBSOCKETS:
        assert f"`{socket}" in _contract() or f"`GET {socket}" in _contract(), socket


def _placeholders_blank(path: str) -> str:
    """`/api/quotes/{tokenIn}-{tokenOut}` and `/api/quotes/{pair}` alike: `/api/quotes/{}`."""
    return re.sub(r"\{[^}]+\}(-\{[^}]+\})?", "{}", path)


def test_the_contracts_lifecycle_names_every_status_and_no_other():
    diagram = _contract_section("Order lifecycle").split("```", 2)[1]
    named = set(re.findall(r"[a-z]+", diagram)) - {"market", "limit", "sniper", "any", "non", "terminal"}
    assert named == {status.value for status in OrderStatus}


def test_the_contracts_settings_and_redis_keys_are_the_engines():
    venues = _contract_section("Mock venues")
    first_cells = [line.split("|")[1] for line in venues.splitlines() if line.startswith("| `")]
    settings = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", " ".join(first_cells)))
    assert settings and settings <= {name.upper() for name in Settings.model_fields}, settings
    keys = _contract_section("Redis keys shared between services")
    for venue in ("RAYDIUM", "METEORA", "BEST"):
        assert f"`{redis_keys.quotes('{tokenIn}', '{tokenOut}', venue)}`" in keys, venue


#: Markdown links and quoted paths that climb out of the repository: users have only the repository.
OUTSIDE = re.compile(r"\]\(\.\./|`\.\./|\.\./shared/")


def test_no_file_of_the_project_points_outside_the_repository():
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in files:
        path = ROOT / name
        if path.suffix in {".md", ".py", ".yaml", ".yml", ".toml", ".js", ".html", ".http", ""} and path.is_file():
            text = path.read_text(errors="replace")
            offenders += [f"{name}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not offenders, offenders


def test_every_file_the_pages_cite_exists():
    """The pages cite tests as proof and modules as homes; a renamed file must not leave a dangling citation."""
    cited = re.compile(r"(?<![\w/.-])((?:tests|shared|services|deploy|loadtests)/[\w/.-]*\w\.(?:py|md|yaml|yml|lua))")
    missing = {
        f"{page.relative_to(ROOT)}: {path}"
        for page in [ROOT / "README.md", *DOCS.glob("*.md")]
        for path in cited.findall(page.read_text())
        if not (ROOT / path).exists()
    }
    assert not missing, sorted(missing)
