"""The fold: adds new purchases to the statistics' rollup (app.stats.models), in id order.

It runs in the background of every process (`fold_periodically`) and from the command line
(`purchase-capture stats fold`), never on a capture's path: a capture stays one upsert and one
insert. One folder at a time: the `stats_fold` row is locked for each batch.

Which ids are safe to fold? On SQLite writers take turns, so every id below the largest is
committed. On PostgreSQL ids are handed out before their transactions commit, possibly out of
order: id 11 may be visible while id 10 is still being inserted. The fold therefore first takes
`SHARE` on `purchase` for a moment, which waits for the inserts in flight and lets none start:
with it held, every id up to the largest is final, committed or never to be. The lock is asked
for with a short `lock_timeout`, so captures queue behind it for at most that long; a round that
does not get it folds nothing and the next one tries again. (This relies on the id sequence
handing out one value at a time, its default CACHE 1.)
"""

# The SQL is put together from this module's own constants only; every value is bound (S608).
# ruff: noqa: S608

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.columns import SUM_PART
from app.core.db import write_transaction
from app.core.engine import READ_ONLY
from app.stats.models import BUCKET_SECONDS

log = structlog.get_logger(__name__)

# Purchases per fold transaction. SQLite's fold holds the one write lock, which captures wait
# for: about 0.1 s at 5,000 (0.5 s at 20,000). PostgreSQL's captures do not wait for a batch.
FOLD_BATCH = {"postgresql": 20_000, "sqlite": 5_000}
# How long captures may queue behind the fold's SHARE lock on PostgreSQL.
LOCK_WAIT = "50ms"
# Rounds in a row without the lock after which the background fold says so (a minute at 2 s).
REFUSED_ROUNDS_WARNING = 30


def bucket_of(column: str, dialect: str) -> str:
    """SQL: the Unix time of the quarter-hour that `column` (a UTC timestamp) falls in."""
    if dialect == "postgresql":
        seconds = f"extract(epoch FROM {column})"
        return f"(floor({seconds} / {BUCKET_SECONDS}) * {BUCKET_SECONDS})::bigint"
    seconds = f"CAST(strftime('%s', {column}) AS INTEGER)"
    # SQLite's % keeps the dividend's sign: this floors before 1970 too.
    return f"({seconds} - (({seconds} % {BUCKET_SECONDS}) + {BUCKET_SECONDS}) % {BUCKET_SECONDS})"


def cents_of(column: str, dialect: str) -> str:
    """SQL: a Money column in integer cents (SQLite stores them so already)."""
    return f"({column} * 100)::bigint" if dialect == "postgresql" else column


def money_parts(cents: str) -> str:
    """SQL: the sums of an integer-cents expression in three parts of five digits, lowest
    first, as app.core.columns.money_sum splits them (`cents_from_parts` joins them)."""
    part, high = SUM_PART, SUM_PART**2
    return f"sum({cents} % {part}), sum(({cents} / {part}) % {part}), sum({cents} / {high})"


def least_greatest(dialect: str) -> tuple[str, str]:
    """PostgreSQL's least/greatest, which SQLite spells as its two-argument min/max."""
    return ("least", "greatest") if dialect == "postgresql" else ("min", "max")


def _sales_sql(dialect: str) -> str:
    bucket = bucket_of("p.purchased_at", dialect)
    cents = cents_of("p.total", dialect)
    # "WHERE true": SQLite would read the ON CONFLICT as a join's without it.
    return f"""\
INSERT INTO stats_sales AS s
    (bucket, currency, purchases, revenue_low, revenue_mid, revenue_high)
SELECT b, currency, count(*), {money_parts("c")}
FROM (
    SELECT {bucket} AS b, p.currency AS currency, {cents} AS c
    FROM purchase AS p WHERE p.id > :after AND p.id <= :upto
) AS folded
WHERE true
GROUP BY b, currency
ON CONFLICT (bucket, currency) DO UPDATE SET
    purchases = s.purchases + excluded.purchases,
    revenue_low = s.revenue_low + excluded.revenue_low,
    revenue_mid = s.revenue_mid + excluded.revenue_mid,
    revenue_high = s.revenue_high + excluded.revenue_high"""


_BATCH_SPANS = """\
SELECT customer_id, min(purchased_at) AS first_at, max(purchased_at) AS last_at
FROM purchase WHERE id > :after AND id <= :upto GROUP BY customer_id"""


def _buyers_sql(dialect: str) -> str:
    """Moves customers between buckets: a first customer counts once in `firsts` and `lasts`;
    a known one whose first purchase moves earlier (an import of history) or whose last moves
    later leaves its old bucket for the new one. Run before the spans are updated.

    The old span is looked up per customer of the batch (correlated subqueries, by primary
    key): a join would let the planner hash the whole span table once per batch.
    """
    old_first, new_first = bucket_of("old_first", dialect), bucket_of("first_at", dialect)
    old_last, new_last = bucket_of("old_last", dialect), bucket_of("last_at", dialect)
    return f"""\
WITH fold AS ({_BATCH_SPANS}),
known AS (
    SELECT first_at, last_at,
        (SELECT o.first_at FROM stats_customer_span AS o
         WHERE o.customer_id = fold.customer_id) AS old_first,
        (SELECT o.last_at FROM stats_customer_span AS o
         WHERE o.customer_id = fold.customer_id) AS old_last
    FROM fold
),
moves AS (
    SELECT {old_first} AS b, -1 AS firsts, 0 AS lasts FROM known WHERE first_at < old_first
    UNION ALL
    SELECT {new_first}, 1, 0 FROM known WHERE old_first IS NULL OR first_at < old_first
    UNION ALL
    SELECT {old_last}, 0, -1 FROM known WHERE last_at > old_last
    UNION ALL
    SELECT {new_last}, 0, 1 FROM known WHERE old_last IS NULL OR last_at > old_last
)
INSERT INTO stats_buyers AS s (bucket, firsts, lasts)
SELECT b, sum(firsts), sum(lasts) FROM moves WHERE true GROUP BY b
ON CONFLICT (bucket) DO UPDATE SET
    firsts = s.firsts + excluded.firsts, lasts = s.lasts + excluded.lasts"""


