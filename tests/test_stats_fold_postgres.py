"""The fold on PostgreSQL, where ids are handed out before their inserts commit: an id that
is visible does not mean that every smaller one is final. (SQLite's writers take turns.)"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.sales.models import Purchase
from app.stats import rollup
from tests.test_stats_rollup import EPOCH, _store

pytestmark = pytest.mark.postgres


ROW = {
    "customer_id": 1,
    "item": "thing",
    "quantity": 1,
    "unit_price": Decimal("1.00"),
    "currency": "EUR",
    "total": Decimal("1.00"),
    "purchased_at": EPOCH,
}


@pytest.fixture
def database_url(postgres_schema: str) -> str:
    return postgres_schema


async def test_the_fold_never_passes_an_insert_still_in_flight(db_engine: AsyncEngine) -> None:
    await _store(db_engine, [], customers=1)
    async with db_engine.connect() as slow:
        transaction = await slow.begin()
        await slow.execute(insert(Purchase).values(**ROW))  # id 1, not committed
        async with db_engine.begin() as fast:
            await fast.execute(insert(Purchase).values(**ROW))  # id 2, committed

        assert await rollup.fold(db_engine) is None  # would have skipped id 1 for good

        await transaction.commit()
    assert await rollup.fold(db_engine) == 2


async def test_a_fold_with_nothing_new_leaves_the_table_alone(db_engine: AsyncEngine) -> None:
    """Every round of every process would otherwise queue captures behind its lock."""
    await _store(db_engine, [], customers=1)
    async with db_engine.connect() as slow:
        transaction = await slow.begin()
        await slow.execute(insert(Purchase).values(**ROW))  # in flight, invisible

        assert await rollup.fold(db_engine) == 0  # not None: no lock was asked for

        await transaction.rollback()
