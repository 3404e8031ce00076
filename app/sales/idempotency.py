"""Idempotency-Key: a write is done at most once per key, and its first answer is replayed.

The rules are the same for every write endpoint: the same key with the same body replays the
stored response; with another body it is a 422; concurrent requests with one key store once
(the claim is a row lock, held until the writer's transaction ends); a key expires after the
configured time and is then a new key. No HTTP here, and no commit (the caller's transaction).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.db import Database, write_transaction
from app.core.errors import IdempotencyKeyReused
from app.sales.models import PUBLIC_SCOPE
from app.sales.repository.idempotency import IdempotencyRepository

log = structlog.get_logger(__name__)

# Keys deleted per purge transaction: short enough not to hold SQLite's write lock for long.
PURGE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class RetryKey:
    """A request's Idempotency-Key, with how long it counts and whose it is."""

    key: str
    ttl: timedelta
    # Whose key: every caller shares the public scope until requests carry a credential.
    scope: str = PUBLIC_SCOPE


@dataclass(frozen=True, slots=True)
class Captured:
    """A write's response body, serialised once so a replay can return the same bytes."""

    body: str
    replayed: bool


# What a write stores: its response body, and the purchase it made if it made exactly one.
Store = Callable[[], Awaitable[tuple[str, int | None]]]


def utcnow() -> datetime:
    return datetime.now(UTC)


async def once(conn: AsyncConnection, key: RetryKey, *, request: str, store: Store) -> Captured:
    """Run `store` unless this key already did, in the caller's transaction.

    `request` is the request body as the API understood it (normalised JSON), so a retry that
    differs only in formatting is the same request. Bodies of different endpoints never
    collide: each endpoint's JSON has its own top-level fields.
    """
    request_hash = hashlib.sha256(request.encode()).hexdigest()
    keys = IdempotencyRepository(conn)
    now = utcnow()
    claimed = await keys.claim(
        scope=key.scope,
        key=key.key,
        request_hash=request_hash,
        now=now,
        expired_before=now - key.ttl,
    )
    if not claimed:
        stored_hash, stored_body = await keys.stored(scope=key.scope, key=key.key)
        if stored_hash != request_hash or stored_body is None:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different request body."
            )
        return Captured(stored_body, True)
    body, purchase_id = await store()
    await keys.complete(scope=key.scope, key=key.key, purchase_id=purchase_id, response_body=body)
    return Captured(body, False)


async def purge_expired(database: Database, *, ttl: timedelta) -> int:
    """Delete every key older than `ttl`, a batch per transaction; returns how many."""
    purged = 0
    while True:
        async with database.engine.connect() as conn, write_transaction(conn):
            deleted = await IdempotencyRepository(conn).purge(
                expired_before=utcnow() - ttl, limit=PURGE_BATCH
            )
        purged += deleted
        if deleted < PURGE_BATCH:
            return purged


async def purge_periodically(database: Database, *, ttl: timedelta, every: float) -> None:
    """The lifespan's background task: off the request path, so no request waits for it."""
    while True:
        await asyncio.sleep(every)
        try:
            purged = await purge_expired(database, ttl=ttl)
        except Exception as error:  # the database may be away: the next round tries again
            log.warning("idempotency key purge failed", error=type(error).__name__)
        else:
            if purged:
                log.info("idempotency keys purged", count=purged)
