"""Daily statistics over a range of local days in an IANA time zone."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.columns import CENT
from app.core.errors import InvalidRange
from app.stats import repository
from app.stats.schemas import DailyStats, DayOut, TotalsOut

MAX_DAYS = 366
# Day boundaries are computed one day either side of the range: these keep them representable.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)


def day_starts(first: date, last: date, zone: ZoneInfo) -> list[datetime]:
    """The UTC instant at which each local day from `first` to `last + 1` begins.

    A midnight that a DST gap skips (fold=0 takes the offset before the gap) maps to the
    instant the gap ends: the first instant of that local day, as PostgreSQL's AT TIME ZONE
    would also date it.
    """
    days = (last - first).days + 2
    return [
        datetime.combine(first + timedelta(days=n), time(), tzinfo=zone).astimezone(UTC)
        for n in range(days)
    ]


def today_in(zone: ZoneInfo) -> date:
    return datetime.now(zone).date()


async def daily(
    conn: AsyncConnection, *, first: date | None, last: date | None, zone: ZoneInfo
) -> DailyStats:
    """Purchases, revenue and buyers per local day; `first`/`last` default to the 30 days
    that end today."""
    last = last or today_in(zone)
    if last < FIRST_DAY:  # before the default `first` is computed: 0001-01-01 minus 29 days
        raise InvalidRange(f"Dates run from {FIRST_DAY} to {LAST_DAY}.")
    first = first or last - timedelta(days=29)
    if first > last:
        raise InvalidRange("'from' must not be after 'to'.")
    if first < FIRST_DAY or last > LAST_DAY:
        raise InvalidRange(f"Dates run from {FIRST_DAY} to {LAST_DAY}.")
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidRange(f"A range covers at most {MAX_DAYS} days.")
    bounds = day_starts(first, last, zone)
    buckets = await repository.day_buckets(conn, bounds)
    buyers = await repository.buyers(conn, bounds[0], bounds[-1])

    revenue: list[dict[str, Decimal]] = [defaultdict(Decimal) for _ in bounds[:-1]]
    counts: list[dict[str, int]] = [defaultdict(int) for _ in bounds[:-1]]
    for bucket in buckets:
        revenue[bucket.index][bucket.currency] += bucket.revenue
        counts[bucket.index][bucket.currency] += bucket.purchases
    days = [
        DayOut(
            date=first + timedelta(days=i),
            purchases=sum(counts[i].values()),
            revenue=dict(sorted(revenue[i].items())),
            purchases_by_currency=dict(sorted(counts[i].items())),
        )
        for i in range(len(bounds) - 1)
    ]
    return DailyStats(
        from_=first,
        to=last,
        tz=zone.key,
        days=days,
        totals=_totals(days, buyers),
    )


def _totals(days: list[DayOut], buyers: repository.Buyers) -> TotalsOut:
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    counts: dict[str, int] = defaultdict(int)
    for day in days:
        for currency, amount in day.revenue.items():
            revenue[currency] += amount
        for currency, n in day.purchases_by_currency.items():
            counts[currency] += n
    average = {
        currency: (revenue[currency] / counts[currency]).quantize(CENT, ROUND_HALF_EVEN)
        for currency in sorted(counts)
    }
    return TotalsOut(
        purchases=sum(counts.values()),
        revenue=dict(sorted(revenue.items())),
        purchases_by_currency=dict(sorted(counts.items())),
        average_order_value=average,
        new_customers=buyers.new,
        returning_customers=buyers.returning,
    )
