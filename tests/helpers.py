"""Request bodies and small assertions shared by the behaviour tests."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import Executable, RowMapping, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.settings import Settings
from app.main import create_app
from app.sales.models import Customer, Purchase

PROBLEM_JSON = "application/problem+json"


def purchase(
    email: str = "tim@example.com",
    name: str = "Tim",
    item: str = "book",
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer": {"email": email, "name": name},
        "item": item,
        "quantity": 1,
        "unit_price": "12.50",
        "currency": "EUR",
    }
    body.update(fields)
    return body


@asynccontextmanager
async def serving(
    settings: Settings, *, client: tuple[str, int] = ("127.0.0.1", 123), **changes: Any
) -> AsyncIterator[AsyncClient]:
    """A client of an app built with `settings` (and these `changes` to them), for a test that
    needs settings of its own; `client` is the address the app sees the requests come from."""
    app = create_app(settings.model_copy(update=changes) if changes else settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, client=client)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["type"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


async def stored_counts(client: AsyncClient, auth: dict[str, str]) -> tuple[int, int]:
    """(customers, purchases) as the read API sees them."""
    customers = await _count(client, "/api/v1/customers", auth)
    purchases = await _count(client, "/api/v1/purchases", auth)
    return customers, purchases


async def _count(client: AsyncClient, path: str, auth: dict[str, str]) -> int:
    total, cursor = 0, None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(path, params=params, headers=auth)).json()
        total += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return total


async def read_rows(engine: AsyncEngine, query: Executable) -> list[RowMapping]:
    """Rows straight from the test's database, typed by the models' columns."""
    async with engine.connect() as connection:
        return list((await connection.execute(query)).mappings())


async def stored_purchases(engine: AsyncEngine) -> list[RowMapping]:
    """Every purchase row with its customer's email and name, oldest first."""
    return await read_rows(
        engine,
        select(Purchase.__table__, Customer.email, Customer.name)
        .join(Customer, Customer.id == Purchase.customer_id)
        .order_by(Purchase.id),
    )


async def stored_customers(engine: AsyncEngine) -> list[RowMapping]:
    """Every customer row, oldest first."""
    return await read_rows(engine, select(Customer.__table__).order_by(Customer.id))


async def new_customer(client: AsyncClient, **fields: Any) -> int:
    """Captures one purchase; returns the id of its customer."""
    created = await client.post("/api/v1/purchases", json=purchase(**fields))
    assert created.status_code == 201, created.text
    customer_id: int = created.json()["customer"]["id"]
    return customer_id


async def correct(
    client: AsyncClient,
    auth: dict[str, str],
    customer_id: int,
    body: dict[str, Any],
    if_match: str = "*",
) -> Response:
    """PATCHes the customer with this If-Match ("*": whatever its version)."""
    return await client.patch(
        f"/api/v1/customers/{customer_id}", json=body, headers={**auth, "If-Match": if_match}
    )


def assert_promtool_accepts(exposition: str) -> None:
    """`promtool check metrics` (Debian's prometheus package, installed by `make test`)."""
    done = subprocess.run(
        ["promtool", "check", "metrics"],  # noqa: S607 - installed from the Makefile
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (done.stdout + done.stderr).strip(), done.stdout + done.stderr
