"""Issue 13: the capture limit across two processes. With the memory store each process keeps
its own buckets (the README says so); with APP_RATE_LIMIT_STORE=redis://... they share one.

The processes trust 127.0.0.1 as a proxy, and each test sends a client address of its own in
X-Forwarded-For: its buckets in the shared Redis are new, whoever else uses it."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.helpers import purchase

from .conftest import Serve

pytestmark = pytest.mark.postgres

CAPTURE = "/api/v1/purchases"
LIMIT = {"rate_limit_captures": "1/min burst 2", "trusted_proxies": "127.0.0.1"}


def statuses(calls: list[tuple[str, str]]) -> list[int]:
    """POSTs a purchase to each (process, client address) in turn; their statuses."""
    with httpx.Client(timeout=10) as http:
        return [
            http.post(
                url + CAPTURE, json=purchase(), headers={"X-Forwarded-For": client}
            ).status_code
            for url, client in calls
        ]


def some_client() -> str:
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}"


def test_with_the_memory_store_each_process_limits_on_its_own(database: str, serve: Serve) -> None:
    a, b = serve(database, name="a", **LIMIT).base_url, serve(database, name="b", **LIMIT).base_url
    client = some_client()

    seen = statuses([(a, client), (a, client), (a, client), (b, client), (b, client)])

    assert seen == [201, 201, 429, 201, 201]


def test_with_redis_two_processes_share_one_limit(
    database: str, serve: Serve, redis_url: str
) -> None:
    shared = {**LIMIT, "rate_limit_store": redis_url}
    a, b = (
        serve(database, name="a", **shared).base_url,
        serve(database, name="b", **shared).base_url,
    )
    client, other = some_client(), some_client()

    seen = statuses([(a, client), (b, client), (a, client), (b, client), (b, other)])

    assert seen == [201, 201, 429, 429, 201]
