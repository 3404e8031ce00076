"""SQLite's errors, told apart: a lock another connection holds is worth a retry (503), every
other error is permanent (a 500 with nothing internal in it, and a traceback in the log)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractAsyncContextManager, closing
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import create_engine

from app.core.engine import Base
from app.core.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_problem, purchase, serving

URL = "/api/v1/purchases"


def serving_sqlite(url: str, **settings: Any) -> AbstractAsyncContextManager[AsyncClient]:
    """A client of the app on the SQLite database at `url`."""
    return serving(
        Settings(
            environment="test",
            database_url=url,
            admin_token=ADMIN_TOKEN,
            log_format="json",
            **settings,
        )
    )


@pytest.fixture
def database_file(tmp_path: Path) -> Path:
    """A SQLite file with the schema, in WAL mode as the app leaves it."""
    path = tmp_path / "app.core.db"
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
    return path


def logged_errors(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return [event for event in events if event["level"] == "error"]


async def test_a_database_locked_by_another_connection_is_a_503_with_retry_after(
    database_file: Path,
) -> None:
    writer = sqlite3.connect(database_file)
    try:
        writer.execute("BEGIN IMMEDIATE")
        async with serving_sqlite(
            f"sqlite+aiosqlite:///{database_file}", sqlite_busy_timeout_ms=50
        ) as c:
            response = await c.post(URL, json=purchase())
    finally:
        writer.rollback()
        writer.close()

    assert_problem(response, 503)
    assert int(response.headers["retry-after"]) > 0


async def test_a_read_only_database_is_a_500_logged_with_its_traceback(
    database_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    read_only = f"sqlite+aiosqlite:///file:{database_file}?mode=ro&uri=true"
    capsys.readouterr()
    async with serving_sqlite(read_only) as client:
        response = await client.post(URL, json=purchase())

    problem = assert_problem(response, 500)
    assert "readonly" not in response.text
    assert "sqlite" not in response.text.lower()
    assert "retry-after" not in response.headers
    (error,) = logged_errors(capsys)
    assert error["request_id"] == problem["request_id"]
    assert "attempt to write a readonly database" in error["exception"]


async def test_a_missing_table_is_a_500_not_a_503(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    async with serving_sqlite(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}") as client:
        response = await client.post(URL, json=purchase())

    assert_problem(response, 500)
    assert "purchase" not in response.json()["detail"]
    (error,) = logged_errors(capsys)
    assert "no such table" in error["exception"]
