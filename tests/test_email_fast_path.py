"""The email fast path: only addresses email-validator accepts, normalised the same way."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.sales.schemas import PLAIN_EMAIL, is_plain_email, normalise_email, normalise_email_fully


def verdict(normalise: Callable[[str], str], address: str) -> str | None:
    try:
        return normalise(address)
    except ValueError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.from_regex(PLAIN_EMAIL, fullmatch=True))
def test_every_address_the_fast_path_takes_email_validator_takes_alike(address: str) -> None:
    if is_plain_email(address):
        assert normalise_email_fully(address) == address.lower()


@pytest.mark.parametrize(
    "address",
    [
        "tim@example.com",
        "Customer.42@Shop.Example.COM",
        "first.last+tag@mail.example.org",
        "a_b-c@x-y.co",
        "x@123.example.com",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@ab--cd.com",
        "a@xn--bcher-kva.example",
        "a@xn--abc.com",
        "a@example.c0m",
        "a@example.c",
        "a@example",
        "a@localhost",
        "a@mail.local",
        "a@host.test",
        "a@x.onion",
        "a@10.in-addr.arpa",
        "a@invalid",
        "a@sub.invalid",
        f"{'a' * 64}@example.com",
        f"{'a' * 65}@example.com",
        f"a@{'b' * 63}.com",
        f"a@{'b' * 64}.com",
        f"a@{'.'.join(['b' * 60] * 4)}.com",
        "tim@exämple.com",
        '"tim"@example.com',
        "tim@[127.0.0.1]",
        "tím@example.com",
    ],
)
def test_an_address_gets_email_validators_verdict(address: str) -> None:
    assert verdict(normalise_email, address) == verdict(normalise_email_fully, address)
