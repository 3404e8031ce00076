"""Issue 10: faults of a PgBouncer in transaction pooling, mid-traffic.

A real uvicorn process with APP_DATABASE_POOLER=pgbouncer reaches a PostgreSQL cluster of the
test's own through a PgBouncer of the test's own, while clients capture purchases with and
without Idempotency-Keys. Then, one per test: PgBouncer is stopped and started again; PAUSEd
and RESUMEd from its admin console; told to RECONNECT; or PostgreSQL behind it is restarted.
Every answer is 201 or a 503 problem+json with Retry-After, never a 500; the same process is
ready again by itself; and, once the clients retried what failed with the same keys, every
purchase they were told about exists and none is stored twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest

from tests.pgbouncer import PgBouncer, pgbouncer_binary

from .conftest import Serve
from .postgres import PgCluster, create_database
from .test_outage import (
    RECOVERY_TIMEOUT_S,
    KeylessTraffic,
    Traffic,
    assert_nothing_half_written,
    assert_unavailable_problem,
    retry_what_failed,
    server_errors,
    start_clients,
    wait_for_status,
)

pytestmark = [pytest.mark.postgres, pytest.mark.pgbouncer]

# A fault gets the pooler, the cluster behind it, and the clients' HTTP client and key-less
# traffic, to check what the service answers while the fault lasts.
Fault = Callable[[PgBouncer, PgCluster, httpx.AsyncClient, KeylessTraffic], Awaitable[None]]


@pytest.fixture
def bouncer(pg_cluster: PgCluster) -> Iterator[PgBouncer]:
    """A PgBouncer of the test's own in front of the test's own PostgreSQL cluster."""
    binary = pgbouncer_binary()
    if binary is None:
        pytest.fail("pgbouncer is not installed (make hardening installs Debian's package)")
    running = PgBouncer(binary, pg_cluster.server_url, pool_size=4)
    try:
        running.start()
        yield running
    finally:
        running.destroy()


async def assert_unavailable_meanwhile(http: httpx.AsyncClient, keyless: KeylessTraffic) -> None:
    await asyncio.sleep(2.0)
    assert_unavailable_problem(await keyless.send(http, "while it is away"))
    assert_unavailable_problem(await http.get("/readyz"))
    assert (await http.get("/healthz")).status_code == 200


async def stop_then_start_pgbouncer(
    bouncer: PgBouncer, _cluster: PgCluster, http: httpx.AsyncClient, keyless: KeylessTraffic
) -> None:
    await asyncio.to_thread(bouncer.stop)
    await assert_unavailable_meanwhile(http, keyless)
    await asyncio.to_thread(bouncer.start)


async def restart_postgres(
    _bouncer: PgBouncer, cluster: PgCluster, http: httpx.AsyncClient, keyless: KeylessTraffic
) -> None:
    await asyncio.to_thread(cluster.stop, "fast")
    await assert_unavailable_meanwhile(http, keyless)
    await asyncio.to_thread(cluster.start)


async def pause_then_resume(
    bouncer: PgBouncer, _cluster: PgCluster, _http: object, _keyless: object
) -> None:
    """PAUSE waits for the transactions in flight, then holds every new one until RESUME."""
    await bouncer.admin("PAUSE")
    await asyncio.sleep(3.0)
    await bouncer.admin("RESUME")


async def reconnect(
    bouncer: PgBouncer, _cluster: PgCluster, _http: object, _keyless: object
) -> None:
    """Every server connection is closed once released, and replaced for the next client."""
    for _ in range(3):
        await bouncer.admin("RECONNECT")
        await asyncio.sleep(0.5)


@pytest.mark.parametrize(
    "fault", [stop_then_start_pgbouncer, pause_then_resume, reconnect, restart_postgres]
)
async def test_pooler_fault_mid_traffic_answers_201_or_503_and_loses_nothing(
    pg_cluster: PgCluster, bouncer: PgBouncer, serve: Serve, fault: Fault
) -> None:
    database = await create_database(pg_cluster.server_url, prefix="pooler")
    server = serve(
        bouncer.url_for(database), database_pooler="pgbouncer", db_pool_timeout=2, db_pool_size=5
    )
    pid = server.pid
    traffic, keyless = Traffic(), KeylessTraffic()

    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        loops = start_clients(http, traffic, keyless)
        try:
            await asyncio.sleep(1.0)
            assert traffic.statuses().get(201, 0) > 0, traffic.statuses()
            await fault(bouncer, pg_cluster, http, keyless)
            await wait_for_status(http, "/readyz", 200, RECOVERY_TIMEOUT_S)
            recovered_at = time.monotonic()
            await asyncio.sleep(1.0)
        finally:
            traffic.running = keyless.running = False
            results = await asyncio.gather(*loops, return_exceptions=True)
        assert not [result for result in results if isinstance(result, BaseException)], results

        assert server.process is not None
        assert server.process.poll() is None, "the service died"
        assert server.pid == pid, "the service was restarted"
        answers = [a for answers in traffic.answers.values() for a in answers]
        answers += keyless.answers.values()
        statuses = {status for _, status, _, _ in answers}
        assert statuses <= {201, 503}, f"{statuses}\n{server_errors(server.log_text())}"
        for _, status, headers, text in answers:
            if status == 503:
                assert_unavailable_problem(httpx.Response(503, headers=headers, text=text))
        late = {status for at, status, _, _ in answers if at > recovered_at + 0.5}
        assert late == {201}, f"still failing after /readyz said ready: {late}"

        await retry_what_failed(http, traffic)

    await assert_nothing_half_written(database, traffic, keyless)
