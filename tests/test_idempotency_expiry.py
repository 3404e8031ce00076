"""Idempotency keys are kept for APP_IDEMPOTENCY_KEY_TTL_HOURS (24 h; one hour in these tests),
then count as new and are purged in the background; a key belongs to a scope (whose it is)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.settings import Settings
from app.sales.idempotency import RetryKey, purge_expired
from app.sales.models import PUBLIC_SCOPE, IdempotencyKey
from app.sales.repository.idempotency import IdempotencyRepository
from app.sales.schemas import PurchaseIn
from app.sales.service.capture import capture_purchase
from tests.helpers import purchase, read_rows, stored_purchases

URL = "/api/v1/purchases"
TTL = timedelta(hours=1)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Keys kept one hour, so the tests see the setting rather than the default."""
    return settings.model_copy(update={"idempotency_key_ttl_hours": 1.0})


async def age_key(db_engine: AsyncEngine, key: str, age: timedelta) -> None:
    """Makes the key look created `age` ago."""
    async with db_engine.begin() as connection:
        await connection.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == key)
            .values(created_at=datetime.now(UTC) - age)
        )


async def stored_keys(db_engine: AsyncEngine) -> list[str]:
    rows = await read_rows(db_engine, select(IdempotencyKey.key).order_by(IdempotencyKey.key))
    return [row["key"] for row in rows]


async def capture_with_keys(client: AsyncClient, *keys: str) -> None:
    for n, key in enumerate(keys):
        body = purchase(item=f"item {n}")
        response = await client.post(URL, json=body, headers={"Idempotency-Key": key})
        assert response.status_code == 201, response.text


async def test_a_key_within_its_retention_still_replays(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    await capture_with_keys(client, "k")
    await age_key(db_engine, "k", TTL - timedelta(minutes=1))

    retry = await client.post(URL, json=purchase(item="item 0"), headers={"Idempotency-Key": "k"})

    assert retry.headers["idempotent-replayed"] == "true"
    assert len(await stored_purchases(db_engine)) == 1


async def test_an_expired_key_is_a_new_key(client: AsyncClient, db_engine: AsyncEngine) -> None:
    await capture_with_keys(client, "k")
    await age_key(db_engine, "k", TTL + timedelta(minutes=1))

    retry = await client.post(URL, json=purchase(item="item 0"), headers={"Idempotency-Key": "k"})

    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers
    purchases = await stored_purchases(db_engine)
    assert [p["item"] for p in purchases] == ["item 0", "item 0"]
    (key,) = await read_rows(db_engine, select(IdempotencyKey.__table__))
    assert key["purchase_id"] == purchases[-1]["id"] == retry.json()["id"]


async def test_an_expired_key_taken_first_no_longer_refuses_another_body(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    """A squatted key blocks the real request only until it expires."""
    await capture_with_keys(client, "order-42")
    await age_key(db_engine, "order-42", TTL + timedelta(minutes=1))

    real = await client.post(
        URL, json=purchase(item="real"), headers={"Idempotency-Key": "order-42"}
    )

    assert real.status_code == 201, real.text
    assert [p["item"] for p in await stored_purchases(db_engine)] == ["item 0", "real"]


async def test_purge_deletes_the_expired_keys_and_keeps_their_purchases(
    app: FastAPI, client: AsyncClient, db_engine: AsyncEngine
) -> None:
    await capture_with_keys(client, "old-1", "old-2", "new")
    await age_key(db_engine, "old-1", timedelta(hours=2))
    await age_key(db_engine, "old-2", timedelta(hours=3))

    purged = await purge_expired(app.state.database, ttl=TTL)

    assert purged == 2
    assert await stored_keys(db_engine) == ["new"]
    assert len(await stored_purchases(db_engine)) == 3


async def test_purge_deletes_at_most_its_limit_oldest_first(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    keys = [f"k{n}" for n in range(5)]
    await capture_with_keys(client, *keys)
    for n, key in enumerate(keys):
        await age_key(db_engine, key, timedelta(hours=10 - n))  # k0 is the oldest

    async with db_engine.begin() as connection:
        deleted = await IdempotencyRepository(connection).purge(
            expired_before=datetime.now(UTC) - timedelta(hours=1), limit=2
        )

    assert deleted == 2
    assert await stored_keys(db_engine) == ["k2", "k3", "k4"]


@pytest.fixture
def purging_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"idempotency_purge_interval_s": 0.05})


async def test_the_service_purges_expired_keys_in_the_background(
    purging_settings: Settings, db_engine: AsyncEngine
) -> None:
    from app.main import create_app

    app = create_app(purging_settings)
    async with app.router.lifespan_context(app):
        async with app.state.database.connect() as connection:
            data = PurchaseIn.model_validate(purchase())
            for key in ("old", "new"):
                await capture_purchase(
                    connection, data=data, idempotency_key=RetryKey(key, ttl=TTL)
                )
        await age_key(db_engine, "old", timedelta(hours=2))
        for _ in range(200):
            if await stored_keys(db_engine) == ["new"]:
                break
            await asyncio.sleep(0.05)

    assert await stored_keys(db_engine) == ["new"]


async def test_the_same_key_in_two_scopes_is_two_keys(app: FastAPI, db_engine: AsyncEngine) -> None:
    """Once requests carry a credential, its id is the scope: one caller's key never replays
    another caller's answer, nor blocks it."""
    data = PurchaseIn.model_validate(purchase())
    async with app.state.database.connect() as connection:
        mine = await capture_purchase(
            connection, data=data, idempotency_key=RetryKey("order-42", ttl=TTL)
        )
        theirs = await capture_purchase(
            connection,
            data=data,
            idempotency_key=RetryKey("order-42", ttl=TTL, scope="api-key-7"),
        )

    assert not mine.replayed
    assert not theirs.replayed
    assert len(await stored_purchases(db_engine)) == 2
    scopes = await read_rows(db_engine, select(IdempotencyKey.scope).order_by(IdempotencyKey.scope))
    assert [row["scope"] for row in scopes] == ["api-key-7", PUBLIC_SCOPE]
