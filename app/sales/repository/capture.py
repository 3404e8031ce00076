"""The SQL of a capture, one purchase or a batch: the customer upsert and the purchase insert,
on PostgreSQL without an Idempotency-Key as one self-committing statement (CAPTURE_*_PG)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, insert, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.db import fetch_all_autocommit, fetch_row_autocommit
from app.sales.models import Customer, Purchase
from app.sales.repository.rows import CUSTOMER_COLUMNS, CustomerRow, customer_row, dialect_of


@dataclass(frozen=True, slots=True)
class UpsertedCustomer:
    customer: CustomerRow
    created: bool


@dataclass(frozen=True, slots=True)
class NewPurchase:
    customer_id: int
    item: str
    quantity: int
    unit_price: Decimal
    currency: str
    purchased_at: datetime


@dataclass(frozen=True, slots=True)
class Order:
    """One purchase of a batch, before it is stored: the buyer is known by email only."""

    email: str
    item: str
    quantity: int
    unit_price: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class StoredPurchase:
    """What one capture wrote: the customer as upserted, and the new purchase's id and total."""

    customer: UpsertedCustomer
    purchase_id: int
    total: Decimal


def _upserted(record: asyncpg.Record) -> UpsertedCustomer:
    """The customer columns of a CAPTURE_*_PG row (asyncpg's records are read by key)."""
    customer = CustomerRow(
        record["id"], record["email"], record["name"], record["created_at"], record["updated_at"]
    )
    return UpsertedCustomer(customer, record["created"])


@cache
def _upsert_statement(dialect: str) -> Any:
    """The customer upsert, built once per dialect (building it costs more than running it)."""
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Customer)
    created: ColumnElement[bool]
    if dialect == "postgresql":
        # xmax is 0 only on a row version this statement inserted.
        created = literal_column("customer.xmax = 0").label("created")
    else:
        # SQLite: an updated row keeps its created_at and gets this request's updated_at.
        created = (Customer.created_at == Customer.updated_at).label("created")
    return stmt.on_conflict_do_update(
        index_elements=[Customer.email],
        set_={"name": stmt.excluded.name, "updated_at": stmt.excluded.updated_at},
    ).returning(*CUSTOMER_COLUMNS, created)


# A key-less capture on PostgreSQL, as one self-committing statement: the customer upsert of
# `_upsert_statement` feeds the purchase insert of `_INSERT_ONE_PURCHASE`. One round trip instead
# of four (BEGIN, upsert, insert, COMMIT), and atomic all the same. SQLite cannot nest an INSERT
# in WITH, so it runs the two statements in a transaction.
CAPTURE_ONE_PG = """\
WITH upserted AS (
    INSERT INTO customer AS c (email, name, created_at, updated_at)
    VALUES ($1::varchar, $2::varchar, $3::timestamptz, $3::timestamptz)
    ON CONFLICT (email) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at
    RETURNING c.id, c.email, c.name, c.created_at, c.updated_at, c.xmax = 0 AS created
), inserted AS (
    INSERT INTO purchase (customer_id, item, quantity, unit_price, currency, total, purchased_at)
    SELECT id, $4::varchar, $5::integer, $6::numeric, $7::varchar, $8::numeric, $3::timestamptz
    FROM upserted
    RETURNING id, total
)
SELECT upserted.*, inserted.id AS purchase_id, inserted.total FROM upserted, inserted"""

# A batch on PostgreSQL, also as one self-committing statement, with every column passed as
# one array (a fixed statement that asyncpg prepares once, whatever the batch size):
# - customers are upserted in email order, so batches sharing customers lock them in the same
#   order and queue instead of deadlocking;
# - purchase ids are drawn first (`numbered` is materialised: it is read twice), so each id is
#   returned beside the position of its purchase in the request.
CAPTURE_MANY_PG = """\
WITH upserted AS (
    INSERT INTO customer AS c (email, name, created_at, updated_at)
    SELECT email, name, $3::timestamptz, $3::timestamptz
    FROM unnest($1::varchar[], $2::varchar[]) AS people(email, name)
    ORDER BY email
    ON CONFLICT (email) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at
    RETURNING c.id, c.email, c.name, c.created_at, c.updated_at, c.xmax = 0 AS created
), numbered AS MATERIALIZED (
    SELECT nextval('purchase_id_seq') AS id, p.*
    FROM unnest(
        $4::varchar[], $5::varchar[], $6::integer[], $7::numeric[], $8::varchar[], $9::numeric[]
    ) WITH ORDINALITY AS p(email, item, quantity, unit_price, currency, total, position)
), inserted AS (
    INSERT INTO purchase
        (id, customer_id, item, quantity, unit_price, currency, total, purchased_at)
    SELECT n.id, u.id, n.item, n.quantity, n.unit_price, n.currency, n.total, $3::timestamptz
    FROM numbered AS n JOIN upserted AS u ON u.email = n.email
    ORDER BY n.position
)
SELECT u.*, n.id AS purchase_id, n.total
FROM numbered AS n JOIN upserted AS u ON u.email = n.email
ORDER BY n.position"""

