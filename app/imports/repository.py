"""Every SQL statement of imports and exports. Like app.repositories: never commits.

An import chunk lands in staging tables (COPY on PostgreSQL, one executemany on SQLite) and
is then stored by two set-based statements: the customer upsert, in email order as the batch
endpoint does (so an import beside live traffic locks customers in the same order and queues
instead of deadlocking), and the purchase insert joined to the customers by email. The SQL
reads app.models' tables (customer, purchase) directly, as the API's repository does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import asyncpg
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.columns import Money, UTCDateTime
from app.imports.models import ImportChunk
from app.models import Customer, Purchase

EXPORT_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class StagedPurchase:
    email: str
    item: str
    quantity: int
    unit_price: Decimal
    currency: str
    total: Decimal
    purchased_at: datetime


# The staging tables: temporary, so each connection has its own and nothing is left behind.
_staging = MetaData()
STAGED_CUSTOMER = Table(
    "import_customer",
    _staging,
    Column("email", String),
    Column("name", String),
    prefixes=["TEMPORARY"],
)
STAGED_PURCHASE = Table(
    "import_purchase",
    _staging,
    Column("position", Integer),
    Column("email", String),
    Column("item", String),
    Column("quantity", Integer),
    Column("unit_price", Money(12)),
    Column("currency", String),
    Column("total", Money(16)),
    Column("purchased_at", UTCDateTime()),
    prefixes=["TEMPORARY"],
)

_CREATE_STAGING_PG = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS import_customer (email text, name text)"
    " ON COMMIT DELETE ROWS",
    "CREATE TEMPORARY TABLE IF NOT EXISTS import_purchase (position integer, email text,"
    " item text, quantity integer, unit_price numeric(12, 2), currency text,"
    " total numeric(16, 2), purchased_at timestamptz) ON COMMIT DELETE ROWS",
)
_CREATE_STAGING_SQLITE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS import_customer (email TEXT, name TEXT)",
    "CREATE TEMPORARY TABLE IF NOT EXISTS import_purchase (position INTEGER, email TEXT,"
    " item TEXT, quantity INTEGER, unit_price INTEGER, currency TEXT, total INTEGER,"
    " purchased_at DATETIME)",
)

# Created or updated, told apart as the API tells them (app.repositories._upsert_statement).
_UPSERT_PG = """\
WITH upserted AS (
    INSERT INTO customer AS c (email, name, created_at, updated_at)
    SELECT email, name, $1::timestamptz, $1::timestamptz FROM import_customer ORDER BY email
    ON CONFLICT (email) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at
    RETURNING c.xmax = 0 AS created
)
SELECT count(*) FILTER (WHERE created) AS created, count(*) AS total FROM upserted"""
# SQLite cannot nest an INSERT in WITH; "WHERE true" tells its parser the ON CONFLICT is the
# upsert's, not a join's.
_UPSERT_SQLITE = text(
    """\
