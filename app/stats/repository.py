"""The statistics' SQL: aggregation happens in the database, on both dialects alike.

SQLite has no time zones, so neither query asks the database for one: the caller passes the
UTC instant at which each local day begins (computed with zoneinfo, so a DST day is 23 or 25
hours long) and the database buckets purchases between those boundaries. PostgreSQL answers
the join with one range scan of `ix_purchase_purchased_at` per day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Integer, and_, case, column, func, select, values
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.columns import UTCDateTime, money_sum, summed_money
from app.sales.models import Customer, Purchase  # read only, for SQL over sales' tables


@dataclass(frozen=True, slots=True)
class DayBucket:
    index: int
    currency: str
    purchases: int
    revenue: Decimal


@dataclass(frozen=True, slots=True)
class Buyers:
    new: int
    returning: int


async def day_buckets(conn: AsyncConnection, bounds: Sequence[datetime]) -> list[DayBucket]:
    """Purchases and revenue per (day, currency); day i runs from bounds[i] to bounds[i + 1]."""
    rows = [(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    days = (
        values(
            column("i", Integer),
            column("start", UTCDateTime()),
            column("stop", UTCDateTime()),
            name="days",
        )
        .data(rows)
        .cte("days")
    )
    dialect = conn.dialect.name
    query = (
        select(days.c.i, Purchase.currency, func.count(), *money_sum(Purchase.total, dialect))
        .select_from(days)
        .join(
            Purchase,
            and_(Purchase.purchased_at >= days.c.start, Purchase.purchased_at < days.c.stop),
        )
        .group_by(days.c.i, Purchase.currency)
    )
    # Exact on both databases, and on SQLite without an integer overflow (app.core.columns).
    return [
        DayBucket(i, currency, n, summed_money(amount, dialect))
        for i, currency, n, *amount in await conn.execute(query)
    ]


async def buyers(conn: AsyncConnection, start: datetime, stop: datetime) -> Buyers:
    """Distinct buyers in [start, stop): new if the customer was created in it (a customer is
    created by their first purchase), returning otherwise."""
    in_range = (
        select(Purchase.customer_id)
        .where(Purchase.purchased_at >= start, Purchase.purchased_at < stop)
        .distinct()
        .subquery()
    )
    new = func.coalesce(func.sum(case((Customer.created_at >= start, 1), else_=0)), 0)
    query = select(func.count(), new).select_from(
        in_range.join(Customer, Customer.id == in_range.c.customer_id)
    )
    total, new_count = (await conn.execute(query)).one()
    return Buyers(new=int(new_count), returning=int(total) - int(new_count))
