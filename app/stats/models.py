"""The statistics' rollup: purchases folded into UTC quarter-hours, off the capture path.

A 90-day `stats/daily` over millions of purchases cannot scan them per request. A background
fold (app.stats.rollup) adds each purchase once to these tables, in id order, and records the
last id it folded in `stats_fold`; a request reads the rollup for what is folded and the few
purchases after it from `purchase` itself, in one snapshot, so the answer is exact.

Quarter-hours, because every time zone in use today starts its days on one: any zone's local
days are whole quarter-hours of UTC. (Where an old zone did not, before 1972, the request reads
the ragged quarter-hour at each end of a day from `purchase`.)

Purchases are never updated or deleted (an erasure keeps them, for the books): a folded
purchase stays folded as it was.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.columns import BigIntId, UTCDateTime
from app.core.engine import Base

# Seconds in a bucket: a bucket is named by the Unix time at which it begins.
BUCKET_SECONDS = 900


class StatsFold(Base):
    """One row: every purchase with an id up to `purchase_id` is in the rollup, none after."""

    __tablename__ = "stats_fold"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    purchase_id: Mapped[int] = mapped_column(BigInteger)


class StatsSales(Base):
    """Purchases and revenue per (quarter-hour, currency).

    Revenue is kept as integer cents in three parts of five decimal digits (as
    app.core.columns.money_sum adds them), so it is exact on SQLite too, whose integers would
    overflow on a busy bucket's sum of the largest totals.
    """

    __tablename__ = "stats_sales"

    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    purchases: Mapped[int] = mapped_column(BigInteger)
    revenue_low: Mapped[int] = mapped_column(BigInteger)
    revenue_mid: Mapped[int] = mapped_column(BigInteger)
    revenue_high: Mapped[int] = mapped_column(BigInteger)


class StatsBuyers(Base):
    """Per quarter-hour: how many customers made their first purchase in it (`firsts`), and
    how many made their latest one in it so far (`lasts`).

    New buyers of a range are the firsts in it; all buyers of a range that reaches the latest
    purchase are the customers whose last purchase is in it. A customer counts in one bucket of
    each column: when their last purchase moves on, the fold moves them.
    """

    __tablename__ = "stats_buyers"

    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    firsts: Mapped[int] = mapped_column(BigInteger)
    lasts: Mapped[int] = mapped_column(BigInteger)


class StatsCustomerSpan(Base):
    """A customer's first and latest purchase time, as far as the fold has read."""

    __tablename__ = "stats_customer_span"

    # No foreign key: customers are never deleted (an erasure keeps the row), and the fold
    # need not lock them.
    customer_id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())