INSERT INTO customer (email, name, created_at, updated_at)
SELECT email, name, :now, :now FROM import_customer WHERE true ORDER BY email
ON CONFLICT (email) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at
RETURNING created_at = updated_at AS created"""
).bindparams(bindparam("now", type_=UTCDateTime()))
_INSERT_PURCHASES = """\
INSERT INTO purchase (customer_id, item, quantity, unit_price, currency, total, purchased_at)
SELECT c.id, s.item, s.quantity, s.unit_price, s.currency, s.total, s.purchased_at
FROM import_purchase AS s JOIN customer AS c ON c.email = s.email
ORDER BY s.position"""


class ImportRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self._staging_ready = False

    async def chunks_done(self, file_sha256: str) -> dict[int, int]:
        """The ledger of a file: chunk number -> chunk size it was cut with."""
        rows = await self.conn.execute(
            select(ImportChunk.chunk, ImportChunk.chunk_rows).where(
                ImportChunk.file_sha256 == file_sha256
            )
        )
        return {row.chunk: row.chunk_rows for row in rows}

    async def claim_chunk(
        self, *, file_sha256: str, chunk: int, chunk_rows: int, purchases: int, now: datetime
    ) -> bool:
        """Write the chunk's ledger row first in its transaction; False if it is there already.

        A concurrent run importing the same chunk waits here on PostgreSQL (the key's lock)
        until the other commits, then finds the row: each chunk is stored once either way.
        """
        insert_fn = postgresql.insert if self.postgres else sqlite.insert
        stmt = (
            insert_fn(ImportChunk)
            .values(
                file_sha256=file_sha256,
                chunk=chunk,
                chunk_rows=chunk_rows,
                purchases=purchases,
                imported_at=now,
            )
            .on_conflict_do_nothing()
            .returning(ImportChunk.chunk)
        )
        return (await self.conn.execute(stmt)).first() is not None

    async def store_chunk(
        self, people: dict[str, str], purchases: Sequence[StagedPurchase], *, now: datetime
    ) -> tuple[int, int]:
        """Upsert the chunk's customers (email -> name) and insert its purchases, in the
        caller's transaction; returns (customers created, customers updated)."""
        if self.postgres:
            return await self._store_pg(people, purchases, now)
        return await self._store_sqlite(people, purchases, now)

    async def _store_pg(
        self, people: dict[str, str], purchases: Sequence[StagedPurchase], now: datetime
    ) -> tuple[int, int]:
        driver = await self._driver()
        if not self._staging_ready:
            for statement in _CREATE_STAGING_PG:
                await driver.execute(statement)
            self._staging_ready = True
        await driver.copy_records_to_table(
            "import_customer", records=people.items(), columns=("email", "name")
        )
        await driver.copy_records_to_table(
            "import_purchase",
            records=[
                (n, p.email, p.item, p.quantity, p.unit_price, p.currency, p.total, p.purchased_at)
                for n, p in enumerate(purchases)
            ],
            columns=[column.name for column in STAGED_PURCHASE.columns],
        )
        counts = await driver.fetchrow(_UPSERT_PG, now)
        assert counts is not None
        await driver.execute(_INSERT_PURCHASES)
        created: int = counts["created"]
        return created, counts["total"] - created

    async def _store_sqlite(
        self, people: dict[str, str], purchases: Sequence[StagedPurchase], now: datetime
    ) -> tuple[int, int]:
        if not self._staging_ready:
            for statement in _CREATE_STAGING_SQLITE:
                await self.conn.exec_driver_sql(statement)
            self._staging_ready = True
        await self.conn.execute(
            insert(STAGED_CUSTOMER),
            [{"email": email, "name": name} for email, name in people.items()],
        )
        if purchases:
            await self.conn.execute(
                insert(STAGED_PURCHASE),
                [
                    {
                        "position": n,
                        "email": p.email,
                        "item": p.item,
                        "quantity": p.quantity,
                        "unit_price": p.unit_price,
                        "currency": p.currency,
                        "total": p.total,
                        "purchased_at": p.purchased_at,
                    }
                    for n, p in enumerate(purchases)
                ],
            )
        flags = (await self.conn.execute(_UPSERT_SQLITE, {"now": now})).scalars().all()
        await self.conn.exec_driver_sql(_INSERT_PURCHASES)
        await self.conn.exec_driver_sql("DELETE FROM import_customer")
        await self.conn.exec_driver_sql("DELETE FROM import_purchase")
        created = sum(1 for flag in flags if flag)
        return created, len(flags) - created

    async def _driver(self) -> asyncpg.Connection:
        raw = await self.conn.get_raw_connection()
        return cast(asyncpg.Connection, raw.driver_connection)


class ExportRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def purchases(
        self, *, since: datetime | None, until: datetime | None
    ) -> AsyncIterator[Sequence[Any]]:
        """Purchases in id order with their buyer, in batches from a server-side cursor."""
        query = (
            select(
                Customer.email,
                Customer.name,
                Purchase.item,
                Purchase.quantity,
                Purchase.unit_price,
                Purchase.currency,
                Purchase.purchased_at,
            )
            .join(Customer, Customer.id == Purchase.customer_id)
            .order_by(Purchase.id)
        )
        if since is not None:
            query = query.where(Purchase.purchased_at >= since)
        if until is not None:
            query = query.where(Purchase.purchased_at < until)
        async for batch in self._stream(query):
            yield batch

    async def customers(
        self, *, since: datetime | None, until: datetime | None
    ) -> AsyncIterator[Sequence[Any]]:
        """Customers in id order, by when they were first seen, from a server-side cursor."""
        query = select(
            Customer.email, Customer.name, Customer.created_at, Customer.updated_at
        ).order_by(Customer.id)
        if since is not None:
            query = query.where(Customer.created_at >= since)
        if until is not None:
            query = query.where(Customer.created_at < until)
        async for batch in self._stream(query):
            yield batch

    async def _stream(self, query: Any) -> AsyncIterator[Sequence[Any]]:
        result = await self.conn.stream(query.execution_options(yield_per=EXPORT_BATCH))
        async for batch in result.partitions():
            yield batch
