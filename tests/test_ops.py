"""Operations endpoints, the docs, and behaviour when the database is unreachable."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient

from app.core.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_problem, purchase, serving


async def test_healthz_says_the_process_is_alive(client: AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_says_the_database_answers(client: AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_openapi_documents_every_route_with_an_example(client: AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()

    assert set(spec["paths"]) >= {
        "/api/v1/purchases",
        "/api/v1/purchases/batch",
        "/api/v1/purchases/{purchase_id}",
        "/api/v1/customers",
        "/api/v1/customers/{customer_id}",
        "/healthz",
        "/readyz",
    }
    assert spec["components"]["schemas"]["PurchaseIn"]["examples"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


async def test_swagger_ui_is_served(client: AsyncClient) -> None:
    response = await client.get("/docs")

    assert response.status_code == 200
    assert "swagger" in response.text.lower()


@pytest.fixture
async def unreachable_client() -> AsyncIterator[AsyncClient]:
    """The app pointed at a PostgreSQL port where nothing listens."""
    settings = Settings(
        environment="test",
        database_url="postgresql+asyncpg://nobody@127.0.0.1:9/none",
        admin_token=ADMIN_TOKEN,
        db_pool_timeout=1,
    )
    async with serving(settings) as http:
        yield http


async def test_readyz_is_a_503_problem_when_the_database_is_unreachable(
    unreachable_client: AsyncClient,
) -> None:
    assert_problem(await unreachable_client.get("/readyz"), 503)


async def test_healthz_stays_up_when_the_database_is_unreachable(
    unreachable_client: AsyncClient,
) -> None:
    assert (await unreachable_client.get("/healthz")).status_code == 200


async def test_capture_is_a_503_problem_with_retry_after_when_the_database_is_unreachable(
    unreachable_client: AsyncClient,
) -> None:
    response = await unreachable_client.post("/api/v1/purchases", json=purchase())

    assert_problem(response, 503)
    assert int(response.headers["retry-after"]) > 0


async def test_swagger_ui_assets_are_served_locally(client: AsyncClient) -> None:
    page = (await client.get("/docs")).text

    assert "cdn." not in page
    asset = await client.get("/static-offline-docs/swagger-ui-bundle.js")
    assert asset.status_code == 200
