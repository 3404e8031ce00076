"""The capture benchmark of issue 5: `make bench` (and `make profile`) run this file.

It starts everything itself on the local PostgreSQL server: fresh databases, the service in its
production configuration, wrk, pgbench. It prints one table and a last line

    single_rps=… pgbench_tps=… ratio=… p99_ms=… batch_pps=… grown_ratio=… cpu_ms_per_req=…
    rss_mb_max=… socket_errors=… non2xx=…

(on one line), writes the same to bench/results/<date>.md and drops what it created. See
bench/README.md for what each figure means. Run with the project's venv python:

    .venv/bin/python bench/run.py            # the full run (about 8 minutes)
    .venv/bin/python bench/run.py --quick    # a smoke run: short phases, small data
    .venv/bin/python bench/run.py --profile  # py-spy on a one-worker service under wrk
"""

# Subprocesses with fixed argument lists (S603, S607), SQL text built from our own integers and
# names (S608), deterministic test data (S311), http:// URLs to our own loopback port (S310).
# ruff: noqa: S603, S607, S608, S311, S310

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import functools
import json
import operator
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dashboard_stats import STATS_DAYS, TARGET_STATS_MS, time_daily_stats

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LUA = BENCH / "capture.lua"
PGBENCH_SCRIPT = BENCH / "capture.pgbench.sql"  # the service's own statement: the ratio's limit
PGBENCH_SPLIT_SCRIPT = BENCH / "capture-split.pgbench.sql"  # the same as 4 round trips
LOG_CONFIG = ROOT / "deploy" / "uvicorn-logging.json"
VENV_BIN = ROOT / ".venv" / "bin"
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
SERVER_URL = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}"
TICKS = os.sysconf("SC_CLK_TCK")
POOL_SIZE = 10_000
FIRST_NAMES = ("Tim", "Sue", "Ana", "Bo", "Chen", "Dev", "Eva", "Farid")
ITEMS = ("book", "pen", "T-shirt", "mug", "notebook", "poster", "sticker", "bag")

# Targets of issue 5.
TARGET_RATIO = 0.20
TARGET_P99_MS = 50.0
TARGET_CPU_MS = 0.8
TARGET_BATCH_FACTOR = 15.0
TARGET_GROWN_RATIO = 0.8
TARGET_COLLAPSE = 0.8  # 64 connections keep at least this share of the 32-connection rate
TARGET_RSS_MB = 200.0
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}

STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"==> [{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# /proc accounting


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which may itself contain spaces and parentheses.
    return text[text.rindex(")") + 2 :].split()


def _parents() -> dict[int, list[int]]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children[int(fields[1])].append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    children = _parents()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int | None) -> float:
    """utime+stime of every live process of the tree, plus what the root reaped (cutime)."""
    if root is None:
        return 0.0
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])
            if pid == root:
                ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent running processes (user, nice, system) since boot.

    Interrupt time is left out: most of it is the kernel moving our own loopback traffic, which
    no process is charged for."""
    user, nice, system = (int(v) for v in Path("/proc/stat").read_text().split()[1:4])
    return (user + nice + system) / TICKS


def postmaster_pid() -> int | None:
    """The PostgreSQL server process: a `postgres` whose parent is not one."""
    children = _parents()
    parent_of = {child: parent for parent, kids in children.items() for child in kids}
    for pid in parent_of:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            parent = Path(f"/proc/{parent_of[pid]}/comm").read_text().strip()
        except OSError:
            continue
        if comm == "postgres" and parent != "postgres":
            return pid
    return None


def own_and_children_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class RssSampler(threading.Thread):
    """Samples VmRSS of every process of the service's tree (5 times a second; the tree itself
    is looked up once a second, since that walks /proc); keeps each process's maximum."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.root: int | None = None
        self.pids: list[int] = []
        self.max_mb: dict[int, float] = {}
        self.labels: dict[int, str] = {}
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def watch(self, root: int | None) -> None:
        with self._lock:
            self.root = root
            self.pids = []
        self.sample(refresh=True)

    def run(self) -> None:
        tick = 0
        while not self._stop_event.wait(0.2):
            tick += 1
            self.sample(refresh=tick % 5 == 0)

    def sample(self, *, refresh: bool = False) -> None:
        with self._lock:
            if self.root is None:
                return
            if refresh or not self.pids:
                self.pids = process_tree(self.root)
                for pid in self.pids:
                    if pid not in self.labels:
                        self.labels[pid] = _role(pid, self.root, len(self.pids))
            for pid in self.pids:
                mb = rss_mb(pid)
                if mb is not None:
                    self.max_mb[pid] = max(mb, self.max_mb.get(pid, 0.0))

    def stop(self) -> None:
        self._stop_event.set()


def _role(pid: int, root: int, size: int) -> str:
    command = cmdline(pid)
    if "resource_tracker" in command:
        return "resource tracker"
    if pid == root and size > 1:
        return "supervisor"
    return "worker"


# --------------------------------------------------------------------------------------------
# PostgreSQL


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


# --------------------------------------------------------------------------------------------
# Tools


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


class OtlpSink:
    """A loopback OTLP/HTTP endpoint for the tracing phase: reads each export, answers 200 (an
    empty ExportTraceServiceResponse), counts the bytes, keeps nothing."""

    def __init__(self) -> None:
        sink = self
        self.exports = 0
        self.bytes = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sink.bytes += len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                sink.exports += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------
# The service


