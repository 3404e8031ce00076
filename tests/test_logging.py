"""One structured access line per request, with a request id and without personal data.

The lines are read as the service writes them, from stdout: the app's own events take
structlog's native path and never become stdlib LogRecords, so caplog does not see them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.log import configure_logging, mask_email
from app.core.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.helpers import purchase

ACCESS_FIELDS = {
    "event", "level", "logger", "timestamp", "request_id", "method", "path", "status",
    "duration_ms",
}  # fmt: skip

Configure = Callable[..., None]


def written_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What was written to stdout since the last call."""
    return capsys.readouterr().out.splitlines()


def written_events(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Those lines parsed (in JSON format each must be one JSON object), without the lines of
    the test's own httpx client."""
    events = [json.loads(line) for line in written_lines(capsys)]
    return [event for event in events if event["logger"] != "httpx"]


def access_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [event for event in written_events(capsys) if event["logger"] == "app.access"]


@pytest.fixture
def configure() -> Iterator[Configure]:
    """Configures logging as create_app would, for tests of the pipeline alone."""

    def configure_with(**settings: Any) -> None:
        configure_logging(Settings(environment="test", **settings))

    yield configure_with
    configure_logging(Settings(environment="test", log_format="json"))


async def test_each_request_logs_one_access_line(
    client: AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    response = await client.post("/api/v1/purchases", json=purchase())

    (line,) = access_lines(capsys)
    assert set(line) == ACCESS_FIELDS
    assert line["event"] == "request"
    assert line["level"] == "info"
    assert line["method"] == "POST"
    assert line["path"] == "/api/v1/purchases"
    assert line["status"] == 201
    assert line["duration_ms"] >= 0
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["timestamp"].endswith("Z")


async def test_errors_are_logged_with_their_status(
    client: AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await client.get("/missing")

    (line,) = access_lines(capsys)
    assert line["status"] == 404


async def test_unknown_methods_are_logged(
    client: AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await client.request("MXX", "/api/v1/purchases")

    (line,) = access_lines(capsys)
    assert (line["method"], line["status"]) == ("MXX", 405)


async def test_unhandled_error_is_logged_with_its_traceback_and_status_500(
    app: FastAPI, client: AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    async def explode() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/explode", explode)

    await client.get("/explode")

    error, access = written_events(capsys)
    assert (error["event"], error["level"], error["logger"]) == (
        "unhandled error",
        "error",
        "app.access",
    )
    assert "RuntimeError: boom" in error["exception"]
    assert (access["event"], access["status"]) == ("request", 500)


async def test_logs_hold_no_email_and_no_token(
    client: AsyncClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    await client.post("/api/v1/purchases", json=purchase(email="secret.person@example.com"))
    await client.get("/api/v1/purchases?customer_email=secret.person@example.com", headers=auth)

    text = json.dumps(written_events(capsys))
    assert "secret.person" not in text
    assert ADMIN_TOKEN not in text


def test_mask_email_keeps_only_the_first_letter_and_domain() -> None:
    assert mask_email("tim@example.com") == "t***@example.com"


def test_email_fields_are_masked_and_secrets_redacted(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(log_format="json")

    structlog.get_logger("app.test").info(
        "signed up", customer_email="tim@example.com", admin_token="abc", password="pw"
    )

    (event,) = written_events(capsys)
    assert event["customer_email"] == "t***@example.com"
    assert event["admin_token"] == event["password"] == "***"


def test_values_the_fast_encoder_refuses_are_still_logged(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(log_format="json")

    structlog.get_logger("app.test").info("counted", n=2**70)

    (event,) = written_events(capsys)
    assert event["n"] == 2**70


def test_stdlib_records_are_json_lines_of_the_same_shape(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(log_format="json")

    logging.getLogger("uvicorn.error").warning("port %d busy", 8000, extra={"x": 1})

    (event,) = written_events(capsys)
    assert event["event"] == "port 8000 busy"
    assert (event["level"], event["logger"]) == ("warning", "uvicorn.error")
    assert event["timestamp"].endswith("Z")


def test_events_below_the_configured_level_are_dropped(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(log_format="json", log_level="WARNING")

    structlog.get_logger("app.test").info("app info")
    structlog.get_logger("app.test").warning("app warning")
    logging.getLogger("sqlalchemy.engine").info("stdlib info")
    logging.getLogger("sqlalchemy.engine").warning("stdlib warning")

    assert [event["event"] for event in written_events(capsys)] == [
        "app warning",
        "stdlib warning",
    ]


def test_console_format_writes_lines_for_people(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(log_format="console")

    structlog.get_logger("app.test").info("started", environment="dev")
    logging.getLogger("uvicorn.error").info("Uvicorn running")

    app_line, stdlib_line = written_lines(capsys)
    assert "started" in app_line
    assert "environment" in app_line
    assert "Uvicorn running" in stdlib_line
    assert not app_line.startswith("{")


def test_uvicorn_access_lines_are_left_to_the_access_middleware(
    configure: Configure, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(log_format="json")

    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET / HTTP/1.1" 200')

    assert written_lines(capsys) == []


def test_uvicorn_does_not_even_format_its_access_lines(configure: Configure) -> None:
    configure(log_format="json")

    # uvicorn formats an access line only when its logger has a handler in reach.
    assert not logging.getLogger("uvicorn.access").hasHandlers()
