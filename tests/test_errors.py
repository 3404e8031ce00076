"""Every error leaves as application/problem+json with a request id, never a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.helpers import assert_problem, purchase

URL = "/api/v1/purchases"


async def test_malformed_json_is_a_400_problem(client: AsyncClient) -> None:
    response = await client.post(
        URL, content=b'{"customer": ', headers={"content-type": "application/json"}
    )

    assert assert_problem(response, 400)["title"] == "Malformed JSON"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_body_that_is_not_json_is_a_415_problem(
    client: AsyncClient, content_type: str
) -> None:
    response = await client.post(URL, content=b"{}", headers={"content-type": content_type})

    assert_problem(response, 415)


async def test_json_with_charset_is_accepted(client: AsyncClient) -> None:
    response = await client.post(
        URL,
        content=b'{"customer": {"email": "a@example.com", "name": "A"}, "item": "x", '
        b'"unit_price": "1"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )

    assert response.status_code == 201


async def test_body_over_one_mebibyte_is_a_413_problem(client: AsyncClient) -> None:
    body = purchase(item="x" * (1024 * 1024))

    assert_problem(await client.post(URL, json=body), 413)


async def test_unknown_route_is_a_404_problem(client: AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404)


async def test_wrong_method_is_a_405_problem_with_allow(client: AsyncClient) -> None:
    response = await client.delete(URL)

    assert_problem(response, 405)
    assert "POST" in response.headers["allow"]


async def test_unexpected_exception_is_a_500_problem_without_internals(
    app: FastAPI, client: AsyncClient
) -> None:
    async def explode() -> None:
        raise RuntimeError("secret internals: SELECT * FROM customer")

    app.add_api_route("/explode", explode)

    response = await client.get("/explode")

    problem = assert_problem(response, 500)
    assert "secret" not in response.text
    assert "SELECT" not in response.text
    assert problem["request_id"]


async def test_request_id_is_generated_and_echoed(client: AsyncClient) -> None:
    response = await client.get("/healthz")

    assert len(response.headers["x-request-id"]) >= 16


async def test_sane_request_id_from_caller_is_kept(client: AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123.retry:2"})

    assert response.headers["x-request-id"] == "abc-123.retry:2"


async def test_insane_request_id_from_caller_is_replaced(client: AsyncClient) -> None:
    forged = 'x" level=error msg=forged ' + "y" * 200

    response = await client.get("/healthz", headers={"X-Request-ID": forged})

    assert response.headers["x-request-id"] != forged
    assert len(response.headers["x-request-id"]) <= 128


async def test_streamed_body_over_the_limit_is_a_413_problem(client: AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MiB in all, sent without a Content-Length

    response = await client.post(
        URL, content=chunks(), headers={"content-type": "application/json"}
    )

    assert_problem(response, 413)
