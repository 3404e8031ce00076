"""Per-client token buckets on the capture endpoints: 429 problem+json with Retry-After and the
RateLimit fields, batches counted by their purchases, X-Forwarded-For from trusted proxies only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.ratelimit import MemoryBuckets, client_key
from app.core.rates import Rate, parse_rate
from app.core.settings import Settings
from tests.helpers import assert_problem, purchase, serving, stored_counts

CAPTURE = "/api/v1/purchases"
BATCH = "/api/v1/purchases/batch"


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("20/s burst 40", Rate(20, 40)),
        ("600/min", Rate(10, 600)),
        ("1/h burst 5", Rate(1 / 3600, 5)),
        (" 2.5 / second  BURST 3 ", Rate(2.5, 3)),
        ("off", None),
    ],
)
def test_rates_are_read_as_written(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["20", "20/s burst", "fast", "0/s", "20/day", "-1/s"])
def test_a_rate_that_cannot_be_read_is_refused_at_startup(text: str) -> None:
    with pytest.raises(ValidationError, match="rate_limit_captures"):
        Settings(rate_limit_captures=text)


def test_trusted_proxies_are_addresses_or_networks() -> None:
    assert Settings(trusted_proxies="10.0.0.1, 192.168.0.0/16").trusted_proxies == [
        "10.0.0.1",
        "192.168.0.0/16",
    ]
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(trusted_proxies="proxy.example")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_bucket_refills_at_the_rate() -> None:
    clock = Clock()
    buckets = MemoryBuckets(Rate(2, 3), clock=clock)

    taken = [(await buckets.take("a", cost=1, need=1)).allowed for _ in range(4)]
    clock.now += 0.5
    after_half_a_second = await buckets.take("a", cost=1, need=1)

    assert taken == [True, True, True, False]
    assert after_half_a_second.allowed
    assert after_half_a_second.remaining == 0


async def test_a_debt_is_waited_out_before_the_next_request() -> None:
    clock = Clock()
    buckets = MemoryBuckets(Rate(1, 5), clock=clock)
    await buckets.take("a", cost=1, need=1)
    await buckets.take("a", cost=9, need=0)  # a batch of 10 on a bucket of 5

    refused = await buckets.take("a", cost=1, need=1)
    clock.now += 6
    later = await buckets.take("a", cost=1, need=1)

    assert not refused.allowed
    assert refused.wait_s == pytest.approx(6)
    assert later.allowed


async def test_the_buckets_remembered_are_bounded() -> None:
    clock = Clock()
    buckets = MemoryBuckets(Rate(1, 1), max_keys=100, clock=clock)

    for n in range(1000):
        await buckets.take(f"10.0.{n // 256}.{n % 256}", cost=1, need=1)

    assert len(buckets._tat) <= 100


def test_ipv6_clients_are_limited_by_their_64() -> None:
    one = client_key({"client": ("2001:db8:1:2:aaaa::1", 1)})
    same_block = client_key({"client": ("2001:db8:1:2:ffff::9", 1)})
    other_block = client_key({"client": ("2001:db8:1:3::1", 1)})

    assert one == same_block == "2001:db8:1:2::"
    assert other_block != one
    assert client_key({"client": ("192.0.2.7", 1)}) == "192.0.2.7"


async def test_an_exhausted_bucket_is_a_429_with_retry_after_and_ratelimit_fields(
    settings: Settings, auth: dict[str, str]
) -> None:
    async with serving(settings, rate_limit_captures="1/s burst 3") as client:
        accepted = [await client.post(CAPTURE, json=purchase()) for _ in range(3)]
        refused = await client.post(CAPTURE, json=purchase())
        counts = await stored_counts(client, auth)

    assert [r.status_code for r in accepted] == [201, 201, 201]
    assert "Retry in 1 s" in assert_problem(refused, 429)["detail"]
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["ratelimit-policy"] == '"captures";q=3;w=3'
    assert refused.headers["ratelimit"] == '"captures";r=0;t=1'
    assert counts == (1, 3)


async def test_a_batch_counts_by_its_purchases(settings: Settings, auth: dict[str, str]) -> None:
    batch = {"purchases": [purchase(email=f"b{n}@example.com") for n in range(10)]}
    async with serving(settings, rate_limit_captures="1/s burst 5") as client:
        first = await client.post(BATCH, json=batch)
        refused = await client.post(CAPTURE, json=purchase())
        counts = await stored_counts(client, auth)

    assert first.status_code == 201, first.text  # larger than the burst, on a full bucket
    assert_problem(refused, 429)
    assert int(refused.headers["retry-after"]) == pytest.approx(6, abs=1)
    assert counts == (10, 10)


async def test_invalid_captures_use_up_the_bucket_too(settings: Settings) -> None:
    async with serving(settings, rate_limit_captures="1/s burst 2") as client:
        statuses = [(await client.post(CAPTURE, json={"item": 1})).status_code for _ in range(3)]

    assert statuses == [422, 422, 429]


async def test_reads_and_other_clients_are_not_limited(
    settings: Settings, auth: dict[str, str]
) -> None:
    async with serving(settings, rate_limit_captures="1/s burst 1") as one:
        await one.post(CAPTURE, json=purchase())
        reads = [(await one.get(CAPTURE, headers=auth)).status_code for _ in range(3)]
    async with serving(settings, rate_limit_captures="1/s burst 1", client=("192.0.2.9", 1)) as two:
        other = await two.post(CAPTURE, json=purchase())

    assert reads == [200, 200, 200]
    assert other.status_code == 201


async def test_off_turns_the_limit_off(settings: Settings) -> None:
    async with serving(settings, rate_limit_captures="off") as client:
        statuses = {(await client.post(CAPTURE, json={"item": 1})).status_code for _ in range(30)}

    assert statuses == {422}


async def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(settings: Settings) -> None:
    async with serving(settings, rate_limit_captures="1/s burst 1") as client:
        first = await client.post(CAPTURE, json={}, headers={"X-Forwarded-For": "198.51.100.1"})
        spoofed = await client.post(CAPTURE, json={}, headers={"X-Forwarded-For": "198.51.100.2"})

    assert first.status_code == 422
    assert_problem(spoofed, 429)


async def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(settings: Settings) -> None:
    proxy = ("10.0.0.5", 1)
    changes = {"rate_limit_captures": "1/s burst 1", "trusted_proxies": ["10.0.0.0/8"]}
    async with serving(settings, client=proxy, **changes) as client:

        async def status(forwarded_for: str) -> int:
            headers = {"X-Forwarded-For": forwarded_for}
            return (await client.post(CAPTURE, json={}, headers=headers)).status_code

        one, two = await status("198.51.100.1"), await status("198.51.100.2")
        one_again = await status("198.51.100.1")
        # A client's own X-Forwarded-For is to the left of what the proxy appended: not believed.
        forged = await status("198.51.100.77, 198.51.100.2")

    assert (one, two) == (422, 422)
    assert one_again == 429
    assert forged == 429
