"""Alembic builds the schema on an empty database, matching the models exactly."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from app.core.engine import Base
from app.core.settings import PROJECT_ROOT
from tests.conftest import POSTGRES_ENV, postgres_required


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _create_or_drop(server_url: str, sql: str) -> None:
    dsn = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def blank_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'blank.db'}"
        return
    server_url = os.environ.get(POSTGRES_ENV)
    if not server_url:
        if postgres_required():
            pytest.fail(f"{POSTGRES_ENV} is not set but APP_REQUIRE_POSTGRES=1")
        pytest.skip(f"{POSTGRES_ENV} is not set")
    name = f"purchases_migrate_{os.getpid()}_{secrets.token_hex(3)}"
    _run(_create_or_drop(server_url, f'CREATE DATABASE "{name}"'))
    yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    _run(_create_or_drop(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def _inspect(database_url: str, probe: Any) -> Any:
    async def run() -> Any:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(probe)
        finally:
            await engine.dispose()

    return _run(run())


def _drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def test_upgrade_head_creates_every_table(blank_database: str) -> None:
    command.upgrade(alembic_config(blank_database), "head")

    tables = _inspect(blank_database, _tables)

    assert tables >= {"customer", "purchase", "idempotency_key", "api_key", "alembic_version"}


def test_migrations_and_models_do_not_drift(blank_database: str) -> None:
    command.upgrade(alembic_config(blank_database), "head")

    assert _inspect(blank_database, _drift) == []


def test_downgrade_to_base_removes_every_table(blank_database: str) -> None:
    config = alembic_config(blank_database)
    command.upgrade(config, "head")

    command.downgrade(config, "base")

    assert _inspect(blank_database, _tables) == {"alembic_version"}


def test_migrating_with_json_logs_writes_only_json_lines(blank_database: str) -> None:
    """The container's migrate step logs like the service, for the same log collector."""
    env = {**os.environ, "APP_LOG_FORMAT": "json", "APP_DATABASE_URL": blank_database}
    env.pop("APP_ADMIN_TOKEN", None)

    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=PROJECT_ROOT,
        env={**env, "APP_ENVIRONMENT": "prod"},  # and needs no token to migrate
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in (done.stdout + done.stderr).splitlines() if line]
    assert any(event["event"].startswith("Running upgrade") for event in events), events


def test_upgrading_keeps_stored_idempotency_keys_in_the_public_scope(
    blank_database: str,
) -> None:
    config = alembic_config(blank_database)
    command.upgrade(config, "efa5c7360353")
    _inspect(blank_database, _insert_key_before_scopes)

    command.upgrade(config, "head")

    rows = _inspect(blank_database, _keys)
    assert rows == [("public", "order-42", "h" * 64)]


def _insert_key_before_scopes(connection: Connection) -> None:
    connection.execute(
        text(
            "INSERT INTO idempotency_key (key, request_hash, created_at) "
            "VALUES ('order-42', :hash, CURRENT_TIMESTAMP)"
        ),
        {"hash": "h" * 64},
    )
    connection.commit()


def _keys(connection: Connection) -> list[tuple[str, str, str]]:
    rows = connection.execute(text("SELECT scope, key, request_hash FROM idempotency_key"))
    return [tuple(row) for row in rows]
