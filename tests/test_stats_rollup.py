"""The statistics' rollup: whatever has been folded, the figures are the purchases' own.

A reference computed here in Python, from the purchases as inserted, is what every answer is
held to: before any fold, part-way through, and after.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.engine import Base, create_engine
from app.core.settings import Settings
from app.main import create_app
from app.sales.models import Customer, Purchase
from app.stats import rollup, service
from app.stats.models import StatsFold
from app.stats.schemas import DailyStats, DayOut, TotalsOut
from tests.servers import purchase_capture

EPOCH = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Bought:
    customer: int
    at: datetime
    currency: str
    unit_price: Decimal
    quantity: int = 1

    @property
    def total(self) -> Decimal:
        return self.unit_price * self.quantity


def _expected(purchases: list[Bought], first: date, last: date, zone: ZoneInfo) -> DailyStats:
    """The figures, from the purchases alone: what the API must answer."""
    bounds = service.day_starts(first, last, zone)
    start, stop = bounds[0], bounds[-1]
    firsts: dict[int, datetime] = {}
    for p in purchases:
        firsts[p.customer] = min(firsts.get(p.customer, p.at), p.at)
    buyers = {p.customer for p in purchases if start <= p.at < stop}
    new = sum(1 for c in buyers if start <= firsts[c])
    counts: list[dict[str, int]] = [defaultdict(int) for _ in bounds[:-1]]
    revenue: list[dict[str, Decimal]] = [defaultdict(Decimal) for _ in bounds[:-1]]
    for p in purchases:
        for i in range(len(bounds) - 1):
            if bounds[i] <= p.at < bounds[i + 1]:
                counts[i][p.currency] += 1
                revenue[i][p.currency] += p.total
    all_counts: dict[str, int] = defaultdict(int)
    all_revenue: dict[str, Decimal] = defaultdict(Decimal)
    for i in range(len(bounds) - 1):
        for currency, n in counts[i].items():
            all_counts[currency] += n
            all_revenue[currency] += revenue[i][currency]
    return DailyStats(
        from_=first,
        to=last,
        tz=zone.key,
        days=[
            DayOut(
                date=first + timedelta(days=i),
                purchases=sum(counts[i].values()),
                revenue=dict(sorted(revenue[i].items())),
                purchases_by_currency=dict(sorted(counts[i].items())),
            )
            for i in range(len(bounds) - 1)
        ],
        totals=TotalsOut(
            purchases=sum(all_counts.values()),
            revenue=dict(sorted(all_revenue.items())),
            purchases_by_currency=dict(sorted(all_counts.items())),
            average_order_value={
                c: (all_revenue[c] / n).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
                for c, n in sorted(all_counts.items())
            },
            new_customers=new,
            returning_customers=len(buyers) - new,
        ),
    )


async def _reset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
        else:
            tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


async def _store(engine: AsyncEngine, purchases: list[Bought], customers: int) -> None:
    """Inserted in the given order: ids in that order, times in any (an import of history)."""
    async with engine.begin() as conn:
        for n in range(1, customers + 1):
            await conn.execute(
                insert(Customer).values(
                    id=n, email=f"c{n}@example.com", name="C", created_at=EPOCH, updated_at=EPOCH
                )
            )
        for p in purchases:
            await conn.execute(
                insert(Purchase).values(
                    customer_id=p.customer,
                    item="thing",
                    quantity=p.quantity,
                    unit_price=p.unit_price,
                    currency=p.currency,
                    total=p.total,
                    purchased_at=p.at,
                )
            )


async def _stats(engine: AsyncEngine, first: date, last: date, zone: ZoneInfo) -> DailyStats:
    async with engine.connect() as conn, conn.begin():
        return await service.daily(conn, first=first, last=last, zone=zone)


_BOUGHT = st.builds(
    Bought,
    customer=st.integers(1, 6),
    # Quarter-hour edges and the seconds either side of them are where a bucket could slip.
    at=st.integers(0, 40 * 96).flatmap(
        lambda q: st.sampled_from([-1, 0, 1, 450]).map(
            lambda s: EPOCH + timedelta(seconds=q * 900 + s)
        )
    ),
    currency=st.sampled_from(["EUR", "USD"]),
    # Up to the largest total a purchase may have: SQLite's sums must not overflow.
    unit_price=st.decimals(min_value=0, max_value=Decimal("9999999999.99"), places=2),
    quantity=st.sampled_from([1, 3, 10_000]),
)
# Europe/Berlin: DST; Asia/Kolkata and Asia/Kathmandu: days on :30 and :45 of UTC.
_ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu"]


def test_figures_are_the_purchases_own_however_far_the_fold_has_got(
    settings: Settings,
) -> None:
    @hypothesis_settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        purchases=st.lists(_BOUGHT, min_size=1, max_size=30),
        folds=st.lists(st.integers(1, 12), max_size=3),
        first=st.integers(0, 38),
        days=st.integers(1, 12),
        zone=st.sampled_from(_ZONES),
    )
    def check(purchases: list[Bought], folds: list[int], first: int, days: int, zone: str) -> None:
        asyncio.run(_check(settings, purchases, folds, first, days, ZoneInfo(zone)))

    check()


async def _check(
    settings: Settings,
    purchases: list[Bought],
    folds: list[int],
    first_day: int,
    days: int,
    zone: ZoneInfo,
) -> None:
    engine = create_engine(settings)
    try:
        await _reset(engine)
        await _store(engine, purchases, customers=6)
        first = EPOCH.date() + timedelta(days=first_day)
        last = first + timedelta(days=days - 1)
        expected = _expected(purchases, first, last, zone)
        assert await _stats(engine, first, last, zone) == expected
        for batch in folds:  # part of the way, a few purchases per transaction
            async with engine.connect() as conn:
                await rollup.fold_batch(conn, upto=10**9, batch=batch)
            assert await _stats(engine, first, last, zone) == expected
        await rollup.fold(engine)
        assert await _stats(engine, first, last, zone) == expected
    finally:
        await engine.dispose()


async def test_days_that_do_not_begin_on_a_quarter_hour_are_exact(db_engine: AsyncEngine) -> None:
    # Monrovia kept UTC-0:44:30 until 1972: its days began 30 s into a quarter-hour of UTC.
    zone = ZoneInfo("Africa/Monrovia")
    midnight = datetime(1971, 6, 2, 0, 44, 30, tzinfo=UTC)
    purchases = [
        Bought(1, midnight - timedelta(seconds=1), "EUR", Decimal("1.00")),
        Bought(1, midnight, "EUR", Decimal("2.00")),
        Bought(2, midnight + timedelta(seconds=29), "EUR", Decimal("4.00")),
        Bought(2, midnight + timedelta(hours=23, minutes=59), "EUR", Decimal("8.00")),
    ]
    await _store(db_engine, purchases, customers=2)
    await rollup.fold(db_engine)
    first, last = date(1971, 6, 1), date(1971, 6, 2)

    stats = await _stats(db_engine, first, last, zone)

    assert stats == _expected(purchases, first, last, zone)
    assert [day.purchases for day in stats.days] == [1, 3]


async def test_a_second_fold_finds_nothing_new(db_engine: AsyncEngine) -> None:
    await _store(db_engine, [Bought(1, EPOCH, "EUR", Decimal("1.00"))] * 3, customers=1)

    assert await rollup.fold(db_engine) == 3
    assert await rollup.fold(db_engine) == 0
    async with db_engine.connect() as conn:
        assert (await conn.execute(select(StatsFold.purchase_id))).scalar_one() == 3


async def test_the_service_folds_in_the_background(settings: Settings) -> None:
    await _prepare(settings)
    app = create_app(settings.model_copy(update={"stats_fold_interval_s": 0.05}))
    async with app.router.lifespan_context(app):
        for _ in range(200):
            engine = create_engine(settings)
            try:
                async with engine.connect() as conn:
                    folded = (await conn.execute(select(StatsFold.purchase_id))).scalar()
            finally:
                await engine.dispose()
            if folded == 1:
                return
            await asyncio.sleep(0.05)
    pytest.fail("the background fold did not fold the purchase within 10 s")


async def _prepare(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await _store(engine, [Bought(1, EPOCH, "EUR", Decimal("1.00"))], customers=1)
    finally:
        await engine.dispose()


async def test_stats_fold_command_folds_and_says_how_many(settings: Settings) -> None:
    await _prepare(settings)

    done = await asyncio.to_thread(
        purchase_capture,
        settings.database_url,
        "stats",
        "fold",
        pooler=settings.database_pooler,
    )

    assert done.returncode == 0, done.stderr
    assert "folded 1 purchases" in done.stderr
