"""GET /metrics: Prometheus text with HTTP traffic and business counters."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from app.core.metrics import LATENCY_BUCKETS
from tests.helpers import assert_promtool_accepts, purchase


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


async def test_pool_connections_in_use_go_back_to_zero_after_requests(
    client: AsyncClient,
) -> None:
    for n in range(3):
        await client.post("/api/v1/purchases", json=purchase(email=f"pool{n}@example.com"))

    assert (await scrape(client))["db_pool_connections_in_use{}"] == 0


async def test_process_metrics_are_reported(client: AsyncClient) -> None:
    samples = await scrape(client)

    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert samples[f"{name}{{}}"] > 0, name


async def test_promtool_accepts_the_exposition(client: AsyncClient) -> None:
    await client.post("/api/v1/purchases", json=purchase())
    await client.get("/no/such/path")

    assert_promtool_accepts((await client.get("/metrics")).text)


async def test_no_created_series_are_exposed(client: AsyncClient) -> None:
    await client.post("/api/v1/purchases", json=purchase())

    assert not [key for key in await scrape(client) if "_created{" in key]


def requests_by_label(samples: dict[str, float], label: str) -> set[str]:
    """Every value `label` takes on http_requests_total."""
    values = set()
    for key in samples:
        if key.startswith("http_requests_total{"):
            labels = dict(part.split("=", 1) for part in key[20:-1].split(","))
            values.add(labels[label].strip('"'))
    return values


async def test_routes_are_labelled_by_their_template(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    await client.get("/api/v1/customers/123", headers=auth)

    samples = await scrape(client)

    route = 'handler="/api/v1/customers/{customer_id}",method="GET",status="404"'
    assert samples[f"http_requests_total{{{route}}}"] == 1
    assert not [key for key in samples if "123" in key]


async def test_unmatched_paths_share_one_handler_label(client: AsyncClient) -> None:
    await client.get("/no/such/1")
    await client.get("/no/such/2")

    samples = await scrape(client)

    assert samples['http_requests_total{handler="none",method="GET",status="404"}'] == 2
    assert not [key for key in samples if "/no/such" in key]


async def test_trailing_slash_redirects_are_not_labelled_by_their_path(
    client: AsyncClient,
) -> None:
    response = await client.get("/api/v1/customers/123/")

    samples = await scrape(client)

    assert response.status_code == 307
    assert samples['http_requests_total{handler="none",method="GET",status="307"}'] == 1
    assert not [key for key in samples if "123" in key]


async def test_static_files_are_labelled_by_their_mount(client: AsyncClient) -> None:
    await client.get("/static/app.js")

    samples = await scrape(client)

    assert samples['http_requests_total{handler="/static",method="GET",status="200"}'] == 1


async def test_plain_starlette_routes_are_labelled_by_their_path(client: AsyncClient) -> None:
    await client.get("/openapi.json")

    samples = await scrape(client)

    assert samples['http_requests_total{handler="/openapi.json",method="GET",status="200"}'] == 1


async def test_bodies_refused_before_routing_are_labelled_by_their_route(
    client: AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/purchases",
        content=b" " * (1024 * 1024 + 1),
        headers={"content-type": "application/json"},
    )

    samples = await scrape(client)

    assert response.status_code == 413
    route = 'handler="/api/v1/purchases",method="POST",status="413"'
    assert samples[f"http_requests_total{{{route}}}"] == 1


async def test_unknown_methods_are_not_counted(client: AsyncClient) -> None:
    await client.request("MXX", "/api/v1/purchases")

    samples = await scrape(client)

    assert "MXX" not in requests_by_label(samples, "method")


async def test_scrapes_are_not_counted(client: AsyncClient) -> None:
    await scrape(client)

    samples = await scrape(client)

    assert "/metrics" not in requests_by_label(samples, "handler")


async def test_unhandled_errors_are_counted_as_500(app: FastAPI, client: AsyncClient) -> None:
    async def explode() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/explode", explode)
    await client.get("/explode")

    samples = await scrape(client)

    assert samples['http_requests_total{handler="/explode",method="GET",status="500"}'] == 1


async def test_latency_is_a_histogram_with_the_service_buckets(client: AsyncClient) -> None:
    await client.get("/healthz")

    samples = await scrape(client)

    prefix = 'http_request_duration_seconds_bucket{handler="/healthz",le="'
    bounds = {key[len(prefix) :].split('"')[0] for key in samples if key.startswith(prefix)}
    assert bounds == {str(bound) for bound in LATENCY_BUCKETS} | {"+Inf"}
