"""Database plumbing: SQLite's concurrency settings, and commits that fail loudly."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.settings import Settings
from app.main import create_app
from app.sales.models import IdempotencyKey
from tests.conftest import ADMIN_TOKEN
from tests.helpers import (
    assert_problem,
    purchase,
    read_rows,
    stored_customers,
    stored_purchases,
)


@pytest.fixture
def sqlite_settings(tmp_path: object) -> Settings:
    return Settings(environment="test", database_url=f"sqlite+aiosqlite:///{tmp_path}/wal.db")


async def test_sqlite_connections_use_wal_and_a_busy_timeout(sqlite_settings: Settings) -> None:
    app = create_app(sqlite_settings)
    async with app.router.lifespan_context(app), app.state.database.engine.connect() as connection:
        journal = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
        timeout = (await connection.execute(text("PRAGMA busy_timeout"))).scalar()

    assert journal == "wal"
    assert timeout == sqlite_settings.sqlite_busy_timeout_ms


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """This module's tests that take `client` are about SQLite."""
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


async def test_sqlite_reads_are_not_queued_behind_a_writer(
    client: AsyncClient, auth: dict[str, str], database_url: str
) -> None:
    """WAL lets a reader see the last commit while another connection writes; a read that
    took the write lock would wait out the busy timeout and answer 503."""
    assert (await client.post("/api/v1/purchases", json=purchase())).status_code == 201
    writer = sqlite3.connect(database_url.removeprefix("sqlite+aiosqlite:///"))
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM purchase")
        response = await client.get("/api/v1/purchases", headers=auth)
    finally:
        writer.rollback()
        writer.close()

    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 1


@pytest.fixture
async def failing_commit_app(postgres_schema: str) -> AsyncIterator[FastAPI]:
    """PostgreSQL with a deferred trigger that rejects every purchase at COMMIT time."""
    engine = create_async_engine(postgres_schema)
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE customer, purchase, idempotency_key CASCADE"))
        await connection.execute(
            text(
                "CREATE FUNCTION reject_at_commit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'rejected at commit'; END $$"
            )
        )
        await connection.execute(
            text(
                "CREATE CONSTRAINT TRIGGER reject_at_commit AFTER INSERT ON purchase "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION reject_at_commit()"
            )
        )
    settings = Settings(environment="test", database_url=postgres_schema, admin_token=ADMIN_TOKEN)
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            yield app
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER reject_at_commit ON purchase"))
            await connection.execute(text("DROP FUNCTION reject_at_commit()"))
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "headers",
    [
        # With a key the capture is a transaction: its statements succeed, its COMMIT fails.
        pytest.param({"Idempotency-Key": "commit-fails"}, id="commit"),
        # Without one it is one self-committing statement, failing at its implicit commit.
        pytest.param({}, id="one-statement"),
    ],
)
async def test_failed_commit_is_an_error_not_a_success(
    failing_commit_app: FastAPI, postgres_schema: str, headers: dict[str, str]
) -> None:
    transport = ASGITransport(app=failing_commit_app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/api/v1/purchases", json=purchase(), headers=headers)

    assert_problem(response, 500)
    engine = create_async_engine(postgres_schema)
    try:
        assert await stored_purchases(engine) == []
        assert await stored_customers(engine) == []
        assert await read_rows(engine, select(IdempotencyKey.key)) == []
    finally:
        await engine.dispose()
