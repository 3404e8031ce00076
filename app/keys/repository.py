"""Every SQL statement on the api_key table. Repositories never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.keys.models import ApiKey


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: int
    prefix: str
    secret_hash: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


_COLUMNS = (
    ApiKey.id,
    ApiKey.prefix,
    ApiKey.secret_hash,
    ApiKey.name,
    ApiKey.scopes,
    ApiKey.created_at,
    ApiKey.last_used_at,
    ApiKey.expires_at,
    ApiKey.revoked_at,
)


def _row(row: Any) -> KeyRow:
    m = row._mapping
    return KeyRow(
        id=m["id"],
        prefix=m["prefix"],
        secret_hash=m["secret_hash"],
        name=m["name"],
        scopes=frozenset(m["scopes"].split()),
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
    )


class KeyRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(
        self,
        *,
        prefix: str,
        secret_hash: str,
        name: str,
        scopes: frozenset[str],
        created_at: datetime,
        expires_at: datetime | None,
    ) -> KeyRow:
        statement = (
            insert(ApiKey)
            .values(
                prefix=prefix,
                secret_hash=secret_hash,
                name=name,
                scopes=" ".join(sorted(scopes)),
                created_at=created_at,
                expires_at=expires_at,
            )
            .returning(*_COLUMNS)
        )
        return _row((await self.conn.execute(statement)).one())

    async def by_prefix(self, prefix: str) -> KeyRow | None:
        row = (await self.conn.execute(select(*_COLUMNS).where(ApiKey.prefix == prefix))).first()
        return _row(row) if row else None

    async def all(self) -> list[KeyRow]:
        rows = await self.conn.execute(select(*_COLUMNS).order_by(ApiKey.id))
        return [_row(row) for row in rows]

    async def revoke(self, *, key_id: int, now: datetime) -> KeyRow | None:
        """Marks the key revoked (once: a second revoke keeps the first time); None if unknown.
        The row stays, so the key's name and last use remain on record."""
        await self.conn.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        row = (await self.conn.execute(select(*_COLUMNS).where(ApiKey.id == key_id))).first()
        return _row(row) if row else None

    async def touch(self, *, key_id: int, now: datetime, unless_after: datetime) -> None:
        """Records a use, unless one after `unless_after` is recorded already: another process
        wrote it within the minute. Only last_used_at is written, so a touch racing a revoke
        cannot undo it."""
        await self.conn.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < unless_after),
            )
            .values(last_used_at=now)
        )
