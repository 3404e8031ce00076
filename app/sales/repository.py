"""Every SQL statement the service runs. Repositories may flush, never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import asyncpg
from sqlalchemy import (
    ColumnElement,
    delete,
    func,
    insert,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.columns import money_sum, summed_money
from app.core.db import fetch_all_autocommit, fetch_row_autocommit
from app.sales.models import Customer, IdempotencyKey, Purchase


@dataclass(frozen=True, slots=True)
class CustomerRow:
    id: int
    email: str
    name: str
    created_at: datetime
    updated_at: datetime


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


@dataclass(frozen=True, slots=True)
class PurchaseRow:
    id: int
    customer: CustomerRow
    item: str
    quantity: int
    unit_price: Decimal
    currency: str
    total: Decimal
    purchased_at: datetime


CUSTOMER_COLUMNS = (
    Customer.id,
    Customer.email,
    Customer.name,
    Customer.created_at,
    Customer.updated_at,
)
PURCHASE_COLUMNS = (
    Purchase.id,
    Purchase.item,
    Purchase.quantity,
    Purchase.unit_price,
    Purchase.currency,
    Purchase.total,
    Purchase.purchased_at,
)


def _dialect(conn: AsyncConnection) -> str:
    return conn.dialect.name


def _customer(row: Any) -> CustomerRow:
    return CustomerRow(row.id, row.email, row.name, row.created_at, row.updated_at)


def _upserted(record: asyncpg.Record) -> UpsertedCustomer:
    """The customer columns of a CAPTURE_*_PG row (asyncpg's records are read by key)."""
    customer = CustomerRow(
        record["id"], record["email"], record["name"], record["created_at"], record["updated_at"]
    )
    return UpsertedCustomer(customer, record["created"])


def _purchase(row: Any) -> PurchaseRow:
    customer = CustomerRow(row.customer_id, row.email, row.name, row.created_at, row.updated_at)
    return PurchaseRow(
        row.id,
        customer,
        row.item,
        row.quantity,
        row.unit_price,
        row.currency,
        row.total,
        row.purchased_at,
    )


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


class CustomerRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def upsert(self, *, email: str, name: str, now: datetime) -> UpsertedCustomer:
        """Insert the customer, or rename the existing one: one statement, race-free."""
        row = (
            await self.conn.execute(
                _upsert_statement(_dialect(self.conn)),
                {"email": email, "name": name, "created_at": now, "updated_at": now},
            )
        ).one()
        return UpsertedCustomer(_customer(row), bool(row.created))

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
        rows = (await self.conn.execute(_upsert_statement(_dialect(self.conn)), params)).all()
        return {row.email: UpsertedCustomer(_customer(row), bool(row.created)) for row in rows}

    async def get(self, customer_id: int) -> CustomerRow | None:
        row = (
            await self.conn.execute(select(*CUSTOMER_COLUMNS).where(Customer.id == customer_id))
        ).one_or_none()
        return _customer(row) if row else None

    async def page(
        self,
        *,
        email: str | None,
        before_id: int | None,
        limit: int,
        email_prefix: str | None = None,
    ) -> list[CustomerRow]:
        """Newest first, keyset-paginated on id."""
        query = select(*CUSTOMER_COLUMNS).order_by(Customer.id.desc()).limit(limit)
        if email is not None:
            query = query.where(Customer.email == email)
        if email_prefix:
            query = query.where(Customer.email.like(_like_prefix(email_prefix), escape="\\"))
        if before_id is not None:
            query = query.where(Customer.id < before_id)
        return [_customer(row) for row in await self.conn.execute(query)]

    async def totals(self, customer_id: int) -> tuple[int, dict[str, Decimal]]:
        """How many purchases the customer made, and the amount spent per currency."""
        dialect = _dialect(self.conn)
        rows = await self.conn.execute(
            select(Purchase.currency, func.count(), *money_sum(Purchase.total, dialect))
            .where(Purchase.customer_id == customer_id)
            .group_by(Purchase.currency)
            .order_by(Purchase.currency)
        )
        count = 0
        totals: dict[str, Decimal] = {}
        for currency, n, *amount in rows:  # exact, and on SQLite without an overflow
            count += n
            totals[currency] = summed_money(amount, dialect)
        return count, totals

    # --- corrections and erasure ---

    async def get_for_update(self, customer_id: int) -> CustomerRow | None:
        """The customer, locked until the transaction ends (SQLite: BEGIN IMMEDIATE already
        holds the database's write lock), so two corrections queue instead of both winning."""
        query = select(*CUSTOMER_COLUMNS).where(Customer.id == customer_id)
        if _dialect(self.conn) == "postgresql":
            query = query.with_for_update()
        row = (await self.conn.execute(query)).one_or_none()
        return _customer(row) if row else None

    async def id_by_email(self, email: str) -> int | None:
        found = await self.conn.scalar(select(Customer.id).where(Customer.email == email))
        return int(found) if found is not None else None

    async def overwrite(
        self, customer_id: int, *, values: dict[str, str], now: datetime
    ) -> CustomerRow:
        """Replace the given columns (email and/or name) and bump updated_at."""
        row = (
            await self.conn.execute(
                update(Customer)
                .where(Customer.id == customer_id)
                .values(**values, updated_at=now)
                .returning(*CUSTOMER_COLUMNS)
            )
        ).one()
        return _customer(row)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching the prefix literally (its % and _ escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class PurchaseRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

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

    def _joined(self) -> Any:
        return select(
            *PURCHASE_COLUMNS,
            Purchase.customer_id,
            Customer.email,
            Customer.name,
            Customer.created_at,
            Customer.updated_at,
        ).join(Customer, Customer.id == Purchase.customer_id)

    async def get(self, purchase_id: int) -> PurchaseRow | None:
        row = (
            await self.conn.execute(self._joined().where(Purchase.id == purchase_id))
        ).one_or_none()
        return _purchase(row) if row else None

    async def page(
        self, *, customer_email: str | None, before_id: int | None, limit: int
    ) -> list[PurchaseRow]:
        """Newest first, keyset-paginated on id."""
        query = self._joined().order_by(Purchase.id.desc()).limit(limit)
        if customer_email is not None:
            query = query.where(Customer.email == customer_email)
        if before_id is not None:
            query = query.where(Purchase.id < before_id)
        return [_purchase(row) for row in await self.conn.execute(query)]


class IdempotencyRepository:
    """Retry keys, each named by (scope, key)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def claim(
        self, *, scope: str, key: str, request_hash: str, now: datetime, expired_before: datetime
    ) -> bool:
        """Reserve the key for this transaction; False if another request holds it.

        A key created before `expired_before` counts as new even before the purge has deleted
        it: it is taken over here, in the same statement. On PostgreSQL a concurrent holder
        makes this wait until that transaction ends, so a False here always means the key's
        response is committed; the row stays locked until this transaction ends, so the purge
        cannot delete it under a replay.
        """
        insert_fn = postgresql.insert if _dialect(self.conn) == "postgresql" else sqlite.insert
        stmt = insert_fn(IdempotencyKey).values(
            scope=scope, key=key, request_hash=request_hash, created_at=now
        )
        take_over_if_expired = stmt.on_conflict_do_update(
            index_elements=[IdempotencyKey.scope, IdempotencyKey.key],
            set_={
                "request_hash": stmt.excluded.request_hash,
                "created_at": stmt.excluded.created_at,
                "purchase_id": None,
                "response_body": None,
            },
            where=IdempotencyKey.created_at < expired_before,
        ).returning(IdempotencyKey.key)
        return (await self.conn.execute(take_over_if_expired)).first() is not None

    async def stored(self, *, scope: str, key: str) -> tuple[str, str | None]:
        """(request_hash, response_body) of a claimed key."""
        row = (
            await self.conn.execute(
                select(IdempotencyKey.request_hash, IdempotencyKey.response_body).where(
                    IdempotencyKey.scope == scope, IdempotencyKey.key == key
                )
            )
        ).one()
        return row.request_hash, row.response_body

    async def forget_customer(self, customer_id: int, email: str) -> None:
        """Drop the remembered responses that hold the customer's email and name, which
        erasure removes: a single capture's (by its purchase) and a batch's (by its body)."""
        purchases = select(Purchase.id).where(Purchase.customer_id == customer_id)
        await self.conn.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.purchase_id.in_(purchases)
                | (
                    IdempotencyKey.purchase_id.is_(None)
                    & IdempotencyKey.response_body.contains(f'"email":"{email}"', autoescape=True)
                )
            )
        )

    async def complete(
        self, *, scope: str, key: str, purchase_id: int | None, response_body: str
    ) -> None:
        await self.conn.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
            .values(purchase_id=purchase_id, response_body=response_body)
        )

    async def purge(self, *, expired_before: datetime, limit: int) -> int:
        """Delete up to `limit` of the oldest keys created before `expired_before`; returns how
        many. Both conditions walk the created_at index.

        The outer `created_at` condition is checked again on a row that changed under the
        DELETE (PostgreSQL re-reads it after waiting for its lock): a key just taken over by
        `claim` is fresh again and stays.
        """
        oldest = (
            select(IdempotencyKey.scope, IdempotencyKey.key)
            .where(IdempotencyKey.created_at < expired_before)
            .order_by(IdempotencyKey.created_at)
            .limit(limit)
        )
        result = await self.conn.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.created_at < expired_before,
                tuple_(IdempotencyKey.scope, IdempotencyKey.key).in_(oldest),
            )
        )
        return int(result.rowcount)
