"""The rows every use case's statements return, and the columns they select."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.sales.models import Customer, Purchase


@dataclass(frozen=True, slots=True)
class CustomerRow:
    id: int
    email: str
    name: str
    created_at: datetime
    updated_at: datetime


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


def dialect_of(conn: AsyncConnection) -> str:
    return conn.dialect.name


def customer_row(row: Any) -> CustomerRow:
    return CustomerRow(row.id, row.email, row.name, row.created_at, row.updated_at)
