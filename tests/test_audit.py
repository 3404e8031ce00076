"""GET /api/v1/audit: every correction and erasure, with the credential, never the values."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.helpers import assert_problem, correct, new_customer


async def _events(client: AsyncClient, auth: dict[str, str], **params: Any) -> list[Any]:
    response = await client.get("/api/v1/audit", params=params, headers=auth)
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def test_a_correction_is_recorded_with_fields_and_credential(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    await correct(client, auth, customer_id, {"name": "Tim B", "email": "tim@example.org"})

    (event,) = await _events(client, auth)

    assert event["action"] == "customer.corrected"
    assert event["customer_id"] == customer_id
    assert event["fields"] == ["email", "name"]
    assert event["credential"] == "admin-token"
    assert event["at"]


async def test_an_erasure_is_recorded_once_and_never_with_the_erased_values(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    await correct(client, auth, customer_id, {"name": "Tim B"})
    for _ in range(2):
        await client.delete(f"/api/v1/customers/{customer_id}", headers=auth)

    response = await client.get("/api/v1/audit", headers=auth)

    assert [e["action"] for e in response.json()["items"]] == [
        "customer.erased",
        "customer.corrected",
    ]
    assert "tim@example.com" not in response.text
    assert "Tim" not in response.text


async def test_a_refused_correction_is_not_recorded(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    await correct(client, auth, customer_id, {"name": "X"}, '"old"')

    assert await _events(client, auth) == []


async def test_a_correction_to_the_same_values_records_nothing(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    await correct(client, auth, customer_id, {"name": "Tim"})

    assert await _events(client, auth) == []


async def test_the_trail_pages_newest_first_and_filters_by_customer(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    for n in range(3):
        await correct(client, auth, customer_id, {"name": f"Tim {n}"})
    first = (await client.get("/api/v1/audit", params={"limit": 2}, headers=auth)).json()

    rest = await _events(client, auth, limit=2, cursor=first["next_cursor"])

    ids = [e["id"] for e in first["items"] + rest]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 3
    assert await _events(client, auth, customer_id=customer_id + 1) == []


async def test_the_trail_needs_the_admin_token(client: AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/audit"), 401)
