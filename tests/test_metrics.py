"""GET /metrics: Prometheus text with HTTP traffic and business counters."""

from __future__ import annotations

from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import purchase


async def scrape(client: AsyncClient) -> dict[str, float]:
    """Samples as {'name{label="v",...}': value}."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def test_requests_are_counted_per_route_and_status(client: AsyncClient) -> None:
    await client.post("/api/v1/purchases", json=purchase())
    await client.post("/api/v1/purchases", json=purchase(quantity=0))

    samples = await scrape(client)

    route = 'handler="/api/v1/purchases",method="POST"'
    assert samples[f'http_requests_total{{{route},status="201"}}'] == 1
    assert samples[f'http_requests_total{{{route},status="422"}}'] == 1
    assert samples[f'http_request_duration_seconds_count{{{route},status="201"}}'] == 1
    assert any(key.startswith("http_request_duration_seconds_bucket") for key in samples)


async def test_business_counters_count_committed_work(client: AsyncClient) -> None:
    await client.post("/api/v1/purchases", json=purchase(email="a@example.com"))
    await client.post("/api/v1/purchases", json=purchase(email="a@example.com"))
    await client.post(
        "/api/v1/purchases/batch",
        json={"purchases": [purchase(email="a@example.com"), purchase(email="b@example.com")]},
    )
    await client.post("/api/v1/purchases", json=purchase(quantity=0))

    samples = await scrape(client)

    assert samples["purchases_captured_total{}"] == 4
    assert samples["customers_created_total{}"] == 2
    assert samples["customers_updated_total{}"] == 2


async def test_idempotent_replay_is_not_counted_again(client: AsyncClient) -> None:
    headers = {"Idempotency-Key": "once"}
    await client.post("/api/v1/purchases", json=purchase(), headers=headers)
    await client.post("/api/v1/purchases", json=purchase(), headers=headers)

    assert (await scrape(client))["purchases_captured_total{}"] == 1


async def test_pool_connections_in_use_is_reported(client: AsyncClient) -> None:
    samples = await scrape(client)

    assert samples["db_pool_connections_in_use{}"] == 0
