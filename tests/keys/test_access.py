"""Who may call what: scopes, unknown, revoked and expired keys, the bootstrap token."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from httpx import AsyncClient

from app.core.settings import Settings
from tests.helpers import assert_problem, purchase, serving
from tests.keys.conftest import MakeKey, bearer, revoke_all


async def test_a_read_key_reads_purchases(client: AsyncClient, make_key: MakeKey) -> None:
    await client.post("/api/v1/purchases", json=purchase())
    key = await make_key("read")

    response = await client.get("/api/v1/purchases", headers=bearer(key))

    assert response.status_code == 200
    assert [p["item"] for p in response.json()["items"]] == ["book"]


async def test_a_key_without_read_scope_is_a_403_naming_the_scope(
    client: AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key("admin", "write")

    response = await client.get("/api/v1/customers", headers=bearer(key))

    body = assert_problem(response, 403)
    assert "'read'" in body["detail"]
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="read"'
    )


async def test_a_read_key_cannot_manage_keys(client: AsyncClient, make_key: MakeKey) -> None:
    key = await make_key("read")

    response = await client.get("/api/v1/keys", headers=bearer(key))

    assert "'admin'" in assert_problem(response, 403)["detail"]


async def test_an_unknown_key_is_a_401(client: AsyncClient, make_key: MakeKey) -> None:
    real = await make_key("read")
    forged = real[:-1] + ("A" if real[-1] != "A" else "B")  # the right prefix, a wrong secret

    response = await client.get("/api/v1/purchases", headers=bearer(forged))

    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_an_expired_key_is_a_401(client: AsyncClient, make_key: MakeKey) -> None:
    key = await make_key("read", lifetime=timedelta(seconds=1))
    assert (await client.get("/api/v1/purchases", headers=bearer(key))).status_code == 200

    await asyncio.sleep(1.1)
    response = await client.get("/api/v1/purchases", headers=bearer(key))

    assert_problem(response, 401)


async def test_a_revoked_key_is_a_401(settings: Settings, make_key: MakeKey) -> None:
    key = await make_key("read")
    async with serving(settings, key_cache_seconds=0) as client:
        assert (await client.get("/api/v1/purchases", headers=bearer(key))).status_code == 200

        await revoke_all(settings)
        response = await client.get("/api/v1/purchases", headers=bearer(key))

    assert_problem(response, 401)


async def test_a_revoked_key_is_refused_once_the_cache_expires(
    settings: Settings, client: AsyncClient, make_key: MakeKey
) -> None:
    """The cache keeps a row `key_cache_seconds` (2 s by default) at most: a revocation made
    by another process, straight in the table, is seen within that time."""
    key = await make_key("read")
    assert (await client.get("/api/v1/purchases", headers=bearer(key))).status_code == 200

    await revoke_all(settings)
    await asyncio.sleep(settings.key_cache_seconds + 0.1)

    assert_problem(await client.get("/api/v1/purchases", headers=bearer(key)), 401)


async def test_the_bootstrap_token_has_every_scope(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    assert (await client.get("/api/v1/purchases", headers=auth)).status_code == 200

    created = await client.post(
        "/api/v1/keys", json={"name": "ci", "scopes": ["read"]}, headers=auth
    )

    assert created.status_code == 201


async def test_without_a_bootstrap_token_keys_still_work(
    settings: Settings, make_key: MakeKey, auth: dict[str, str]
) -> None:
    key = await make_key("read")
    async with serving(settings, admin_token=None) as client:
        assert_problem(await client.get("/api/v1/purchases", headers=auth), 401)
        assert (await client.get("/api/v1/purchases", headers=bearer(key))).status_code == 200


async def test_an_idempotency_key_sent_with_an_api_key_is_that_keys_own(
    client: AsyncClient, make_key: MakeKey
) -> None:
    """Captures are public: without a credential a retry key is in the public scope; sent with
    an API key it is in that key's, so another caller cannot claim or replay it."""
    one, two = bearer(await make_key("read")), bearer(await make_key("read"))
    retry = {"Idempotency-Key": "order-42"}

    first = await client.post("/api/v1/purchases", json=purchase(), headers={**retry, **one})
    replayed = await client.post("/api/v1/purchases", json=purchase(), headers={**retry, **one})
    other = await client.post("/api/v1/purchases", json=purchase(), headers={**retry, **two})
    public = await client.post("/api/v1/purchases", json=purchase(), headers=retry)

    assert first.status_code == replayed.status_code == 201
    assert replayed.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in other.headers
    assert "idempotent-replayed" not in public.headers
    assert len({first.json()["id"], other.json()["id"], public.json()["id"]}) == 3


async def test_a_capture_with_an_invalid_api_key_is_a_401(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/purchases",
        json=purchase(),
        headers={"Idempotency-Key": "order-42", **bearer("pcs_" + "x" * 40)},
    )

    assert_problem(response, 401)
