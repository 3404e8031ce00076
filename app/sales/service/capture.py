"""Capture: one purchase or a batch, each customer upserted once, at most once per
Idempotency-Key; on PostgreSQL without a key, one self-committing statement."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.db import write_transaction
from app.core.metrics import tally
from app.sales.idempotency import Captured, RetryKey, once, utcnow
from app.sales.repository.capture import (
    CaptureRepository,
    NewPurchase,
    Order,
    UpsertedCustomer,
)
from app.sales.schemas import BatchIn, BatchOut, CapturedPurchase, CustomerOut, PurchaseIn
from app.sales.service.outputs import customer_out


def _buyers(purchases: list[PurchaseIn]) -> dict[str, str]:
    """Each distinct buyer's email and name; a later occurrence of an email wins the name
    (dicts keep the last value per key)."""
    return {p.customer.email: p.customer.name for p in purchases}


def _captured(
    p: PurchaseIn,
    *,
    purchase_id: int,
    customer: CustomerOut,
    created: bool,
    total: Decimal,
    now: datetime,
) -> CapturedPurchase:
    """What the caller is told of one stored purchase: its input and what the database gave it."""
    return CapturedPurchase(
        id=purchase_id,
        customer=customer,
        customer_created=created,
        item=p.item,
        quantity=p.quantity,
        unit_price=p.unit_price,
        currency=p.currency,
        total=total,
        purchased_at=now,
    )


def _count_stored(purchases: int, customers: Collection[UpsertedCustomer]) -> tuple[int, int]:
    """(created, updated) customers; all three counts go to the metrics once committed."""
    created = sum(1 for customer in customers if customer.created)
    updated = len(customers) - created
    tally(purchases=purchases, created=created, updated=updated)
    return created, updated


def _batch_out(
    captured: list[CapturedPurchase], customers: Collection[UpsertedCustomer]
) -> BatchOut:
    """What a batch stored, summed up for the caller."""
    created, updated = _count_stored(len(captured), customers)
    return BatchOut(purchases=captured, customers_created=created, customers_updated=updated)


async def _store(conn: AsyncConnection, purchases: list[PurchaseIn]) -> BatchOut:
    """Upsert each distinct customer once, then insert every purchase, in input order."""
    now = utcnow()
    people = _buyers(purchases)
    repository = CaptureRepository(conn)
    if len(people) == 1:
        ((email, name),) = people.items()
        upserted = {email: await repository.upsert(email=email, name=name, now=now)}
    else:
        upserted = await repository.upsert_many(people, now=now)
    stored = await repository.add_many(
        [
            NewPurchase(
                customer_id=upserted[p.customer.email].customer.id,
                item=p.item,
                quantity=p.quantity,
                unit_price=p.unit_price,
                currency=p.currency,
                purchased_at=now,
            )
            for p in purchases
        ]
    )
    # One CustomerOut per customer, shared by that customer's purchases.
    out = {email: customer_out(customer.customer) for email, customer in upserted.items()}
    captured = [
        _captured(
            p,
            purchase_id=purchase_id,
            customer=out[p.customer.email],
            created=upserted[p.customer.email].created,
            total=total,
            now=now,
        )
        for p, (purchase_id, total) in zip(purchases, stored, strict=True)
    ]
    return _batch_out(captured, upserted.values())


async def _store_autocommit(conn: AsyncConnection, data: PurchaseIn) -> CapturedPurchase:
    """PostgreSQL: the whole capture as one self-committing statement."""
    now = utcnow()
    stored = await CaptureRepository(conn).capture_autocommit(
        email=data.customer.email,
        name=data.customer.name,
        item=data.item,
        quantity=data.quantity,
        unit_price=data.unit_price,
        currency=data.currency,
        now=now,
    )
    _count_stored(1, [stored.customer])
    return _captured(
        data,
        purchase_id=stored.purchase_id,
        customer=customer_out(stored.customer.customer),
        created=stored.customer.created,
        total=stored.total,
        now=now,
    )


async def capture_purchase(
    conn: AsyncConnection, *, data: PurchaseIn, idempotency_key: RetryKey | None = None
) -> Captured:
    """Store one purchase and upsert its customer; with a key, at most once per key.

    `conn` has no transaction yet. Without a key, PostgreSQL needs only one statement; every
    other case runs its statements in one transaction.
    """
    if idempotency_key is None and conn.dialect.name == "postgresql":
        return Captured((await _store_autocommit(conn, data)).model_dump_json(), False)

    async def store() -> tuple[str, int]:
        purchase = (await _store(conn, [data])).purchases[0]
        return purchase.model_dump_json(), purchase.id

    async with write_transaction(conn):
        if idempotency_key is None:
            return Captured((await store())[0], False)
        return await once(conn, idempotency_key, request=data.model_dump_json(), store=store)


async def capture_batch(
    conn: AsyncConnection, *, data: BatchIn, idempotency_key: RetryKey | None = None
) -> Captured:
    """All of the batch or nothing; with a key, at most once per key. `conn` has no
    transaction yet: without a key PostgreSQL needs only one statement, every other case runs
    several in one transaction."""
    if idempotency_key is None and conn.dialect.name == "postgresql":
        batch = await _store_many_autocommit(conn, data.purchases)
        return Captured(batch.model_dump_json(), False)

    async def store() -> tuple[str, None]:
        return (await _store(conn, data.purchases)).model_dump_json(), None

    async with write_transaction(conn):
        if idempotency_key is None:
            return Captured((await store())[0], False)
        return await once(conn, idempotency_key, request=data.model_dump_json(), store=store)


async def _store_many_autocommit(conn: AsyncConnection, purchases: list[PurchaseIn]) -> BatchOut:
    now = utcnow()
    orders = [
        Order(p.customer.email, p.item, p.quantity, p.unit_price, p.currency) for p in purchases
    ]
    stored = await CaptureRepository(conn).capture_many_autocommit(
        _buyers(purchases), orders, now=now
    )
    customers = {s.customer.customer.id: s.customer for s in stored}
    # One CustomerOut per customer, shared by that customer's purchases.
    out = {key: customer_out(customer.customer) for key, customer in customers.items()}
    captured = [
        _captured(
            p,
            purchase_id=s.purchase_id,
            customer=out[s.customer.customer.id],
            created=s.customer.created,
            total=s.total,
            now=now,
        )
        for p, s in zip(purchases, stored, strict=True)
    ]
    return _batch_out(captured, customers.values())
