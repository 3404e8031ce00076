"""Bounded waits on PostgreSQL: a session holding a customer's row lock costs that customer's
captures a 503 after the lock timeout, and everyone else nothing, however long it holds it.

Both ways the timeouts reach the server run every test: as startup parameters of each
connection, and per transaction, as behind a transaction pooler (APP_DB_TIMEOUT_SCOPE); and
once more really behind one: through this run's PgBouncer with APP_DATABASE_POOLER=pgbouncer
(which brings the per-transaction timeouts with it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

from app.core.settings import Settings
from tests.helpers import assert_problem, purchase, serving, stored_counts
from tests.pgbouncer import PgBouncer
from tests.test_autocommit import row_locked, wait_for_lock_wait

pytestmark = pytest.mark.postgres

URL = "/api/v1/purchases"
HELD = "held@example.com"
# Longer than the pool timeout: unbounded waits on the lock would exhaust the pool, and the
# other requests would give up waiting for a connection (503) before the lock goes.
HOLD_S = 2.5
POOL_SIZE = 4


@pytest.fixture(
    params=["connection", "transaction", pytest.param("pgbouncer", marks=pytest.mark.pgbouncer)]
)
def timeout_scope(request: pytest.FixtureRequest) -> str:
    """APP_DB_TIMEOUT_SCOPE, or `pgbouncer`: per transaction, through PgBouncer."""
    scope: str = request.param
    return scope


@pytest.fixture
def database_url(postgres_schema: str, timeout_scope: str, request: pytest.FixtureRequest) -> str:
    """These tests are about PostgreSQL only (and PgBouncer in front of it)."""
    if timeout_scope == "pgbouncer":
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        return bouncer.url_for(request.getfixturevalue("pooled_schema"))
    return postgres_schema


@pytest.fixture
def database_pooler(timeout_scope: str) -> str:
    return "pgbouncer" if timeout_scope == "pgbouncer" else "none"


@pytest.fixture
def settings(settings: Settings, timeout_scope: str) -> Settings:
    """Short bounds, a small pool and a pool timeout shorter than the lock is held."""
    return settings.model_copy(
        update={
            "db_timeout_scope": "transaction" if timeout_scope == "pgbouncer" else timeout_scope,
            "db_lock_timeout": 0.2,
            "db_statement_timeout": 0.5,
            "db_command_timeout": 0.8,
            "db_pool_size": POOL_SIZE,
            "db_pool_timeout": 1.0,
        }
    )


async def timed(request: Awaitable[Response]) -> tuple[Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_a_held_row_lock_costs_only_its_customer_a_bounded_503(
    client: AsyncClient, admin: asyncpg.Connection, auth: dict[str, str], settings: Settings
) -> None:
    assert (await client.post(URL, json=purchase(email=HELD))).status_code == 201
    # The longest a capture may take: a wait for a connection, then one for its statement.
    bound = settings.db_pool_timeout + settings.db_command_timeout
    others = 0
    async with row_locked(admin, HELD):
        held_since = time.monotonic()
        while time.monotonic() - held_since < HOLD_S:
            # As many captures of the held customer as the pool has connections, keyed (in a
            # transaction) and key-less (one self-committing statement), beside other requests.
            held = [
                timed(client.post(URL, json=purchase(email=HELD), headers=key))
                for n in range(POOL_SIZE // 2)
                for key in ({}, {"Idempotency-Key": f"held-{others}-{n}"})
            ]
            other = [
                timed(client.post(URL, json=purchase(email=f"other{others}@example.com"))),
                timed(client.get("/readyz")),
            ]
            # Unbounded, the held captures would wait for the lock: fail instead of hanging.
            answers = asyncio.gather(*held, *other)
            *held_answers, captured, ready = await asyncio.wait_for(answers, 2 * bound)
            others += 1

            for response, took in held_answers:
                assert_problem(response, 503)
                assert int(response.headers["retry-after"]) > 0
                assert took < bound, f"a capture of the held customer took {took:.2f} s"
            assert captured[0].status_code == 201, captured[0].text
            assert ready[0].status_code == 200, ready[0].text
        # A capture cut short by the client's timeout is cancelled on the server by a request
        # of its own: let those land before the lock goes (README, "errors").
        await wait_for_lock_wait(admin, waiting=False)

    assert others >= 2
    assert await stored_counts(client, auth) == (1 + others, 1 + others)


async def test_a_statement_over_the_statement_timeout_answers_503(
    settings: Settings, admin: asyncpg.Connection, auth: dict[str, str]
) -> None:
    """A lock timeout longer than the statement timeout: the statement's is the one that ends
    the wait of a capture's transaction (SQLSTATE 57014)."""
    patient = settings.model_copy(update={"db_lock_timeout": 5.0})
    async with serving(patient) as client:
        assert (await client.post(URL, json=purchase(email=HELD))).status_code == 201
        async with row_locked(admin, HELD):
            response = await client.post(
                URL, json=purchase(email=HELD), headers={"Idempotency-Key": "slow-1"}
            )

        assert_problem(response, 503)
        assert int(response.headers["retry-after"]) > 0
        assert await stored_counts(client, auth) == (1, 1)


# PostgreSQL only: it counts the backends behind the service's one pooled connection, and
# through PgBouncer a client connection has no backend of its own.
@pytest.mark.parametrize("timeout_scope", ["connection", "transaction"], indirect=True)
async def test_a_capture_that_timed_out_is_cancelled_on_the_server_and_its_connection_reused(
    settings: Settings, admin: asyncpg.Connection, auth: dict[str, str]
) -> None:
    """With one pooled connection: the server stops waiting for the lock (so the capture is not
    stored when the lock goes), and the same connection serves the next capture."""
    async with serving(settings.model_copy(update={"db_pool_size": 1})) as client:
        assert (await client.post(URL, json=purchase(email=HELD))).status_code == 201
        pid = await service_backend(admin)
        async with row_locked(admin, HELD):
            assert_problem(await client.post(URL, json=purchase(email=HELD)), 503)
            await wait_for_lock_wait(admin, waiting=False)

        next_capture = await client.post(URL, json=purchase(email="next@example.com"))
        assert next_capture.status_code == 201, next_capture.text
        assert await stored_counts(client, auth) == (2, 2)
        assert await service_backend(admin) == pid


async def service_backend(admin: asyncpg.Connection) -> int:
    """The process id of the one backend serving the app's connection."""
    pids = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    assert len(pids) == 1, pids
    pid: int = pids[0]["pid"]
    return pid


async def test_the_timeouts_are_in_force_in_the_service_transactions(app: FastAPI) -> None:
    """What PostgreSQL reports inside a transaction of the service's own."""
    async with app.state.database.connect() as conn, conn.begin():
        shown = [
            (await conn.exec_driver_sql(f"SHOW {name}")).scalar()
            for name in ("lock_timeout", "statement_timeout")
        ]

    assert shown == ["200ms", "500ms"]
