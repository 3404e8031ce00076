"""The per-request connection and transaction, and the self-committing statements.

The engine and the declarative base are app.core.engine's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar, cast

import asyncpg
import structlog
from fastapi import Depends, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.engine import READ_ONLY
from app.core.errors import (
    TRANSIENT_SQLSTATES,
    UNAVAILABLE_SQLSTATES,
    DatabaseUnavailable,
    OutcomeUnknown,
)
from app.core.metrics import Metrics, start_tally

T = TypeVar("T")
log = structlog.get_logger(__name__)


class Database:
    """The engine, and the one way a request gets a connection from it (`connect`).

    The capture endpoints open theirs in the handler instead of taking a `yield` dependency:
    FastAPI runs each of those inside an anyio cancel scope and two more context managers, which
    cost a tenth of a capture's CPU. The connection has no transaction yet: the service either
    opens one (`async with conn.begin()`) or, on PostgreSQL, runs one self-committing statement
    with `fetch_row_autocommit`, a single round trip where BEGIN and COMMIT would be two more.
    """

    def __init__(self, engine: AsyncEngine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection; what it stored is counted in the metrics once it is closed."""
        counts = start_tally()
        async with self.engine.connect() as connection:
            yield connection
        self.metrics.record_committed(counts)


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


# PostgreSQL's READ COMMITTED takes a new snapshot per statement: a customer read by one and
# their totals by the next could disagree with each other. REPEATABLE READ reads every statement
# of the transaction from one snapshot; asyncpg sends it in the BEGIN itself (no round trip).
_POSTGRES_SNAPSHOT = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}


async def get_read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """One read-only transaction per request, so a request's reads agree with each other.

    On PostgreSQL a `REPEATABLE READ READ ONLY` one (one snapshot); on SQLite a deferred one,
    which reads one snapshot anyway. Used with `scope="function"` so the transaction ends
    before the response is sent. Core connections, not ORM sessions: the service needs no
    identity map, and the ORM's bookkeeping was a fifth of the CPU of a capture. The writes
    open their own transactions (app/sales/service/).
    """
    async with (await get_database(request)).connect() as connection:
        snapshot = _POSTGRES_SNAPSHOT if connection.dialect.name == "postgresql" else {}
        await connection.execution_options(**{READ_ONLY: True}, **snapshot)
        async with connection.begin():
            yield connection


async def fetch_row_autocommit(
    conn: AsyncConnection, sql: str, *args: Any
) -> asyncpg.Record | None:
    """Run one PostgreSQL statement outside any transaction, so it commits on its own.

    It goes straight to asyncpg on the pooled connection: a prepared statement (asyncpg caches
    it per connection; behind PgBouncer an unnamed one, see `pooler_connect_args`) without
    SQLAlchemy's execution layer, which costs more CPU than the statement. SQLAlchemy still owns
    the pool. What SQLAlchemy would do on a lost connection is done here: a connection the
    server closed while it sat in the pool is replaced before use, and one lost mid-statement
    is invalidated. The statement is atomic, but its commit may have
    happened before the connection went: that is `OutcomeUnknown`, not "nothing was stored". A
    deadlock or serialisation failure rolled it back whole: a 503 as on the SQLAlchemy path.
    """
    return await _autocommit(conn, lambda driver: driver.fetchrow(sql, *args))


async def fetch_all_autocommit(conn: AsyncConnection, sql: str, *args: Any) -> list[asyncpg.Record]:
    """`fetch_row_autocommit` for a statement that returns many rows."""
    return await _autocommit(conn, lambda driver: driver.fetch(sql, *args))


async def _autocommit(
    conn: AsyncConnection, run: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    if conn.in_transaction():
        raise RuntimeError("an autocommit statement needs a connection outside a transaction")
    driver = await _driver(conn)
    if driver.is_closed():
        await conn.invalidate()
        driver = await _driver(conn)
    try:
        return await run(driver)
    except asyncpg.PostgresError as error:
        if error.sqlstate in TRANSIENT_SQLSTATES:
            raise DatabaseUnavailable() from error  # rolled back whole by the server
        if not (error.sqlstate or "").startswith(UNAVAILABLE_SQLSTATES):
            raise
        # The session ended once the statement was sent ("closed in the middle of operation",
        # or the server's FATAL): it may have committed before the connection went.
        await conn.invalidate()
        raise _outcome_unknown(error) from error
    except (asyncpg.InterfaceError, asyncpg.InternalClientError) as error:
        # Refused before anything was sent: the connection is closed, or asyncpg's protocol is
        # in a state it cannot go on from. A server that shuts down sends each session a FATAL
        # message and then closes the socket; a statement tried between the two fails so.
        await conn.invalidate()
        raise DatabaseUnavailable() from error
    except TimeoutError as error:
        # The command timeout: asyncpg has asked the server to cancel the statement, which may
        # have committed before the cancel arrived. The connection's next command first waits
        # for the server's answer to the cancel, so it stays in the pool, healthy.
        raise _outcome_unknown(error) from error
    except OSError as error:
        await conn.invalidate()
        raise _outcome_unknown(error) from error


@asynccontextmanager
async def write_transaction(conn: AsyncConnection) -> AsyncIterator[None]:
    """`conn.begin()` for a transaction that writes: a COMMIT whose connection is lost may have
    committed on the server, so that failure is `OutcomeUnknown`, not "nothing was stored".

    A failure before the COMMIT, or one the server reported (a deferred constraint, a
    serialisation failure), left nothing behind, and is raised as it is.
    """
    committing = False
    try:
        async with conn.begin():
            yield
            committing = True
    except DBAPIError as error:
        if committing and error.connection_invalidated:
            raise _outcome_unknown(error.orig or error) from error
        raise
    except TimeoutError as error:
        if not committing:
            raise
        # The command timeout expired on the COMMIT: the server may have committed, or may
        # never have seen it (a stalled network). The connection's state is unknown too, so it
        # is not given back to the pool.
        await conn.invalidate()
        raise _outcome_unknown(error) from error


def _outcome_unknown(error: BaseException) -> OutcomeUnknown:
    """Logged here: the client is told to retry with its key, operators see how often."""
    log.warning("write outcome unknown", error=type(error).__name__)
    return OutcomeUnknown()


async def _driver(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under SQLAlchemy's pooled one (checked out already)."""
    return cast(asyncpg.Connection, (await conn.get_raw_connection()).driver_connection)


ReadConnectionDep = Annotated[AsyncConnection, Depends(get_read_connection, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]
