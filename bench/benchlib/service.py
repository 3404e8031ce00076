"""The service as production runs it, in a process of its own on a free port."""

# ruff: noqa: S603, S310

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import secrets
import signal
import string
import subprocess
import time
import urllib.request
from pathlib import Path

from .common import LOG_CONFIG, ROOT, VENV_BIN, BenchError
from .postgres import free_port, service_db_url
from .proc import RssSampler, process_tree


class Service:
    """`python -m app` as production runs it (see the Dockerfile), on a loopback port."""

    def __init__(
        self,
        database: str,
        workdir: Path,
        sampler: RssSampler,
        http: str | None = None,
        *,
        env: dict[str, str] | None = None,
        name: str = "service",
    ) -> None:
        """`env` adds APP_* settings (the scale phase's APP_DATABASE_URL through PgBouncer);
        `name` starts the names of its log files."""
        self.database = database
        self.name = name
        self.env = env or {}
        self.http = http
        self.workdir = workdir
        self.sampler = sampler
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.workers = 0
        self.token = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in "x" * 32)
        self.starts = 0
        self.log_paths: list[Path] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, workers: int, env: dict[str, str] | None = None) -> None:
        """Starts (or restarts) the service; `env`: variables beyond the settings (OTEL_*)."""
        self.stop()
        self.port = free_port()
        self.workers = workers
        self.starts += 1
        log_path = self.workdir / f"{self.name}-{self.starts}-w{workers}.log"
        self.log_paths.append(log_path)
        extra = env
        env = {
            **os.environ,
            "APP_DATABASE_URL": service_db_url(self.database),
            "APP_ENVIRONMENT": "prod",
            "APP_ADMIN_TOKEN": self.token,
            "APP_LOG_FORMAT": "json",
            "APP_LOG_LEVEL": "INFO",
            # The limit is checked on every capture, as with the default, but never refuses
            # the bench's one address.
            "APP_RATE_LIMIT_CAPTURES": "1000000/s burst 1000000",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.env,
        }
        for name in ("WEB_CONCURRENCY", "PYTHONDEVMODE", "PYTHONASYNCIODEBUG"):
            env.pop(name, None)
        env = {k: v for k, v in env.items() if not k.startswith("OTEL_")} | (extra or {})
        cmd = [str(VENV_BIN / "python"), "-m", "app", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--workers", str(workers)]
        cmd += ["--proxy-headers", "--no-server-header"]
        if self.http:
            cmd += ["--http", self.http]
        if LOG_CONFIG.exists():
            cmd += ["--log-config", str(LOG_CONFIG)]
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready(log_path)
        self.sampler.watch(self.proc.pid)

    def _wait_ready(self, log_path: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"the service exited at start:\n{log_path.read_text()[-3000:]}")
            # With several workers, /readyz must answer from each: ask a few times in a row.
            if all(_get_ok(f"{self.url}/readyz") for _ in range(self.workers * 4)):
                return
            time.sleep(0.2)
        raise BenchError(
            f"/readyz did not answer in {timeout:.0f}s:\n{log_path.read_text()[-3000:]}"
        )

    def worker_pids(self) -> list[int]:
        if self.pid is None:
            return []
        tree = process_tree(self.pid)
        return tree if len(tree) == 1 else tree[1:]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.sampler.sample()
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.sampler.watch(None)
        self.proc = None

    def log_problems(self) -> collections.Counter[str]:
        """Service log lines at ERROR or above, counted by event and exception class."""
        problems: collections.Counter[str] = collections.Counter()
        for path in self.log_paths:
            with path.open("rb") as lines:
                for raw in lines:
                    try:
                        event = json.loads(raw)
                    except ValueError:
                        continue  # uvicorn's own lines before the app configured logging
                    if event.get("level") in ("error", "critical", "exception"):
                        errors = re.findall(r"\n(\w+(?:\.\w+)*Error): ", event.get("exception", ""))
                        kind = errors[0].rsplit(".", 1)[-1] if errors else "-"
                        problems[f"{event.get('event')} ({kind})"] += 1
        return problems


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
