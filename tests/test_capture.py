"""POST /api/v1/purchases: a purchase is stored and its customer created or updated."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from httpx import AsyncClient

from tests.helpers import purchase, stored_counts

URL = "/api/v1/purchases"


async def test_first_purchase_creates_customer(client: AsyncClient) -> None:
    response = await client.post(URL, json=purchase())

    assert response.status_code == 201
    body = response.json()
    assert body["customer_created"] is True
    assert body["customer"]["email"] == "tim@example.com"
    assert body["customer"]["name"] == "Tim"
    assert body["item"] == "book"
    assert body["quantity"] == 1
    assert body["unit_price"] == "12.50"
    assert body["currency"] == "EUR"
    assert body["total"] == "12.50"
    assert isinstance(body["id"], int)
    assert isinstance(body["customer"]["id"], int)


async def test_purchase_time_is_server_utc_iso8601(client: AsyncClient) -> None:
    before = datetime.now(UTC)
    body = (await client.post(URL, json=purchase())).json()

    purchased_at = datetime.fromisoformat(body["purchased_at"])
    assert purchased_at.utcoffset() is not None
    assert purchased_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before <= purchased_at <= datetime.now(UTC)


async def test_second_purchase_updates_customer_instead_of_adding_one(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    first = (await client.post(URL, json=purchase(name="Tim"))).json()
    second = (
        await client.post(URL, json=purchase(email="TIM@Example.COM", name="Timothy", item="pen"))
    ).json()

    assert second["customer_created"] is False
    assert second["customer"]["id"] == first["customer"]["id"]
    assert second["customer"]["name"] == "Timothy"
    assert second["customer"]["created_at"] == first["customer"]["created_at"]
    assert second["customer"]["updated_at"] > first["customer"]["updated_at"]
    assert await stored_counts(client, auth) == (1, 2)


async def test_email_is_stored_trimmed_and_lower_cased(client: AsyncClient) -> None:
    body = (await client.post(URL, json=purchase(email="  Sue.Smith@Example.ORG "))).json()

    assert body["customer"]["email"] == "sue.smith@example.org"


async def test_name_and_item_are_trimmed(client: AsyncClient) -> None:
    body = (await client.post(URL, json=purchase(name="  Sue ", item="\tT-shirt  "))).json()

    assert body["customer"]["name"] == "Sue"
    assert body["item"] == "T-shirt"


async def test_quantity_defaults_to_one_and_currency_to_eur(client: AsyncClient) -> None:
    body = purchase()
    del body["quantity"], body["currency"]

    stored = (await client.post(URL, json=body)).json()

    assert stored["quantity"] == 1
    assert stored["currency"] == "EUR"


async def test_price_given_as_json_number_keeps_its_cents(client: AsyncClient) -> None:
    body = (await client.post(URL, json=purchase(unit_price=0.1, quantity=3))).json()

    assert body["unit_price"] == "0.10"
    assert body["total"] == "0.30"


async def test_total_is_exact_for_the_largest_purchase(client: AsyncClient) -> None:
    body = (
        await client.post(URL, json=purchase(unit_price="999999999.99", quantity=10_000))
    ).json()

    assert body["total"] == "9999999999900.00"


async def test_stored_purchase_reads_back_identically(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    created = (await client.post(URL, json=purchase(unit_price="19.99", currency="USD"))).json()

    stored = (await client.get(f"{URL}/{created['id']}", headers=auth)).json()

    del created["customer_created"]
    assert stored == created


async def test_emoji_quotes_and_sql_are_stored_literally(client: AsyncClient) -> None:
    name = "Zoë 'O\"Brien'; DROP TABLE customer; -- 🎉"
    item = "Robert'); DELETE FROM purchase;-- 📚 \\ %_"

    body = (await client.post(URL, json=purchase(name=name, item=item))).json()

    assert body["customer"]["name"] == name
    assert body["item"] == item


async def test_fifty_concurrent_first_purchases_create_one_customer(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(URL, json=purchase(email="new@example.com", item=f"item {n}"))
            for n in range(50)
        )
    )

    assert [r.status_code for r in responses] == [201] * 50
    assert sum(r.json()["customer_created"] for r in responses) == 1
    assert len({r.json()["customer"]["id"] for r in responses}) == 1
    assert await stored_counts(client, auth) == (1, 50)


async def test_quantity_written_as_a_whole_float_is_that_integer(client: AsyncClient) -> None:
    body = (await client.post(URL, json=purchase(quantity=3.0))).json()

    assert body["quantity"] == 3
