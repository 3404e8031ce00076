"""Keys made through the service on the test's database, as the CLI or the API would, and
apps whose settings differ from the default only where a test says."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.db import create_engine
from app.keys import service
from app.keys.repository import KeyRow
from app.main import create_app
from app.settings import Settings

MakeKey = Callable[..., Awaitable[str]]


@pytest.fixture
def make_key(settings: Settings) -> MakeKey:
    """Creates a key with these scopes and returns its secret."""

    async def make(*scopes: str, name: str = "test key", expires_at: datetime | None = None) -> str:
        engine = create_engine(settings)
        try:
            _, secret = await service.create_key(
                engine, name=name, scopes=frozenset(scopes), expires_at=expires_at
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


@asynccontextmanager
async def serve(settings: Settings, **changes: Any) -> AsyncIterator[AsyncClient]:
    """A client of a fresh app on the test's database, with these settings changed."""
    application: FastAPI = create_app(settings.model_copy(update=changes))
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
