"""PostgreSQL's one-statement captures, sent to asyncpg under SQLAlchemy's pool: a connection
the server drops is handled as SQLAlchemy would, and nothing is half-written."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.errors import OUTCOME_UNKNOWN_TYPE
from app.core.settings import Settings
from tests.helpers import assert_problem, purchase, stored_counts

pytestmark = pytest.mark.postgres

URL = "/api/v1/purchases"


@pytest.fixture
def database_url(postgres_schema: str) -> str:
    """These tests are about PostgreSQL only."""
    return postgres_schema


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One pooled connection, so every request of a test reuses the same one."""
    return settings.model_copy(update={"db_pool_size": 1})


@asynccontextmanager
async def row_locked(admin: asyncpg.Connection, email: str) -> AsyncIterator[None]:
    """Holds the customer row of `email` locked (FOR UPDATE) until the block ends."""
    async with admin.transaction():
        await admin.execute("SELECT 1 FROM customer WHERE email = $1 FOR UPDATE", email)
        yield


async def terminate_others(admin: asyncpg.Connection, *, waiting_on_lock: bool = False) -> int:
    """Ends the service's connections (every other one on this database); returns how many."""
    ended: int = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND (NOT $1 OR wait_event_type = 'Lock')",
        waiting_on_lock,
    )
    return ended


async def terminate_once_waiting(admin: asyncpg.Connection) -> None:
    """Ends the service's connection as soon as its statement waits on a row lock."""
    await wait_for_lock_wait(admin)
    assert await terminate_others(admin, waiting_on_lock=True) == 1


async def wait_for_lock_wait(admin: asyncpg.Connection, *, waiting: bool = True) -> None:
    """Returns once another connection to the database waits on a lock (or, `waiting=False`,
    once none does)."""
    for _ in range(500):
        waiters = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        if bool(waiters) == waiting:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"the capture {'never waited' if waiting else 'still waits'} on the row lock")


async def test_a_pooled_connection_the_server_closed_is_replaced_before_a_capture(
    client: AsyncClient, admin: asyncpg.Connection, auth: dict[str, str]
) -> None:
    assert (await client.post(URL, json=purchase(email="a@example.com"))).status_code == 201
    assert await terminate_others(admin) >= 1
    await asyncio.sleep(0.2)  # the pooled connection reads the server's goodbye

    response = await client.post(URL, json=purchase(email="b@example.com"))

    assert response.status_code == 201, response.text
    assert await stored_counts(client, auth) == (2, 2)


async def test_a_connection_lost_mid_capture_answers_outcome_unknown(
    client: AsyncClient, admin: asyncpg.Connection, auth: dict[str, str]
) -> None:
    """The service cannot tell a session ended mid-statement from one ended just after its
    commit, so it does not promise "nothing was stored" (here nothing was)."""
    assert (await client.post(URL, json=purchase(email="held@example.com"))).status_code == 201
    async with row_locked(admin, "held@example.com"):
        capture = asyncio.create_task(client.post(URL, json=purchase(email="held@example.com")))
        await terminate_once_waiting(admin)
        response = await capture

    assert assert_problem(response, 503)["type"] == OUTCOME_UNKNOWN_TYPE
    assert int(response.headers["retry-after"]) > 0
    assert await stored_counts(client, auth) == (1, 1)
    assert (await client.post(URL, json=purchase(email="held@example.com"))).status_code == 201


async def test_a_batch_lost_mid_statement_answers_outcome_unknown_and_stores_none_of_it(
    client: AsyncClient, admin: asyncpg.Connection, auth: dict[str, str]
) -> None:
    assert (await client.post(URL, json=purchase(email="held@example.com"))).status_code == 201
    batch = {"purchases": [purchase(email=f"b{n}@example.com") for n in range(5)]}
    batch["purchases"].append(purchase(email="held@example.com"))
    async with row_locked(admin, "held@example.com"):
        capture = asyncio.create_task(client.post(f"{URL}/batch", json=batch))
        await terminate_once_waiting(admin)
        response = await capture

    assert assert_problem(response, 503)["type"] == OUTCOME_UNKNOWN_TYPE
    assert await stored_counts(client, auth) == (1, 1)


