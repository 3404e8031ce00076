"""`make bench-import`: the console script's import and export, end to end, on both databases.

Generates a CSV of N rows (10% from returning customers, 1% bad), then on SQLite and on a
throwaway PostgreSQL database runs `purchase-capture import` and `export purchases` as the
user would (a child process each), timing the wall clock and reading each child's peak RSS.
Writes the figures to bench/results/import-<date>.md (-2, -3, ... for a later run that day).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import ctypes
import os
import random
import resource
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy import make_url

from app.imports.pipeline import default_jobs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "var" / "bench-import"
SCRIPT = ROOT / ".venv" / "bin" / "purchase-capture"
TARGETS = {"postgresql": 50_000, "sqlite": 20_000}
EXPORT_TARGET = 200_000
RSS_LIMIT_MB = 200
BAD_ROWS = (
    ("nope", "Bad", "book", "1", "1.00", "EUR"),  # not an email
    ("bad@example.com", "Bad", "book", "0", "1.00", "EUR"),  # quantity out of range
    ("bad@example.com", "Bad", "book", "1", "1.001", "EUR"),  # three decimals
    ("bad@example.com", "Bad", "book", "1", "1.00", "EURO"),  # not a currency
    ("bad@example.com", "", "book", "1", "1.00", "EUR"),  # no name
)


@dataclass(frozen=True)
class Run:
    database: str
    step: str
    rows: int
    seconds: float
    cpu_seconds: float  # user + system time of the child and its workers (not the server's)
    peak_rss_mb: float
    status: int

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def generate(path: Path, rows: int, seed: int = 12) -> None:
    """`rows` purchases: one in ten by an earlier buyer, one in a hundred refused."""
    rng = random.Random(seed)  # noqa: S311  (test data, reproducible)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["email", "name", "item", "quantity", "unit_price", "currency", "purchased_at"]
        )
        customers = 0
        for n in range(rows):
            if n % 100 == 99:
                writer.writerow([*rng.choice(BAD_ROWS), ""])
                continue
            if customers and rng.random() < 0.1:
                who = rng.randrange(customers)
            else:
                who = customers
                customers += 1
            when = start + timedelta(seconds=n * 7)
            writer.writerow(
                [
                    f"buyer{who}@example.com",
                    f"Buyer {who}",
                    f"item {rng.randrange(500)}",
                    rng.randint(1, 5),
                    f"{rng.randrange(100, 100_000) / 100:.2f}",
                    rng.choice(("EUR", "USD", "GBP")),
                    when.isoformat(),
                ]
            )


def timed(database: str, step: str, rows: int, argv: list[str], env: dict[str, str]) -> Run:
    """Run the console script; wall time, the child's own peak RSS (wait4's rusage) and the
    CPU of the child and every process it started (its validating workers and their fork
    server, which it does not wait for: they end after it, and are reaped here)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)  # noqa: S603
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    _reap_orphans()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Run(database, step, rows, seconds, cpu, usage.ru_maxrss / 1024, child.returncode)


def _become_subreaper() -> None:
    """Orphans of our children (the import's fork server and workers) become ours, so their
    CPU is counted in RUSAGE_CHILDREN once reaped (Linux: PR_SET_CHILD_SUBREAPER)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _reap_orphans() -> None:
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def migrate(url: str) -> None:
    env = {**os.environ, "APP_DATABASE_URL": url}
    subprocess.run(  # noqa: S603
        [str(ROOT / ".venv" / "bin" / "alembic"), "upgrade", "head"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


async def _admin(server_url: str, sql: str) -> None:
    dsn = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def bench(database: str, url: str, data: Path, rows: int, jobs: int | None) -> list[Run]:
    migrate(url)
    env = {**os.environ, "APP_DATABASE_URL": url}
    out = WORK / f"export-{database}.csv"
    argv = [str(SCRIPT), "import", str(data), "--no-progress"]
    if jobs is not None:
        argv += ["--jobs", str(jobs)]
    runs = [
        timed(database, "import", rows, argv, env),
        timed(
            database,
            "export",
            rows - rows // 100,
            [str(SCRIPT), "export", "purchases", "-o", str(out), "--no-progress"],
            env,
        ),
    ]
    out.unlink()
    return runs


def report(runs: list[Run], rows: int, jobs: int | None, load_before: str) -> str:
    how = f"`--jobs {jobs}`" if jobs is not None else f"the default `--jobs` ({default_jobs()})"
    lines = [
        f"# Import/export benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{rows:,} generated rows (10% returning customers, 1% bad), `make bench-import`,"
        f" import with {how}.",
        "Wall clock of `purchase-capture import FILE` and `export purchases -o FILE`, each a",
        "child process (interpreter start-up included); CPU and peak RSS are the child's and its",
        "workers' (the database server's is not in it).",
        f"Load average when it began: {load_before}; when it ended: {_load()}"
        f" on {os.cpu_count()} cores (the machine is shared).",
        "",
        "| database | step | rows | seconds | rows/s | target | CPU s | peak RSS | exit |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        target = TARGETS[run.database] if run.step == "import" else EXPORT_TARGET
        ok = "ok" if run.rate >= target and run.peak_rss_mb < RSS_LIMIT_MB else "MISSED"
        lines.append(
            f"| {run.database} | {run.step} | {run.rows:,} | {run.seconds:.1f} | "
            f"{run.rate:,.0f} | ≥ {target:,} ({ok}) | {run.cpu_seconds:.1f} | "
            f"{run.peak_rss_mb:.0f} MB | {run.status} |"
        )
    return "\n".join(lines) + "\n"


def _results_path() -> Path:
    """import-<date>.md, or import-<date>-2.md, ... beside an earlier run of the same day."""
    stem = f"import-{datetime.now(UTC):%Y-%m-%d}"
    path, n = RESULTS / f"{stem}.md", 1
    while path.exists():
        n += 1
        path = RESULTS / f"{stem}-{n}.md"
    return path


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, help="the import's --jobs (default: its default)")
    args = parser.parse_args()
    load_before = _load()
    _become_subreaper()
    WORK.mkdir(parents=True, exist_ok=True)
    data = WORK / f"purchases-{args.rows}.csv"
    if not data.exists():
        generate(data, args.rows)
    runs: list[Run] = []
    sqlite_db = WORK / "bench.db"
    for leftover in WORK.glob("bench.db*"):
        leftover.unlink()
    runs += bench("sqlite", f"sqlite+aiosqlite:///{sqlite_db}", data, args.rows, args.jobs)
    server = os.environ.get("APP_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1/test")
    name = f"bench_import_{secrets.token_hex(3)}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        runs += bench("postgresql", url, data, args.rows, args.jobs)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    text = report(runs, args.rows, args.jobs, load_before)
    RESULTS.mkdir(exist_ok=True)
    _results_path().write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