_INSERT_ONE_PURCHASE = insert(Purchase).returning(Purchase.id, Purchase.total)
_INSERT_PURCHASES = insert(Purchase).returning(
    Purchase.id, Purchase.total, sort_by_parameter_order=True
)


class CaptureRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def upsert(self, *, email: str, name: str, now: datetime) -> UpsertedCustomer:
        """Insert the customer, or rename the existing one: one statement, race-free."""
        row = (
            await self.conn.execute(
                _upsert_statement(dialect_of(self.conn)),
                {"email": email, "name": name, "created_at": now, "updated_at": now},
            )
        ).one()
        return UpsertedCustomer(customer_row(row), bool(row.created))

    async def upsert_many(
        self, people: dict[str, str], *, now: datetime
    ) -> dict[str, UpsertedCustomer]:
        """Upsert distinct emails (email -> name) in set-based statements.

        Rows are written in email order: two batches that share customers then lock them in
        the same order and queue behind each other instead of deadlocking.
        """
        params = [
            {"email": email, "name": name, "created_at": now, "updated_at": now}
            for email, name in sorted(people.items())
        ]
        rows = (await self.conn.execute(_upsert_statement(dialect_of(self.conn)), params)).all()
        return {row.email: UpsertedCustomer(customer_row(row), bool(row.created)) for row in rows}

    async def capture_autocommit(
        self,
        *,
        email: str,
        name: str,
        item: str,
        quantity: int,
        unit_price: Decimal,
        currency: str,
        now: datetime,
    ) -> StoredPurchase:
        """PostgreSQL only: upsert the customer and insert the purchase in one statement that
        commits on its own (the connection must not be in a transaction)."""
        total = unit_price * quantity
        row = await fetch_row_autocommit(
            self.conn, CAPTURE_ONE_PG, email, name, now, item, quantity, unit_price, currency, total
        )
        assert row is not None  # an upsert returns its row, inserted or updated
        return StoredPurchase(_upserted(row), row["purchase_id"], row["total"])

    async def capture_many_autocommit(
        self, people: dict[str, str], orders: Sequence[Order], *, now: datetime
    ) -> list[StoredPurchase]:
        """PostgreSQL only: upsert the distinct customers (email -> name) and insert the orders
        in one self-committing statement; returns what was stored, in the orders' order."""
        emails = sorted(people)
        rows = await fetch_all_autocommit(
            self.conn,
            CAPTURE_MANY_PG,
            emails,
            [people[email] for email in emails],
            now,
            [order.email for order in orders],
            [order.item for order in orders],
            [order.quantity for order in orders],
            [order.unit_price for order in orders],
            [order.currency for order in orders],
            [order.unit_price * order.quantity for order in orders],
        )
        customers: dict[int, UpsertedCustomer] = {}
        stored = []
        for row in rows:
            customer = customers.get(row["id"])
            if customer is None:
                customer = customers[row["id"]] = _upserted(row)
            stored.append(StoredPurchase(customer, row["purchase_id"], row["total"]))
        return stored

    async def add_many(self, purchases: Sequence[NewPurchase]) -> list[tuple[int, Decimal]]:
        """Insert purchases in one set-based statement; returns (id, total) in input order."""
        params = [
            {
                "customer_id": p.customer_id,
                "item": p.item,
                "quantity": p.quantity,
                "unit_price": p.unit_price,
                "currency": p.currency,
                "total": p.unit_price * p.quantity,
                "purchased_at": p.purchased_at,
            }
            for p in purchases
        ]
        if len(params) == 1:
            row = (await self.conn.execute(_INSERT_ONE_PURCHASE, params[0])).one()
            return [(row.id, row.total)]
        return [(row.id, row.total) for row in await self.conn.execute(_INSERT_PURCHASES, params)]