async def test_a_batch_chosen_as_deadlock_victim_answers_503_and_stores_none_of_it(
    client: AsyncClient, admin: asyncpg.Connection, auth: dict[str, str]
) -> None:
    for email in ("a@example.com", "b@example.com"):
        assert (await client.post(URL, json=purchase(email=email))).status_code == 201
    batch = {"purchases": [purchase(email="a@example.com"), purchase(email="b@example.com")]}
    async with row_locked(admin, "b@example.com"):
        capture = asyncio.create_task(client.post(f"{URL}/batch", json=batch))
        await wait_for_lock_wait(admin)  # the batch holds a@ and waits for b@
        # Now wait for a@ too. Each waiter checks for a deadlock deadlock_timeout after it began
        # to wait, and the first check ends its own statement: which one runs first is a race on
        # a busy machine, unless this session checks much later than the batch (1 s).
        await admin.execute("SET LOCAL deadlock_timeout = '30s'")
        await admin.execute("SELECT 1 FROM customer WHERE email = 'a@example.com' FOR UPDATE")
        response = await capture

    assert assert_problem(response, 503)["type"] == "about:blank"  # rolled back: known
    assert await stored_counts(client, auth) == (2, 2)


def shutdown_notice() -> bytes:
    """The FATAL ErrorResponse a PostgreSQL server sends each session as it shuts down."""
    fields = (b"S", "FATAL"), (b"V", "FATAL"), (b"C", "57P01"), (b"M", "terminating connection")
    body = b"".join(kind + value.encode() + b"\0" for kind, value in fields) + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


async def read_shutdown_notice_before_the_close(app: FastAPI) -> None:
    """Feeds the pooled connection the server's shutdown notice without closing its socket.

    That is the moment between reading a stopping server's last message and seeing it close
    the socket: asyncpg's protocol is then stuck waiting for a ReadyForQuery that never comes,
    yet the connection does not say it is closed.
    """
    async with app.state.database.engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        driver._protocol.data_received(shutdown_notice())
        assert not driver.is_closed()


async def test_a_capture_on_a_connection_the_server_is_closing_answers_503_then_reconnects(
    app: FastAPI, client: AsyncClient, auth: dict[str, str]
) -> None:
    assert (await client.post(URL, json=purchase(email="a@example.com"))).status_code == 201
    await read_shutdown_notice_before_the_close(app)

    response = await client.post(URL, json=purchase(email="b@example.com"))

    assert assert_problem(response, 503)["type"] == "about:blank"  # refused before sending
    assert (await client.post(URL, json=purchase(email="c@example.com"))).status_code == 201
    assert await stored_counts(client, auth) == (2, 2)


async def test_a_keyed_capture_on_a_connection_the_server_is_closing_answers_503_then_reconnects(
    app: FastAPI, client: AsyncClient, auth: dict[str, str]
) -> None:
    assert (await client.post(URL, json=purchase(email="a@example.com"))).status_code == 201
    await read_shutdown_notice_before_the_close(app)

    response = await client.post(
        URL, json=purchase(email="b@example.com"), headers={"Idempotency-Key": "closing-1"}
    )

    assert_problem(response, 503)
    retry = await client.post(
        URL, json=purchase(email="b@example.com"), headers={"Idempotency-Key": "closing-1"}
    )
    assert retry.status_code == 201, retry.text
    assert await stored_counts(client, auth) == (2, 2)


async def test_a_capture_cancelled_mid_statement_leaves_no_busy_connection_in_the_pool(
    app: FastAPI, client: AsyncClient, admin: asyncpg.Connection, auth: dict[str, str]
) -> None:
    assert (await client.post(URL, json=purchase(email="held@example.com"))).status_code == 201
    async with row_locked(admin, "held@example.com"):
        capture = asyncio.create_task(client.post(URL, json=purchase(email="held@example.com")))
        await wait_for_lock_wait(admin)
        capture.cancel()
        with pytest.raises(asyncio.CancelledError):
            await capture
        # asyncpg asks the server to cancel the statement; wait until it has.
        await wait_for_lock_wait(admin, waiting=False)

    response = await client.post(URL, json=purchase(email="next@example.com"))

    assert response.status_code == 201, response.text
    assert await stored_counts(client, auth) == (2, 2)
