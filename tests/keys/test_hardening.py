"""The auth path under hostile or odd input: headers, timing, secrets kept out of every output,
and a key revoked while requests using it are in flight."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

import pytest
from httpx import AsyncClient

from app.core.settings import Settings
from app.keys.auth import MAX_TOKEN_CHARS
from tests.helpers import assert_problem
from tests.keys.conftest import MakeKey, bearer, revoke_all, stored_keys

READ = "/api/v1/purchases"
REVOCATION_PROMISE_S = 5.0


@pytest.mark.parametrize(
    "value",
    ["Bearer", "Bearer ", "Bearer a b", "Bearer tok\u00e9n", "Bearer =abc", "Bearer a;b"],
)
async def test_a_malformed_bearer_header_is_a_400(client: AsyncClient, value: str) -> None:
    response = await client.get(READ, headers=[(b"Authorization", value.encode("latin-1"))])

    assert_problem(response, 400)
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_request"'


async def test_an_oversized_token_is_a_400_that_does_not_repeat_it(client: AsyncClient) -> None:
    token = "pcs_" + "A" * (MAX_TOKEN_CHARS * 4)

    response = await client.get(READ, headers=bearer(token))

    assert_problem(response, 400)
    assert "AAAAAAAA" not in response.text


@pytest.mark.parametrize("value", ["Basic dGltOnB3", "Token abc", "Digest x", "pcs_abc"])
async def test_another_scheme_is_a_401_asking_for_bearer(client: AsyncClient, value: str) -> None:
    response = await client.get(READ, headers={"Authorization": value})

    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_repeated_authorization_header_is_a_400_even_if_both_are_valid(
    client: AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key("read")
    header = f"Bearer {key}"

    response = await client.get(
        READ, headers=[("Authorization", header), ("Authorization", header)]
    )

    assert_problem(response, 400)
    assert key not in response.text


async def test_the_scheme_is_case_insensitive(client: AsyncClient, make_key: MakeKey) -> None:
    key = await make_key("read")

    response = await client.get(READ, headers={"Authorization": f"bearer {key}"})

    assert response.status_code == 200


async def test_secrets_are_compared_whole_in_constant_time(
    client: AsyncClient, make_key: MakeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the first or the last character differs, or the prefix is unknown, the decision
    is one hmac.compare_digest of two full SHA-256 digests: no early exit, no length leak."""
    key = await make_key("read")
    calls: list[tuple[Any, Any]] = []
    compare = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # as app.keys.service calls it
    body = key[4:]
    flip = {"A": "B"}
    variants = {
        "first character after the prefix": key[:12] + flip.get(key[12], "A") + key[13:],
        "last character": key[:-1] + flip.get(key[-1], "A"),
        "unknown prefix": "pcs_" + body[::-1],
    }
    for name, forged in variants.items():
        calls.clear()
        response = await client.get(READ, headers=bearer(forged))

        assert response.status_code == 401, name
        assert calls, name
        for a, b in calls:
            assert len(a) == len(b) == 64, name


async def test_secrets_never_reach_logs_metrics_or_errors(
    client: AsyncClient, make_key: MakeKey, capsys: pytest.CaptureFixture[str]
) -> None:
    key = await make_key("read")
    admin = await make_key("admin")
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    responses = [
        await client.get(READ, headers=bearer(key)),
        await client.get(READ, headers=bearer(forged)),
        await client.get(READ, headers=bearer(admin)),
        await client.get(READ, headers={"Authorization": f"Bearer {key} extra"}),
        await client.get(READ, headers={"Authorization": f"Basic {key}"}),
        await client.post("/api/v1/keys", json={"name": key, "scopes": ["read"]}),
    ]

    metrics = (await client.get("/metrics")).text
    logged = capsys.readouterr().out

    for secret in (key, forged, admin):
        assert secret not in logged
        assert secret[:12] not in metrics
        assert secret[4:] not in metrics
        for response in responses:
            assert secret not in response.text


async def test_a_key_revoked_while_in_use_is_refused_within_seconds(
    settings: Settings, client: AsyncClient, make_key: MakeKey
) -> None:
    """Readers keep using the key while it is revoked: every answer is a 200 or a 401, each
    reader's turn to 401 is for good, and it comes within the promised 5 s."""
    key = await make_key("read")
    revoked = asyncio.Event()
    statuses: list[list[int]] = [[] for _ in range(4)]
    refused_after: list[float] = []

    async def reader(seen: list[int]) -> None:
        started = time.monotonic()
        while time.monotonic() - started < 15:
            status = (await client.get(READ, headers=bearer(key))).status_code
            seen.append(status)
            if status == 401 and revoked.is_set():
                refused_after.append(time.monotonic() - revoked_at)
                return

    tasks = [asyncio.create_task(reader(seen)) for seen in statuses]
    await asyncio.sleep(0.3)
    await revoke_all(settings)
    revoked_at = time.monotonic()
    revoked.set()
    await asyncio.gather(*tasks)

    for seen in statuses:
        assert set(seen) <= {200, 401}
        assert seen[0] == 200
        assert seen[-1] == 401
        first_refusal = seen.index(401)
        assert set(seen[first_refusal:]) == {401}
    assert max(refused_after) <= REVOCATION_PROMISE_S
    (row,) = await stored_keys(settings)  # no last-used write undid the revocation
    assert row.revoked_at is not None
