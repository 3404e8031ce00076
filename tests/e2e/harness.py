"""The real app and a real browser for the end-to-end tests and the README screenshot.

`AppServer` migrates a fresh SQLite file with Alembic and serves `app.main:app` with uvicorn,
as a subprocess on a free loopback port. `launch_chromium` starts Debian's Chromium through
Playwright; Playwright's own browser download is never used.

Playwright's async API, not its sync one: the sync API marks its own event loop as running in
the main thread for as long as it is open, which breaks every pytest-asyncio test after it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx
from playwright.async_api import Browser, Playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
START_TIMEOUT_S = 30.0


def chromium_path() -> str | None:
    """Debian's Chromium, or the browser named by E2E_CHROMIUM."""
    return os.environ.get("E2E_CHROMIUM") or shutil.which("chromium")


async def launch_chromium(playwright: Playwright, executable: str) -> Browser:
    return await playwright.chromium.launch(
        executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class AppServer:
    """One uvicorn process serving the real app against its own SQLite file.

    `stop()` and `start()` may be called again: the port and the database are kept, so a
    test can take the API away from a loaded page and bring it back.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.admin_token = secrets.token_urlsafe(24)
        self.log_path = workdir / "uvicorn.log"
        self.env = {
            **os.environ,
            "APP_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'shop.db'}",
            "APP_ADMIN_TOKEN": self.admin_token,
            "APP_ENVIRONMENT": "test",
            "APP_LOG_FORMAT": "json",
            "APP_STATIC_DIR": str(ROOT / "static"),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def migrate(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"alembic upgrade head failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("the server is already running")
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._reap()
                raise RuntimeError(f"uvicorn exited at start:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uvicorn did not get ready in {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def api(self) -> httpx.AsyncClient:
        """An HTTP client for the API, with the admin token the reads need."""
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10.0,
        )

    def __enter__(self) -> Self:
        self.migrate()
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