class Service:
    """`python -m app` as production runs it (see the Dockerfile), on a loopback port."""

    def __init__(
        self, database: str, workdir: Path, sampler: RssSampler, http: str | None = None
    ) -> None:
        self.database = database
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
        log_path = self.workdir / f"service-{self.starts}-w{workers}.log"
        self.log_paths.append(log_path)
        extra = env
        env = {
            **os.environ,
            "APP_DATABASE_URL": service_db_url(self.database),
            "APP_ENVIRONMENT": "prod",
            "APP_ADMIN_TOKEN": self.token,
            "APP_LOG_FORMAT": "json",
            "APP_LOG_LEVEL": "INFO",
            "PYTHONDONTWRITEBYTECODE": "1",
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


# --------------------------------------------------------------------------------------------
# Load


@dataclass
class Phase:
    """One measured load phase and the CPU every party spent in it."""

    name: str
    kind: str  # wrk | budget | batch | pgbench
    connections: int = 0
    workers: int = 0
    seconds: float = 0.0
    requests: int = 0  # HTTP requests (or pgbench transactions) answered
    purchases: int = 0  # purchases stored by the 2xx answers
    non2xx: int = 0
    socket_errors: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    service_cpu: float = 0.0
    postgres_cpu: float = 0.0
    loadgen_cpu: float = 0.0
    machine_busy: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Answered requests (transactions) per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def purchase_rate(self) -> float:
        return self.purchases / self.seconds if self.seconds else 0.0

    def per_purchase_ms(self, cpu: float) -> float | None:
        return cpu * 1000 / self.purchases if self.purchases else None

    @property
    def others_share(self) -> float | None:
        """Per cent of the machine's cores that everything else kept busy."""
        cores = os.cpu_count() or 1
        return 100 * self.other_cpu / (self.seconds * cores) if self.seconds else None

    @property
    def other_cpu(self) -> float:
        """Busy CPU of everything else on the machine (other users' tests, say): noise."""
        return max(0.0, self.machine_busy - self.service_cpu - self.postgres_cpu - self.loadgen_cpu)


@contextlib.contextmanager
def accounting(phase: Phase, service: Service | None, postmaster: int | None) -> Iterator[None]:
    pid = service.pid if service else None
    before = (
        tree_cpu_seconds(pid),
        tree_cpu_seconds(postmaster),
        own_and_children_cpu(),
        machine_busy_seconds(),
    )
    yield
    after = (
        tree_cpu_seconds(pid),
        tree_cpu_seconds(postmaster),
        own_and_children_cpu(),
        machine_busy_seconds(),
    )
    phase.service_cpu, phase.postgres_cpu, phase.loadgen_cpu, phase.machine_busy = (
        a - b for a, b in zip(after, before, strict=True)
    )
    if service is not None:
        phase.workers = service.workers


def _bench_json(stdout: str, stderr: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return parsed
    raise BenchError(f"wrk printed no result:\n{stdout[-2000:]}\n{stderr[-2000:]}")


def _fill_from_wrk(phase: Phase, result: dict[str, Any]) -> None:
    phase.non2xx = result["non2xx"]
    phase.socket_errors = sum(
        result[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    phase.p50_ms = result["p50_us"] / 1000
    phase.p90_ms = result["p90_us"] / 1000
    phase.p99_ms = result["p99_us"] / 1000
    phase.extra["wrk"] = result


def wrk_random(
    name: str,
    service: Service,
    postmaster: int | None,
    *,
    connections: int,
    seconds: float,
    pool: str,
) -> Phase:
    """POST random purchases for `seconds` from a pool of 10,000 emails named after `pool`."""
    phase = Phase(name, "wrk", connections=connections)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    cmd += ["-s", str(LUA), service.url, "--", "random", pool, str(POOL_SIZE)]
    with accounting(phase, service, postmaster):
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 120, check=False
        )
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}):\n{result.stderr[-2000:]}")
    data = _bench_json(result.stdout, result.stderr)
    phase.seconds = data["duration_us"] / 1e6
    phase.requests = data["requests"]
    _fill_from_wrk(phase, data)
    phase.purchases = data["posted"] - data["non2xx"]
    return phase


def wrk_budget(
    name: str,
    service: Service,
    postmaster: int | None,
    *,
    bodies: Path,
    count: int,
    connections: int,
    limit: float,
    target: str = "/api/v1/purchases",
    kind: str = "budget",
) -> Phase:
    """POST each line of `bodies` once to `target`; the time until the last answer.

    wrk runs for at most `limit` seconds: a service too slow to answer them all by then is
    measured on the part it answered (the phase's name says how much that was)."""
    phase = Phase(name, kind, connections=connections)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(limit)}s", "--timeout", "60s"]
    cmd += ["-s", str(LUA), service.url, "--", "file", str(bodies), target]
    with accounting(phase, service, postmaster):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        assert proc.stderr is not None
        finished = None
        stderr_lines = []
        for line in proc.stderr:
            if line.strip() == "BUDGET_DONE":
                finished = time.monotonic()
                proc.send_signal(signal.SIGINT)  # wrk then stops and prints its summary
                break
            stderr_lines.append(line)
        stdout, rest = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}):\n{''.join(stderr_lines)}{rest}")
    data = _bench_json(stdout, "".join(stderr_lines) + rest)
    phase.requests = data["posted"]
    _fill_from_wrk(phase, data)
    phase.purchases = data["posted"] - data["non2xx"]
    if finished is not None:
        phase.seconds = finished - started
        if data["posted"] != count:
            raise BenchError(f"{name}: {data['posted']} answers for {count} purchases")
    else:  # wrk's own duration ran out first
        phase.seconds = data["duration_us"] / 1e6
        phase.name += f" (cut at {limit:g}s: {data['posted']:,} done)"
        phase.extra["cut"] = True
    return phase


