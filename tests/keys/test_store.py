"""What the key store keeps, on SQLite and PostgreSQL: a hash and a prefix, never the secret."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.settings import Settings
from app.keys.models import ApiKey
from app.keys.service import TOUCH_INTERVAL, utcnow
from tests.helpers import serving
from tests.keys.conftest import MakeKey, bearer


async def _stored(settings: Settings) -> list[dict[str, object]]:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(ApiKey.__table__))
            return [dict(row._mapping) for row in rows]
    finally:
        await engine.dispose()


async def test_only_the_secrets_hash_and_prefix_are_stored(
    settings: Settings, make_key: MakeKey
) -> None:
    secret = await make_key("read", "admin", name="ci")

    (row,) = await _stored(settings)

    assert secret.startswith("pcs_")
    assert len(secret) == 44
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert row["prefix"] == secret[:12]
    assert secret not in {str(value) for value in row.values()}
    assert (row["name"], row["scopes"]) == ("ci", "admin read")


async def test_two_keys_never_share_a_secret_or_prefix(make_key: MakeKey) -> None:
    secrets = {await make_key("read") for _ in range(20)}

    assert len(secrets) == 20
    assert len({secret[:12] for secret in secrets}) == 20


async def test_first_use_is_recorded(
    settings: Settings, client: AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key("read")
    before = utcnow()

    await client.get("/api/v1/purchases", headers=bearer(key))

    (row,) = await _stored(settings)
    assert row["last_used_at"] is not None
    assert before - timedelta(seconds=1) <= row["last_used_at"] <= utcnow()  # type: ignore[operator]


async def test_use_is_recorded_at_most_once_a_minute(
    settings: Settings, client: AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key("read")
    await client.get("/api/v1/purchases", headers=bearer(key))
    (first,) = await _stored(settings)

    for _ in range(5):
        await client.get("/api/v1/purchases", headers=bearer(key))
    # Another process (its own cache, nothing touched yet) uses the key too.
    async with serving(settings, key_cache_seconds=0) as other:
        await other.get("/api/v1/purchases", headers=bearer(key))

    (later,) = await _stored(settings)
    assert later["last_used_at"] == first["last_used_at"]
    assert timedelta(minutes=1) == TOUCH_INTERVAL
