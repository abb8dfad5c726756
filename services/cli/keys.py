"""`order-engine keys`: API keys. A key's secret is printed once, when it is made, and stored only as its
SHA-256 (see shared/auth/api_keys.py); nothing here logs a secret."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from loguru import logger
from redis.asyncio import Redis

from services.cli.errors import CliError, ExitCode
from services.cli.output import JsonFlag, emit, fail, print_table
from services.cli.runtime import run_command
from shared.auth.api_keys import KEY_NAME_MAX, KEY_PREFIX, ApiKey, KeyRing, Role, hash_key, parse_configured
from shared.settings import Settings

app = typer.Typer(help="API keys: create, list, revoke, hash.", no_args_is_help=True)

AdminFlag = Annotated[bool, typer.Option("--admin", help="An admin key (admin routes, every order).")]
KEY_COLUMNS = (("KEY ID", "keyId"), ("NAME", "name"), ("ROLE", "role"), ("CREATED", "createdAt"), ("FROM", "source"))


def _key_ring(settings: Settings, redis: Redis) -> KeyRing:
    try:
        return KeyRing(redis, parse_configured(settings.api_keys))
    except ValueError as exc:
        raise CliError(f"API_KEYS: {exc}") from None


def _view(key: ApiKey, ring: KeyRing) -> dict[str, Any]:
    return {**key.to_view(), "source": "settings" if key.key_hash in ring.configured else "redis"}


@app.command()
def create(
    name: Annotated[str, typer.Argument(help=f"Who the key is for (1-{KEY_NAME_MAX} characters).")],
    admin: AdminFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Make a key. Its secret is printed once, on stdout; only its hash is stored."""
    role = Role.ADMIN if admin else Role.USER

    async def work(settings: Settings, redis: Redis) -> tuple[str, ApiKey]:
        try:
            return await _key_ring(settings, redis).create(name, role)
        except ValueError as exc:
            raise CliError(str(exc)) from None

    secret, key = run_command(as_json, work)
    logger.info("created {} API key {} ({})", role.value, key.key_id, key.name)
    if as_json:
        emit({**key.to_view(), "secret": secret}, True, typer.echo)
        return
    # The secret alone on stdout (KEY=$(order-engine keys create ci) works); the explanation on stderr.
    typer.echo(f"created {role.value} key {key.key_id} ({key.name}); store it now, it is shown only once:", err=True)
    typer.echo(secret)


@app.command("list")
def list_keys(as_json: JsonFlag = False) -> None:
    """Every key: made with this command (in Redis) and configured in API_KEYS. Never the secrets."""

    async def work(settings: Settings, redis: Redis) -> list[dict[str, Any]]:
        ring = _key_ring(settings, redis)
        return [_view(key, ring) for key in await ring.list()]

    emit(run_command(as_json, work), as_json, _print_keys)


def _print_keys(keys: list[dict[str, Any]]) -> None:
    if keys:
        print_table(keys, KEY_COLUMNS)
    else:
        typer.echo("no API keys")


@app.command()
def revoke(
    key_id_or_name: Annotated[str, typer.Argument(help="A key id (from `keys list`) or a key name.")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke keys made with this command, by id or name (configured keys are removed from API_KEYS)."""

    async def work(settings: Settings, redis: Redis) -> list[dict[str, Any]]:
        ring = _key_ring(settings, redis)
        revoked = await ring.revoke(key_id_or_name)
        if revoked:
            return [_view(key, ring) for key in revoked]
        if any(key_id_or_name in (key.key_id, key.name) for key in ring.configured.values()):
            raise CliError(f"{key_id_or_name!r} is configured in API_KEYS: remove it there and restart the API")
        raise CliError(f"no API key {key_id_or_name!r}", ExitCode.NOT_FOUND, "key_not_found")

    revoked = run_command(as_json, work)
    for key in revoked:
        logger.info("revoked API key {} ({})", key["keyId"], key["name"])
    emit(
        {"success": True, "revoked": revoked},
        as_json,
        lambda _: typer.echo("\n".join(f"revoked {key['keyId']} ({key['name']})" for key in revoked)),
    )


@app.command("hash")
def hash_command(
    name: Annotated[
        str | None, typer.Option(help="Print a whole API_KEYS entry (name:role:sha256) for this name.")
    ] = None,
    admin: AdminFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Read a key from stdin and print its SHA-256, for the API_KEYS setting (name:role:sha256hex)."""
    # A terminal gets a prompt that does not echo the key; a pipe is read as is.
    secret = (typer.prompt("API key", hide_input=True) if sys.stdin.isatty() else sys.stdin.read()).strip()
    if not secret.startswith(KEY_PREFIX):
        raise fail(CliError(f"that is not an order-engine key (they start with {KEY_PREFIX})"), as_json)
    if name is not None and not 1 <= len(name) <= KEY_NAME_MAX:
        raise typer.BadParameter(f"a key name must be 1-{KEY_NAME_MAX} characters", param_hint="--name")
    key_hash = hash_key(secret)
    entry = f"{name}:{Role.ADMIN.value if admin else Role.USER.value}:{key_hash}" if name else None
    emit({"sha256": key_hash, "entry": entry}, as_json, lambda data: typer.echo(data["entry"] or data["sha256"]))
