"""The SQL of the reads: one customer or purchase, keyset pages of each, a customer's totals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.columns import money_sum, summed_money
from app.sales.models import Customer, Purchase
from app.sales.repository.rows import (
    CUSTOMER_COLUMNS,
    PURCHASE_COLUMNS,
    CustomerRow,
    PurchaseRow,
    customer_row,
    dialect_of,
)


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


class CustomerReadRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, customer_id: int) -> CustomerRow | None:
        row = (
            await self.conn.execute(select(*CUSTOMER_COLUMNS).where(Customer.id == customer_id))
        ).one_or_none()
        return customer_row(row) if row else None

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
        return [customer_row(row) for row in await self.conn.execute(query)]

    async def totals(self, customer_id: int) -> tuple[int, dict[str, Decimal]]:
        """How many purchases the customer made, and the amount spent per currency."""
        dialect = dialect_of(self.conn)
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


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching the prefix literally (its % and _ escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class PurchaseReadRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

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
