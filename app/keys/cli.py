"""`purchase-capture keys ...`: create, list and revoke API keys from the command line.

Only parses arguments and calls the key services, as the HTTP API does. `create` prints the
secret alone on stdout (`KEY=$(purchase-capture keys create ...)`), everything else on stderr.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, TypeVar

import structlog
import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.cli import fail, load_settings
from app.core.engine import create_engine
from app.core.errors import AppError
from app.keys import service
from app.keys.repository import KeyRow
from app.keys.schemas import MAX_LIFETIME_DAYS, Scope

T = TypeVar("T")
_DURATION = re.compile(r"^(\d{1,5})([dh])$")

keys_cli = typer.Typer(
    help="Create, list and revoke API keys (uses the service's APP_* settings).",
    no_args_is_help=True,
)


def _run(call: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    # The services' log lines go to stderr: stdout carries only what the command prints.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

    async def run() -> T:
        engine = create_engine(load_settings())
        try:
            return await call(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except AppError as error:
        raise fail(error.detail) from None


def parse_duration(value: str) -> timedelta:
    """`90d` or `12h`: how long from now a new key works."""
    match = _DURATION.match(value.strip())
    if not match or int(match[1]) == 0:
        raise typer.BadParameter(f"expected a duration such as 90d or 12h, not {value!r}")
    amount, unit = int(match[1]), match[2]
    lifetime = timedelta(days=amount) if unit == "d" else timedelta(hours=amount)
    if lifetime > timedelta(days=MAX_LIFETIME_DAYS):
        raise typer.BadParameter(f"at most {MAX_LIFETIME_DAYS} days")
    return lifetime


def _line(row: KeyRow) -> str:
    state = "revoked" if row.revoked_at else "active"
    expires = row.expires_at.isoformat(timespec="seconds") if row.expires_at else "never"
    used = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "never"
    return (
        f"{row.id:>5}  {row.prefix:<13} {row.name[:24]:<24} {','.join(sorted(row.scopes)):<16} "
        f"{state:<8} expires {expires:<25} last used {used}"
    )


@keys_cli.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")],
    scopes: Annotated[
        list[Scope], typer.Option("--scope", help="read, write or admin; repeat for several.")
    ],
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 90d or 12h (default: none).")
    ] = None,
) -> None:
    """Create a key and print its secret, which is shown this once."""
    lifetime = parse_duration(expires) if expires else None
    name = name.strip()
    if not name or len(name) > 100:
        raise typer.BadParameter("the name must be 1 to 100 characters", param_hint="--name")

    async def call(engine: AsyncEngine) -> tuple[KeyRow, str]:
        return await service.create_key(
            engine, name=name, scopes=frozenset(scopes), lifetime=lifetime
        )

    row, secret = _run(call)
    typer.echo(secret)
    typer.echo(f"created: {_line(row)}", err=True)
    typer.echo("Store the secret now: it is not shown again.", err=True)


@keys_cli.command("list")
def list_() -> None:
    """List every key (never a secret), revoked ones too."""
    for row in _run(service.list_keys):
        typer.echo(_line(row))


@keys_cli.command("revoke")
def revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `keys list`).", min=1)],
) -> None:
    """Revoke a key; every running process refuses it within seconds."""

    async def call(engine: AsyncEngine) -> KeyRow:
        return await service.revoke_key(engine, key_id=key_id)

    typer.echo(f"revoked: {_line(_run(call))}", err=True)
