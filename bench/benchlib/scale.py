"""The scale phase (issue 10): one and two service processes on one PostgreSQL database,
straight to it and through PgBouncer in transaction pooling.

Each row starts the service afresh (`--workers N`: N processes on one port), warms it up, then
runs the 32-connection capture phase while a thread samples how many PostgreSQL backends serve
the database (`pg_stat_activity`), the figure PgBouncer exists to bound. One more row runs
APP_DATABASE_POOLER=pgbouncer straight to PostgreSQL: the setting's own cost, without the hop.
Through PgBouncer, its SHOW STATS gives the queries it counted per capture (executions: the
extra describe round trip of an unnamed statement is not one).
"""

# ruff: noqa: S603, S607, S608

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .common import PG_HOST, PG_PORT, PG_USER, ROOT, BenchError, say
from .load import Phase, wrk_random
from .postgres import fresh_database, service_db_url
from .proc import RssSampler, tree_cpu_seconds
from .report import Report, fmt, per_req
from .service import Service

sys.path.insert(0, str(ROOT))  # the tests' throwaway PgBouncer, shared with the bench
from tests.pgbouncer import PgBouncer, pgbouncer_binary

# PgBouncer's server connections for the service's database: 2 processes x 16 pooled client
# connections each (APP_DB_POOL_SIZE) share these.
BOUNCER_POOL_SIZE = 10


@dataclass(frozen=True)
class Setup:
    key: str
    label: str
    processes: int
    pooler: str  # APP_DATABASE_POOLER
    through_bouncer: bool


SETUPS = (
    Setup("scale_direct_1", "scale direct 1p", 1, "none", False),
    Setup("scale_direct_2", "scale direct 2p", 2, "none", False),
    Setup("scale_setting_1", "scale setting 1p", 1, "pgbouncer", False),
    Setup("scale_bouncer_1", "scale pgbouncer 1p", 1, "pgbouncer", True),
    Setup("scale_bouncer_2", "scale pgbouncer 2p", 2, "pgbouncer", True),
)


class BackendSampler(threading.Thread):
    """The peak count of client backends on one database, sampled every 0.2 s by one psql."""

    def __init__(self, database: str) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            f"WHERE datname = '{self.database}' AND backend_type = 'client backend';\n"
            "\\watch 0.2\n"
        )
        cmd = ["psql", "-X", "-At", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "postgres"]
        with subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as watch:
            assert watch.stdin is not None
            assert watch.stdout is not None
            watch.stdin.write(query)
            watch.stdin.flush()
            while not self._done.is_set():
                line = watch.stdout.readline()
                if not line:
                    break
                if line.strip().isdigit():
                    self.peak = max(self.peak, int(line))
            watch.terminate()

    def stop(self) -> int:
        self._done.set()
        self.join(timeout=5)
        return self.peak


def bouncer_statements(bouncer: PgBouncer, database: str) -> int:
    """PgBouncer's count of queries for `database` (SHOW STATS, total_query_count), which
    it updates once per `stats_period` (1 s in tests/pgbouncer.py)."""
    time.sleep(1.5)
    console = ["-h", "127.0.0.1", "-p", str(bouncer.port), "-U", "postgres", "pgbouncer"]
    done = subprocess.run(
        ["psql", "-X", "-A", "-F", "|", "-c", "SHOW STATS", *console],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"SHOW STATS failed: {done.stderr}")
    head, *rows = done.stdout.splitlines()
    columns = head.split("|")
    for row in rows:
        cells = dict(zip(columns, row.split("|"), strict=False))
        if cells.get("database") == database:
            return int(cells["total_query_count"])
    return 0


def scale(
    args: argparse.Namespace,
    report: Report,
    *,
    stamp: str,
    workdir: Path,
    sampler: RssSampler,
    postmaster: int | None,
    cleanup: list[Callable[[], None]],
) -> None:
    binary = pgbouncer_binary()
    if binary is None:
        raise BenchError("pgbouncer is not installed: make bench installs Debian's package")
    db = f"bench_{stamp}_scale"
    say(f"scale: fresh database {db}, migrated; PgBouncer pool of {BOUNCER_POOL_SIZE}")
    fresh_database(db, cleanup)
    bouncer = PgBouncer(binary, service_db_url(db), pool_size=BOUNCER_POOL_SIZE)
    bouncer.start()
    cleanup.append(bouncer.destroy)
    for setup in SETUPS:
        url = service_db_url(db)
        env = {"APP_DATABASE_POOLER": setup.pooler}
        if setup.through_bouncer:
            env["APP_DATABASE_URL"] = bouncer.url_for(url)
        service = Service(db, workdir, sampler, args.http, env=env, name=setup.key)
        cleanup.append(service.stop)
        service.start(setup.processes)
        wrk_random(
            "warm-up", service, postmaster, connections=32, seconds=args.warmup, pool="scalewarm"
        )
        statements = bouncer_statements(bouncer, db) if setup.through_bouncer else 0
        bouncer_cpu = tree_cpu_seconds(bouncer.pid)
        backends = BackendSampler(db)
        backends.start()
        say(f"{setup.label}: wrk 32 connections, {args.duration:g}s")
        phase = wrk_random(
            setup.label,
            service,
            postmaster,
            connections=32,
            seconds=args.duration,
            pool=setup.key.replace("_", ""),  # a domain name: no underscores
        )
        phase.extra["peak_backends"] = backends.stop()
        phase.extra["bouncer_cpu"] = tree_cpu_seconds(bouncer.pid) - bouncer_cpu
        if setup.through_bouncer and phase.requests:
            done = bouncer_statements(bouncer, db) - statements
            phase.extra["statements_per_request"] = done / phase.requests
        report.add(setup.key, phase)
        report.scale_rows.append(scale_row(setup, phase))
        say(
            f"{setup.label}: {phase.rate:,.0f} req/s, p99 {fmt(phase.p99_ms)} ms, service CPU "
            f"{per_req(phase, phase.service_cpu)} ms/purchase, "
            f"peak backends {phase.extra['peak_backends']}"
        )
        service.stop()
        problems = service.log_problems()
        if problems:
            report.notes.append(f"{setup.label}: service log lines at ERROR: {dict(problems)}")
        time.sleep(1.0)  # the backends of the stopped service go before the next row counts


def scale_row(setup: Setup, phase: Phase) -> tuple[str, ...]:
    per_statement = phase.extra.get("statements_per_request")
    return (
        setup.label,
        str(setup.processes),
        "PgBouncer" if setup.through_bouncer else "direct",
        setup.pooler,
        fmt(phase.rate, 1),
        per_req(phase, phase.service_cpu),
        per_req(phase, phase.extra["bouncer_cpu"]) if setup.through_bouncer else "-",
        fmt(phase.p99_ms, 1),
        str(phase.extra["peak_backends"]),
        fmt(per_statement, 2) if per_statement is not None else "-",
        str(phase.non2xx + phase.socket_errors),
    )
