"""Keys made through the service on the test's database, as the CLI or the API would."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from app.core.engine import create_engine
from app.core.settings import Settings
from app.keys import service
from app.keys.repository import KeyRow

MakeKey = Callable[..., Awaitable[str]]


@pytest.fixture
def make_key(settings: Settings) -> MakeKey:
    """Creates a key with these scopes and returns its secret."""

    async def make(*scopes: str, name: str = "test key", lifetime: timedelta | None = None) -> str:
        engine = create_engine(settings)
        try:
            _, secret = await service.create_key(
                engine, name=name, scopes=frozenset(scopes), lifetime=lifetime
            )
        finally:
            await engine.dispose()
        return secret

    return make


async def stored_keys(settings: Settings) -> list[KeyRow]:
    engine = create_engine(settings)
    try:
        return await service.list_keys(engine)
    finally:
        await engine.dispose()


async def revoke_all(settings: Settings) -> list[KeyRow]:
    """Revokes every key straight in the table, as another process would."""
    engine = create_engine(settings)
    try:
        rows = await service.list_keys(engine)
        return [await service.revoke_key(engine, key_id=row.id) for row in rows]
    finally:
        await engine.dispose()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
