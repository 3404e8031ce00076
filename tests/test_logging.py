"""One structured access line per request, with a request id and without personal data."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from app.log import mask_email
from tests.conftest import ADMIN_TOKEN
from tests.helpers import purchase


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The access events, as structlog handed them to the stdlib handler."""
    return [r.msg for r in caplog.records if r.name == "app.access" and isinstance(r.msg, dict)]


def app_log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the service logged (the test's own httpx client excluded)."""
    return "\n".join(str(r.msg) for r in caplog.records if not r.name.startswith("httpx"))


async def test_each_request_logs_one_access_line(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.post("/api/v1/purchases", json=purchase())

    (line,) = access_lines(caplog)
    assert line["method"] == "POST"
    assert line["path"] == "/api/v1/purchases"
    assert line["status"] == 201
    assert line["duration_ms"] >= 0
    assert line["request_id"] == response.headers["x-request-id"]


async def test_errors_are_logged_with_their_status(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await client.get("/missing")

    (line,) = access_lines(caplog)
    assert line["status"] == 404


async def test_logs_hold_no_email_and_no_token(
    client: AsyncClient, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    await client.post("/api/v1/purchases", json=purchase(email="secret.person@example.com"))
    await client.get("/api/v1/purchases?customer_email=secret.person@example.com", headers=auth)

    text = app_log_text(caplog)
    assert "secret.person" not in text
    assert ADMIN_TOKEN not in text


def test_mask_email_keeps_only_the_first_letter_and_domain() -> None:
    assert mask_email("tim@example.com") == "t***@example.com"
