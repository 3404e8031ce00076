"""Managing keys over HTTP with the admin scope: create (secret shown once), list, revoke."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from httpx import AsyncClient

from app.core.settings import Settings
from app.keys.service import utcnow
from tests.helpers import assert_problem, serving
from tests.keys.conftest import MakeKey, bearer


async def test_created_key_is_shown_once_and_works(client: AsyncClient, make_key: MakeKey) -> None:
    admin = bearer(await make_key("admin"))

    created = await client.post(
        "/api/v1/keys", json={"name": "reporting", "scopes": ["read"]}, headers=admin
    )
    listed = await client.get("/api/v1/keys", headers=admin)

    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith(created.json()["prefix"])
    assert secret not in listed.text
    assert [k["name"] for k in listed.json()["items"]] == ["test key", "reporting"]
    assert (await client.get("/api/v1/purchases", headers=bearer(secret))).status_code == 200


async def test_listed_keys_show_scopes_and_times(client: AsyncClient, make_key: MakeKey) -> None:
    admin = bearer(await make_key("admin", "read"))
    await client.get("/api/v1/purchases", headers=admin)

    (key,) = (await client.get("/api/v1/keys", headers=admin)).json()["items"]

    assert key["scopes"] == ["admin", "read"]
    assert key["last_used_at"] is not None
    assert key["expires_at"] is None
    assert key["revoked_at"] is None
    assert set(key) == {
        "id", "name", "prefix", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at"
    }  # fmt: skip


async def test_a_key_can_expire(client: AsyncClient, make_key: MakeKey) -> None:
    admin = bearer(await make_key("admin"))
    before = utcnow()

    created = await client.post(
        "/api/v1/keys",
        json={"name": "temp", "scopes": ["read"], "expires_in_days": 90},
        headers=admin,
    )

    expires_at = datetime.fromisoformat(created.json()["expires_at"])
    assert before + timedelta(days=90) <= expires_at <= utcnow() + timedelta(days=90)


@pytest.mark.parametrize("days", [0, -1, 3651, "soon"])
async def test_a_lifetime_out_of_range_is_a_422(
    client: AsyncClient, make_key: MakeKey, days: object
) -> None:
    admin = bearer(await make_key("admin"))

    response = await client.post(
        "/api/v1/keys",
        json={"name": "x", "scopes": ["read"], "expires_in_days": days},
        headers=admin,
    )

    assert_problem(response, 422)


async def test_an_unknown_scope_is_a_422(client: AsyncClient, make_key: MakeKey) -> None:
    admin = bearer(await make_key("admin"))

    response = await client.post(
        "/api/v1/keys", json={"name": "x", "scopes": ["root"]}, headers=admin
    )

    assert_problem(response, 422)


async def test_revoking_over_http_refuses_the_key(settings: Settings, make_key: MakeKey) -> None:
    admin, reader = bearer(await make_key("admin")), bearer(await make_key("read"))
    async with serving(settings, key_cache_seconds=0) as client:
        keys = (await client.get("/api/v1/keys", headers=admin)).json()["items"]
        reader_id = next(k["id"] for k in keys if k["scopes"] == ["read"])

        revoked = await client.delete(f"/api/v1/keys/{reader_id}", headers=admin)
        again = await client.delete(f"/api/v1/keys/{reader_id}", headers=admin)
        refused = await client.get("/api/v1/purchases", headers=reader)

    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert_problem(refused, 401)


async def test_revoking_an_unknown_key_is_a_404(client: AsyncClient, make_key: MakeKey) -> None:
    admin = bearer(await make_key("admin"))

    assert_problem(await client.delete("/api/v1/keys/999", headers=admin), 404)


async def test_key_creation_refuses_an_idempotency_key(
    client: AsyncClient, make_key: MakeKey
) -> None:
    admin = bearer(await make_key("admin"))

    response = await client.post(
        "/api/v1/keys",
        json={"name": "x", "scopes": ["read"]},
        headers={**admin, "Idempotency-Key": "k-1"},
    )
    listed = await client.get("/api/v1/keys", headers=admin)

    assert "secret" in assert_problem(response, 400)["detail"]
    assert len(listed.json()["items"]) == 1
