"""A write whose connection is lost after it may have committed answers 503 "outcome unknown"
(never "nothing was stored"), and a retry with the same Idempotency-Key settles it: the stored
answer if it committed, one new purchase if it did not. A proxy cuts the service's connection
to PostgreSQL at the exact point of the wire protocol (tests/pgproxy.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from httpx import AsyncClient, Response
from sqlalchemy import make_url

from app.core.errors import OUTCOME_UNKNOWN_TYPE
from app.core.settings import Settings
from tests.helpers import assert_problem, purchase, serving
from tests.pgproxy import Cut, PgProxy

pytestmark = pytest.mark.postgres

URL = "/api/v1/purchases"
BATCH_URL = "/api/v1/purchases/batch"


@pytest.fixture
def database_url(postgres_schema: str) -> str:
    """These tests are about PostgreSQL only."""
    return postgres_schema


@pytest.fixture
async def proxy(empty_database: str) -> AsyncIterator[PgProxy]:
    url = make_url(empty_database)
    async with PgProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


@pytest.fixture
def settings(settings: Settings, proxy: PgProxy) -> Settings:
    """The service reaches PostgreSQL through the proxy, on one pooled connection."""
    through_proxy = make_url(settings.database_url).set(host="127.0.0.1", port=proxy.port)
    return settings.model_copy(
        update={
            "database_url": through_proxy.render_as_string(hide_password=False),
            "db_pool_size": 1,
        }
    )


async def stored_items(admin: asyncpg.Connection) -> list[str]:
    """What is stored, read around the proxy."""
    return [row["item"] for row in await admin.fetch("SELECT item FROM purchase ORDER BY id")]


def assert_outcome_unknown(response: Response) -> None:
    problem = assert_problem(response, 503)
    assert problem["type"] == OUTCOME_UNKNOWN_TYPE
    assert "Idempotency-Key" in problem["detail"]
    assert int(response.headers["retry-after"]) > 0


async def warm_up(client: AsyncClient, **headers: str) -> None:
    """A first capture on the pooled connection: asyncpg prepares its statements then, so the
    armed proxy sees only the request under test."""
    response = await client.post(URL, json=purchase(item="warm-up"), headers=headers)
    assert response.status_code == 201, response.text


async def test_a_capture_cut_off_after_its_commit_answers_outcome_unknown(
    client: AsyncClient, proxy: PgProxy, admin: asyncpg.Connection
) -> None:
    await warm_up(client)
    proxy.arm(Cut.AFTER_COMMIT)

    response = await client.post(URL, json=purchase(item="cut"))

    assert proxy.cuts == 1
    assert_outcome_unknown(response)
    assert await stored_items(admin) == ["warm-up", "cut"]


async def test_an_outcome_unknown_is_logged_with_its_cause(
    client: AsyncClient, proxy: PgProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    await warm_up(client)
    proxy.arm(Cut.AFTER_COMMIT)

    await client.post(URL, json=purchase(item="cut"))

    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (warning,) = [e for e in events if e["event"].startswith("write outcome unknown")]
    assert (warning["level"], warning["error"]) == ("warning", "ConnectionDoesNotExistError")


async def test_a_batch_cut_off_after_its_commit_answers_outcome_unknown(
    client: AsyncClient, proxy: PgProxy, admin: asyncpg.Connection
) -> None:
    batch: dict[str, Any] = {"purchases": [purchase(item=f"b{n}") for n in range(3)]}
    assert (await client.post(BATCH_URL, json=batch)).status_code == 201
    proxy.arm(Cut.AFTER_COMMIT)

    response = await client.post(BATCH_URL, json=batch)

    assert proxy.cuts == 1
    assert_outcome_unknown(response)
    assert await stored_items(admin) == ["b0", "b1", "b2"] * 2


@pytest.mark.parametrize(
    ("cut", "committed"),
    [
        pytest.param(Cut.AFTER_COMMIT, True, id="cut-after-commit"),
        pytest.param(Cut.AT_COMMIT, False, id="commit-lost"),
    ],
)
async def test_a_keyed_capture_of_unknown_outcome_is_settled_by_its_retry(
    client: AsyncClient, proxy: PgProxy, admin: asyncpg.Connection, cut: Cut, committed: bool
) -> None:
    """Committed: the retry replays the stored answer. Lost: the retry stores it, once."""
    await warm_up(client, **{"Idempotency-Key": "warm-up"})
    headers = {"Idempotency-Key": "unknown"}
    proxy.arm(cut)

    response = await client.post(URL, json=purchase(item="it"), headers=headers)

    assert proxy.cuts == 1
    assert_outcome_unknown(response)
    assert await stored_items(admin) == (["warm-up", "it"] if committed else ["warm-up"])
    keys = await admin.fetch("SELECT key FROM idempotency_key ORDER BY key")
    assert [row["key"] for row in keys] == (["unknown", "warm-up"] if committed else ["warm-up"])
    retry = await client.post(URL, json=purchase(item="it"), headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.headers.get("idempotent-replayed") == ("true" if committed else None)
    assert await stored_items(admin) == ["warm-up", "it"]


async def test_a_keyed_batch_whose_commit_is_lost_is_stored_once_by_its_retry(
    client: AsyncClient, proxy: PgProxy, admin: asyncpg.Connection
) -> None:
    await warm_up(client, **{"Idempotency-Key": "warm-up"})
    batch = {"purchases": [purchase(item=f"b{n}") for n in range(3)]}
    headers = {"Idempotency-Key": "batch-commit-lost"}
    proxy.arm(Cut.AT_COMMIT)

    response = await client.post(BATCH_URL, json=batch, headers=headers)

    assert proxy.cuts == 1
    assert_outcome_unknown(response)
    assert await stored_items(admin) == ["warm-up"]
    retry = await client.post(BATCH_URL, json=batch, headers=headers)
    assert retry.status_code == 201, retry.text
    again = await client.post(BATCH_URL, json=batch, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == retry.content
    assert await stored_items(admin) == ["warm-up", "b0", "b1", "b2"]


async def test_a_keyed_capture_whose_commit_times_out_is_stored_once_by_its_retry(
    settings: Settings, proxy: PgProxy, admin: asyncpg.Connection
) -> None:
    """A COMMIT the server never answers (a stalled network) ends in the command timeout: the
    outcome is unknown, and the connection, in a state nobody knows, is not reused."""
    async with serving(
        settings, db_command_timeout=0.6, db_statement_timeout=0.4, db_lock_timeout=0.3
    ) as client:
        await warm_up(client, **{"Idempotency-Key": "warm-up"})
        headers = {"Idempotency-Key": "commit-timed-out"}
        proxy.arm(Cut.HOLD_COMMIT)

        response = await client.post(URL, json=purchase(item="held"), headers=headers)

        assert proxy.cuts == 1
        assert_outcome_unknown(response)
        retry = await client.post(URL, json=purchase(item="held"), headers=headers)
        assert retry.status_code == 201, retry.text
        again = await client.post(URL, json=purchase(item="held"), headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert await stored_items(admin) == ["warm-up", "held"]


async def test_a_capture_that_failed_before_its_commit_keeps_nothing_was_stored(
    client: AsyncClient, proxy: PgProxy, admin: asyncpg.Connection
) -> None:
    """A deadlock victim is rolled back whole: that outcome is known."""
    await warm_up(client)
    await admin.execute(
        "CREATE FUNCTION fail_as_deadlock() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '40P01'; END $$"
    )
    await admin.execute(
        "CREATE TRIGGER fail_as_deadlock BEFORE INSERT ON purchase FOR EACH ROW "
        "EXECUTE FUNCTION fail_as_deadlock()"
    )
    try:
        response = await client.post(URL, json=purchase(item="victim"))
    finally:
        await admin.execute("DROP TRIGGER fail_as_deadlock ON purchase")
        await admin.execute("DROP FUNCTION fail_as_deadlock()")

    problem = assert_problem(response, 503)
    assert problem["type"] == "about:blank"
    assert "nothing was stored" in problem["detail"]
    assert await stored_items(admin) == ["warm-up"]
