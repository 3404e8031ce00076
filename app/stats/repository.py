"""The statistics' SQL: aggregation happens in the database, on both dialects alike.

SQLite has no time zones, so no query asks the database for one: the caller passes the UTC
instant at which each local day begins (computed with zoneinfo, so a DST day is 23 or 25 hours
long) and the database buckets purchases between those boundaries.

Each figure is read in three parts, in the caller's one snapshot (app.stats.models says why):
the rollup's whole quarter-hours inside the range; the purchases the fold has not reached yet
(ids after the watermark, a few seconds' worth), from `purchase`; and, where an old zone's day
does not begin on a quarter-hour, the ragged part of that quarter-hour, from `purchase` too.
"""

# The SQL is put together from this module's own constants only; every value is bound (S608).
# ruff: noqa: S608

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.columns import CENT, UTCDateTime, cents_from_parts
from app.sales.models import Purchase  # read only, for SQL over sales' tables
from app.stats.models import BUCKET_SECONDS, StatsBuyers, StatsFold
from app.stats.rollup import cents_of, least_greatest, money_parts

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


@dataclass(frozen=True, slots=True)
class Span:
    """[start, stop) as whole buckets [lo, hi) (Unix times) and the ragged instants outside
    them, at most one window at each end."""

    lo: int
    hi: int
    ragged: tuple[tuple[datetime, datetime], ...]


def _seconds(moment: datetime) -> int:
    # Day boundaries are whole seconds: zone offsets are.
    return int((moment - EPOCH).total_seconds())


