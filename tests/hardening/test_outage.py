"""Issue 6.2: the database goes away mid-traffic and comes back.

A PostgreSQL cluster of the test's own is stopped under a real uvicorn process while clients
keep capturing purchases, then started again. While it is down writes answer 503 problem+json
with Retry-After, /readyz answers 503 and /healthz 200; once it is back the same process (no
restart) is ready again by itself; and no request left anything half-written: every purchase the
clients were told about exists once, a 503 that says nothing was stored stored nothing (an
"outcome unknown" one at most once), and a retry with the same Idempotency-Key completes the rest.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from app.core.errors import OUTCOME_UNKNOWN_TYPE

from .conftest import Serve
from .postgres import PgCluster, asyncpg_dsn, create_database

pytestmark = pytest.mark.postgres

URL = "/api/v1/purchases"
CLIENTS = 6
# Several, so that some key-less capture lands between a stopping server's FATAL message and
# its close of the socket (the window that once answered 500).
KEYLESS_CLIENTS = 4
RECOVERY_TIMEOUT_S = 30.0
NOTHING_STORED = "about:blank"  # the problem type of a 503 that stored nothing


@dataclass
class Traffic:
    """What the clients sent and what they were answered, per Idempotency-Key."""

    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, list[tuple[float, int, httpx.Headers, str]]] = field(default_factory=dict)
    running: bool = True

    def record(self, key: str, response: httpx.Response) -> None:
        self.answers.setdefault(key, []).append(
            (time.monotonic(), response.status_code, response.headers, response.text)
        )

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answers in self.answers.values():
            for _, status, _, _ in answers:
                counts[status] = counts.get(status, 0) + 1
        return counts


@dataclass
class KeylessTraffic:
    """Captures sent without an Idempotency-Key: on PostgreSQL each is one self-committing
    statement sent straight to asyncpg, the path that must reconnect by itself too. Each has an
    item of its own, the name its row is found by."""

    answers: dict[str, tuple[float, int, httpx.Headers, str]] = field(default_factory=dict)
    running: bool = True

    async def send(self, http: httpx.AsyncClient, item: str) -> httpx.Response:
        body = body_for(len(self.answers), 0)
        body["customer"]["email"] = f"keyless{len(self.answers) % 5}@example.com"
        body["item"] = item
        try:
            response = await http.post(URL, json=body)
        except httpx.TransportError as error:
            raise AssertionError(f"the service dropped a request: {error!r}") from error
        self.answers[item] = (
            time.monotonic(),
            response.status_code,
            response.headers,
            response.text,
        )
        return response


async def keyless_loop(http: httpx.AsyncClient, traffic: KeylessTraffic, loop: int) -> None:
    n = 0
    while traffic.running:
        n += 1
        await traffic.send(http, f"keyless {loop}-{n}")
        await asyncio.sleep(0.01)


def start_clients(
    http: httpx.AsyncClient, traffic: Traffic, keyless: KeylessTraffic
) -> list[asyncio.Task[None]]:
    """CLIENTS keyed and KEYLESS_CLIENTS key-less capture loops, until `running` is cleared."""
    loops = [asyncio.create_task(client_loop(http, traffic, c)) for c in range(CLIENTS)]
    loops += [asyncio.create_task(keyless_loop(http, keyless, n)) for n in range(KEYLESS_CLIENTS)]
    return loops


def body_for(n: int, client: int) -> dict[str, Any]:
    # A few emails shared by all clients, so upserts of the same customer overlap the outage.
    return {
        "customer": {"email": f"outage{n % 5}@example.com", "name": f"Client {client}"},
        "item": f"item {n}",
        "quantity": 1 + n % 3,
        "unit_price": f"{n % 50}.{n % 100:02d}",
        "currency": "EUR",
    }


async def client_loop(http: httpx.AsyncClient, traffic: Traffic, client: int) -> None:
    n = 0
    while traffic.running:
        n += 1
        key = f"outage-{client}-{n}-{secrets.token_hex(4)}"
        body = body_for(n, client)
        traffic.bodies[key] = body
        try:
            response = await http.post(URL, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError as error:  # the service itself must stay up
            raise AssertionError(f"the service dropped a request: {error!r}") from error
        traffic.record(key, response)
        await asyncio.sleep(0.01)


def assert_unavailable_problem(response: httpx.Response) -> str:
    """The 503 problem's type: nothing stored (about:blank), or the outcome unknown."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) > 0
    problem = response.json()
    assert problem["status"] == 503
    assert problem["type"] in (NOTHING_STORED, OUTCOME_UNKNOWN_TYPE), problem
    assert "Traceback" not in response.text
    return str(problem["type"])


async def wait_for_status(http: httpx.AsyncClient, path: str, status: int, within: float) -> None:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        response = await http.get(path)
        if response.status_code == status:
            return
        last = (response.status_code, response.text[:300])
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} did not answer {status} within {within}s; last: {last}")


