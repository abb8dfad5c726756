"""The dashboard's page as the API renders it, and the Python half of the validation table the page's
JavaScript must also match (the JavaScript half runs in a real browser: tests/browser)."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from services.api.dashboard import PAGE_TEMPLATE, STATIC_DIR, STATIC_PREFIX, render_page
from services.api.dashboard.rules import dashboard_rules
from services.api.errors import from_validation
from shared.domain.orders import OrderRequest
from shared.settings import Settings
from tests.support.validation_cases import CASES

RULES_BLOCK = re.compile(rb'<script type="application/json" id="dashboard-rules">(.*?)</script>', re.S)


def api_code(body: dict) -> str | None:
    """The `error` code the API's 400 would carry for this body, None when it accepts it."""
    try:
        OrderRequest.model_validate(body)
    except ValidationError as exc:
        return from_validation(exc).code
    return None


@pytest.mark.parametrize(("name", "body", "code"), CASES, ids=[case[0] for case in CASES])
def test_the_api_answers_the_table(name, body, code):
    assert api_code(body) == code


def test_the_page_carries_the_rules_as_data():
    page = render_page(Settings(quote_pairs="SOL-USDC,JUP-USDC"))
    (block,) = RULES_BLOCK.findall(page)
    rules = json.loads(block)
    assert rules == dashboard_rules(Settings(quote_pairs="SOL-USDC,JUP-USDC"))
    assert rules["pairs"] == ["SOL-USDC", "JUP-USDC"] and rules["maxSlippageBps"] == 5000
    sol = next(token for token in rules["tokens"] if token["symbol"] == "SOL")
    assert sol == {
        "symbol": "SOL",
        "mint": sol["mint"],
        "decimals": 9,
        "maxOrderAmount": "100000",
        "listedAtGenesis": True,
    }


def test_no_setting_can_end_the_data_block_early():
    page = render_page(Settings(quote_pairs="A</script><script>alert(1)</script>-B&C"))
    (block,) = RULES_BLOCK.findall(page)
    assert b"<" not in block and b">" not in block and b"&" not in block
    assert "A</SCRIPT><SCRIPT>ALERT(1)</SCRIPT>" in json.loads(block)["pairs"][0]


def test_every_file_the_page_and_its_modules_load_exists():
    page = PAGE_TEMPLATE.read_text()
    wanted = re.findall(rf'(?:src|href)="{STATIC_PREFIX}/([^"]+)"', page)
    assert "js/main.js" in wanted and "style.css" in wanted
    for module in (STATIC_DIR / "js").glob("*.js"):
        wanted += [f"js/{name}" for name in re.findall(r'from "\./([^"]+)"', module.read_text())]
    missing = [path for path in wanted if not (STATIC_DIR / path).is_file()]
    assert not missing


def test_the_pages_domain_values_are_the_apis():
    """One source of truth: the page lists order types, statuses, terminal statuses, tokens and venues only as
    rules.py hands them over from shared/domain; its JavaScript spells no list of them."""
    from shared.domain import tokens
    from shared.domain.lifecycle import TERMINAL, OrderStatus
    from shared.domain.orders import OrderType

    rules = dashboard_rules(Settings())
    assert rules["orderTypes"] == [t.value for t in OrderType]
    assert rules["statuses"] == [s.value for s in OrderStatus]
    assert set(rules["terminal"]) == {s.value for s in TERMINAL}
    assert [t["symbol"] for t in rules["tokens"]] == list(tokens.TOKENS)
    values = {*rules["orderTypes"], *rules["statuses"], *(t["symbol"] for t in rules["tokens"])}
    quoted = "|".join(re.escape(json.dumps(value)) for value in sorted(values))
    spelled_list = re.compile(rf"\[\s*(?:{quoted})\s*,\s*(?:{quoted})")
    for script in sorted((STATIC_DIR / "js").glob("*.js")):
        assert not spelled_list.search(script.read_text()), f"{script.name} spells a list of domain values"


def test_each_types_fields_reach_the_page_from_the_api():
    """Which fields each type takes, in the order the API checks them, with the types named in its refusals
    and the trail's bounds: all from shared/domain, so a new type or field needs no JavaScript edit."""
    from shared.domain.conditional import MAX_TRAIL_BPS
    from shared.domain.order_types import PRICE_TRIGGERED_TYPES
    from shared.domain.orders import MAX_SLIPPAGE_BPS, TYPE_FIELDS, TYPED_FIELDS, OrderRequest, json_name, owners_of

    rules = dashboard_rules(Settings())
    assert rules["integerBounds"] == {
        "slippageBps": {"min": 0, "max": MAX_SLIPPAGE_BPS},
        "trailBps": {"min": 1, "max": MAX_TRAIL_BPS},
    }
    for order_type, fields in TYPE_FIELDS.items():
        own = rules["typeFields"][order_type.value]
        assert own["required"] == [json_name(name) for name in sorted(fields.required)]
        assert own["optional"] == [json_name(name) for name in sorted(fields.optional)]
    typed = rules["typedFields"]
    in_check_order = [name for name in OrderRequest.model_fields if name in TYPED_FIELDS]
    assert [field["name"] for field in typed] == [json_name(name) for name in in_check_order]
    assert [field["owners"] for field in typed] == [[t.value for t in owners_of(name)] for name in in_check_order]
    assert {field["name"]: field["kind"] for field in typed}["trailBps"] == "integer"
    assert set(rules["priceTriggeredTypes"]) == {t.value for t in PRICE_TRIGGERED_TYPES}


def test_the_form_has_an_input_and_an_error_slot_for_every_types_field():
    page = PAGE_TEMPLATE.read_text()
    for field in dashboard_rules(Settings())["typedFields"]:
        name = field["name"]
        assert f'data-type-field="{name}"' in page and f'data-for="{name}"' in page, name
        if field["kind"] != "trigger":  # the trigger is a kind and a threshold, not one input
            assert f'name="{name}"' in page, name
