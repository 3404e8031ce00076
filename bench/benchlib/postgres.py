"""The local PostgreSQL server and the tools the run needs (psql, pgbench, wrk, py-spy)."""

# ruff: noqa: S603, S607

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from .common import PG_HOST, PG_PORT, PG_USER, ROOT, VENV_BIN, BenchError, say

PSQL = [
    "psql",
    "-X",
    "-q",
    "-A",
    "-t",
    "-v",
    "ON_ERROR_STOP=1",
    "-h",
    PG_HOST,
    "-p",
    str(PG_PORT),
    "-U",
    PG_USER,
]


def psql(sql: str, database: str = "postgres", *, timeout: float = 1800) -> str:
    result = subprocess.run(
        [*PSQL, "-d", database, "-c", sql],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"psql failed ({database}): {sql[:120]}…\n{result.stderr.strip()}")
    return result.stdout.strip()


def ensure_postgres() -> str:
    ready = subprocess.run(["pg_isready", "-q", "-h", PG_HOST, "-p", str(PG_PORT)], check=False)
    if ready.returncode != 0:
        say("PostgreSQL is not answering: starting the local cluster")
        for version in sorted(os.listdir("/etc/postgresql")):
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                check=False,
            )
        for _ in range(30):
            probe = ["pg_isready", "-q", "-h", PG_HOST, "-p", str(PG_PORT)]
            if subprocess.run(probe, check=False).returncode == 0:
                break
            time.sleep(1)
        else:
            raise BenchError(f"PostgreSQL at {PG_HOST}:{PG_PORT} does not answer")
    return psql("SHOW server_version")


def create_database(name: str) -> None:
    psql(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_database(name: str, cleanup: list[Callable[[], None]]) -> None:
    """Create `name`, have `cleanup` drop it whatever happens, and migrate it to head."""
    create_database(name)
    cleanup.append(functools.partial(drop_database, name))
    migrate(name)


def service_db_url(name: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def migrate(name: str) -> None:
    env = {**os.environ, "APP_DATABASE_URL": service_db_url(name)}
    result = subprocess.run(
        [str(VENV_BIN / "alembic"), "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"alembic upgrade head failed on {name}:\n{result.stderr[-2000:]}")


def fold_rollup(name: str) -> float:
    """`purchase-capture stats fold` on this database, as an operator runs it after a bulk
    load (issue 14's statistics rollup); its seconds. The bar goes to the terminal."""
    env = {**os.environ, "APP_DATABASE_URL": service_db_url(name)}
    started = time.monotonic()
    result = subprocess.run(
        [str(VENV_BIN / "purchase-capture"), "stats", "fold", "--wait", "300"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"purchase-capture stats fold failed on {name}")
    return time.monotonic() - started


def ensure_tools(*, need_pyspy: bool) -> dict[str, str]:
    if shutil.which("wrk") is None:
        say("wrk is missing: apt-get update && apt-get install -y wrk")
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise BenchError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    for tool in ("wrk", "pgbench", "psql", "pg_isready"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found (pgbench, psql: the PostgreSQL server packages)")
    if not (VENV_BIN / "uvicorn").exists() or not (VENV_BIN / "alembic").exists():
        raise BenchError(f"no project venv at {VENV_BIN.parent}: run `make install`")
    if need_pyspy and not (VENV_BIN / "py-spy").exists():
        raise BenchError("py-spy is missing from the venv: `make profile` installs it")
    versions = {
        "wrk": " ".join(_first_line(["wrk", "--version"]).split()[:2]),
        "pgbench": _first_line(["pgbench", "--version"]),
        "python": sys.version.split()[0],
    }
    if need_pyspy:
        versions["py-spy"] = _first_line([str(VENV_BIN / "py-spy"), "--version"])
    return versions


def _first_line(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).strip().splitlines()[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
