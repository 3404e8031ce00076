"""GET /api/v1/stats/daily: local-day buckets, exact money per currency, new and returning."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.engine import create_engine
from app.core.settings import Settings
from app.sales.models import Purchase
from app.stats import rollup
from tests.helpers import assert_problem, purchase

Daily = Callable[..., Awaitable[dict[str, Any]]]


async def _buy_at(
    client: AsyncClient, settings: Settings, when: str, **fields: Any
) -> dict[str, Any]:
    """A purchase captured through the API, then moved to `when` (UTC) in the database (the
    tests' background fold is off: nothing has folded it yet)."""
    created = await client.post("/api/v1/purchases", json=purchase(**fields))
    body: dict[str, Any] = created.json()
    at = datetime.fromisoformat(when).replace(tzinfo=UTC)
    engine = create_async_engine(settings.database_url)
    async with engine.begin() as conn:
        await conn.execute(
            update(Purchase).where(Purchase.id == body["id"]).values(purchased_at=at)
        )
    await engine.dispose()
    return body


@pytest.fixture(params=["unfolded", "folded"])
def daily(
    request: pytest.FixtureRequest, client: AsyncClient, auth: dict[str, str], settings: Settings
) -> Daily:
    """GET /api/v1/stats/daily, with every purchase read from `purchase` (nothing folded yet)
    or from the rollup (all folded first): the answers must not differ."""

    async def get(**params: str) -> dict[str, Any]:
        if request.param == "folded":
            engine = create_engine(settings)
            try:
                assert await rollup.fold(engine) is not None
            finally:
                await engine.dispose()
        response = await client.get("/api/v1/stats/daily", params=params, headers=auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return get


async def test_one_bucket_per_day_of_the_range_empty_days_included(
    client: AsyncClient, auth: dict[str, str], daily: Daily
) -> None:
    stats = await daily(**{"from": "2026-11-01", "to": "2026-11-30"})

    assert [d["date"] for d in stats["days"]][:2] == ["2026-11-01", "2026-11-02"]
    assert len(stats["days"]) == 30
    assert stats["totals"]["purchases"] == 0
    assert stats["tz"] == "UTC"


async def test_revenue_is_exact_per_currency(
    client: AsyncClient, auth: dict[str, str], settings: Settings, daily: Daily
) -> None:
    for price, quantity, currency in [("0.10", 3, "EUR"), ("0.20", 1, "EUR"), ("5", 2, "USD")]:
        await _buy_at(
            client,
            settings,
            "2026-11-10T12:00:00",
            unit_price=price,
            quantity=quantity,
            currency=currency,
        )

    stats = await daily(**{"from": "2026-11-10", "to": "2026-11-10"})

    (day,) = stats["days"]
    assert day["revenue"] == {"EUR": "0.50", "USD": "10.00"}
    assert day["purchases"] == 3
    assert stats["totals"]["revenue"] == {"EUR": "0.50", "USD": "10.00"}
    assert stats["totals"]["average_order_value"] == {"EUR": "0.25", "USD": "10.00"}


async def test_the_time_zone_decides_which_day_a_purchase_falls_on(
    client: AsyncClient, auth: dict[str, str], settings: Settings, daily: Daily
) -> None:
    # 23:30 UTC on the 10th is 00:30 on the 11th in Berlin (UTC+1 in November).
    await _buy_at(client, settings, "2026-11-10T23:30:00")
    params = {"from": "2026-11-10", "to": "2026-11-11"}

    utc = await daily(**params)
    berlin = await daily(**params, tz="Europe/Berlin")

    assert [d["purchases"] for d in utc["days"]] == [1, 0]
    assert [d["purchases"] for d in berlin["days"]] == [0, 1]


@pytest.mark.parametrize(
    ("when", "day"),
    [
        # New York's spring-forward day (8 March 2026) lasts 23 hours: 05:00 to 04:00 UTC next.
        ("2026-03-08T04:59:59", "2026-03-07"),
        ("2026-03-08T05:00:00", "2026-03-08"),
        ("2026-03-09T03:59:59", "2026-03-08"),
        ("2026-03-09T04:00:00", "2026-03-09"),
        # Its fall-back day (1 November 2026) lasts 25 hours: 04:00 to 05:00 UTC next.
        ("2026-11-02T04:59:59", "2026-11-01"),
        ("2026-11-02T05:00:00", "2026-11-02"),
    ],
)
async def test_day_boundaries_follow_daylight_saving_time(
    client: AsyncClient, auth: dict[str, str], settings: Settings, when: str, day: str, daily: Daily
) -> None:
    await _buy_at(client, settings, when)

    stats = await daily(**{"from": "2026-03-01", "to": "2026-11-30", "tz": "America/New_York"})

    assert [d["date"] for d in stats["days"] if d["purchases"]] == [day]


async def test_new_and_returning_customers(
    client: AsyncClient, auth: dict[str, str], settings: Settings, daily: Daily
) -> None:
    await _buy_at(client, settings, "2026-10-01T10:00:00", email="old@example.com")
    await _buy_at(client, settings, "2026-11-05T10:00:00", email="old@example.com")
    await _buy_at(client, settings, "2026-11-06T10:00:00", email="new@example.com")
    await _buy_at(client, settings, "2026-11-07T10:00:00", email="new@example.com")

    stats = await daily(**{"from": "2026-11-01", "to": "2026-11-30"})

    assert stats["totals"]["new_customers"] == 1
    assert stats["totals"]["returning_customers"] == 1
    assert stats["totals"]["purchases"] == 3


@pytest.mark.parametrize(
    "params",
    [
        {"tz": "Mars/Olympus"},
        {"tz": "../../etc/passwd"},
        {"from": "2026-11-30", "to": "2026-11-01"},
        {"from": "2025-01-01", "to": "2026-11-01"},
        {"from": "yesterday"},
        {"from": "0.0", "to": "0.0"},
        {"to": "1700000000"},
        {"from": "0001-01-01", "to": "0001-01-02", "tz": "Asia/Tokyo"},
        {"from": "9999-12-30", "to": "9999-12-31"},
        {"to": "0001-01-01", "tz": "UTC"},
    ],
)
async def test_bad_range_or_zone_is_a_422(
    client: AsyncClient, auth: dict[str, str], params: dict[str, str]
) -> None:
    response = await client.get("/api/v1/stats/daily", params=params, headers=auth)

    assert_problem(response, 422)


async def test_stats_need_the_admin_token(client: AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/stats/daily"), 401)


async def test_default_range_is_the_30_days_ending_today(
    client: AsyncClient, auth: dict[str, str], daily: Daily
) -> None:
    await client.post("/api/v1/purchases", json=purchase())

    stats = await daily()

    assert len(stats["days"]) == 30
    assert stats["days"][-1]["date"] == datetime.now(UTC).date().isoformat()
    assert stats["days"][-1]["purchases"] == 1
