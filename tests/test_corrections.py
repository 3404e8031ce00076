"""PATCH /api/v1/customers/{id}: validated like capture, If-Match guarded, 409 on a taken email."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from tests.helpers import assert_problem, correct, new_customer, purchase


async def _etag(client: AsyncClient, auth: dict[str, str], customer_id: int) -> str:
    response = await client.get(f"/api/v1/customers/{customer_id}", headers=auth)
    assert response.status_code == 200, response.text
    return response.headers["etag"]


async def test_correcting_a_name_returns_it_with_a_new_etag(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    tag = await _etag(client, auth, customer_id)

    response = await correct(client, auth, customer_id, {"name": "  Tim Berners "}, tag)

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Tim Berners"
    assert response.headers["etag"] != tag
    stored = (await client.get(f"/api/v1/customers/{customer_id}", headers=auth)).json()
    assert stored["name"] == "Tim Berners"


async def test_correcting_an_email_normalises_it_as_capture_does(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    tag = await _etag(client, auth, customer_id)

    response = await correct(client, auth, customer_id, {"email": " Tim@Example.ORG "}, tag)

    assert response.json()["email"] == "tim@example.org"


async def test_a_purchase_under_the_corrected_email_finds_the_same_customer(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    await correct(client, auth, customer_id, {"email": "tim@example.org"})

    again = await client.post("/api/v1/purchases", json=purchase(email="tim@example.org"))

    assert again.json()["customer"]["id"] == customer_id


async def test_email_of_another_customer_is_a_409_naming_it(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    tim = await new_customer(client)
    sue = await new_customer(client, email="sue@example.com", name="Sue")
    tag = await _etag(client, auth, tim)

    response = await correct(client, auth, tim, {"email": "SUE@example.com"}, tag)

    problem = assert_problem(response, 409)
    assert f"customer {sue}" in problem["detail"]
    stored = (await client.get(f"/api/v1/customers/{tim}", headers=auth)).json()
    assert stored["email"] == "tim@example.com"


async def test_stale_etag_is_a_412_and_changes_nothing(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    stale = await _etag(client, auth, customer_id)
    assert (await correct(client, auth, customer_id, {"name": "First"}, stale)).status_code == 200

    response = await correct(client, auth, customer_id, {"name": "Second"}, stale)

    assert_problem(response, 412)
    stored = (await client.get(f"/api/v1/customers/{customer_id}", headers=auth)).json()
    assert stored["name"] == "First"


async def test_a_capture_between_read_and_correction_makes_the_etag_stale(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    tag = await _etag(client, auth, customer_id)
    await client.post("/api/v1/purchases", json=purchase(name="Timothy"))

    assert_problem(await correct(client, auth, customer_id, {"name": "Tim B"}, tag), 412)


async def test_correction_without_if_match_is_a_422(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)

    response = await client.patch(
        f"/api/v1/customers/{customer_id}", json={"name": "X"}, headers=auth
    )

    assert_problem(response, 422)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": None},
        {"email": None, "name": "Tim"},
        {"email": "not-an-email"},
        {"email": "x@example.invalid"},
        {"name": " "},
        {"id": 3},
    ],
)
async def test_invalid_correction_is_a_422(
    client: AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    customer_id = await new_customer(client)

    assert_problem(await correct(client, auth, customer_id, body, "*"), 422)


async def test_correcting_a_missing_customer_is_a_404(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    assert_problem(await correct(client, auth, 999, {"name": "X"}, "*"), 404)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_changes_need_the_admin_token(client: AsyncClient, method: str) -> None:
    customer_id = await new_customer(client)

    response = await client.request(
        method,
        f"/api/v1/customers/{customer_id}",
        json={"name": "X"} if method == "PATCH" else None,
        headers={"Authorization": "Bearer wrong", "If-Match": "*"},
    )

    assert_problem(response, 401)
