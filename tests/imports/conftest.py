"""The import tests' engine: the service's own, on each test's fresh SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import create_engine
from app.settings import Settings


@pytest.fixture
async def engine(empty_database: str) -> AsyncIterator[AsyncEngine]:
    """The service's own engine (SQLite's WAL and eager write locks included)."""
    engine = create_engine(Settings(environment="test", database_url=empty_database))
    yield engine
    await engine.dispose()
