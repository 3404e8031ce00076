"""The SQL of a customer's correction and erasure: the locked read, the overwrite, and erasure
forgetting the remembered responses that hold what it erased."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.sales.models import Customer, IdempotencyKey, Purchase
from app.sales.repository.rows import CUSTOMER_COLUMNS, CustomerRow, customer_row, dialect_of


class CorrectionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get_for_update(self, customer_id: int) -> CustomerRow | None:
        """The customer, locked until the transaction ends (SQLite: BEGIN IMMEDIATE already
        holds the database's write lock), so two corrections queue instead of both winning."""
        query = select(*CUSTOMER_COLUMNS).where(Customer.id == customer_id)
        if dialect_of(self.conn) == "postgresql":
            query = query.with_for_update()
        row = (await self.conn.execute(query)).one_or_none()
        return customer_row(row) if row else None

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
        return customer_row(row)

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
