"""Issue 6.3: several processes on one database.

Two uvicorn processes (separate OS processes on separate ports), or one uvicorn with
`--workers 2` behind one port, on one PostgreSQL database, hammered at once with:
- first purchases for the same set of new emails, without keys: exactly one customer per email;
- the same purchase with the same Idempotency-Key, many times at once: exactly one purchase per
  key, and every answer the same purchase;
- batches of the same new emails in different orders (rows locked in different orders);
and not one 5xx. The two processes run once more through PgBouncer in transaction pooling
(APP_DATABASE_POOLER=pgbouncer), where 50 first purchases of one email arrive at once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import asyncpg
import httpx
import pytest

from tests.pgbouncer import PgBouncer
from tests.servers import descendants

from .conftest import Serve

pytestmark = pytest.mark.postgres

URL = "/api/v1/purchases"
EMAILS = 25
SAME_EMAIL_REQUESTS = 4  # keyless first purchases per email, spread over the processes
SAME_KEY_REQUESTS = 6  # identical keyed requests per key, spread over the processes
BATCHES = 16
BATCH_EMAILS = 20  # new customers shared by every batch, each batch in its own order


def purchase(email: str, item: str, price: str = "9.99") -> dict[str, Any]:
    return {
        "customer": {"email": email, "name": email.split("@")[0].title()},
        "item": item,
        "quantity": 1,
        "unit_price": price,
        "currency": "EUR",
    }


SAME_EMAIL_AT_ONCE = 50


def two_processes(serve: Serve, database: str, **settings: Any) -> list[str]:
    return [serve(database, name=name, **settings).base_url for name in ("a", "b")]


@pytest.mark.parametrize(
    "topology",
    [
        "two-processes",
        "two-workers",
        pytest.param("two-processes-through-pgbouncer", marks=pytest.mark.pgbouncer),
    ],
)
async def test_concurrent_first_purchases_and_retries_across_processes(
    database: str,
    serve: Serve,
    db: asyncpg.Connection,
    topology: str,
    request: pytest.FixtureRequest,
) -> None:
    if topology == "two-processes":
        urls = two_processes(serve, database)
    elif topology == "two-processes-through-pgbouncer":
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        urls = two_processes(serve, bouncer.url_for(database), database_pooler="pgbouncer")
    else:
        server = serve(database, workers=2, name="workers")
        assert len({server.pid, *descendants(server.pid)}) >= 3, "expected 2 worker processes"
        urls = [server.base_url]

    rng = random.Random(6)
    emails = [f"first.{topology}.{n}@example.com" for n in range(EMAILS)]
    batch_emails = [f"batch.{topology}.{n}@example.com" for n in range(BATCH_EMAILS)]
    calls: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []
    for n, email in enumerate(emails):
        for i in range(SAME_EMAIL_REQUESTS):
            calls.append((urls[i % len(urls)], URL, purchase(email, f"first {i}"), {}))
        key = {"Idempotency-Key": f"{topology}-key-{n}"}
        for i in range(SAME_KEY_REQUESTS):
            calls.append((urls[i % len(urls)], URL, purchase(email, "retried"), key))
    for b in range(BATCHES):
        order = batch_emails[:]
        rng.shuffle(order)
        body = {"purchases": [purchase(email, f"batch {b}") for email in order]}
        calls.append((urls[b % len(urls)], f"{URL}/batch", body, {}))
    rng.shuffle(calls)

    limits = httpx.Limits(max_connections=48, max_keepalive_connections=48)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        gate = asyncio.Event()

        async def call(base: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
            await gate.wait()
            return await http.post(base + path, json=body, headers=headers)

        tasks = [asyncio.create_task(call(*c)) for c in calls]
        await asyncio.sleep(0.1)
        gate.set()
        responses: list[httpx.Response] = await asyncio.gather(*tasks)

    statuses = Counter(r.status_code for r in responses)
    failures = [(c[1], r.status_code, r.text[:300]) for c, r in zip(calls, responses, strict=True)]
    assert statuses == {201: len(calls)}, [f for f in failures if f[1] != 201][:5]

    # Exactly one customer per email, whichever process got there first.
    rows = await db.fetch(
        "SELECT email, count(*) AS n FROM customer WHERE email = ANY($1::text[]) GROUP BY email",
        emails + batch_emails,
    )
    assert {row["email"]: row["n"] for row in rows} == dict.fromkeys(emails + batch_emails, 1)
    created = Counter(
        r.json()["customer"]["email"]
        for c, r in zip(calls, responses, strict=True)
        if c[1] == URL and r.json()["customer_created"] and "Idempotent-Replayed" not in r.headers
    )
    assert created == Counter(emails), "each email must be reported created exactly once"

    # Exactly one purchase per key, and every answer for a key names that purchase.
    by_key: dict[str, set[int]] = {}
    replayed: Counter[str] = Counter()
    for (_, _, _, headers), response in zip(calls, responses, strict=True):
        if headers:
            idempotency_key = headers["Idempotency-Key"]
            by_key.setdefault(idempotency_key, set()).add(response.json()["id"])
            replayed[idempotency_key] += response.headers.get("Idempotent-Replayed") == "true"
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    assert all(n == SAME_KEY_REQUESTS - 1 for n in replayed.values()), replayed
    retried = await db.fetchval("SELECT count(*) FROM purchase WHERE item = 'retried'")
    assert retried == EMAILS

    keyless = await db.fetchval("SELECT count(*) FROM purchase WHERE item LIKE 'first %'")
    assert keyless == EMAILS * SAME_EMAIL_REQUESTS
    batched = await db.fetchval("SELECT count(*) FROM purchase WHERE item LIKE 'batch %'")
    assert batched == BATCHES * len(batch_emails)


@pytest.mark.pgbouncer
async def test_fifty_first_purchases_of_one_email_through_pgbouncer_make_one_customer(
    database: str, serve: Serve, db: asyncpg.Connection, pgbouncer: PgBouncer
) -> None:
    urls = two_processes(serve, pgbouncer.url_for(database), database_pooler="pgbouncer")
    email = "everyone@example.com"

    limits = httpx.Limits(max_connections=SAME_EMAIL_AT_ONCE)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        gate = asyncio.Event()

        async def call(n: int) -> httpx.Response:
            await gate.wait()
            return await http.post(urls[n % 2] + URL, json=purchase(email, f"at once {n}"))

        tasks = [asyncio.create_task(call(n)) for n in range(SAME_EMAIL_AT_ONCE)]
        await asyncio.sleep(0.1)
        gate.set()
        responses = await asyncio.gather(*tasks)

    assert Counter(r.status_code for r in responses) == {201: SAME_EMAIL_AT_ONCE}, [
        r.text[:200] for r in responses if r.status_code != 201
    ][:5]
    assert sum(r.json()["customer_created"] for r in responses) == 1
    assert len({r.json()["customer"]["id"] for r in responses}) == 1
    assert await db.fetchval("SELECT count(*) FROM customer WHERE email = $1", email) == 1
    stored = await db.fetchval(
        "SELECT count(*) FROM purchase p JOIN customer c ON c.id = p.customer_id"
        " WHERE c.email = $1",
        email,
    )
    assert stored == SAME_EMAIL_AT_ONCE