@pytest.mark.parametrize("mode", ["immediate", "fast"])
async def test_database_outage_mid_traffic_then_recovery_without_restart(
    pg_cluster: PgCluster, serve: Serve, mode: str
) -> None:
    database = await create_database(pg_cluster.server_url, prefix="outage")
    server = serve(database, db_pool_timeout=2, db_pool_size=5)
    pid = server.pid
    traffic = Traffic()
    keyless = KeylessTraffic()

    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        loops = start_clients(http, traffic, keyless)
        try:
            await asyncio.sleep(1.0)
            healthy = traffic.statuses()
            assert healthy.get(201, 0) > 0, healthy

            # `immediate` is a crash (connections cut); `fast` terminates each session.
            await asyncio.to_thread(pg_cluster.stop, mode)
            stopped_at = time.monotonic()
            await asyncio.sleep(2.0)

            during = await keyless.send(http, "during the outage")
            assert assert_unavailable_problem(during) == NOTHING_STORED
            assert_unavailable_problem(await http.get("/readyz"))
            health = await http.get("/healthz")
            assert health.status_code == 200, health.text

            await asyncio.to_thread(pg_cluster.start)
            await wait_for_status(http, "/readyz", 200, RECOVERY_TIMEOUT_S)
            recovered_at = time.monotonic()
            await asyncio.sleep(1.0)
        finally:
            traffic.running = keyless.running = False
            results = await asyncio.gather(*loops, return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        assert not errors, errors

        assert server.process is not None
        assert server.process.poll() is None, "the service died"
        assert server.pid == pid, "the service was restarted"

        statuses = traffic.statuses()
        assert set(statuses) <= {201, 503}, f"{statuses}\n{server_errors(server.log_text())}"
        assert statuses.get(503, 0) > 0, statuses
        for answers in traffic.answers.values():
            for at, status, headers, text in answers:
                if status == 503:
                    response = httpx.Response(503, headers=headers, text=text)
                    assert_unavailable_problem(response)
                    assert at >= stopped_at - 1.0, "a 503 before the database went away"
        late = [
            status
            for answers in traffic.answers.values()
            for at, status, _, _ in answers
            if at > recovered_at + 0.5
        ]
        assert late, "no traffic after the recovery"
        assert set(late) == {201}, f"still failing after /readyz said ready: {late}"

        keyless_statuses = {status for _, status, _, _ in keyless.answers.values()}
        assert keyless_statuses == {201, 503}, (
            f"{keyless_statuses}\n{server_errors(server.log_text())}"
        )
        keyless_late = {
            status for at, status, _, _ in keyless.answers.values() if at > recovered_at + 0.5
        }
        assert keyless_late == {201}, f"key-less captures failing after recovery: {keyless_late}"

        await retry_what_failed(http, traffic)

    await assert_nothing_half_written(database, traffic, keyless)


async def retry_what_failed(http: httpx.AsyncClient, traffic: Traffic) -> None:
    """The clients retry what failed, with the same keys: all of it completes, once."""
    for key, answers in traffic.answers.items():
        if answers[-1][1] != 201:
            retry = await http.post(URL, json=traffic.bodies[key], headers={"Idempotency-Key": key})
            assert retry.status_code == 201, retry.text
            traffic.record(key, retry)


def server_errors(log: str) -> str:
    """The error lines of a JSON log, each with the last line of its traceback."""
    lines = []
    for line in log.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("level") in ("error", "critical"):
            last = (event.get("exception") or "").strip().splitlines()[-2:]
            lines.append(f"{event.get('event')}: {' '.join(last)}")
    return "\n".join(lines[:20])


async def assert_nothing_half_written(
    database: str, traffic: Traffic, keyless: KeylessTraffic
) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(database))
    try:
        keys = await connection.fetch("SELECT key, purchase_id, response_body FROM idempotency_key")
        purchases = await connection.fetchval(
            "SELECT count(*) FROM purchase p JOIN customer c ON c.id = p.customer_id"
            " WHERE c.email NOT LIKE 'keyless%'"
        )
        lonely_customers = await connection.fetchval(
            "SELECT count(*) FROM customer c"
            " WHERE NOT EXISTS (SELECT 1 FROM purchase p WHERE p.customer_id = c.id)"
        )
        stored_ids = {row["id"] for row in await connection.fetch("SELECT id FROM purchase")}
        keyless_rows = await connection.fetch(
            "SELECT p.id, p.item FROM purchase p JOIN customer c ON c.id = p.customer_id"
            " WHERE c.email LIKE 'keyless%'"
        )
    finally:
        await connection.close()

    assert_keyless_stored_as_answered(keyless, keyless_rows)
    assert lonely_customers == 0, "a customer was stored without the purchase that made it"
    incomplete = [
        row["key"] for row in keys if row["purchase_id"] is None or not row["response_body"]
    ]
    assert not incomplete, f"idempotency keys without their purchase: {incomplete}"
    assert {row["key"] for row in keys} == set(traffic.answers), "keys stored != keys sent"
    assert purchases == len(traffic.answers), "a request was stored twice, or not at all"
    told = {
        httpx.Response(201, text=text).json()["id"]
        for answers in traffic.answers.values()
        for _, status, _, text in answers
        if status == 201
    }
    assert told <= stored_ids, f"201s for purchases that are not stored: {told - stored_ids}"


def assert_keyless_stored_as_answered(keyless: KeylessTraffic, rows: list[asyncpg.Record]) -> None:
    """Exactly once for a 201 (the id it gave), never for a 503 that said nothing was stored,
    at most once for one whose outcome was unknown."""
    stored: dict[str, list[int]] = {}
    for row in rows:
        stored.setdefault(row["item"], []).append(row["id"])
    assert set(stored) <= set(keyless.answers), "a key-less purchase nobody sent"
    for item, (_, status, headers, text) in keyless.answers.items():
        ids = stored.get(item, [])
        if status == 201:
            assert ids == [httpx.Response(201, text=text).json()["id"]], (item, ids)
        elif assert_unavailable_problem(httpx.Response(503, headers=headers, text=text)) == (
            NOTHING_STORED
        ):
            assert ids == [], f"{item}: a 503 said nothing was stored, yet it was"
        else:
            assert len(ids) <= 1, (item, ids)
