"""DELETE /api/v1/customers/{id}: a tombstone, purchases kept, idempotent."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.helpers import assert_problem, correct, new_customer, purchase


async def _buy(client: AsyncClient, **fields: Any) -> dict[str, object]:
    response = await client.post("/api/v1/purchases", json=purchase(**fields))
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def test_erasure_replaces_email_and_name_by_a_tombstone(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)

    response = await client.delete(f"/api/v1/customers/{customer_id}", headers=auth)

    assert response.status_code == 204
    assert response.content == b""
    stored = (await client.get(f"/api/v1/customers/{customer_id}", headers=auth)).json()
    assert stored["email"] == f"erased-{customer_id}@invalid"
    assert "Tim" not in stored["name"]
    assert stored["erased"] is True


async def test_erasure_keeps_the_purchases_and_their_amounts(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    await _buy(client, unit_price="0.10", quantity=3)

    await client.delete(f"/api/v1/customers/{customer_id}", headers=auth)

    stored = (await client.get(f"/api/v1/customers/{customer_id}", headers=auth)).json()
    assert stored["purchase_count"] == 2
    assert stored["totals"] == {"EUR": "12.80"}
    page = (await client.get("/api/v1/purchases", headers=auth)).json()
    assert {p["customer"]["email"] for p in page["items"]} == {f"erased-{customer_id}@invalid"}


async def test_erasing_twice_answers_204_both_times(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)

    first = await client.delete(f"/api/v1/customers/{customer_id}", headers=auth)
    second = await client.delete(f"/api/v1/customers/{customer_id}", headers=auth)

    assert (first.status_code, second.status_code) == (204, 204)


async def test_a_later_purchase_with_the_old_email_creates_a_new_customer(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    await client.delete(f"/api/v1/customers/{customer_id}", headers=auth)

    again = await _buy(client)

    customer = again["customer"]
    assert isinstance(customer, dict)
    assert customer["id"] != customer_id
    assert again["customer_created"] is True


async def test_a_replayed_capture_no_longer_returns_the_erased_email(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "order-erase-1"}
    first = await client.post("/api/v1/purchases", json=purchase(), headers=headers)
    customer_id = first.json()["customer"]["id"]

    await client.delete(f"/api/v1/customers/{customer_id}", headers=auth)
    again = await client.post("/api/v1/purchases", json=purchase(), headers=headers)

    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["customer"]["id"] != customer_id


async def test_a_replayed_batch_no_longer_returns_the_erased_email(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "batch-erase-1"}
    body = {"purchases": [purchase(), purchase(email="sue@example.com", name="Sue")]}
    first = await client.post("/api/v1/purchases/batch", json=body, headers=headers)
    customer_id = first.json()["purchases"][0]["customer"]["id"]

    await client.delete(f"/api/v1/customers/{customer_id}", headers=auth)
    again = await client.post("/api/v1/purchases/batch", json=body, headers=headers)

    assert "Idempotent-Replayed" not in again.headers
    assert "tim@example.com" in again.text  # stored anew, for a new customer
    assert again.json()["purchases"][0]["customer"]["id"] != customer_id


async def test_an_erased_customer_cannot_be_corrected(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    await client.delete(f"/api/v1/customers/{customer_id}", headers=auth)

    response = await correct(client, auth, customer_id, {"name": "Tim"})

    assert_problem(response, 410)


async def test_erasing_a_missing_customer_is_a_404(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    assert_problem(await client.delete("/api/v1/customers/999", headers=auth), 404)


async def test_erasure_with_a_stale_etag_is_a_412(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    customer_id = await new_customer(client)
    stale = (await client.get(f"/api/v1/customers/{customer_id}", headers=auth)).headers["etag"]
    await _buy(client, name="Timothy")

    response = await client.delete(
        f"/api/v1/customers/{customer_id}", headers={**auth, "If-Match": stale}
    )

    assert_problem(response, 412)
