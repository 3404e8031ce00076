"""POST /api/v1/purchases/batch: many purchases in one transaction, all or nothing."""

from __future__ import annotations

import asyncio

from httpx import AsyncClient

from tests.helpers import assert_problem, purchase, stored_counts

URL = "/api/v1/purchases/batch"


async def test_batch_stores_purchases_in_input_order(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    batch = [purchase(email=f"c{n}@example.com", item=f"item {n}") for n in range(5)]

    response = await client.post(URL, json={"purchases": batch})

    assert response.status_code == 201
    body = response.json()
    assert [p["item"] for p in body["purchases"]] == [f"item {n}" for n in range(5)]
    ids = [p["id"] for p in body["purchases"]]
    assert ids == sorted(ids)
    assert body["customers_created"] == 5
    assert body["customers_updated"] == 0
    assert await stored_counts(client, auth) == (5, 5)


async def test_batch_reads_back_like_single_purchases(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    batch = [purchase(unit_price="0.10", quantity=3), purchase(email="sue@example.com")]

    body = (await client.post(URL, json={"purchases": batch})).json()

    for captured in body["purchases"]:
        stored = (await client.get(f"/api/v1/purchases/{captured['id']}", headers=auth)).json()
        assert stored == {k: v for k, v in captured.items() if k != "customer_created"}
    assert body["purchases"][0]["total"] == "0.30"


async def test_repeated_email_in_a_batch_is_one_customer_named_by_its_last_occurrence(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    batch = [
        purchase(email="tim@example.com", name="Tim"),
        purchase(email="sue@example.com", name="Sue"),
        purchase(email="TIM@example.com", name="Timothy"),
    ]

    body = (await client.post(URL, json={"purchases": batch})).json()

    tims = [p for p in body["purchases"] if p["customer"]["email"] == "tim@example.com"]
    assert len({p["customer"]["id"] for p in tims}) == 1
    assert {p["customer"]["name"] for p in tims} == {"Timothy"}
    assert body["customers_created"] == 2
    assert await stored_counts(client, auth) == (2, 3)


async def test_batch_counts_known_customers_as_updated(client: AsyncClient) -> None:
    await client.post("/api/v1/purchases", json=purchase(email="tim@example.com"))
    batch = [purchase(email="tim@example.com", name="Tim B"), purchase(email="new@example.com")]

    body = (await client.post(URL, json={"purchases": batch})).json()

    assert (body["customers_created"], body["customers_updated"]) == (1, 1)
    assert [p["customer_created"] for p in body["purchases"]] == [False, True]


async def test_one_bad_purchase_refuses_the_whole_batch(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    batch = [purchase(email="a@example.com"), purchase(quantity=0), purchase()]

    problem = assert_problem(await client.post(URL, json={"purchases": batch}), 422)

    assert [e["field"] for e in problem["errors"]] == ["purchases.1.quantity"]
    assert await stored_counts(client, auth) == (0, 0)


async def test_empty_batch_is_a_422_problem(client: AsyncClient) -> None:
    assert_problem(await client.post(URL, json={"purchases": []}), 422)


async def test_batch_of_1001_is_a_422_problem(client: AsyncClient) -> None:
    batch = [purchase(email=f"c{n}@example.com") for n in range(1001)]

    assert_problem(await client.post(URL, json={"purchases": batch}), 422)


async def test_batch_of_1000_with_repeats_is_stored_whole(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    batch = [purchase(email=f"c{n % 300}@example.com", item=f"i{n}") for n in range(1000)]

    body = (await client.post(URL, json={"purchases": batch})).json()

    assert len(body["purchases"]) == 1000
    assert body["customers_created"] == 300
    assert await stored_counts(client, auth) == (300, 1000)


async def test_concurrent_batches_sharing_customers_all_succeed(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    emails = [f"shared{n}@example.com" for n in range(200)]
    forward = [purchase(email=email) for email in emails]
    backward = [purchase(email=email) for email in reversed(emails)]

    responses = await asyncio.gather(
        *(client.post(URL, json={"purchases": b}) for b in [forward, backward] * 3)
    )

    assert [r.status_code for r in responses] == [201] * 6
    assert await stored_counts(client, auth) == (200, 1200)
