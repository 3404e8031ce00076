"""The import tests' engine: the service's own, on each test's fresh SQLite or PostgreSQL
(directly or through PgBouncer)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from app.core.engine import create_engine
from app.core.settings import Settings


@pytest.fixture
def run(empty_database: str, database_pooler: str) -> CliRunner:
    """The console script in-process, on the test's database (through its pooler)."""
    return CliRunner(
        env={
            "APP_DATABASE_URL": empty_database,
            "APP_DATABASE_POOLER": database_pooler,
            "APP_ENVIRONMENT": "test",
        }
    )


@pytest.fixture
async def engine(empty_database: str, database_pooler: str) -> AsyncIterator[AsyncEngine]:
    """The service's own engine (SQLite's WAL and eager write locks included; through
    PgBouncer, with the pooler's settings)."""
    engine = create_engine(
        Settings(environment="test", database_url=empty_database, database_pooler=database_pooler)
    )
    yield engine
    await engine.dispose()
