"""Issue 16: /metrics is exact with `--workers 2`, whichever worker answers the scrape.

Real `python -m app --workers 2` processes on PostgreSQL: the counters and the latency
histogram sum every worker (dead ones included, so a restarted worker never makes them go
backwards), the pool gauge sums the live ones, each live worker reports its process metrics
under its pid, and files left by an earlier run do not leak into the counts. Prometheus's own
linter (`promtool check metrics`) accepts the exposition.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.samples import Sample

from tests.helpers import assert_promtool_accepts
from tests.servers import UvicornServer, descendants

from .conftest import Serve
from .postgres import asyncpg_dsn
from .test_metrics import purchase, scrape, total

pytestmark = pytest.mark.postgres

URL = "/api/v1/purchases"
ROUTE = {"handler": URL, "method": "POST", "status": "201"}
SCRAPES = 10


def store(base_url: str, count: int, tag: str) -> None:
    """`count` purchases of new customers, each on a new connection (any worker may take it)."""
    for n in range(count):
        response = httpx.post(base_url + URL, json=purchase(f"{tag}.{n}@example.com"), timeout=10)
        assert response.status_code == 201, response.text


def counts(samples: list[Sample]) -> dict[str, float]:
    return {
        "purchases": total(samples, "purchases_captured_total"),
        "customers created": total(samples, "customers_created_total"),
        "requests": total(samples, "http_requests_total", **ROUTE),
        "latency histogram": total(samples, "http_request_duration_seconds_count", **ROUTE),
    }


def expected(n: int) -> dict[str, float]:
    return dict.fromkeys(("purchases", "customers created", "requests", "latency histogram"), n)


def worker_pids(samples: list[Sample]) -> set[int]:
    """The pids the scrape reports process metrics for."""
    return {int(s.labels["pid"]) for s in samples if s.name == "process_resident_memory_bytes"}


def test_every_scrape_of_two_workers_counts_every_purchase(database: str, serve: Serve) -> None:
    server = serve(database, workers=2)
    store(server.base_url, 40, "exact")

    scrapes = [counts(scrape(server.base_url)) for _ in range(SCRAPES)]

    assert scrapes == [expected(40)] * SCRAPES


def test_a_killed_worker_leaves_the_counters_where_they_were(database: str, serve: Serve) -> None:
    server = serve(database, workers=2)
    store(server.base_url, 20, "before")
    before = worker_pids(scrape(server.base_url))
    assert len(before) == 2, before
    killed = min(before)

    os.kill(killed, signal.SIGKILL)  # no shutdown of its own: the supervisor starts another
    replaced = _wait_for_workers(server, lambda pids: len(pids) == 2 and killed not in pids)

    assert [counts(scrape(server.base_url)) for _ in range(SCRAPES)] == [expected(20)] * SCRAPES
    store(server.base_url, 20, "after")
    assert counts(scrape(server.base_url)) == expected(40)
    assert replaced - before, "the supervisor did not replace the killed worker"


def test_a_gracefully_restarted_worker_leaves_the_counters_where_they_were(
    database: str, serve: Serve
) -> None:
    # uvicorn gives up the restart if a new worker is not ready within this many seconds (5 by
    # default): on a loaded machine a worker's start can take longer.
    server = serve(database, workers=2, extra_args=("--timeout-worker-healthcheck", "60"))
    store(server.base_url, 20, "before")
    before = worker_pids(scrape(server.base_url))

    os.kill(server.pid, signal.SIGHUP)  # uvicorn replaces every worker, one after the other
    _wait_for_workers(server, lambda pids: len(pids) == 2 and not pids & before)

    assert [counts(scrape(server.base_url)) for _ in range(SCRAPES)] == [expected(20)] * SCRAPES


def test_each_live_worker_reports_its_process_metrics(database: str, serve: Serve) -> None:
    server = serve(database, workers=2)
    samples = _scrape_until(server, lambda s: len(worker_pids(s)) == 2)

    pids = worker_pids(samples)
    assert pids <= set(descendants(server.pid)), (pids, descendants(server.pid))
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        by_pid = {int(s.labels["pid"]): s.value for s in samples if s.name == name}
        assert set(by_pid) == pids, (name, by_pid)
        assert all(value > 0 for value in by_pid.values()), (name, by_pid)


def test_files_of_an_earlier_run_are_not_counted(
    database: str, serve: Serve, tmp_path: Path
) -> None:
    directory = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    earlier = serve(database, workers=2, env=directory, name="earlier")
    store(earlier.base_url, 5, "earlier")
    assert counts(scrape(earlier.base_url)) == expected(5)
    earlier.stop()
    assert list((tmp_path / "metrics").glob("counter_*.db")), "the run wrote no files"

    later = serve(database, workers=2, env=directory, name="later")
    store(later.base_url, 3, "later")

    assert counts(scrape(later.base_url)) == expected(3)


async def test_connections_held_by_killed_workers_leave_the_pool_gauge(
    database: str, serve: Serve
) -> None:
    # No statistics fold: it holds a pool connection for a moment every few seconds.
    server = serve(database, workers=2, stats_fold_interval_s=0)
    gauge = "db_pool_connections_in_use"
    email = "held.workers.0@example.com"
    store(server.base_url, 1, "held.workers")  # the customer the held requests wait for
    before = worker_pids(scrape(server.base_url))
    locker = await asyncpg.connect(asyncpg_dsn(database))
    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("SELECT 1 FROM customer WHERE email = $1 FOR UPDATE", email)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            held = [asyncio.create_task(http.post(URL, json=purchase(email))) for _ in range(4)]
            await asyncio.to_thread(_scrape_until, server, lambda s: total(s, gauge) == 4)

            for pid in before:
                os.kill(pid, signal.SIGKILL)
            await asyncio.gather(*held, return_exceptions=True)
        await lock.rollback()
    finally:
        await locker.close()
    await asyncio.to_thread(
        _wait_for_workers, server, lambda pids: len(pids) == 2 and not pids & before
    )

    assert total(scrape(server.base_url), gauge) == 0


def test_promtool_accepts_the_exposition_of_two_workers(database: str, serve: Serve) -> None:
    server = serve(database, workers=2)
    store(server.base_url, 3, "lint")

    text = httpx.get(server.base_url + "/metrics", timeout=10).text

    assert_promtool_accepts(text)
    samples = [line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"]
    assert not [name for name in samples if name.endswith("_created")]


def _scrape_until(
    server: UvicornServer, done: Callable[[list[Sample]], bool], timeout: float = 60
) -> list[Sample]:
    """Scrapes until `done`. While no worker runs (all killed, replacements starting: slow on
    a loaded machine) a scrape waits in the listen queue and may time out: it is asked again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            samples = scrape(server.base_url)
        except httpx.TimeoutException:
            samples = []
        if samples and done(samples):
            return samples
        assert time.monotonic() < deadline, f"no such scrape in {timeout}s:\n{_log(server)}"
        time.sleep(0.2)


def _wait_for_workers(server: UvicornServer, done: Callable[[set[int]], bool]) -> set[int]:
    return worker_pids(_scrape_until(server, lambda s: done(worker_pids(s))))


def _log(server: UvicornServer) -> str:
    """The server's log without the scrapes' access lines, which would fill its tail."""
    lines = [line for line in server.log_text().splitlines() if '"/metrics"' not in line]
    return "\n".join(lines[-60:])
