"""Fixtures for the browser tests: a real app server, Debian's Chromium, a fresh page per test.

Without Chromium the tests skip with the reason, except under CI (the `CI` variable set), where
they fail: there they must run. `make chromium` installs it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from tests.e2e.harness import AppServer, chromium_path, launch_chromium

DESKTOP = {"width": 1280, "height": 900}

OpenPage = Callable[..., Awaitable[Page]]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = chromium_path()
    if path:
        return path
    reason = "Debian's chromium is not installed: run `make chromium` (apt-get install -y chromium)"
    if in_ci():
        pytest.fail(f"{reason}. CI must run the browser tests, not skip them.", pytrace=False)
    pytest.skip(reason)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium_executable: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright, chromium_executable)
        yield browser
        await browser.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The app for most tests; each test uses its own customer email, so they don't collide."""
    with AppServer(tmp_path_factory.mktemp("shop")) as app_server:
        yield app_server


class Api:
    """The stored rows, read back through the API's admin endpoints."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def _items(self, path: str, **params: str) -> list[dict[str, Any]]:
        response = await self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def customers(self, email: str) -> list[dict[str, Any]]:
        return await self._items("/api/v1/customers", email=email)

    async def purchases(self, email: str) -> list[dict[str, Any]]:
        return await self._items("/api/v1/purchases", customer_email=email)


@pytest_asyncio.fixture(loop_scope="session")
async def api(server: AppServer) -> AsyncIterator[Api]:
    async with server.api() as client:
        yield Api(client)


@pytest.fixture
def email() -> str:
    """A customer email no other test uses."""
    return f"tim.{secrets.token_hex(4)}@example.com"


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(browser: Browser) -> AsyncIterator[OpenPage]:
    """Opens the purchase page of a server in a fresh browser context. When the test is over,
    checks that the page threw no error and broke no Content-Security-Policy rule."""
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(f"CSP violation: {message.text}")

    async def opener(
        app_server: AppServer, watch: Callable[[Page], None] | None = None, **options: Any
    ) -> Page:
        settings = {"viewport": DESKTOP, "locale": "en-GB", "reduced_motion": "reduce"}
        context = await browser.new_context(base_url=app_server.base_url, **settings | options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", on_console)
        if watch is not None:
            watch(page)
        await page.goto("/")
        return page

    yield opener
    for context in contexts:
        await context.close()
    assert not problems, problems


@pytest_asyncio.fixture(loop_scope="session")
async def page(open_page: OpenPage, server: AppServer) -> Page:
    return await open_page(server)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[AppServer]:
    """A server of the test's own, for tests that stop it."""
    with AppServer(tmp_path) as app_server:
        yield app_server
