"""The app as a real process, for the tests that need one (hardening, e2e, the screenshot).

- `UvicornServer` runs the app as production does (`python -m app`, else `uvicorn app.main:app`)
  in its own OS process on a free loopback port with the given environment, waits until it
  answers, and stops it (SIGTERM, then SIGKILL of it and its workers). `stop()` and `start()`
  may be repeated: the port is kept, so a test can take the service away and bring it back.
- `purchase_capture` runs the console script on a database.
- `app_env` is the environment of such a process; `migrate` brings a database to head with
  `alembic upgrade head`, as a release would.
- `rss_bytes` and `descendants` look at a process and its children in /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "hardening-admin-token-0123456789"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def migrate(database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, "APP_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"alembic upgrade head failed:\n{done.stdout}\n{done.stderr}")


# The app's settings, and what switches multiprocess metrics or tracing on, come from the test.
_NOT_INHERITED = ("APP_", "PROMETHEUS_MULTIPROC_DIR", "OTEL_")


def purchase_capture(
    database_url: str, *args: str, pooler: str = "none"
) -> subprocess.CompletedProcess[str]:
    """Runs the `purchase-capture` console script on this database (through `pooler`), as an
    operator would."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("APP_")}
    env["APP_DATABASE_URL"] = database_url
    env["APP_DATABASE_POOLER"] = pooler
    return subprocess.run(  # noqa: S603 - our own console script and arguments
        [str(Path(sys.executable).parent / "purchase-capture"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def app_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of an app process: ours, less any APP_*, PROMETHEUS_MULTIPROC_DIR or
    OTEL_*, plus the test's settings (`admin_token="..."` becomes APP_ADMIN_TOKEN, in place of
    `ADMIN_TOKEN`)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(_NOT_INHERITED)}
    env.update(
        {
            "APP_ENVIRONMENT": "test",
            "APP_ADMIN_TOKEN": ADMIN_TOKEN,
            "APP_DATABASE_URL": database_url,
            "APP_LOG_FORMAT": "json",
            "APP_STATIC_DIR": str(ROOT / "static"),
            # These processes take traffic from one address at rates that are the point of
            # their tests; the tests of the limit itself turn it on.
            "APP_RATE_LIMIT_CAPTURES": "off",
        }
    )
    env.update({f"APP_{key.upper()}": value for key, value in settings.items()})
    return env


class UvicornServer:
    """The app (`server_command()`) as a separate OS process on 127.0.0.1 and a free port."""

    def __init__(
        self,
        env: Mapping[str, str],
        workdir: Path,
        *,
        name: str = "app",
        workers: int = 1,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.env = dict(env)
        self.port = free_port()
        self.workers = workers
        self.extra_args = list(extra_args)
        self.log_path = workdir / f"uvicorn-{name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    def start(self, ready_path: str = "/readyz", timeout: float = START_TIMEOUT_S) -> None:
        if self.process is not None:
            raise RuntimeError("the server is already running")
        args = [
            *server_command(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            *self.extra_args,
        ]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            args,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self.wait_for(ready_path, 200, timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def wait_for(self, path: str, status: int, timeout: float) -> None:
        """Polls `path` until it answers `status`; fails if the process dies meanwhile."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"uvicorn exited ({code}):\n{self.log_tail()}")
            try:
                response = httpx.get(f"{self.base_url}{path}", timeout=2.0)
                if response.status_code == status:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as error:
                last = repr(error)
            time.sleep(0.1)
        raise RuntimeError(
            f"{path} did not answer {status} within {timeout}s (last: {last}):\n{self.log_tail()}"
        )

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator stopping the container sends it."""
        assert self.process is not None, "the server is not running"
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """Waits for the process to exit; returns its exit code."""
        assert self.process is not None, "the server is not running"
        code = self.process.wait(timeout=timeout)
        self._reap()
        return code

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_tree(process.pid)
                process.wait(timeout=10)
        self._reap()
        return process.returncode

    def _kill_tree(self, pid: int) -> None:
        for process_id in (*descendants(pid), pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process_id, signal.SIGKILL)

    def _reap(self) -> None:
        if self.process is not None:
            self.process.wait()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def rss_bytes(self) -> int:
        """Resident memory of the server and its worker processes together."""
        return sum(rss_bytes(pid) for pid in (self.pid, *descendants(self.pid)))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def server_command() -> list[str]:
    """How production starts the service: `python -m app` (uvicorn's options, exit 0 after a
    graceful SIGTERM) where the project has that entry point, else plain uvicorn."""
    if (ROOT / "app" / "__main__.py").exists():
        return [sys.executable, "-m", "app"]
    return [sys.executable, "-m", "uvicorn", "app.main:app"]


def rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (uvicorn's workers and their helpers), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        # The command name may hold spaces and parentheses: the ppid follows the last ')'.
        ppid = int(stat.rpartition(")")[2].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found
