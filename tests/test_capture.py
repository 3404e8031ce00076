"""POST /api/v1/purchases: a purchase is stored and its customer created or updated.

What was stored is read back from the database, not from the response (which would echo the
request whatever the database holds)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from httpx import AsyncClient
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import purchase, stored_customers, stored_purchases

URL = "/api/v1/purchases"


async def the_stored_purchase(db_engine: AsyncEngine) -> RowMapping:
    (row,) = await stored_purchases(db_engine)
    return row


async def test_first_purchase_creates_customer(client: AsyncClient, db_engine: AsyncEngine) -> None:
    response = await client.post(URL, json=purchase())

    assert response.status_code == 201
    body = response.json()
    assert body["customer_created"] is True
    (customer,) = await stored_customers(db_engine)
    assert (customer["id"], customer["email"], customer["name"]) == (
        body["customer"]["id"],
        "tim@example.com",
        "Tim",
    )
    stored = await the_stored_purchase(db_engine)
    assert stored["id"] == body["id"]
    assert stored["customer_id"] == customer["id"]
    assert (stored["item"], stored["quantity"], stored["currency"]) == ("book", 1, "EUR")
    assert stored["unit_price"] == stored["total"] == Decimal("12.50")


async def test_purchase_time_is_server_utc_iso8601(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    before = datetime.now(UTC)
    body = (await client.post(URL, json=purchase())).json()

    purchased_at = datetime.fromisoformat(body["purchased_at"])
    assert purchased_at.utcoffset() is not None
    assert purchased_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before <= purchased_at <= datetime.now(UTC)
    assert (await the_stored_purchase(db_engine))["purchased_at"] == purchased_at


async def test_second_purchase_updates_customer_instead_of_adding_one(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    first = (await client.post(URL, json=purchase(name="Tim"))).json()
    second = (
        await client.post(URL, json=purchase(email="TIM@Example.COM", name="Timothy", item="pen"))
    ).json()

    assert second["customer_created"] is False
    (customer,) = await stored_customers(db_engine)
    assert customer["id"] == first["customer"]["id"] == second["customer"]["id"]
    assert customer["name"] == "Timothy"
    assert customer["created_at"] == datetime.fromisoformat(first["customer"]["created_at"])
    assert customer["updated_at"] == datetime.fromisoformat(second["customer"]["updated_at"])
    assert customer["updated_at"] > customer["created_at"]
    purchases = await stored_purchases(db_engine)
    assert [(p["item"], p["customer_id"]) for p in purchases] == [
        ("book", customer["id"]),
        ("pen", customer["id"]),
    ]


async def test_email_is_stored_trimmed_and_lower_cased(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    body = (await client.post(URL, json=purchase(email="  Sue.Smith@Example.ORG "))).json()

    assert body["customer"]["email"] == "sue.smith@example.org"
    assert (await the_stored_purchase(db_engine))["email"] == "sue.smith@example.org"


async def test_name_and_item_are_stored_trimmed(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    await client.post(URL, json=purchase(name="  Sue ", item="\tT-shirt  "))

    stored = await the_stored_purchase(db_engine)
    assert (stored["name"], stored["item"]) == ("Sue", "T-shirt")


async def test_quantity_defaults_to_one_and_currency_to_eur(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    body = purchase()
    del body["quantity"], body["currency"]

    assert (await client.post(URL, json=body)).status_code == 201

    stored = await the_stored_purchase(db_engine)
    assert (stored["quantity"], stored["currency"]) == (1, "EUR")


async def test_price_given_as_json_number_keeps_its_cents(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    body = (await client.post(URL, json=purchase(unit_price=0.1, quantity=3))).json()

    assert (body["unit_price"], body["total"]) == ("0.10", "0.30")
    stored = await the_stored_purchase(db_engine)
    assert (stored["unit_price"], stored["total"]) == (Decimal("0.10"), Decimal("0.30"))


async def test_total_is_exact_for_the_largest_purchase(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    body = (
        await client.post(URL, json=purchase(unit_price="999999999.99", quantity=10_000))
    ).json()

    assert body["total"] == "9999999999900.00"
    assert (await the_stored_purchase(db_engine))["total"] == Decimal("9999999999900.00")


async def test_stored_purchase_reads_back_identically(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    created = (await client.post(URL, json=purchase(unit_price="19.99", currency="USD"))).json()

    stored = (await client.get(f"{URL}/{created['id']}", headers=auth)).json()

    del created["customer_created"]
    assert stored == created


async def test_emoji_quotes_and_sql_are_stored_literally(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    name = "Zoë 'O\"Brien'; DROP TABLE customer; -- 🎉"
    item = "Robert'); DELETE FROM purchase;-- 📚 \\ %_"

    assert (await client.post(URL, json=purchase(name=name, item=item))).status_code == 201

    stored = await the_stored_purchase(db_engine)
    assert (stored["name"], stored["item"]) == (name, item)


async def test_fifty_concurrent_first_purchases_create_one_customer(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(URL, json=purchase(email="new@example.com", item=f"item {n}"))
            for n in range(50)
        )
    )

    assert [r.status_code for r in responses] == [201] * 50
    assert sum(r.json()["customer_created"] for r in responses) == 1
    (customer,) = await stored_customers(db_engine)
    purchases = await stored_purchases(db_engine)
    assert sorted(p["item"] for p in purchases) == sorted(f"item {n}" for n in range(50))
    assert {p["customer_id"] for p in purchases} == {customer["id"]}


async def test_quantity_written_as_a_whole_float_is_stored_as_that_integer(
    client: AsyncClient, db_engine: AsyncEngine
) -> None:
    assert (await client.post(URL, json=purchase(quantity=3.0))).status_code == 201

    assert (await the_stored_purchase(db_engine))["quantity"] == 3
