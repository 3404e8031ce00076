"""Reads: one purchase or customer (with its totals), keyset pages of each."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.errors import NotFound
from app.sales.repository.reads import CustomerReadRepository, PurchaseReadRepository
from app.sales.repository.rows import CustomerRow
from app.sales.schemas import CustomerDetail, CustomerPage, PurchaseOut, PurchasePage
from app.sales.service.cursor import decode_cursor, next_cursor
from app.sales.service.outputs import customer_out, purchase_out, tombstone_email


async def list_purchases(
    conn: AsyncConnection, *, customer_email: str | None, cursor: str | None, limit: int
) -> PurchasePage:
    rows = await PurchaseReadRepository(conn).page(
        customer_email=customer_email, before_id=decode_cursor(cursor), limit=limit
    )
    return PurchasePage(
        items=[purchase_out(row) for row in rows],
        next_cursor=next_cursor([row.id for row in rows], limit),
    )


async def get_purchase(conn: AsyncConnection, *, purchase_id: int) -> PurchaseOut:
    row = await PurchaseReadRepository(conn).get(purchase_id)
    if row is None:
        raise NotFound(f"No purchase with id {purchase_id}.")
    return purchase_out(row)


async def list_customers(
    conn: AsyncConnection,
    *,
    email: str | None,
    cursor: str | None,
    limit: int,
    email_prefix: str | None = None,
) -> CustomerPage:
    rows = await CustomerReadRepository(conn).page(
        email=email, email_prefix=email_prefix, before_id=decode_cursor(cursor), limit=limit
    )
    return CustomerPage(
        items=[customer_out(row) for row in rows],
        next_cursor=next_cursor([row.id for row in rows], limit),
    )


async def get_customer(conn: AsyncConnection, *, customer_id: int) -> CustomerDetail:
    row = await CustomerReadRepository(conn).get(customer_id)
    if row is None:
        raise NotFound(f"No customer with id {customer_id}.")
    return await customer_detail(conn, row)


async def customer_detail(conn: AsyncConnection, row: CustomerRow) -> CustomerDetail:
    count, totals = await CustomerReadRepository(conn).totals(row.id)
    return CustomerDetail(
        **customer_out(row).model_dump(),
        purchase_count=count,
        totals=totals,
        erased=row.email == tombstone_email(row.id),
    )