def batch_phase(
    name: str,
    service: Service,
    postmaster: int | None,
    *,
    bodies: Path,
    batches: int,
    clients: int,
    limit: float,
) -> Phase:
    """POST each batch of `bodies` once with wrk (C, like the single-capture phases: a Python
    client spent a fifth of the CPU the service did); what was stored is counted in the
    database."""
    before = _purchase_count(service.database)
    phase = wrk_budget(
        name,
        service,
        postmaster,
        bodies=bodies,
        count=batches,
        connections=clients,
        limit=limit,
        target="/api/v1/purchases/batch",
        kind="batch",
    )
    phase.purchases = _purchase_count(service.database) - before
    return phase


def _purchase_count(database: str) -> int:
    return int(psql("SELECT count(*) FROM purchase", database))


def _percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def pgbench_phase(
    name: str,
    database: str,
    postmaster: int | None,
    *,
    clients: int,
    seconds: float,
    script: Path = PGBENCH_SCRIPT,
) -> Phase:
    phase = Phase(name, "pgbench", connections=clients)
    cmd = ["pgbench", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-n", "-M", "prepared"]
    cmd += ["-f", str(script), "-c", str(clients), "-j", "2"]
    cmd += ["-T", str(max(1, round(seconds))), database]
    with accounting(phase, None, postmaster):
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 120, check=False
        )
    if result.returncode != 0:
        raise BenchError(f"pgbench failed:\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}")
    out = result.stdout

    def number(pattern: str) -> float:
        match = re.search(pattern, out)
        if match is None:
            raise BenchError(f"pgbench output without /{pattern}/:\n{out}")
        return float(match.group(1))

    tps = number(r"tps = ([\d.]+) \(without initial connection time\)")
    processed = int(number(r"number of transactions actually processed: (\d+)"))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    phase.requests = processed
    phase.purchases = processed
    phase.seconds = processed / tps if tps else 0.0
    phase.non2xx = int(failed.group(1)) if failed else 0
    phase.extra["latency_avg_ms"] = number(r"latency average = ([\d.]+) ms")
    phase.extra["tps"] = tps
    return phase


# --------------------------------------------------------------------------------------------
# Data


def email_for(prefix: str, n: int) -> str:
    """The Lua script's addresses: every 4th in mixed case."""
    if n % 4 == 0:
        return f"Customer.{n}@{prefix.upper()}.Example.COM"
    return f"customer.{n}@{prefix}.example.com"


