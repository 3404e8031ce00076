"""The shared store: the same buckets in a real Redis (`redis_url`), one limit for every process
using it, and captures going on when Redis is away."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from app.core.ratelimit import RedisBuckets
from app.core.rates import Rate
from app.core.settings import Settings
from tests.helpers import assert_problem, purchase, serving
from tests.servers import free_port

CAPTURE = "/api/v1/purchases"


@pytest.fixture
async def buckets(redis_url: str) -> AsyncIterator[RedisBuckets]:
    """Buckets of 1/s burst 3 under a namespace of this test's own."""
    store = RedisBuckets(Rate(1, 3), redis_url, namespace=f"test-{secrets.token_hex(6)}")
    yield store
    await store.close()


def some_client() -> tuple[str, int]:
    """An address no other test (or engineer) uses, so its bucket in the shared Redis is new."""
    return (f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}", 1)


async def test_redis_buckets_allow_the_burst_then_refuse(buckets: RedisBuckets) -> None:
    taken = [await buckets.take("a", cost=1, need=1) for _ in range(4)]

    assert [d.allowed for d in taken] == [True, True, True, False]
    assert [d.remaining for d in taken[:3]] == [2, 1, 0]
    assert 0 < taken[3].wait_s <= 1


async def test_redis_buckets_carry_a_batchs_debt(buckets: RedisBuckets) -> None:
    await buckets.take("a", cost=1, need=1)
    await buckets.take("a", cost=9, need=0)

    refused = await buckets.take("a", cost=1, need=1)

    assert not refused.allowed
    assert refused.wait_s == pytest.approx(8, abs=0.5)


async def test_a_redis_bucket_expires_once_full_again(buckets: RedisBuckets) -> None:
    await buckets.take("a", cost=2, need=1)

    ttl_ms = await buckets.redis.pttl(buckets.prefix + "a")

    assert 0 < ttl_ms <= 2000


async def test_two_apps_on_one_redis_share_the_limit(settings: Settings, redis_url: str) -> None:
    client = some_client()
    shared = {"rate_limit_captures": "1/s burst 2", "rate_limit_store": redis_url}
    async with (
        serving(settings, client=client, **shared) as one,
        serving(settings, client=client, **shared) as two,
    ):
        first = await one.post(CAPTURE, json=purchase())
        second = await two.post(CAPTURE, json=purchase())
        third = await one.post(CAPTURE, json=purchase())

    assert (first.status_code, second.status_code) == (201, 201)
    assert_problem(third, 429)
    assert third.headers["ratelimit-policy"] == '"captures";q=2;w=2'


async def test_captures_go_on_when_redis_is_away(settings: Settings) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    async with serving(settings, rate_limit_captures="1/s burst 1", rate_limit_store=nowhere) as c:
        statuses = [(await c.post(CAPTURE, json=purchase())).status_code for _ in range(3)]

    assert statuses == [201, 201, 201]
