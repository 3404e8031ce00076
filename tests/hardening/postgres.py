"""PostgreSQL for the hardening tests: databases on a server, and a throwaway server.

- `create_database` / `drop_database` make a fresh database on a PostgreSQL server and migrate
  it with `alembic upgrade head`, as a release would.
- `PgCluster` is a PostgreSQL cluster of the test's own (initdb + pg_ctl from
  `pg_config --bindir`, run as the `postgres` OS user when we are root), on a free port with
  its socket and data in a temporary directory, so a test may stop it to cut the database off.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg
from sqlalchemy import make_url

from tests.servers import free_port, migrate


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """`postgresql+asyncpg://...` -> the `postgresql://...` DSN asyncpg itself takes."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


async def create_database(server_url: str, prefix: str = "hardening") -> str:
    """A new, migrated database on the server of `server_url`; returns its SQLAlchemy URL."""
    url = make_url(server_url)
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    database_url = url.set(database=name).render_as_string(hide_password=False)
    try:
        migrate(database_url)
    except BaseException:
        await drop_database(database_url)
        raise
    return database_url


async def drop_database(database_url: str) -> None:
    url = make_url(database_url)
    server = url.set(database="postgres").render_as_string(hide_password=False)
    admin = await asyncpg.connect(asyncpg_dsn(server))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await admin.close()


def postgres_bindir() -> Path | None:
    """The server binaries: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    pg_config = shutil.which("pg_config")
    candidates: list[Path] = []
    if pg_config:
        done = subprocess.run(  # noqa: S603
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            candidates.append(Path(done.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    return None


class PgCluster:
    """A throwaway PostgreSQL cluster: trust auth, loopback only, data in a temporary dir.

    As root the server binaries run as the `postgres` OS user (PostgreSQL refuses root);
    as anyone else they run as that user. `stop()` and `start()` may be repeated: the data
    and the port are kept, so a test can take the database away and bring it back.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="pg-hardening-"))
        self.data = self.base / "data"
        self.socket_dir = self.base / "run"
        self.log_path = self.base / "postgres.log"
        self.running = False

    @property
    def server_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(  # noqa: S603 - fixed binaries, our own arguments
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.base,
            env={**os.environ, "LC_ALL": "C"},
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
                f"\n{self.log_tail()}"
            )

    def init(self) -> None:
        self.socket_dir.mkdir()
        if self.as_root:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--no-sync",
            "--encoding",
            "UTF8",
            "--no-instructions",
        )

    def start(self) -> None:
        # fsync=off only skips flushing the OS cache, which outlives a stopped server; commits
        # stay synchronous, so a stop in `immediate` mode (a crash) loses nothing committed.
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off "
            "-c max_connections=100"
        )
        self._run(
            "pg_ctl", "--pgdata", str(self.data), "--log", str(self.log_path),
            "--wait", "--timeout", "60", "--options", options, "start",
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` is a crash (connections cut, no checkpoint); `fast` a clean shutdown."""
        self._run(
            "pg_ctl", "--pgdata", str(self.data), "--wait", "--timeout", "60",
            "--mode", mode, "stop",
        )  # fmt: skip
        self.running = False

    def destroy(self) -> None:
        if self.running:
            try:
                self.stop()
            except (RuntimeError, subprocess.TimeoutExpired):
                self.running = False
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
