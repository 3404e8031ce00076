"""The edge layer: security headers on every response, unknown methods refused, and the
last-resort 500 still answered like any other response."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from httpx import AsyncClient

from tests.helpers import assert_problem

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/healthz", 200), ("GET", "/missing", 404), ("MXX", "/healthz", 405)],
)
async def test_responses_carry_the_security_headers(
    client: AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)

    assert response.status_code == status
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


async def test_a_header_the_response_sets_itself_is_kept(app: FastAPI, client: AsyncClient) -> None:
    async def framed() -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"X-Frame-Options": "SAMEORIGIN"})

    app.add_api_route("/framed", framed)

    response = await client.get("/framed")

    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_unknown_method_is_a_405_problem_with_allow(client: AsyncClient) -> None:
    response = await client.request("MXX", "/api/v1/purchases")

    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, POST"


async def test_last_resort_500_carries_request_id_and_security_headers(
    app: FastAPI, client: AsyncClient
) -> None:
    async def explode() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/explode", explode)

    response = await client.get("/explode", headers={"X-Request-ID": "trace-500"})

    assert assert_problem(response, 500)["request_id"] == "trace-500"
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
