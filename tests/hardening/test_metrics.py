"""Issue 6.5: Prometheus metrics at GET /metrics, scraped from a real uvicorn process.

Parsed with prometheus_client's own text parser: request count and latency histogram per route
and status, purchases captured, customers created vs updated (counted only once committed), and
the database connections in use, seen while requests are held inside a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.servers import UvicornServer

from .conftest import Serve
from .postgres import asyncpg_dsn

pytestmark = pytest.mark.postgres

URL = "/api/v1/purchases"
ROUTE = "/api/v1/purchases"


def purchase(email: str, item: str = "book") -> dict[str, Any]:
    return {"customer": {"email": email, "name": "Metric"}, "item": item, "unit_price": "2.50"}


def scrape(base_url: str) -> list[Sample]:
    response = httpx.get(base_url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text[:300]
    content_type = response.headers["content-type"]
    assert content_type.startswith(("text/plain", "application/openmetrics-text")), content_type
    return [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def families(base_url: str) -> dict[str, str]:
    """Metric family name -> type."""
    text = httpx.get(base_url + "/metrics", timeout=10).text
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_are_public_prometheus_text(module_server: UvicornServer) -> None:
    types = families(module_server.base_url)

    assert types.get("http_requests") == "counter", types
    assert types.get("purchases_captured") == "counter", types
    assert types.get("customers_created") == "counter", types
    assert types.get("customers_updated") == "counter", types
    assert types.get("db_pool_connections_in_use") == "gauge", types
    spec = httpx.get(module_server.base_url + "/openapi.json", timeout=10).json()
    assert "/metrics" not in spec["paths"]


def test_requests_are_counted_and_timed_per_route_and_status(
    module_server: UvicornServer,
) -> None:
    base = module_server.base_url
    before = scrape(base)
    assert httpx.post(base + URL, json=purchase("count@example.com"), timeout=10).status_code == 201
    assert httpx.post(base + URL, json=purchase("count@example.com"), timeout=10).status_code == 201
    assert httpx.post(base + URL, json={"item": 1}, timeout=10).status_code == 422
    assert httpx.get(base + "/api/v1/purchases/12345", timeout=10).status_code == 401
    after = scrape(base)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("http_requests_total", handler=ROUTE, method="POST", status="201") == 2
    assert delta("http_requests_total", handler=ROUTE, method="POST", status="422") == 1
    # Routes are labelled by their template (`{purchase_id}`, or with a path convertor
    # `{purchase_id:int}`), never by the id in the path.
    by_id = {
        s.labels["handler"]
        for s in after
        if s.name == "http_requests_total"
        and s.labels.get("handler", "").startswith("/api/v1/purchases/{purchase_id")
    }
    assert len(by_id) == 1, by_id
    assert delta("http_requests_total", handler=by_id.pop()) == 1
    assert not [s for s in after if "12345" in str(s.labels)]

    histograms = {
        s.name.removesuffix("_bucket")
        for s in after
        if s.name.endswith("_bucket") and s.labels.get("handler") == ROUTE
    }
    assert histograms, "no latency histogram for the purchases route"
    for histogram in histograms:
        buckets = [s for s in after if s.name == f"{histogram}_bucket"]
        assert any(s.labels.get("le") == "+Inf" for s in buckets)
        assert delta(f"{histogram}_count", handler=ROUTE) == 3
        assert delta(f"{histogram}_sum", handler=ROUTE) > 0


def test_business_counters_count_what_was_committed(module_server: UvicornServer) -> None:
    base = module_server.base_url
    before = scrape(base)

    new = httpx.post(base + URL, json=purchase("new.metric@example.com"), timeout=10)
    known = httpx.post(base + URL, json=purchase("new.metric@example.com", "pen"), timeout=10)
    batch = httpx.post(
        base + URL + "/batch",
        json={
            "purchases": [
                purchase("new.metric@example.com", "cup"),
                purchase("second.metric@example.com", "cup"),
                purchase("second.metric@example.com", "mug"),
            ]
        },
        timeout=10,
    )
    key = {"Idempotency-Key": "metrics-once"}
    keyed = httpx.post(base + URL, json=purchase("third.metric@example.com"), headers=key)
    replay = httpx.post(base + URL, json=purchase("third.metric@example.com"), headers=key)
    reused = httpx.post(base + URL, json=purchase("fourth.metric@example.com"), headers=key)
    invalid = httpx.post(base + URL, json=purchase("not an email"), timeout=10)
    assert [r.status_code for r in (new, known, batch, keyed, replay, reused, invalid)] == [
        201, 201, 201, 201, 201, 422, 422,
    ]  # fmt: skip
    after = scrape(base)

    def delta(name: str) -> float:
        return total(after, name) - total(before, name)

    # new + known + 3 in the batch + keyed; the replay and the refused ones store nothing.
    assert delta("purchases_captured_total") == 6
    # new, second (in the batch), third (keyed)
    assert delta("customers_created_total") == 3
    # known, and new.metric again in the batch (second.metric's two rows: one creation)
    assert delta("customers_updated_total") == 2


async def test_pool_gauge_shows_the_connections_in_use(database: str, serve: Serve) -> None:
    # No statistics fold: it holds a pool connection for a moment every few seconds.
    server = serve(database, stats_fold_interval_s=0)
    gauge = "db_pool_connections_in_use"
    assert total(scrape(server.base_url), gauge) == 0
    email = "held.metric@example.com"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        assert (await http.post(URL, json=purchase(email))).status_code == 201

        locker = await asyncpg.connect(asyncpg_dsn(database))
        try:
            lock = locker.transaction()
            await lock.start()
            await locker.execute("SELECT 1 FROM customer WHERE email = $1 FOR UPDATE", email)
            held = [asyncio.create_task(http.post(URL, json=purchase(email))) for _ in range(3)]
            deadline = time.monotonic() + 10
            in_use = 0.0
            while time.monotonic() < deadline and in_use < 3:
                await asyncio.sleep(0.1)
                in_use = total(await asyncio.to_thread(scrape, server.base_url), gauge)
            assert in_use == 3, in_use
            await lock.rollback()
        finally:
            await locker.close()
        assert [r.status_code for r in await asyncio.gather(*held)] == [201] * 3

    assert total(scrape(server.base_url), gauge) == 0


def test_client_chosen_methods_do_not_create_new_series(module_server: UvicornServer) -> None:
    """Label values a client picks (methods, paths) must not grow the metrics without bound."""
    base = module_server.base_url
    for n in range(40):
        with contextlib.suppress(httpx.HTTPError):  # a server may refuse an unknown method
            httpx.request(f"M{n}X", base + URL, timeout=5)
        httpx.get(f"{base}/no/such/path/{n}", timeout=5)
    samples = scrape(base)

    methods = {s.labels.get("method") for s in samples if s.name == "http_requests_total"}
    handlers = {s.labels.get("handler") for s in samples if s.name == "http_requests_total"}
    assert len(methods) <= 10, sorted(map(str, methods))
    assert not [h for h in handlers if h and "/no/such/path/" in h], handlers
