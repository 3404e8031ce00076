"""Issue 6.4: SIGTERM while requests are in flight.

The in-flight requests are held deterministically: the test locks a customer's row in
PostgreSQL, so purchases for that customer wait inside the service, mid-transaction. Then the
process gets SIGTERM (as from an orchestrator, with uvicorn's `--timeout-graceful-shutdown` as
the Dockerfile sets it). New connections must be refused while the held requests go on; once
the lock is released they complete with 201, the process exits 0 within the timeout, and every
purchase they were told about is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest

from .conftest import Serve
from .postgres import asyncpg_dsn

pytestmark = pytest.mark.postgres

URL = "/api/v1/purchases"
GRACEFUL_TIMEOUT_S = 20
IN_FLIGHT = 5
EMAIL = "held@example.com"


def purchase(item: str) -> dict[str, object]:
    return {"customer": {"email": EMAIL, "name": "Held"}, "item": item, "unit_price": "5.00"}


async def wait_until(predicate: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


async def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_zero(
    database: str, serve: Serve, db: asyncpg.Connection
) -> None:
    server = serve(database, extra_args=("--timeout-graceful-shutdown", str(GRACEFUL_TIMEOUT_S)))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        first = await http.post(URL, json=purchase("first"))
        assert first.status_code == 201, first.text

        observer = await asyncpg.connect(asyncpg_dsn(database))
        lock = db.transaction()
        await lock.start()
        try:
            await db.execute("SELECT 1 FROM customer WHERE email = $1 FOR UPDATE", EMAIL)
            held = [
                asyncio.create_task(http.post(URL, json=purchase(f"in flight {n}")))
                for n in range(IN_FLIGHT)
            ]

            async def all_waiting_on_the_lock() -> bool:
                waiting = await observer.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                return bool(waiting == IN_FLIGHT)

            await wait_until(all_waiting_on_the_lock, 10, "the requests to wait on the lock")

            server.terminate()
            stopped_at = time.monotonic()

            async def refuses_new_connections() -> bool:
                try:
                    async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as fresh:
                        await fresh.get("/healthz")
                except httpx.ConnectError:
                    return True
                return False

            await wait_until(refuses_new_connections, 5, "new connections to be refused")
            await asyncio.sleep(0.5)
            assert server.process is not None
            assert server.process.poll() is None, "exited with requests still in flight"
            assert not any(task.done() for task in held), "a held request ended early"
        finally:
            await lock.rollback()

        responses = await asyncio.gather(*held)
        code = await asyncio.to_thread(server.wait, GRACEFUL_TIMEOUT_S)
        elapsed = time.monotonic() - stopped_at
        await observer.close()

    assert [r.status_code for r in responses] == [201] * IN_FLIGHT, [r.text for r in responses]
    assert code == 0, server.log_tail()
    assert elapsed < GRACEFUL_TIMEOUT_S, elapsed

    told = {r.json()["id"] for r in responses} | {first.json()["id"]}
    stored = {row["id"] for row in await db.fetch("SELECT id FROM purchase")}
    assert told == stored


async def test_sigterm_on_an_idle_server_exits_zero_at_once(database: str, serve: Serve) -> None:
    server = serve(database, extra_args=("--timeout-graceful-shutdown", str(GRACEFUL_TIMEOUT_S)))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200  # a kept-alive, idle connection
        started = time.monotonic()
        server.terminate()
        code = await asyncio.to_thread(server.wait, GRACEFUL_TIMEOUT_S)

    assert code == 0, server.log_tail()
    assert time.monotonic() - started < 5
