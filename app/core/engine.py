"""The engine (one per process, configured per database) and the declarative base of the models.

Apart from the request-scoped helpers (app.core.db) so that what only needs a connection, the
console script and the migrations, imports neither FastAPI nor the metrics.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry

from app.core.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_engine(settings: Settings) -> AsyncEngine:
    """One engine per process; SQLite gets WAL, a busy timeout and eager write locks."""
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url)
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms)
        return engine
    engine = create_async_engine(
        settings.database_url,
        # A fixed pool: under load beyond it requests queue for a connection. Overflow
        # connections were opened and closed around single requests, and each new connection
        # costs a PostgreSQL backend fork plus a TLS probe: more CPU than the capture itself.
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        # No pre-ping: it costs a round trip per request. A connection that died with the server
        # fails its request with a 503, and SQLAlchemy then invalidates the whole pool, so the
        # next requests reconnect.
        connect_args=_bounded_waits(settings) | pooler_connect_args(settings.database_pooler),
    )
    if settings.db_timeout_scope == "transaction":
        _bound_each_transaction(engine, settings)
    if settings.database_pooler != "none":
        resolve_array_types_on_connect(engine)
    return engine


# How the waits on PostgreSQL are bounded (APP_DB_TIMEOUT_SCOPE). A session holding a customer's
# row lock would otherwise park every capture of that customer, each on a pooled connection,
# until the pool is gone and every request waits.
# - "connection" (default, the server reached directly): statement_timeout and lock_timeout are
#   startup parameters of each connection, so they cost nothing per request and bound every
#   statement, the one-statement capture included.
# - "transaction" (behind a transaction pooler such as PgBouncer): a pooler refuses startup
#   parameters it does not know (or drops them, if told to ignore them), and a session-level
#   SET would stay on a server connection that other clients share. So each transaction the
#   service opens sets them with set_config(..., is_local => true), at the cost of one round
#   trip per transaction; the self-committing statements (`fetch_row_autocommit`), which open
#   none, are bounded by the command timeout alone.
# In both, asyncpg's command_timeout bounds every command on the client: on expiry asyncpg sends
# the server a cancel request (PgBouncer forwards it) and the connection stays usable once the
# server has answered it (`_autocommit`).
def _bounded_waits(settings: Settings) -> dict[str, Any]:
    """asyncpg's connect arguments for the timeouts of `settings.db_timeout_scope`."""
    args: dict[str, Any] = {"command_timeout": settings.db_command_timeout}
    if settings.db_timeout_scope == "connection":
        args["server_settings"] = _server_timeouts(settings)
    return args


def _server_timeouts(settings: Settings) -> dict[str, str]:
    """PostgreSQL's timeout settings, in its unit (milliseconds)."""
    return {
        "statement_timeout": str(round(settings.db_statement_timeout * 1000)),
        "lock_timeout": str(round(settings.db_lock_timeout * 1000)),
    }


def _bound_each_transaction(engine: AsyncEngine, settings: Settings) -> None:
    """Set the server-side timeouts at the start of every transaction, for it alone."""
    values = ", ".join(
        f"set_config('{name}', '{value}', true)"
        for name, value in _server_timeouts(settings).items()
    )
    statement = f"SELECT {values}"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(statement)


def pooler_connect_args(pooler: str) -> dict[str, Any]:
    """What asyncpg is told so that nothing outlives a transaction on the server connection.

    Behind PgBouncer in transaction pooling one server connection serves many clients in turn,
    and consecutive statements of one client outside a transaction may land on different ones,
    so a named prepared statement is left behind on one server ("already exists" for the next
    client that picks the same name) and missing on the next ("does not exist"):

    - `statement_cache_size=0` (asyncpg): `fetch`/`fetchrow` (`fetch_row_autocommit`) prepare an
      unnamed statement, and since asyncpg 0.29 (MagicStack/asyncpg#1065) mark it unprepared so
      the execution re-sends Parse with Bind/Execute/Sync: PgBouncer may route the describe
      round trip and the execution to different server connections. That re-Parse is the
      price: a second round trip and a second parse per statement (bench/README.md).
    - `prepared_statement_cache_size=0` (SQLAlchemy's asyncpg adapter): no PreparedStatement
      objects kept per client connection, so none refers to a server connection it left.
    - `prepared_statement_name_func` returning "": SQLAlchemy runs every statement through
      asyncpg's `prepare(name=...)`. Left at None, asyncpg 0.31 (MagicStack/asyncpg#1245)
      leaves it unnamed when the cache is off, but older ones named it `__asyncpg_stmt_N__`;
      the empty name asks for the unnamed statement whatever asyncpg's default.
    - No `server_settings`: PgBouncer refuses startup parameters it does not track, and a
      `SET` would stay on a server connection other clients get next; the timeouts are set per
      transaction instead (APP_DB_TIMEOUT_SCOPE=transaction, which the setting implies).
    """
    if pooler == "none":
        return {}
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unnamed_statement,
    }


def _unnamed_statement() -> str:
    return ""


# The array types the batch statement binds (CAPTURE_MANY_PG in app/sales/repository/capture.py).
BOUND_ARRAY_TYPES = ("varchar[]", "integer[]", "numeric[]")


def resolve_array_types_on_connect(engine: AsyncEngine) -> None:
    """Let asyncpg learn the array types once per connection, inside one transaction.

    asyncpg looks up a type it has no codec for (the batch's arrays) with three statements:
    `set_config('jit', 'off', false)` for the session, the lookup, and a second set_config
    putting jit back. Behind a transaction pooler the three may land on three server
    connections, leaving jit off on one and set on another, for other clients. Done here in one
    transaction, ended by `RESET jit`, they leave nothing; the codecs stay with the connection.

    Through SQLAlchemy's DBAPI cursor, which opens the transaction and turns a failure into
    a DBAPIError (a 503 like any other lost connection): PgBouncer accepts a client while the
    server is down and fails its first statement, which is this one.
    """
    columns = ", ".join(f"NULL::{name}" for name in BOUND_ARRAY_TYPES)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SELECT {columns}")
            cursor.execute("RESET jit")
        finally:
            cursor.close()
        dbapi_connection.commit()


# Execution option of a connection whose transactions only read (`get_read_connection`).
READ_ONLY = "app_read_only"


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    """Make concurrent writers queue on SQLite instead of failing.

    A transaction that may write starts with BEGIN IMMEDIATE: a deferred transaction that reads
    first and writes later must upgrade its lock, and two such upgrades deadlock ("database is
    locked") no matter how long the busy timeout is. A read-only one starts deferred and, with
    WAL, reads the last commit beside a writer instead of queueing for the write lock.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")