def purchases(total: int, distinct: int, prefix: str, *, seed: int = 5) -> list[dict[str, Any]]:
    """`total` contract-shaped purchases over `distinct` emails, each used total/distinct times,
    shuffled (so a batch holds a few repeats, whose last name wins)."""
    rng = random.Random(seed)
    numbers = [i % distinct for i in range(total)]
    rng.shuffle(numbers)
    return [
        {
            "customer": {"email": email_for(prefix, n), "name": f"{rng.choice(FIRST_NAMES)} {n}"},
            "item": rng.choice(ITEMS),
            "quantity": rng.randint(1, 5),
            "unit_price": f"{rng.randint(0, 199)}.{rng.randint(0, 99):02d}",
            "currency": "EUR",
        }
        for n in numbers
    ]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def seed_growth(database: str, customers: int, purchases_count: int) -> dict[str, float]:
    """Set-based: one INSERT … SELECT per table into the real tables, then VACUUM ANALYZE."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    psql(
        "INSERT INTO customer (email, name, created_at, updated_at) "
        "SELECT 'seed.' || g || '@seed.example.com', 'Seed ' || g, "
        "now() - make_interval(mins => g), now() - make_interval(mins => g) "
        f"FROM generate_series(1, {customers}) AS g",
        database,
    )
    timings["customers_s"] = time.monotonic() - started
    started = time.monotonic()
    # Each seeded customer gets purchases_count / customers of them, spread through the table.
    psql(
        "INSERT INTO purchase (customer_id, item, quantity, unit_price, currency, total, "
        "purchased_at) "
        "SELECT c.id, 'seeded item', 1 + g % 5, (g % 20000) / 100.0, 'EUR', "
        "(g % 20000) / 100.0 * (1 + g % 5), now() - make_interval(secs => g) "
        f"FROM generate_series(0, {purchases_count - 1}) AS g "
        "JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM customer "
        "WHERE email LIKE 'seed.%@seed.example.com') AS c "
        f"ON c.k = g % {customers}",
        database,
    )
    timings["purchases_s"] = time.monotonic() - started
    started = time.monotonic()
    psql("VACUUM ANALYZE customer", database)
    psql("VACUUM ANALYZE purchase", database)
    psql("CHECKPOINT", database)
    timings["vacuum_s"] = time.monotonic() - started
    return timings


# --------------------------------------------------------------------------------------------
# Report


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def per_req(phase: Phase, cpu: float) -> str:
    return fmt(phase.per_purchase_ms(cpu), 3)


@dataclass
class Report:
    args: argparse.Namespace
    info: dict[str, str]
    phases: dict[str, Phase] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rss: list[tuple[int, str, float]] = field(default_factory=list)
    failure: str | None = None
    stats_ms: float | None = None

    def add(self, key: str, phase: Phase) -> Phase:
        self.phases[key] = phase
        return phase

    # The figures of the last line ----------------------------------------------------------
    def figures(self) -> dict[str, float | int | None]:
        p = self.phases
        single = p.get("single32")
        pgbench = p.get("pgbench")
        split = p.get("pgbench_split")
        grown = p.get("grown32")
        batch = p.get("batch")
        loads = [ph for ph in p.values() if ph.kind != "pgbench"]
        return {
            "single_rps": single.rate if single else None,
            "pgbench_tps": pgbench.rate if pgbench else None,
            "ratio": single.rate / pgbench.rate if single and pgbench and pgbench.rate else None,
            "ratio_split": single.rate / split.rate if single and split and split.rate else None,
            "p99_ms": single.p99_ms if single else None,
            "batch_pps": batch.purchase_rate if batch else None,
            "grown_ratio": grown.rate / single.rate if grown and single and single.rate else None,
            "cpu_ms_per_req": single.per_purchase_ms(single.service_cpu) if single else None,
            "rss_mb_max": max((mb for _, _, mb in self.rss), default=None),
            "stats_90d_ms": self.stats_ms,
            "socket_errors": sum(ph.socket_errors for ph in loads),
            "non2xx": sum(ph.non2xx for ph in loads),
        }

    def last_line(self) -> str:
        digits = {"single_rps": 1, "pgbench_tps": 1, "ratio": 3, "ratio_split": 3, "p99_ms": 1}
        digits |= {"batch_pps": 1}
        digits |= {"grown_ratio": 3, "cpu_ms_per_req": 3, "rss_mb_max": 1}
        parts = []
        for key, value in self.figures().items():
            if value is None:
                text = "n/a"
            elif key in ("socket_errors", "non2xx"):
                text = str(value)
            else:
                text = f"{value:.{digits.get(key, 1)}f}"
            parts.append(f"{key}={text}")
        return " ".join(parts)

    def targets(self) -> list[tuple[str, str, str, bool | None]]:
        p, f = self.phases, self.figures()
        rows: list[tuple[str, str, str, bool | None]] = []

        def row(what: str, value: float | None, target: str, ok: bool | None, d: int = 3) -> None:
            rows.append((what, fmt(value, d), target, None if value is None else ok))

        def check(what: str, value: float | None, op: str, goal: float, d: int = 3) -> None:
            ok = value is not None and COMPARISONS[op](value, goal)
            row(what, value, f"{op} {goal:g}", ok, d)

        check("single 32c / pgbench", f["ratio"], ">=", TARGET_RATIO)
        # The same target against the wording of the transaction (4 round trips).
        check("single 32c / pgbench split", f["ratio_split"], ">=", TARGET_RATIO)
        check("single 32c p99 ms", f["p99_ms"], "<=", TARGET_P99_MS, 1)
        single, many = p.get("single32"), p.get("single64")
        if single:
            errors = single.non2xx + single.socket_errors
            row("single 32c non-2xx + socket errors", errors, "0", errors == 0, 0)
        if single and many:
            errors = many.non2xx + many.socket_errors
            row("single 64c non-2xx + socket errors", errors, "0", errors == 0, 0)
            kept = many.rate / single.rate if single.rate else None
            check("single 64c / 32c rate", kept, ">=", TARGET_COLLAPSE)
        check("service CPU ms per purchase (32c)", f["cpu_ms_per_req"], "<=", TARGET_CPU_MS)
        batch, one_by_one = p.get("batch"), p.get("single_same")
        if batch and one_by_one and one_by_one.purchase_rate:
            factor = batch.purchase_rate / one_by_one.purchase_rate
            check("batch / single-endpoint purchases/s", factor, ">=", TARGET_BATCH_FACTOR, 1)
        check("grown / empty rate (32c)", f["grown_ratio"], ">=", TARGET_GROWN_RATIO)
        check("max RSS MB of a service process", f["rss_mb_max"], "<", TARGET_RSS_MB, 1)
        check("stats/daily 90 days ms (grown)", f["stats_90d_ms"], "<=", TARGET_STATS_MS, 0)
        return rows

    def best_workers(self) -> str | None:
        main, other = self.phases.get("single32"), self.phases.get("single32_other")
        if not main or not other:
            return None
        best = main if main.rate >= other.rate else other
        return (
            f"{best.workers} worker(s) is better at 32 connections: "
            f"{main.workers}w {main.rate:,.0f} req/s ({per_req(main, main.service_cpu)} ms CPU/req)"
            f" vs {other.workers}w {other.rate:,.0f} req/s "
            f"({per_req(other, other.service_cpu)} ms CPU/req)"
        )

    # Tables --------------------------------------------------------------------------------
    HEAD = (
        "phase",
        "conns",
        "workers",
        "seconds",
        "req/s",
        "purchases/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "non2xx",
        "sock err",
        "svc CPU ms/p",
        "pg CPU ms/p",
        "loadgen ms/p",
        "svc cores",
        "others %cpu",
    )

    def phase_rows(self) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        for ph in self.phases.values():
            rows.append(
                (
                    ph.name,
                    str(ph.connections),
                    str(ph.workers) if ph.kind != "pgbench" else "-",
                    fmt(ph.seconds, 1),
                    fmt(ph.rate, 1),
                    fmt(ph.purchase_rate, 1),
                    fmt(ph.p50_ms, 1),
                    fmt(ph.p90_ms, 1),
                    fmt(ph.p99_ms, 1),
                    str(ph.non2xx),
                    str(ph.socket_errors),
                    per_req(ph, ph.service_cpu) if ph.kind != "pgbench" else "-",
                    per_req(ph, ph.postgres_cpu),
                    per_req(ph, ph.loadgen_cpu),
                    fmt(ph.service_cpu / ph.seconds, 2)
                    if ph.seconds and ph.kind != "pgbench"
                    else "-",
                    fmt(ph.others_share, 0),
                )
            )
        return rows

    def text(self) -> str:
        lines = [_plain_table(self.HEAD, self.phase_rows()), ""]
        target_rows = [
            (what, value, target, {True: "ok", False: "MISSED", None: "-"}[ok])
            for what, value, target, ok in self.targets()
        ]
        lines.append(_plain_table(("target", "measured", "goal", ""), target_rows))
        lines.append("")
        if self.rss:
            rss = ", ".join(f"{label} {pid}: {mb:.1f} MB" for pid, label, mb in self.rss)
            lines.append(f"max RSS per service process: {rss}")
        lines.extend(self.notes)
        if self.failure:
            lines.append(f"FAILED: {self.failure}")
        lines.append(self.last_line())
        return "\n".join(lines)

    def markdown(self) -> str:
        a = self.args
        now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        lines = [f"## {now}{' (--quick)' if a.quick else ''}", ""]
        lines.append(", ".join(f"{k}: {v}" for k, v in self.info.items()))
        lines.append("")
        lines.append(_md_table(self.HEAD, self.phase_rows()))
        lines.append("")
        target_rows = [
            (what, value, target, {True: "ok", False: "**missed**", None: "-"}[ok])
            for what, value, target, ok in self.targets()
        ]
        lines.append(_md_table(("target", "measured", "goal", ""), target_rows))
        lines.append("")
        if self.rss:
            rss = ", ".join(f"{label} {pid}: {mb:.1f} MB" for pid, label, mb in self.rss)
            lines.append(f"- max RSS per service process: {rss}")
        lines.extend(f"- {note}" for note in self.notes)
        if self.failure:
            lines.append(f"- **FAILED:** {self.failure}")
        lines += ["", "```", self.last_line(), "```", ""]
        return "\n".join(lines)


def _plain_table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=False)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells))
    return "\n".join(out)


def _md_table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def write_results(markdown: str, name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    if path.exists():
        with path.open("a") as out:
            out.write("\n" + markdown)
    else:
        title = "# Benchmark results (bench/run.py, see bench/README.md)\n\n"
        path.write_text(title + markdown)
    return path


# --------------------------------------------------------------------------------------------
# The runs


def git_info() -> str:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = " (+ uncommitted changes)" if git("status", "--porcelain", "--", "app") else ""
    return commit + dirty


def benchmark(args: argparse.Namespace, report: Report, cleanup: list[Callable[[], None]]) -> None:
    stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{stamp}-"))
    report.info["work files"] = str(workdir)
    sampler = RssSampler()
    sampler.start()
    cleanup.append(sampler.stop)
    postmaster = postmaster_pid()

    other_workers = 1 if args.workers != 1 else 2
    say(f"preparing data: {args.batch_total:,} purchases over {args.batch_distinct:,} emails")
    batch_data = purchases(args.batch_total, args.batch_distinct, "batch")
    batch_file = workdir / "batch-bodies.jsonl"
    batch_count = 0
    with batch_file.open("w") as out:
        for i in range(0, len(batch_data), args.batch_size):
            out.write(dumps({"purchases": batch_data[i : i + args.batch_size]}) + "\n")
            batch_count += 1
    single_file = workdir / "single-bodies.jsonl"
    with single_file.open("w") as out:
        for purchase in purchases(args.batch_total, args.batch_distinct, "one"):
            out.write(dumps(purchase) + "\n")

    # pgbench first, each script on its own fresh database, while the service is not running:
    # the service's own statement (the ratio's limit), then the same work as 4 round trips.
    for key, label, script in (
        ("pgbench", "pgbench 32c", PGBENCH_SCRIPT),
        ("pgbench_split", "pgbench split 32c", PGBENCH_SPLIT_SCRIPT),
    ):
        pg_db = f"bench_{stamp}_{key}"
        say(f"{label}: fresh database {pg_db}, migrated, script {script.name}")
        create_database(pg_db)
        cleanup.append(functools.partial(drop_database, pg_db))
        migrate(pg_db)
        say(f"pgbench warm-up {args.warmup:g}s")
        pgbench_phase(
            "pgbench warm-up", pg_db, postmaster, clients=32, seconds=args.warmup, script=script
        )
        say(f"{label}: 32 clients, {args.duration:g}s")
        pg = report.add(
            key,
            pgbench_phase(
                label, pg_db, postmaster, clients=32, seconds=args.duration, script=script
            ),
        )
        say(f"{label}: {pg.rate:,.0f} tps, latency avg {pg.extra['latency_avg_ms']} ms")
        drop_database(pg_db)

    db = f"bench_{stamp}_service"
    say(f"service database {db}, alembic upgrade head")
    create_database(db)
    cleanup.append(lambda: drop_database(db))
    migrate(db)
    service = Service(db, workdir, sampler, args.http)
    cleanup.append(service.stop)

    def single(key: str, label: str, pool: str, connections: int) -> Phase:
        say(f"{label}: wrk {connections} connections, {args.duration:g}s")
        phase = report.add(
            key,
            wrk_random(
                label,
                service,
                postmaster,
                connections=connections,
                seconds=args.duration,
                pool=pool,
            ),
        )
        say(
            f"{label}: {phase.rate:,.0f} req/s, p99 {phase.p99_ms:.1f} ms, "
            f"non-2xx {phase.non2xx}, socket errors {phase.socket_errors}, "
            f"service CPU {per_req(phase, phase.service_cpu)} ms/purchase"
        )
        return phase

    def warm_up(pool: str) -> None:
        say(f"warm-up: wrk 32 connections, {args.warmup:g}s")
        phase = wrk_random(
            "warm-up", service, postmaster, connections=32, seconds=args.warmup, pool=pool
        )
        report.add(f"warmup-{pool}", phase)

    say(f"starting the service: {args.workers} worker(s)")
    service.start(args.workers)
    say(f"service up on {service.url}, pid {service.pid}, workers {service.worker_pids()}")
    warm_up("warm")
    single("single32", "single 32c", "empty32", 32)
    single("single64", "single 64c", "empty64", 64)

    if args.compare_workers:
        say(f"restarting the service with {other_workers} worker(s) for the comparison")
        service.start(other_workers)
        warm_up("warmother")
        single("single32_other", f"single 32c {other_workers}w", "other32", 32)
        say(f"restarting the service with {args.workers} worker(s)")
        service.start(args.workers)
        warm_up("warmback")

    if args.compare_tracing:
        sink = OtlpSink()
        cleanup.append(sink.stop)
        say(f"restarting the service with tracing on (OTLP/HTTP to {sink.url})")
        service.start(args.workers, env={"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url})
        warm_up("warmtraced")
        traced = single("single32_traced", "single 32c traced", "traced32", 32)
        off = report.phases["single32"]
        report.notes.append(
            f"tracing on (every request sampled, OTLP/HTTP to a loopback sink: "
            f"{sink.exports} exports, {sink.bytes / 1e6:.1f} MB): "
            f"{traced.rate:,.0f} req/s, {per_req(traced, traced.service_cpu)} ms CPU/req; "
            f"off: {off.rate:,.0f} req/s, {per_req(off, off.service_cpu)} ms CPU/req"
        )
        say(f"restarting the service with tracing off, {args.workers} worker(s)")
        service.start(args.workers)
        warm_up("warmuntraced")

    say(
        f"batch: {args.batch_total:,} purchases in {batch_count} requests of "
        f"{args.batch_size}, {args.batch_clients} concurrent connections"
    )
    batch = report.add(
        "batch",
        batch_phase(
            f"batch x{args.batch_size}",
            service,
            postmaster,
            bodies=batch_file,
            batches=batch_count,
            clients=args.batch_clients,
            limit=args.budget_limit,
        ),
    )
    if batch.purchases != args.batch_total:
        raise BenchError(f"batch: {batch.purchases:,} purchases stored of {args.batch_total:,}")
    say(f"batch: {batch.purchase_rate:,.0f} purchases/s, non-2xx {batch.non2xx}")
    say(f"the same {args.batch_total:,} purchases one per request: wrk 32 connections")
    same = report.add(
        "single_same",
        wrk_budget(
            f"single {args.batch_total // 1000}k",
            service,
            postmaster,
            bodies=single_file,
            count=args.batch_total,
            connections=32,
            limit=args.budget_limit,
        ),
    )
    say(f"one by one: {same.purchase_rate:,.0f} purchases/s in {same.seconds:.1f}s")

    if args.seed_customers:
        say(
            f"growth: seeding {args.seed_customers:,} customers and {args.seed_purchases:,} "
            "purchases (set-based SQL), VACUUM ANALYZE, CHECKPOINT"
        )
        timings = seed_growth(db, args.seed_customers, args.seed_purchases)
        sizes = psql(
            "SELECT (SELECT count(*) FROM customer), (SELECT count(*) FROM purchase), "
            "pg_size_pretty(pg_database_size(current_database()))",
            db,
        ).split("|")
        report.notes.append(
            f"growth seed: customers {timings['customers_s']:.1f}s, purchases "
            f"{timings['purchases_s']:.1f}s, vacuum+checkpoint {timings['vacuum_s']:.1f}s; "
            f"then {int(sizes[0]):,} customers, {int(sizes[1]):,} purchases, {sizes[2]}"
        )
        say(report.notes[-1])
        warm_up("grownwarm")
        single("grown32", "grown 32c", "grown32", 32)
        say(f"dashboard: GET /api/v1/stats/daily over {STATS_DAYS} days, grown database")
        report.stats_ms, counted = time_daily_stats(service.url, service.token)
        outcome = f"{counted:,} purchases counted" if counted >= 0 else "refused (503)"
        report.notes.append(
            f"stats/daily over {STATS_DAYS} days (Europe/Berlin): median "
            f"{report.stats_ms:.0f} ms of 5, {outcome}"
        )
        say(report.notes[-1])

    service.stop()
    problems = service.log_problems()
    listed = ", ".join(f"{count} x {what}" for what, count in problems.most_common())
    report.notes.append(f"service log lines at ERROR: {listed or 'none'}")
    if problems:
        args.keep = True
        report.notes.append(f"service logs kept in {workdir}")
    report.rss = [(pid, sampler.labels[pid], mb) for pid, mb in sorted(sampler.max_mb.items())]
    empty, grown = report.phases.get("single32"), report.phases.get("grown32")
    if empty and grown and empty.purchases and grown.purchases:
        cpu = (grown.service_cpu / grown.purchases) / (empty.service_cpu / empty.purchases)
        pg_cpu = (grown.postgres_cpu / grown.purchases) / (empty.postgres_cpu / empty.purchases)
        report.notes.append(
            f"growth, CPU per purchase grown / empty (not moved by other load): "
            f"service {cpu:.2f}, PostgreSQL {pg_cpu:.2f}"
        )
    report.notes.append(
        "pgbench runs the service's own one-statement capture; pgbench split runs the same "
        "work as the issue words it (BEGIN, upsert, insert, COMMIT: 4 round trips)"
    )
    if report.best_workers():
        report.notes.append(str(report.best_workers()))
    # The warm-ups are in the table for their errors, not for their rates.
    if not args.keep and report.failure is None:
        shutil.rmtree(workdir, ignore_errors=True)
        report.info["work files"] = "removed"


# --------------------------------------------------------------------------------------------
# Profile


def profile(args: argparse.Namespace, report: Report, cleanup: list[Callable[[], None]]) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix=f"profile-{stamp}-"))
    sampler = RssSampler()
    postmaster = postmaster_pid()
    db = f"bench_{stamp}_profile"
    say(f"profile database {db}, alembic upgrade head")
    create_database(db)
    cleanup.append(lambda: drop_database(db))
    migrate(db)
    service = Service(db, workdir, sampler, args.http)
    cleanup.append(service.stop)
    say("starting the service: 1 worker (one process for py-spy)")
    service.start(1)
    pid = service.pid
    assert pid is not None
    say(f"warm-up {args.warmup:g}s")
    wrk_random("warm-up", service, postmaster, connections=32, seconds=args.warmup, pool="warm")

    raw = workdir / "profile.folded"
    seconds = args.profile_seconds
    say(f"py-spy record on pid {pid} for {seconds:g}s while wrk runs 32 connections")
    spy_cmd = [str(VENV_BIN / "py-spy"), "record", "--pid", str(pid), "--format", "raw"]
    spy_cmd += ["--output", str(raw), "--duration", str(int(seconds)), "--rate", str(args.rate)]
    spy_cmd += ["--function"] + (["--native"] if args.native else [])
    spy_cmd += ["--nonblocking"] if args.nonblocking else []
    spy = subprocess.Popen(spy_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cleanup.append(lambda: None if spy.poll() is not None else spy.kill())
    time.sleep(0.5)
    phase = wrk_random(
        "profiled 32c", service, postmaster, connections=32, seconds=seconds + 1, pool="profile"
    )
    spy_out, _ = spy.communicate(timeout=120)
    if spy.returncode != 0 or not raw.exists():
        raise BenchError(f"py-spy failed ({spy.returncode}):\n{spy_out[-3000:]}")
    service.stop()

    stacks = _read_folded(raw)
    summary = summarise_profile(stacks, top=args.top)
    mode = (
        " ".join(f"--{flag}" for flag in ("native", "nonblocking") if getattr(args, flag))
        or "default (blocking, Python frames only)"
    )
    counts = re.search(r"Samples: \d+ Errors: \d+", spy_out)
    base = f"profile-{dt.date.today().isoformat()}{'-native' if args.native else ''}"
    head = [
        "# py-spy profile of the capture endpoint, "
        f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, commit {git_info()}",
        "# one uvicorn worker in the production configuration, wrk 32 connections POSTing "
        f"/api/v1/purchases: {phase.rate:,.0f} req/s, p99 {phase.p99_ms:.1f} ms while sampled",
        f"# py-spy record {mode}, --function, {args.rate} Hz, {seconds:g}s"
        + (f"; {counts.group(0)}" if counts else ""),
        f"# service CPU {per_req(phase, phase.service_cpu)} ms per purchase in this run, "
        f"PostgreSQL {per_req(phase, phase.postgres_cpu)} ms; the rest of the machine kept "
        f"{fmt(phase.others_share, 0)}% of the cores busy",
        f"# folded stacks for speedscope / flamegraph.pl / inferno: bench/results/{base}.folded",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{base}.txt"
    out.write_text("\n".join(head) + summary + "\n")
    shutil.copy(raw, RESULTS / f"{base}.folded")
    print("\n".join(head) + summary)
    shutil.rmtree(workdir, ignore_errors=True)
    return out


def _read_folded(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*):(?P<line>-?\d+)\)$")


def _frame_key(frame: str) -> tuple[str, str]:
    """(function (file:line), package) of a py-spy frame."""
    match = _FRAME.match(frame)
    if not match:
        return frame, "?"
    return frame, _package(match.group("file"))


def _package(path: str) -> str:
    """`sqlalchemy/orm/session.py` -> `sqlalchemy`; the standard library and ours are marked."""
    if path.startswith("<"):  # <frozen posixpath>, <sqlalchemy generated … wrapper …>
        words = path.strip("<>").split()
        path = words[1] if words[0] == "frozen" and len(words) > 1 else words[0]
    parts = path.replace("\\", "/").split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    head = parts[0].removesuffix(".py")
    if head == "app":
        return "app (ours)"
    if head in sys.stdlib_module_names:
        return f"stdlib {head}"
    return head


def summarise_profile(stacks: list[tuple[list[str], int]], *, top: int) -> str:
    total = sum(count for _, count in stacks)
    if not total:
        return "no samples (was the service busy?)"
    own: collections.Counter[str] = collections.Counter()
    cumulative: collections.Counter[str] = collections.Counter()
    own_pkg: collections.Counter[str] = collections.Counter()
    cum_pkg: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        # py-spy writes the outermost frame first; a thread-name frame may lead.
        keys = [_frame_key(frame) for frame in frames if "(" in frame]
        if not keys:
            continue
        own[keys[-1][0]] += count
        own_pkg[keys[-1][1]] += count
        for name in {name for name, _ in keys}:
            cumulative[name] += count
        for pkg in {pkg for _, pkg in keys}:
            cum_pkg[pkg] += count

    def table(title: str, counter: collections.Counter[str], n: int) -> list[str]:
        lines = [title, f"{'samples':>8} {'share':>6}  function (file:line)"]
        for name, count in counter.most_common(n):
            lines.append(f"{count:>8} {100 * count / total:5.1f}%  {name}")
        return [*lines, ""]

    out = [f"{total} samples of the busy service thread(s)", ""]
    out += table(f"## top {top} by own time (the frame that was running)", own, top)
    out += table(f"## top {top} by total time (the frame was on the stack)", cumulative, top)
    # The server loop and the middleware chain are on nearly every stack; without them the
    # total-time list shows where the work is.
    wrappers = {name for name, count in cumulative.items() if count > total / 2}
    inner = collections.Counter({n: c for n, c in cumulative.items() if n not in wrappers})
    out += table(
        f"## top {top} by total time, without the {len(wrappers)} frames on more than half "
        "the stacks (server loop, middleware chain)",
        inner,
        top,
    )
    out += table("## own time per package", own_pkg, 30)
    out += table("## total time per package (on the stack)", cum_pkg, 30)
    return "\n".join(out)


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 s phases and small data (smoke run)"
    )
    # One worker: on these 2 cores, shared with PostgreSQL and wrk, a second worker added 2-21%
    # throughput for 10-36% more CPU per request in quick runs (the comparison phase still
    # measures it).
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (1)")
    parser.add_argument(
        "--http",
        choices=["h11", "httptools"],
        help="uvicorn's HTTP parser (default: what `python -m app` picks, bounded httptools)",
    )
    parser.add_argument("--duration", type=float, help="seconds per measured phase (15; quick 3)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up (5; quick 1)")
    parser.add_argument(
        "--no-compare-workers",
        dest="compare_workers",
        action="store_false",
        help="skip the 32-connection run with the other worker count",
    )
    parser.add_argument(
        "--no-compare-tracing",
        dest="compare_tracing",
        action="store_false",
        help="skip the 32-connection run with tracing on (OTLP to a loopback sink)",
    )
    parser.add_argument("--batch-total", type=int, help="purchases of the batch run (100000)")
    parser.add_argument("--batch-distinct", type=int, help="distinct emails in it (20000)")
    parser.add_argument("--batch-size", type=int, default=1000, help="purchases per batch (1000)")
    parser.add_argument("--batch-clients", type=int, default=4, help="concurrent batch clients (4)")
    parser.add_argument(
        "--budget-limit",
        type=float,
        help="stop the one-by-one run after this many seconds (180; quick 30)",
    )
    parser.add_argument(
        "--seed-customers",
        type=int,
        help="customers stored before the growth run (1000000; 0 skips it)",
    )
    parser.add_argument("--seed-purchases", type=int, help="purchases stored (3000000)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the work files (service logs)")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy profile instead of the bench"
    )
    parser.add_argument("--profile-seconds", type=float, default=20, help="profile length (20)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second (250)")
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    parser.add_argument(
        "--nonblocking", action="store_true", help="py-spy --nonblocking (less exact stacks)"
    )
    parser.add_argument("--top", type=int, default=25, help="functions per profile table (25)")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "duration": 3 if quick else 15,
        "warmup": 1 if quick else 5,
        "batch_total": 10_000 if quick else 100_000,
        "batch_distinct": 2_000 if quick else 20_000,
        "seed_customers": 100_000 if quick else 1_000_000,
        "seed_purchases": 300_000 if quick else 3_000_000,
        "budget_limit": 30 if quick else 180,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cleanup: list[Callable[[], None]] = []
    report = Report(args, {})
    status = 0
    try:
        say("checking tools and PostgreSQL")
        versions = ensure_tools(need_pyspy=args.profile)
        pg_version = ensure_postgres()
        report.info |= {
            "commit": git_info(),
            "cores": str(os.cpu_count()),
            "load avg at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "PostgreSQL": pg_version,
            **versions,
            "workers": str(args.workers),
        }
        if args.profile:
            path = profile(args, report, cleanup)
            say(f"wrote {path.relative_to(ROOT)}")
            return 0
        benchmark(args, report, cleanup)
    except (BenchError, subprocess.SubprocessError, OSError, KeyboardInterrupt) as error:
        report.failure = f"{type(error).__name__}: {error}"
        status = 1
    except Exception as error:  # a bug here must still clean up and report
        traceback.print_exc()
        report.failure = f"{type(error).__name__}: {error}"
        status = 1
    finally:
        for step in reversed(cleanup):
            try:
                step()
            except Exception as error:  # keep cleaning up
                print(f"cleanup: {type(error).__name__}: {error}", file=sys.stderr)
    if args.profile:
        if report.failure:
            print(f"FAILED: {report.failure}", file=sys.stderr)
        return status
    if report.failure:
        status = 1
    path = write_results(report.markdown(), f"{dt.date.today().isoformat()}.md")
    print()
    print(f"results appended to {path.relative_to(ROOT)}")
    print(report.text())
    if args.check and status == 0 and any(ok is False for *_, ok in report.targets()):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
