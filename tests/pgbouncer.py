"""A throwaway PgBouncer in transaction pooling, in front of a PostgreSQL server.

Debian's `pgbouncer` (the Makefile installs it) on a free port of its own, with its config, log
and pid file in a temporary directory. It refuses to run as root, so as root it runs as the
`postgres` OS user, as the throwaway PostgreSQL clusters do (tests/hardening/postgres.py). It
routes every database name to the server (`* = host=... port=...`), so one PgBouncer serves
each test's fresh database. `stop()` and `start()` may be repeated on the same port, and
`admin()` speaks to its console (PAUSE, RESUME, RECONNECT, SHOW ...).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
from sqlalchemy import make_url

from tests.servers import free_port

DEFAULT_POOL_SIZE = 20
# A query that waits longer than this for a server connection is refused (08P01): a paused or
# cut-off pooler must not hold a request forever.
QUERY_WAIT_TIMEOUT_S = 10


def pgbouncer_binary() -> Path | None:
    """Debian installs it in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    return Path(found) if found else None


class PgBouncer:
    """One PgBouncer process of the test run's own; `url_for` routes a database URL through it."""

    def __init__(self, binary: Path, server_url: str, *, pool_size: int = DEFAULT_POOL_SIZE):
        server = make_url(server_url)
        self.binary = binary
        self.server_host = server.host or "127.0.0.1"
        self.server_port = server.port or 5432
        self.pool_size = pool_size
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.log_path = self.base / "pgbouncer.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        (self.base / "userlist.txt").write_text('"postgres" ""\n')
        (self.base / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.server_host} port={self.server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.base / 'userlist.txt'}\n"
            "admin_users = postgres\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 1000\n"
            f"query_wait_timeout = {QUERY_WAIT_TIMEOUT_S}\n"
            "server_login_retry = 1\n"
            "stats_period = 1\n"
            f"logfile = {self.log_path}\n"
            f"pidfile = {self.base / 'pgbouncer.pid'}\n"
        )
        if self.as_root:
            for path in (self.base, *self.base.iterdir()):
                shutil.chown(path, "postgres", "postgres")

    @property
    def pid(self) -> int | None:
        """The process started (as root, `runuser` with PgBouncer its child)."""
        return self.process.pid if self.process else None

    def url_for(self, database_url: str) -> str:
        """The same database and user, reached through this PgBouncer."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    def start(self, timeout: float = 15.0) -> None:
        command = [str(self.binary), str(self.base / "pgbouncer.ini")]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(  # noqa: S603 - our binary, our config
            command, cwd=self.base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM: PgBouncer closes every client and server connection at once."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    async def admin(self, command: str) -> str:
        """One command on the admin console; `execute` without arguments is a simple query, the
        only protocol the console speaks."""
        console = await asyncpg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            database="pgbouncer",
            statement_cache_size=0,
            timeout=10,
        )
        try:
            return await console.execute(command)
        finally:
            await console.close()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
