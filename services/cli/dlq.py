"""`order-engine dlq`: the execution queue's dead letters (what a replay does: shared/execution/dead_letters.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from redis.asyncio import Redis

from services.cli.errors import CliError, ExitCode
from services.cli.output import JsonFlag, emit, print_table
from services.cli.parsing import parse_duration_s
from services.cli.runtime import run_command
from shared.execution.dead_letters import (
    DEFAULT_LIST_LIMIT,
    DEFAULT_REPLAY_BATCH,
    MAX_BATCH,
    DeadLetterNotFound,
    DeadLetters,
    ReplayContended,
)
from shared.execution.replay_policy import NotReplayable, ReplayAction
from shared.settings import Settings
from shared.store.order_store import OrderStore
from shared.venues.ledger import RedisLedger

T = TypeVar("T")

app = typer.Typer(help="Dead-lettered orders: list, show, replay, purge.", no_args_is_help=True)

LIST_COLUMNS = (
    ("ORDER ID", "orderId"),
    ("DEAD-LETTERED AT", "deadLetteredAt"),
    ("ATTEMPTS", "attempts"),
    ("STATUS", "status"),
    ("TYPE", "type"),
    ("PAIR", "pair"),
    ("LAST ERROR", "lastError"),
)

OrderIdArgument = Annotated[UUID, typer.Argument(help="The dead-lettered order's id.", show_default=False)]


def _run(as_json: bool, work: Callable[[DeadLetters], Awaitable[T]]) -> T:
    async def with_dead_letters(settings: Settings, redis: Redis) -> T:
        store = OrderStore.from_settings(redis, settings)
        try:
            return await work(DeadLetters(redis, store, RedisLedger(redis)))
        except DeadLetterNotFound as exc:
            raise CliError(str(exc), ExitCode.NOT_FOUND, "dead_letter_not_found") from None
        except NotReplayable as exc:
            raise CliError(f"not replayed ({exc.code}): {exc.message}", ExitCode.FAILED, exc.code) from None
        except ReplayContended as exc:
            raise CliError(str(exc), ExitCode.FAILED, "contended") from None

    return run_command(as_json, with_dead_letters)


@app.command("list")
def list_dead_letters(
    limit: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="How many, newest first.")] = DEFAULT_LIST_LIMIT,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters, newest first: order, when, attempts, the order's status, type, pair and last error."""

    async def work(dead_letters: DeadLetters) -> dict[str, Any]:
        return {"deadLetters": await dead_letters.list(limit), "total": await dead_letters.count()}

    emit(_run(as_json, work), as_json, _print_list)


def _print_list(data: dict[str, Any]) -> None:
    rows = data["deadLetters"]
    if not rows:
        typer.echo("no dead letters")
        return
    print_table(rows, LIST_COLUMNS)
    if data["total"] > len(rows):
        typer.echo(f"({len(rows)} of {data['total']}; --limit shows more)")


@app.command()
def show(order_id: OrderIdArgument, as_json: JsonFlag = False) -> None:
    """One order's dead letters (whole messages), its current state, every event, and its last replay."""

    async def work(dead_letters: DeadLetters) -> dict[str, Any]:
        return await dead_letters.show(order_id)

    emit(_run(as_json, work), as_json, _print_show)


def _print_show(data: dict[str, Any]) -> None:
    order = data["order"]
    if order:
        typer.echo(
            f"order {data['orderId']}: {order['status']} {order['type']} {order['amount']} "
            f"{order['tokenIn']} → {order['tokenOut']}"
        )
    else:
        typer.echo(f"order {data['orderId']}: no longer in Redis (see the order history)")
    for letter in data["deadLetters"]:
        typer.echo(
            f"dead letter {letter['messageId']}: {letter['deadLetteredAt']}, {letter['attempts']} attempts, "
            f"last error: {letter['lastError'] or '-'}"
        )
    if data["events"]:
        typer.echo("events:")
        rows = [{**event, "error": event.get("errorMessage") or event.get("error")} for event in data["events"]]
        print_table(
            rows,
            (("SEQ", "seq"), ("STATUS", "status"), ("AT", "timestamp"), ("ATTEMPT", "attempt"), ("ERROR", "error")),
        )
    if data["lastReplay"]:
        typer.echo(_replay_sentence(data["lastReplay"]))


@app.command()
def replay(
    order_id: Annotated[UUID | None, typer.Argument(help="The order to replay.", show_default=False)] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay the oldest dead letters instead.")] = False,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_BATCH, help="With --all: at most this many dead letters.")
    ] = DEFAULT_REPLAY_BATCH,
    as_json: JsonFlag = False,
) -> None:
    """Replay an order's dead letter, or the oldest ones (--all). Idempotent.

    A failed order comes back as a new order with the same request; an unfinished one is resumed; a finished
    one is only removed from the dead letters. Replaying twice changes nothing the second time."""
    if (order_id is None) == (not replay_all):
        raise typer.BadParameter("give an ORDER_ID or --all (not both)")
    if order_id is not None:

        async def one(dead_letters: DeadLetters) -> dict[str, Any]:
            return {"success": True, **(await dead_letters.replay(order_id)).to_view()}

        emit(_run(as_json, one), as_json, lambda result: typer.echo(_replay_sentence(result)))
        return

    async def batch(dead_letters: DeadLetters) -> list[dict[str, Any]]:
        return [item.to_view() for item in await dead_letters.replay_all(limit)]

    items = _run(as_json, batch)
    emit(items, as_json, _print_batch)
    if any(not item["success"] for item in items):
        raise typer.Exit(int(ExitCode.FAILED))


def _replay_sentence(result: dict[str, Any]) -> str:
    order_id, action = result["orderId"], ReplayAction(result["action"])
    if action is ReplayAction.RECREATE:
        sentence = f"order {order_id} failed; replayed as new order {result['newOrderId']}"
    elif action is ReplayAction.REQUEUE:
        sentence = f"order {order_id} re-enqueued; the execution worker resumes it"
    else:
        sentence = f"order {order_id} had already ended; its dead letter was removed, nothing re-run"
    if result.get("alreadyReplayed"):
        sentence += f" (already replayed at {result['replayedAt']}; nothing changed now)"
    return sentence


def _print_batch(items: list[dict[str, Any]]) -> None:
    if not items:
        typer.echo("no dead letters")
        return
    for item in items:
        if item["success"]:
            typer.echo(_replay_sentence(item))
        else:
            typer.echo(f"order {item['orderId'] or '?'} not replayed ({item['error']}): {item['message']}")


@app.command()
def purge(
    order_id: Annotated[UUID | None, typer.Argument(help="Drop this order's dead letters.", show_default=False)] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Drop every dead letter older than this (90s, 15m, 24h, 7d).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Drop dead letters without replaying them: one order's, or every one older than a duration."""
    if (order_id is None) == (older_than is None):
        raise typer.BadParameter("give an ORDER_ID or --older-than (not both)")
    age_s = parse_duration_s(older_than) if older_than is not None else None

    async def work(dead_letters: DeadLetters) -> dict[str, Any]:
        if order_id is not None:
            return {"success": True, "orderId": str(order_id), "purged": await dead_letters.purge_order(order_id)}
        assert age_s is not None  # no ORDER_ID, so --older-than was given
        return {"success": True, "purged": await dead_letters.purge_older_than(age_s)}

    emit(_run(as_json, work), as_json, lambda result: typer.echo(f"purged {result['purged']} dead letters"))