def _instant(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def whole_buckets(start: datetime, stop: datetime) -> Span:
    first, last = _seconds(start), _seconds(stop)
    lo = -(-first // BUCKET_SECONDS) * BUCKET_SECONDS
    hi = last // BUCKET_SECONDS * BUCKET_SECONDS
    if lo >= hi:  # no whole bucket in it: all ragged
        return Span(lo, lo, ((start, stop),))
    edges = [(start, _instant(lo)), (_instant(hi), stop)]
    return Span(lo, hi, tuple((a, b) for a, b in edges if a < b))


async def watermark(conn: AsyncConnection) -> int:
    """The last purchase id in the rollup (0 before the first fold)."""
    found = (await conn.execute(select(StatsFold.purchase_id))).scalar_one_or_none()
    return int(found or 0)


async def day_buckets(conn: AsyncConnection, bounds: Sequence[datetime]) -> list[DayBucket]:
    """Purchases and revenue per (day, currency), day i running from bounds[i] to
    bounds[i + 1]; a (day, currency) may come in several parts, to be added up."""
    folded = await watermark(conn)
    spans = [whole_buckets(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    whole = [(i, s.lo, s.hi) for i, s in enumerate(spans) if s.lo < s.hi]
    parts = await _rolled_days(conn, whole) if whole else []
    ragged = [(i, a, b) for i, s in enumerate(spans) for a, b in s.ragged]
    if ragged:
        parts += await _purchased_days(conn, ragged, folded=folded, unfolded=False)
    days = [(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    return parts + await _purchased_days(conn, days, folded=folded, unfolded=True)


def _windows_cte(dialect: str, first: str, second: str, kind: str) -> str:
    """SQL: a CTE `d` (i, `first`, `second`) of `kind` (bigint or timestamptz) from the JSON
    array of [i, first, second] in :windows: one parameter however many days (a VALUES list of
    366 rows costs more to compile than the query takes to run). Materialised, so that each
    element is converted once, not once per row it is compared with."""
    if dialect == "postgresql":
        return (
            f"d AS MATERIALIZED (SELECT (w.value->>0)::int AS i, (w.value->>1)::{kind} AS {first},"
            f" (w.value->>2)::{kind} AS {second}"
            " FROM jsonb_array_elements(CAST(:windows AS jsonb)) AS w(value))"
        )
    # SQLite: integers come back as integers, instants as the text they compare as.
    return (
        "d AS MATERIALIZED (SELECT json_extract(w.value, '$[0]') AS i,"
        f" json_extract(w.value, '$[1]') AS {first}, json_extract(w.value, '$[2]') AS {second}"
        " FROM json_each(:windows) AS w)"
    )


def _moment(value: datetime, dialect: str) -> str:
    """A UTC instant as text that compares with `purchased_at` as the instant does: ISO 8601
    for PostgreSQL, SQLite's stored form (naive UTC, microseconds) for SQLite."""
    utc = value.astimezone(UTC)
    if dialect == "postgresql":
        return utc.isoformat()
    return utc.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


async def _rolled_days(
    conn: AsyncConnection, days: Sequence[tuple[int, int, int]]
) -> list[DayBucket]:
    """From the rollup: the whole buckets [lo, hi) of each day, per currency."""
    query = text(
        f"WITH {_windows_cte(conn.dialect.name, 'lo', 'hi', 'bigint')}"
        " SELECT d.i, s.currency, sum(s.purchases), sum(s.revenue_low), sum(s.revenue_mid),"
        " sum(s.revenue_high) FROM d JOIN stats_sales AS s ON s.bucket >= d.lo AND s.bucket < d.hi"
        " GROUP BY d.i, s.currency"
    )
    rows = await conn.execute(query, {"windows": json.dumps(days)})
    return [DayBucket(i, currency, int(n), _money(parts)) for i, currency, n, *parts in rows]


async def _purchased_days(
    conn: AsyncConnection,
    windows: Sequence[tuple[int, datetime, datetime]],
    *,
    folded: int,
    unfolded: bool,
) -> list[DayBucket]:
    """From `purchase` itself, per window and currency: the purchases the fold has not reached
    (`unfolded`), or those it has (in ragged windows).

    The unfolded ones are read first by id (the primary key) in a materialised CTE, so that the
    planner never walks the time index of the whole range for the few of them.
    """
    dialect = conn.dialect.name
    source = f"WITH {_windows_cte(dialect, 'start', 'stop', 'timestamptz')}"
    if unfolded:
        source += (
            ", unfolded AS MATERIALIZED (SELECT purchased_at, currency, total FROM purchase"
            " WHERE id > :folded AND purchased_at >= :start AND purchased_at < :stop)"
        )
        table, which = "unfolded", ""
    else:
        table, which = "purchase", " WHERE p.id <= :folded"
    query = text(
        f"{source} SELECT d.i, p.currency, count(*), {money_parts(cents_of('p.total', dialect))}"
        f" FROM d JOIN {table} AS p"
        f" ON p.purchased_at >= d.start AND p.purchased_at < d.stop{which}"
        " GROUP BY d.i, p.currency"
    )
    params: dict[str, Any] = {
        "windows": json.dumps(
            [(i, _moment(a, dialect), _moment(b, dialect)) for i, a, b in windows]
        ),
        "folded": folded,
    }
    if unfolded:
        query = query.bindparams(_at("start"), _at("stop"))
        params |= {"start": windows[0][1], "stop": windows[-1][2]}
    rows = await conn.execute(query, params)
    return [DayBucket(i, currency, int(n), _money(parts)) for i, currency, n, *parts in rows]


def _money(parts: Sequence[Any]) -> Decimal:
    return Decimal(cents_from_parts(parts)).scaleb(-2).quantize(CENT)


def _at(name: str) -> Any:
    return bindparam(name, type_=UTCDateTime())


def _tail_sql(dialect: str) -> str:
    """Per customer with purchases after the watermark: whether their first purchase falls in
    [start, stop) and their last at or after start, once with those purchases and once without;
    summed, the corrections to the rollup's counts."""
    least, greatest = least_greatest(dialect)
    first = f"{least}(coalesce(o.first_at, t.first_at), t.first_at)"
    last = f"{greatest}(coalesce(o.last_at, t.last_at), t.last_at)"
    return f"""\
WITH unfolded AS MATERIALIZED (
    SELECT customer_id, min(purchased_at) AS first_at, max(purchased_at) AS last_at
    FROM purchase WHERE id > :after GROUP BY customer_id
)
SELECT
    coalesce(sum(CASE WHEN {first} >= :start AND {first} < :stop THEN 1 ELSE 0 END), 0)
    - coalesce(sum(CASE WHEN o.first_at >= :start AND o.first_at < :stop THEN 1 ELSE 0 END), 0),
    coalesce(sum(CASE WHEN {last} >= :start THEN 1 ELSE 0 END), 0)
    - coalesce(sum(CASE WHEN o.last_at >= :start THEN 1 ELSE 0 END), 0)
FROM unfolded AS t LEFT JOIN stats_customer_span AS o ON o.customer_id = t.customer_id"""


async def buyers(conn: AsyncConnection, start: datetime, stop: datetime) -> Buyers:
    """Distinct buyers in [start, stop): new if their first purchase ever is in it, returning
    otherwise.

    New buyers are the customers whose first purchase is in the range: the rollup's `firsts`.
    All buyers, when no purchase is dated at or after `stop` (a range that ends today, as the
    dashboard's do), are the customers whose last purchase is at or after `start`: the
    rollup's `lasts`. A range that ends before later purchases has no such shortcut: its
    buyers are counted from `purchase`, in time proportional to the purchases in it.
    """
    folded = await watermark(conn)
    span = whole_buckets(start, stop)
    tail = text(_tail_sql(conn.dialect.name)).bindparams(
        _at("start"), _at("stop"), bindparam("after", folded)
    )
    new_fix, last_fix = (await conn.execute(tail, {"start": start, "stop": stop})).one()
    firsts = select(func.coalesce(func.sum(StatsBuyers.firsts), 0)).where(
        StatsBuyers.bucket >= span.lo, StatsBuyers.bucket < span.hi
    )
    new = int((await conn.execute(firsts)).scalar_one()) + int(new_fix)
    for a, b in span.ragged:
        new += await _spans_between(conn, "first_at", a, b)
    later = select(Purchase.id).where(Purchase.purchased_at >= stop).limit(1)
    if (await conn.execute(later)).first() is None:
        lasts = select(func.coalesce(func.sum(StatsBuyers.lasts), 0)).where(
            StatsBuyers.bucket >= span.lo
        )
        total = int((await conn.execute(lasts)).scalar_one()) + int(last_fix)
        if _seconds(start) < span.lo:
            total += await _spans_between(conn, "last_at", start, _instant(span.lo))
    else:
        distinct = select(func.count(func.distinct(Purchase.customer_id))).where(
            Purchase.purchased_at >= start, Purchase.purchased_at < stop
        )
        total = int((await conn.execute(distinct)).scalar_one())
    return Buyers(new=new, returning=total - new)


async def _spans_between(
    conn: AsyncConnection, moment: str, start: datetime, stop: datetime
) -> int:
    """Folded customers whose first or last purchase (`moment`) is in a ragged window: a scan,
    only for the zones that began days off the quarter-hour, before 1972."""
    query = text(
        f"SELECT count(*) FROM stats_customer_span WHERE {moment} >= :start AND {moment} < :stop"
    ).bindparams(_at("start"), _at("stop"))
    return int((await conn.execute(query, {"start": start, "stop": stop})).scalar_one())
