"""Bad purchases are refused with a 422 problem naming each bad field, and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from httpx import AsyncClient

from tests.helpers import assert_problem, purchase, stored_counts

URL = "/api/v1/purchases"


def with_customer(**fields: Any) -> dict[str, Any]:
    body = purchase()
    body["customer"].update(fields)
    return body


BAD_PURCHASES = {
    "unknown field": (purchase(coupon="FREE"), "coupon"),
    "unknown customer field": (with_customer(age=3), "customer.age"),
    "missing customer": ({k: v for k, v in purchase().items() if k != "customer"}, "customer"),
    "missing item": ({k: v for k, v in purchase().items() if k != "item"}, "item"),
    "missing price": ({k: v for k, v in purchase().items() if k != "unit_price"}, "unit_price"),
    "true as price": (purchase(unit_price=True), "unit_price"),
    "list as price": (purchase(unit_price=[1]), "unit_price"),
    "negative price": (purchase(unit_price="-0.01"), "unit_price"),
    "three decimals": (purchase(unit_price="12.345"), "unit_price"),
    "float with three decimals": (purchase(unit_price=0.125), "unit_price"),
    "price of a billion": (purchase(unit_price="1000000000"), "unit_price"),
    "NaN price": (purchase(unit_price="NaN"), "unit_price"),
    "infinite price": (purchase(unit_price="Infinity"), "unit_price"),
    "words as price": (purchase(unit_price="twelve"), "unit_price"),
    "string quantity": (purchase(quantity="3"), "quantity"),
    "fractional quantity": (purchase(quantity=1.5), "quantity"),
    "true as quantity": (purchase(quantity=True), "quantity"),
    "zero quantity": (purchase(quantity=0), "quantity"),
    "quantity over 10000": (purchase(quantity=10_001), "quantity"),
    "lower-case currency": (purchase(currency="eur"), "currency"),
    "unknown currency": (purchase(currency="XYZ"), "currency"),
    "four-letter currency": (purchase(currency="EURO"), "currency"),
    "invalid email": (with_customer(email="not-an-email"), "customer.email"),
    "email with display name": (with_customer(email="Tim <tim@example.com>"), "customer.email"),
    "email as number": (with_customer(email=42), "customer.email"),
    "blank name": (with_customer(name="   "), "customer.name"),
    "name of 101 characters": (with_customer(name="x" * 101), "customer.name"),
    "NUL in name": (with_customer(name="Ti\x00m"), "customer.name"),
    "empty item": (purchase(item=""), "item"),
    "item of 201 characters": (purchase(item="x" * 201), "item"),
    "NUL in item": (purchase(item="bo\x00ok"), "item"),
    "lone surrogate in item": (purchase(item="bo\ud800ok"), "item"),
    "body is a list": ([purchase()], "body"),
}


@pytest.mark.parametrize(("body", "field"), BAD_PURCHASES.values(), ids=BAD_PURCHASES.keys())
async def test_bad_purchase_is_refused_at_its_field(
    client: AsyncClient, auth: dict[str, str], body: Any, field: str
) -> None:
    # json.dumps escapes a lone surrogate as \ud800, as a hostile client could send it.
    response = await client.post(
        URL, content=json.dumps(body), headers={"content-type": "application/json"}
    )

    problem = assert_problem(response, 422)
    assert field in [error["field"] for error in problem["errors"]]
    assert all(error["message"] for error in problem["errors"])
    assert await stored_counts(client, auth) == (0, 0)


async def test_every_bad_field_is_listed(client: AsyncClient) -> None:
    body = purchase(quantity=0, unit_price="1.001", currency="eur")

    problem = assert_problem(await client.post(URL, json=body), 422)

    assert {e["field"] for e in problem["errors"]} == {"quantity", "unit_price", "currency"}


async def test_name_of_100_characters_is_accepted(client: AsyncClient) -> None:
    response = await client.post(URL, json=with_customer(name="x" * 100))

    assert response.status_code == 201


async def test_failed_purchase_leaves_existing_customer_untouched(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    first = (await client.post(URL, json=purchase(name="Tim"))).json()

    await client.post(URL, json=purchase(name="Changed", quantity=0))

    customer = await client.get(f"/api/v1/customers/{first['customer']['id']}", headers=auth)
    assert customer.json()["name"] == "Tim"
    assert customer.json()["updated_at"] == first["customer"]["updated_at"]


async def test_field_errors_are_worded_for_people(client: AsyncClient) -> None:
    body = purchase(unit_price="1.001", quantity=0)

    problem = assert_problem(await client.post(URL, json=body), 422)

    messages = {error["field"]: error["message"] for error in problem["errors"]}
    assert messages == {"unit_price": "at most 2 decimal places", "quantity": "must be at least 1"}