def _spans_sql(dialect: str) -> str:
    least, greatest = least_greatest(dialect)
    return f"""\
INSERT INTO stats_customer_span AS o (customer_id, first_at, last_at)
SELECT customer_id, min(purchased_at), max(purchased_at)
FROM purchase WHERE id > :after AND id <= :upto GROUP BY customer_id
ON CONFLICT (customer_id) DO UPDATE SET
    first_at = {least}(o.first_at, excluded.first_at),
    last_at = {greatest}(o.last_at, excluded.last_at)"""


@dataclass(frozen=True, slots=True)
class Folded:
    purchases: int
    upto: int


async def final_id(conn: AsyncConnection, visible: int) -> int | None:
    """The largest purchase id below which no insert is still in flight, given the largest
    `visible` one; None when PostgreSQL could not say within LOCK_WAIT (inserts held the
    table: try again later). On SQLite, whose writers take turns, it is `visible`."""
    if conn.dialect.name != "postgresql":
        return visible
    largest = text("SELECT coalesce(max(id), 0) FROM purchase")
    try:
        async with conn.begin():
            await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
            await conn.execute(text("LOCK TABLE purchase IN SHARE MODE"))
            found = (await conn.execute(largest)).scalar_one()
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available
            return None
        raise
    return int(found)


async def fold_batch(
    conn: AsyncConnection, *, upto: int, batch: int | None = None
) -> Folded | None:
    """Fold the next purchases after the watermark, up to id `upto`, in one transaction;
    None when there is nothing to fold, or another process is folding."""
    dialect = conn.dialect.name
    # SQLite's BEGIN IMMEDIATE already excludes every other writer.
    lock = "" if dialect == "sqlite" else " FOR UPDATE SKIP LOCKED"
    async with write_transaction(conn):
        # The migration writes the row; a schema made by create_all (the tests') has none.
        await conn.execute(
            text(
                "INSERT INTO stats_fold (id, purchase_id) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
            )
        )
        after = (
            await conn.execute(text(f"SELECT purchase_id FROM stats_fold WHERE id = 1{lock}"))
        ).scalar_one_or_none()
        if after is None or after >= upto:
            return None
        stop = (
            await conn.execute(
                text(
                    "SELECT max(id) FROM (SELECT id FROM purchase WHERE id > :after "
                    "ORDER BY id LIMIT :batch) AS next_ids"
                ),
                {"after": after, "batch": batch or FOLD_BATCH[dialect]},
            )
        ).scalar_one()
        stop = upto if stop is None else min(int(stop), upto)
        ids = {"after": after, "upto": stop}
        await conn.execute(text(_sales_sql(dialect)), ids)
        await conn.execute(text(_buyers_sql(dialect)), ids)
        await conn.execute(text(_spans_sql(dialect)), ids)
        await conn.execute(text("UPDATE stats_fold SET purchase_id = :upto WHERE id = 1"), ids)
        counted = await conn.execute(
            text("SELECT count(*) FROM purchase WHERE id > :after AND id <= :upto"), ids
        )
        return Folded(purchases=int(counted.scalar_one()), upto=stop)


async def fold(
    engine: AsyncEngine, *, on_batch: Callable[[Folded], None] | None = None
) -> int | None:
    """Fold every purchase final now; how many, or None when PostgreSQL's inserts kept the
    moment from being taken."""
    after, largest = await unfolded(engine)
    if largest <= after:  # nothing new: no lock taken, nothing written
        return 0
    async with engine.connect() as conn:
        upto = await final_id(conn, largest)
        if upto is None:
            return None
        total = 0
        while (done := await fold_batch(conn, upto=upto)) is not None:
            total += done.purchases
            if on_batch is not None:
                on_batch(done)
        return total


async def unfolded(engine: AsyncEngine) -> tuple[int, int]:
    """(watermark, largest purchase id): how far the fold has to go. Read only: on SQLite it
    does not wait for the write lock."""
    async with engine.connect() as conn:
        await conn.execution_options(**{READ_ONLY: True})
        async with conn.begin():
            row = (
                await conn.execute(
                    text(
                        "SELECT coalesce((SELECT purchase_id FROM stats_fold WHERE id = 1), 0), "
                        "(SELECT coalesce(max(id), 0) FROM purchase)"
                    )
                )
            ).one()
    return int(row[0]), int(row[1])


async def fold_periodically(engine: AsyncEngine, *, every: float) -> None:
    """The lifespan's background task: folds what arrived since the last round."""
    refused = 0  # rounds in a row that inserts kept from folding
    while True:
        await asyncio.sleep(every)
        try:
            folded = await fold(engine)
        except Exception as error:  # the database may be away: the next round tries again
            log.warning("statistics fold failed", error=type(error).__name__)
            continue
        refused = refused + 1 if folded is None else 0
        if refused and refused % REFUSED_ROUNDS_WARNING == 0:
            # The figures stay exact, but read more of `purchase` as the lag grows.
            log.warning("statistics fold kept waiting for inserts", rounds=refused)
        elif folded:
            log.debug("statistics folded", purchases=folded)
