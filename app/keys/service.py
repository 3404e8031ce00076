"""Key use cases: create (the secret shown once), list, revoke, and checking a presented key.

No HTTP here and no commit of the caller's: each use case runs its own short transaction, so
the HTTP API and the command line share them whole.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from cachetools import TTLCache
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.engine import READ_ONLY
from app.core.errors import NotFound
from app.keys.repository import KeyRepository, KeyRow
from app.keys.schemas import Scope

log = structlog.get_logger(__name__)

SECRET_PREFIX = "pcs_"  # noqa: S105  (a label, not a secret)
_ALPHABET = string.ascii_letters + string.digits
SECRET_CHARS = 40  # 40 base62 characters: 238 random bits
VISIBLE_CHARS = len(SECRET_PREFIX) + 8  # "pcs_" and 8 more: the prefix kept and listed
SECRET_PATTERN = re.compile(rf"^{SECRET_PREFIX}[A-Za-z0-9]{{{SECRET_CHARS}}}$")
ALL_SCOPES = frozenset(Scope)
# A use is recorded at most this often per key (a write per request would serialise readers
# on SQLite's write lock and churn the row on PostgreSQL).
TOUCH_INTERVAL = timedelta(minutes=1)
CACHE_ENTRIES = 10_000
# Hashed with a wrong or unknown secret, so an unknown prefix costs what a wrong secret does.
_NO_HASH = "0" * 64


def utcnow() -> datetime:
    return datetime.now(UTC)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewSecret:
    secret: str
    prefix: str
    secret_hash: str


def new_secret() -> NewSecret:
    """A random secret; its first characters double as its (unique) lookup prefix. Two keys
    drawing the same 8 characters (47 bits) would be refused by the unique index."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_CHARS))
    secret = SECRET_PREFIX + body
    return NewSecret(secret, secret[:VISIBLE_CHARS], hash_secret(secret))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: an API key (`key_id`), or the bootstrap APP_ADMIN_TOKEN (None)."""

    key_id: int | None
    name: str
    scopes: frozenset[str]


BOOTSTRAP = Principal(key_id=None, name="APP_ADMIN_TOKEN", scopes=ALL_SCOPES)


class InvalidKey(Exception):
    """The presented key is unknown, wrong, revoked or expired (the caller is not told which)."""


async def create_key(
    engine: AsyncEngine,
    *,
    name: str,
    scopes: frozenset[str],
    lifetime: timedelta | None,
) -> tuple[KeyRow, str]:
    """Stores a new key and returns it with its secret, which nothing else will ever show."""
    if lifetime is not None and lifetime <= timedelta(0):
        raise ValueError("a key's lifetime must be positive")
    now = utcnow()
    made = new_secret()
    async with engine.connect() as conn, conn.begin():
        row = await KeyRepository(conn).add(
            prefix=made.prefix,
            secret_hash=made.secret_hash,
            name=name,
            scopes=scopes,
            created_at=now,
            expires_at=now + lifetime if lifetime else None,
        )
    log.info("api key created", key_id=row.id, scopes=" ".join(sorted(scopes)))
    return row, made.secret


async def list_keys(engine: AsyncEngine) -> list[KeyRow]:
    async with engine.connect() as conn:
        await conn.execution_options(**{READ_ONLY: True})
        async with conn.begin():
            return await KeyRepository(conn).all()


async def revoke_key(engine: AsyncEngine, *, key_id: int) -> KeyRow:
    """Revokes the key; every process refuses it once its cache entry expires (a few seconds)."""
    async with engine.connect() as conn, conn.begin():
        row = await KeyRepository(conn).revoke(key_id=key_id, now=utcnow())
    if row is None:
        raise NotFound(f"No API key with id {key_id}.")
    log.info("api key revoked", key_id=key_id)
    return row


class Authenticator:
    """Checks presented secrets against the keys table, through a small per-process cache.

    The cache maps a key's prefix to its row (or to None: no such key) for `cache_seconds`
    at most, and holds at most CACHE_ENTRIES of them: a revocation in any process reaches this
    one within that time, with no restart and at most one query per prefix per interval.
    """

    def __init__(self, *, bootstrap_token: str | None, cache_seconds: float) -> None:
        self._bootstrap_hash = hash_secret(bootstrap_token).encode() if bootstrap_token else None
        self._rows: TTLCache[str, KeyRow | None] = TTLCache(CACHE_ENTRIES, cache_seconds)
        self._touched: TTLCache[int, bool] = TTLCache(CACHE_ENTRIES, TOUCH_INTERVAL.total_seconds())

    async def authenticate(self, engine: AsyncEngine, secret: str) -> Principal:
        # Digests of equal length compared in full: the time taken says nothing about how much
        # of the secret matched (compare_digest on the raw strings would leak their length).
        presented = hash_secret(secret)
        if self._bootstrap_hash is not None and hmac.compare_digest(
            presented.encode(), self._bootstrap_hash
        ):
            return BOOTSTRAP
        if not SECRET_PATTERN.match(secret):
            raise InvalidKey
        row = await self._row(engine, secret[:VISIBLE_CHARS])
        matches = hmac.compare_digest(
            presented.encode(), (row.secret_hash if row else _NO_HASH).encode()
        )
        if row is None or not matches:
            raise InvalidKey
        now = utcnow()
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
            raise InvalidKey
        await self._touch(engine, row, now)
        return Principal(key_id=row.id, name=row.name, scopes=row.scopes)

    async def _row(self, engine: AsyncEngine, prefix: str) -> KeyRow | None:
        try:
            return self._rows[prefix]
        except KeyError:
            pass
        async with engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            async with conn.begin():
                row = await KeyRepository(conn).by_prefix(prefix)
        self._rows[prefix] = row
        return row

    async def _touch(self, engine: AsyncEngine, row: KeyRow, now: datetime) -> None:
        """Records the use at most once a minute per key: per process by `_touched`, across
        processes by the UPDATE's own condition. A failure to record it fails no request."""
        if row.id in self._touched:
            return
        if row.last_used_at is not None and now - row.last_used_at < TOUCH_INTERVAL:
            return
        self._touched[row.id] = True
        try:
            async with engine.connect() as conn, conn.begin():
                await KeyRepository(conn).touch(
                    key_id=row.id, now=now, unless_after=now - TOUCH_INTERVAL
                )
        except (DBAPIError, OSError) as error:
            log.warning("api key use not recorded", key_id=row.id, error=type(error).__name__)
