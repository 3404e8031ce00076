"""The real app and a real browser for the end-to-end tests and the README screenshot.

`AppServer` migrates a fresh SQLite file with Alembic and serves the app the way production
does (`python -m app`, through `tests.servers.UvicornServer`), as a subprocess on a free
loopback port. `launch_chromium` starts Debian's Chromium through Playwright; Playwright's own
browser download is never used.

Playwright's async API, not its sync one: the sync API marks its own event loop as running in
the main thread for as long as it is open, which breaks every pytest-asyncio test after it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Self

import httpx
from playwright.async_api import Browser, Playwright

from tests.servers import UvicornServer, app_env, migrate

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_path() -> str | None:
    """Debian's Chromium, or the browser named by E2E_CHROMIUM."""
    return os.environ.get("E2E_CHROMIUM") or shutil.which("chromium")


def chromium_or_exit() -> str:
    """Debian's Chromium for the screenshot scripts, or exit saying how to get it."""
    executable = chromium_path()
    if executable is None:
        sys.exit("Debian's chromium is not installed: run `make chromium`")
    return executable


async def launch_chromium(playwright: Playwright, executable: str) -> Browser:
    return await playwright.chromium.launch(
        executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
    )


class AppServer(UvicornServer):
    """One app process against its own SQLite file, with an admin token of its own.

    `with AppServer(workdir)` migrates the database and starts the server. `stop()` and
    `start()` may be called again: the port and the database are kept, so a test can take the
    API away from a loaded page and bring it back.
    """

    def __init__(self, workdir: Path) -> None:
        self.admin_token = secrets.token_urlsafe(24)
        self.database_url = f"sqlite+aiosqlite:///{workdir / 'shop.db'}"
        super().__init__(
            app_env(self.database_url, admin_token=self.admin_token), workdir, name="e2e"
        )

    def api(self) -> httpx.AsyncClient:
        """An HTTP client for the API, with the admin token the reads need."""
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10.0,
        )

    def __enter__(self) -> Self:
        migrate(self.database_url)
        return super().__enter__()
