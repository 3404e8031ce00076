"""Idempotency-Key: a retried capture is stored once and answered like the first time."""

from __future__ import annotations

import asyncio

import pytest
from httpx import AsyncClient

from app.main import create_app
from app.settings import Settings
from tests.helpers import assert_problem, purchase, stored_counts

URL = "/api/v1/purchases"


async def test_retry_with_same_key_replays_the_first_response(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post(URL, json=purchase(), headers=headers)

    retry = await client.post(URL, json=purchase(), headers=headers)

    assert retry.status_code == 201
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await stored_counts(client, auth) == (1, 1)


async def test_same_key_with_a_different_body_is_a_422_problem(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    await client.post(URL, json=purchase(item="book"), headers=headers)

    response = await client.post(URL, json=purchase(item="pen"), headers=headers)

    assert assert_problem(response, 422)["title"] == "Idempotency key reused"
    assert await stored_counts(client, auth) == (1, 1)


async def test_body_differing_only_in_formatting_counts_as_the_same(
    client: AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    await client.post(URL, json=purchase(unit_price="12.5"), headers=headers)

    retry = await client.post(
        URL, json=purchase(email=" TIM@example.com", unit_price=12.50), headers=headers
    )

    assert retry.headers["idempotent-replayed"] == "true"


async def test_different_keys_store_separate_purchases(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    await client.post(URL, json=purchase(), headers={"Idempotency-Key": "a"})
    await client.post(URL, json=purchase(), headers={"Idempotency-Key": "b"})

    assert await stored_counts(client, auth) == (1, 2)


async def test_concurrent_requests_with_one_key_store_one_purchase(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "double-click"}

    responses = await asyncio.gather(
        *(client.post(URL, json=purchase(), headers=headers) for _ in range(20))
    )

    assert [r.status_code for r in responses] == [201] * 20
    assert len({r.content for r in responses}) == 1
    assert sum("idempotent-replayed" in r.headers for r in responses) == 19
    assert await stored_counts(client, auth) == (1, 1)


async def test_key_survives_a_restart(settings: Settings, client: AsyncClient) -> None:
    headers = {"Idempotency-Key": "before-restart"}
    first = await client.post(URL, json=purchase(), headers=headers)

    restarted = create_app(settings)
    async with restarted.router.lifespan_context(restarted):
        from httpx import ASGITransport

        transport = ASGITransport(app=restarted)
        async with AsyncClient(transport=transport, base_url="http://testserver") as other:
            retry = await other.post(URL, json=purchase(), headers=headers)

    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tinside", "é-accent"])
async def test_malformed_key_is_a_422_problem(
    client: AsyncClient, auth: dict[str, str], key: str
) -> None:
    response = await client.post(URL, json=purchase(), headers={b"Idempotency-Key": key.encode()})

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert await stored_counts(client, auth) == (0, 0)


async def test_key_of_255_printable_characters_is_accepted(client: AsyncClient) -> None:
    response = await client.post(URL, json=purchase(), headers={"Idempotency-Key": "k" * 255})

    assert response.status_code == 201
