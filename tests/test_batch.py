"""POST /api/v1/purchases/batch: many purchases in one transaction, all or nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.sales.models import IdempotencyKey
from tests.helpers import (
    assert_problem,
    purchase,
    read_rows,
    stored_customers,
    stored_purchases,
)

URL = "/api/v1/purchases/batch"


async def test_batch_stores_purchases_in_input_order(
    client: AsyncClient, db_engine: AsyncEngine
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
    stored = await stored_purchases(db_engine)
    assert [(p["id"], p["item"], p["email"]) for p in stored] == [
        (id_, f"item {n}", f"c{n}@example.com") for n, id_ in enumerate(ids)
    ]


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
    client: AsyncClient, db_engine: AsyncEngine
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
    customers = await stored_customers(db_engine)
    assert {c["email"]: c["name"] for c in customers} == {
        "tim@example.com": "Timothy",
        "sue@example.com": "Sue",
    }
    assert len(await stored_purchases(db_engine)) == 3


async def test_batch_counts_known_customers_as_updated(client: AsyncClient) -> None:
    await client.post("/api/v1/purchases", json=purchase(email="tim@example.com"))
    batch = [purchase(email="tim@example.com", name="Tim B"), purchase(email="new@example.com")]

    body = (await client.post(URL, json={"purchases": batch})).json()

    assert (body["customers_created"], body["customers_updated"]) == (1, 1)
    assert [p["customer_created"] for p in body["purchases"]] == [False, True]


async def test_one_invalid_purchase_refuses_the_whole_batch_before_any_sql(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    batch = [purchase(email="a@example.com"), purchase(quantity=0), purchase()]

    problem = assert_problem(await client.post(URL, json={"purchases": batch}), 422)

    assert [e["field"] for e in problem["errors"]] == ["purchases.1.quantity"]
    assert await stored_purchases(db_engine) == []


async def test_empty_batch_is_a_422_problem(client: AsyncClient) -> None:
    assert_problem(await client.post(URL, json={"purchases": []}), 422)


async def test_batch_of_1001_is_a_422_problem(client: AsyncClient) -> None:
    batch = [purchase(email=f"c{n}@example.com") for n in range(1001)]

    assert_problem(await client.post(URL, json={"purchases": batch}), 422)


async def test_batch_of_1000_with_repeats_is_stored_whole(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    batch = [purchase(email=f"c{n % 300}@example.com", item=f"i{n}") for n in range(1000)]

    body = (await client.post(URL, json={"purchases": batch})).json()

    assert len(body["purchases"]) == 1000
    assert body["customers_created"] == 300
    assert len(await stored_customers(db_engine)) == 300
    assert [p["item"] for p in await stored_purchases(db_engine)] == [f"i{n}" for n in range(1000)]


async def test_concurrent_batches_sharing_customers_all_succeed(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    emails = [f"shared{n}@example.com" for n in range(200)]
    forward = [purchase(email=email) for email in emails]
    backward = [purchase(email=email) for email in reversed(emails)]

    responses = await asyncio.gather(
        *(client.post(URL, json={"purchases": b}) for b in [forward, backward] * 3)
    )

    assert [r.status_code for r in responses] == [201] * 6
    assert len(await stored_customers(db_engine)) == 200
    assert len(await stored_purchases(db_engine)) == 1200


@pytest.fixture
async def poisoned(db_engine: AsyncEngine) -> AsyncIterator[None]:
    """A trigger that makes the database refuse any purchase of the item "poison", so a batch
    fails inside its SQL, after its customers and earlier purchases were written."""
    postgres = db_engine.dialect.name == "postgresql"
    async with db_engine.begin() as connection:
        if postgres:
            await connection.execute(
                text(
                    "CREATE FUNCTION reject_poison() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'poison'; END $$"
                )
            )
            await connection.execute(
                text(
                    "CREATE TRIGGER reject_poison BEFORE INSERT ON purchase FOR EACH ROW "
                    "WHEN (NEW.item = 'poison') EXECUTE FUNCTION reject_poison()"
                )
            )
        else:
            await connection.execute(
                text(
                    "CREATE TRIGGER reject_poison BEFORE INSERT ON purchase "
                    "WHEN NEW.item = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END"
                )
            )
    try:
        yield
    finally:
        async with db_engine.begin() as connection:
            await connection.execute(
                text(
                    "DROP TRIGGER reject_poison ON purchase"
                    if postgres
                    else "DROP TRIGGER reject_poison"
                )
            )
            if postgres:
                await connection.execute(text("DROP FUNCTION reject_poison()"))


@pytest.mark.parametrize("key", [None, "batch-1"], ids=["without-key", "with-key"])
@pytest.mark.usefixtures("poisoned")
async def test_a_batch_failing_inside_the_database_stores_none_of_it(
    client: AsyncClient, db_engine: AsyncEngine, key: str | None
) -> None:
    await client.post("/api/v1/purchases", json=purchase(email="tim@example.com", name="Tim"))
    batch = [
        purchase(email="new@example.com"),
        purchase(email="tim@example.com", name="Renamed"),
        purchase(email="other@example.com", item="poison"),
    ]
    headers = {"Idempotency-Key": key} if key else {}

    response = await client.post(URL, json={"purchases": batch}, headers=headers)

    assert_problem(response, 500)
    customers = await stored_customers(db_engine)
    assert [(c["email"], c["name"]) for c in customers] == [("tim@example.com", "Tim")]
    assert [p["item"] for p in await stored_purchases(db_engine)] == ["book"]
    assert await read_rows(db_engine, select(IdempotencyKey.key)) == []
