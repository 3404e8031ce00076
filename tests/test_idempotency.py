"""Idempotency-Key: a retried write is stored once and answered like the first time, with the
same rules on every endpoint that writes (one purchase, or a batch)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.settings import Settings
from app.main import create_app
from app.sales.models import IdempotencyKey, Purchase
from tests.helpers import assert_problem, purchase, read_rows, stored_purchases


@dataclass(frozen=True)
class Endpoint:
    url: str
    body: Callable[..., dict[str, Any]]  # a request body; fields go to each purchase in it
    purchases: int  # how many purchases one request stores


SINGLE = Endpoint("/api/v1/purchases", purchase, 1)
BATCH = Endpoint(
    "/api/v1/purchases/batch",
    lambda **fields: {"purchases": [purchase(**fields), purchase(email="sue@example.com")]},
    2,
)


@pytest.fixture(params=[SINGLE, BATCH], ids=["single", "batch"])
def endpoint(request: pytest.FixtureRequest) -> Endpoint:
    endpoint: Endpoint = request.param
    return endpoint


async def stored_count(db_engine: AsyncEngine) -> int:
    return len(await stored_purchases(db_engine))


async def test_retry_with_same_key_replays_the_first_response(
    client: AsyncClient, db_engine: AsyncEngine, endpoint: Endpoint
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post(endpoint.url, json=endpoint.body(), headers=headers)

    retry = await client.post(endpoint.url, json=endpoint.body(), headers=headers)

    assert first.status_code == retry.status_code == 201, first.text
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await stored_count(db_engine) == endpoint.purchases


async def test_same_key_with_a_different_body_is_a_422_problem(
    client: AsyncClient, db_engine: AsyncEngine, endpoint: Endpoint
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    await client.post(endpoint.url, json=endpoint.body(item="book"), headers=headers)

    response = await client.post(endpoint.url, json=endpoint.body(item="pen"), headers=headers)

    assert assert_problem(response, 422)["title"] == "Idempotency key reused"
    assert await stored_count(db_engine) == endpoint.purchases


async def test_a_key_used_for_one_purchase_is_refused_for_a_batch(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    await client.post(SINGLE.url, json=purchase(), headers=headers)

    response = await client.post(BATCH.url, json={"purchases": [purchase()]}, headers=headers)

    assert assert_problem(response, 422)["title"] == "Idempotency key reused"
    assert await stored_count(db_engine) == 1


async def test_body_differing_only_in_formatting_counts_as_the_same(
    client: AsyncClient, endpoint: Endpoint
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    await client.post(endpoint.url, json=endpoint.body(unit_price="12.5"), headers=headers)

    retry = await client.post(
        endpoint.url,
        json=endpoint.body(email=" TIM@example.com", unit_price=12.50),
        headers=headers,
    )

    assert retry.headers["idempotent-replayed"] == "true"


async def test_different_keys_store_separate_requests(
    client: AsyncClient, db_engine: AsyncEngine, endpoint: Endpoint
) -> None:
    await client.post(endpoint.url, json=endpoint.body(), headers={"Idempotency-Key": "a"})
    await client.post(endpoint.url, json=endpoint.body(), headers={"Idempotency-Key": "b"})

    assert await stored_count(db_engine) == 2 * endpoint.purchases


async def test_concurrent_requests_with_one_key_store_once(
    client: AsyncClient, db_engine: AsyncEngine, endpoint: Endpoint
) -> None:
    headers = {"Idempotency-Key": "double-click"}

    responses = await asyncio.gather(
        *(client.post(endpoint.url, json=endpoint.body(), headers=headers) for _ in range(20))
    )

    assert [r.status_code for r in responses] == [201] * 20
    assert len({r.content for r in responses}) == 1
    assert sum("idempotent-replayed" in r.headers for r in responses) == 19
    assert await stored_count(db_engine) == endpoint.purchases


async def _post_to_a_new_app(
    settings: Settings, endpoint: Endpoint, headers: dict[str, str]
) -> Any:
    restarted: FastAPI = create_app(settings)
    async with restarted.router.lifespan_context(restarted):
        transport = ASGITransport(app=restarted)
        async with AsyncClient(transport=transport, base_url="http://testserver") as other:
            return await other.post(endpoint.url, json=endpoint.body(), headers=headers)


async def test_key_survives_a_restart(
    settings: Settings, client: AsyncClient, endpoint: Endpoint
) -> None:
    headers = {"Idempotency-Key": "before-restart"}
    first = await client.post(endpoint.url, json=endpoint.body(), headers=headers)

    retry = await _post_to_a_new_app(settings, endpoint, headers)

    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tinside", "é-accent"])
async def test_malformed_key_is_a_422_problem(
    client: AsyncClient, db_engine: AsyncEngine, endpoint: Endpoint, key: str
) -> None:
    response = await client.post(
        endpoint.url, json=endpoint.body(), headers={b"Idempotency-Key": key.encode()}
    )

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert await stored_count(db_engine) == 0


async def test_key_of_255_printable_characters_is_accepted(
    client: AsyncClient, db_engine: AsyncEngine, endpoint: Endpoint
) -> None:
    response = await client.post(
        endpoint.url, json=endpoint.body(), headers={"Idempotency-Key": "k" * 255}
    )

    assert response.status_code == 201
    assert await stored_count(db_engine) == endpoint.purchases


async def test_a_single_capture_key_remembers_its_purchase(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    body = (await client.post(SINGLE.url, json=purchase(), headers={"Idempotency-Key": "k"})).json()

    (key,) = await read_rows(db_engine, select(IdempotencyKey.__table__))
    (stored,) = await read_rows(db_engine, select(Purchase.id))
    assert key["purchase_id"] == stored["id"] == body["id"]


def test_every_post_that_writes_takes_an_idempotency_key(app: FastAPI) -> None:
    """A new write endpoint must decide: honour the key, or refuse it with 400."""
    posts = [
        (path, operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if method == "post"
    ]

    assert {SINGLE.url, BATCH.url} <= {path for path, _ in posts}
    for path, operation in posts:
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert "Idempotency-Key" in headers, path
