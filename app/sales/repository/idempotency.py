"""The SQL of Idempotency-Keys (app.sales.idempotency): claim, replay, complete, purge."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.sales.models import IdempotencyKey
from app.sales.repository.rows import dialect_of


class IdempotencyRepository:
    """Retry keys, each named by (scope, key)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def claim(
        self, *, scope: str, key: str, request_hash: str, now: datetime, expired_before: datetime
    ) -> bool:
        """Reserve the key for this transaction; False if another request holds it.

        A key created before `expired_before` counts as new even before the purge has deleted
        it: it is taken over here, in the same statement. On PostgreSQL a concurrent holder
        makes this wait until that transaction ends, so a False here always means the key's
        response is committed; the row stays locked until this transaction ends, so the purge
        cannot delete it under a replay.
        """
        insert_fn = postgresql.insert if dialect_of(self.conn) == "postgresql" else sqlite.insert
        stmt = insert_fn(IdempotencyKey).values(
            scope=scope, key=key, request_hash=request_hash, created_at=now
        )
        take_over_if_expired = stmt.on_conflict_do_update(
            index_elements=[IdempotencyKey.scope, IdempotencyKey.key],
            set_={
                "request_hash": stmt.excluded.request_hash,
                "created_at": stmt.excluded.created_at,
                "purchase_id": None,
                "response_body": None,
            },
            where=IdempotencyKey.created_at < expired_before,
        ).returning(IdempotencyKey.key)
        return (await self.conn.execute(take_over_if_expired)).first() is not None

    async def stored(self, *, scope: str, key: str) -> tuple[str, str | None]:
        """(request_hash, response_body) of a claimed key."""
        row = (
            await self.conn.execute(
                select(IdempotencyKey.request_hash, IdempotencyKey.response_body).where(
                    IdempotencyKey.scope == scope, IdempotencyKey.key == key
                )
            )
        ).one()
        return row.request_hash, row.response_body

    async def complete(
        self, *, scope: str, key: str, purchase_id: int | None, response_body: str
    ) -> None:
        await self.conn.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
            .values(purchase_id=purchase_id, response_body=response_body)
        )

    async def purge(self, *, expired_before: datetime, limit: int) -> int:
        """Delete up to `limit` of the oldest keys created before `expired_before`; returns how
        many. Both conditions walk the created_at index.

        The outer `created_at` condition is checked again on a row that changed under the
        DELETE (PostgreSQL re-reads it after waiting for its lock): a key just taken over by
        `claim` is fresh again and stays.
        """
        oldest = (
            select(IdempotencyKey.scope, IdempotencyKey.key)
            .where(IdempotencyKey.created_at < expired_before)
            .order_by(IdempotencyKey.created_at)
            .limit(limit)
        )
        result = await self.conn.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.created_at < expired_before,
                tuple_(IdempotencyKey.scope, IdempotencyKey.key).in_(oldest),
            )
        )
        return int(result.rowcount)
