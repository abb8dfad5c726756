"""`order-engine quotes [PAIR]`: the quote stream's cached per-venue and BEST quotes, through the API."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from services.cli.api_client import ApiClient, ApiKeyOption, ApiUrlOption, run_api_command
from services.cli.errors import CliError, ExitCode
from services.cli.output import JsonFlag, emit, print_table

QUOTE_COLUMNS = (
    ("PAIR", "pair"),
    ("VENUE", "venue"),
    ("PRICE", "price"),
    ("MID", "midPrice"),
    ("FEE", "fee"),
    ("LIQUIDITY", "liquidity"),
    ("AGE", "age"),
)


def configured_pairs() -> list[str]:
    """The pairs in QUOTE_PAIRS (the setting the quote stream reads; its default when unset)."""
    from pydantic import ValidationError

    from shared.settings import Settings  # pydantic-settings: only this command needs it

    try:
        return [f"{token_in}-{token_out}" for token_in, token_out in Settings().pairs]
    except ValidationError as exc:
        raise CliError(f"invalid settings: {exc}", ExitCode.USAGE, "usage") from None


def _age(quote: dict[str, Any]) -> str:
    age_ms = quote.get("ageMs")
    text = "-" if age_ms is None else f"{age_ms} ms" if age_ms < 10_000 else f"{age_ms / 1000:.0f} s"
    return text + (" (stale)" if str(quote.get("stale")) in ("1", "true", "True") else "")


def quote_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per venue, then BEST (naming the venue it came from)."""
    pair = body["pair"]
    rows = [{**quote, "pair": pair, "venue": venue, "age": _age(quote)} for venue, quote in body["venues"].items()]
    if best := body.get("best"):
        rows.append({**best, "pair": pair, "venue": f"BEST ({best.get('dex')})", "age": _age(best)})
    return rows


def quotes(
    pair: Annotated[
        str | None,
        typer.Argument(
            show_default=False, help="TOKEN_IN-TOKEN_OUT, e.g. SOL-USDC. Default: every pair in QUOTE_PAIRS."
        ),
    ] = None,
    api: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Cached quotes per venue and the BEST one, with their age (exit 3 when there are none yet)."""
    if pair is not None:

        def one(client: ApiClient) -> dict[str, Any]:
            quotes: dict[str, Any] = client.get(f"/api/quotes/{quote(pair, safe='')}", what=f"quotes for {pair}")
            return quotes

        emit(run_api_command(as_json, api, api_key, one), as_json, _print_one)
        return

    def every(client: ApiClient) -> dict[str, Any]:
        found, missing = [], []
        for name in configured_pairs():
            response = client.request("GET", f"/api/quotes/{name}", what=f"quotes for {name}", ok_statuses=(404,))
            if response.status_code == 404:
                body = response.json()
                missing.append({"pair": name, "error": body.get("error"), "message": body.get("message")})
            else:
                found.append(response.json())
        if not found:
            raise CliError(
                f"no quotes cached for any of {', '.join(m['pair'] for m in missing)}: is the quote stream running?",
                ExitCode.NOT_FOUND,
                "no_quotes",
            )
        return {"pairs": found, "missing": missing}

    emit(run_api_command(as_json, api, api_key, every), as_json, _print_every)


def _print_one(body: dict[str, Any]) -> None:
    print_table(quote_rows(body), QUOTE_COLUMNS)


def _print_every(data: dict[str, Any]) -> None:
    rows = [row for body in data["pairs"] for row in quote_rows(body)]
    rows += [{"pair": missing["pair"], "venue": "-", "price": "no quotes yet"} for missing in data["missing"]]
    print_table(rows, QUOTE_COLUMNS)
