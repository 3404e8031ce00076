"""The measured phases: wrk against the service, pgbench against PostgreSQL."""

# ruff: noqa: S603

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import LUA, PG_HOST, PG_PORT, PG_USER, PGBENCH_SCRIPT, POOL_SIZE, BenchError
from .postgres import psql
from .proc import machine_busy_seconds, own_and_children_cpu, tree_cpu_seconds
from .service import Service


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
    before = _settled_purchase_count(service.database)
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


def _settled_purchase_count(database: str, *, within: float = 30.0) -> int:
    """The count once it stops moving: wrk stops a phase with requests in flight, and a loaded
    service still stores those after wrk has gone (16 of them once counted as the batch's)."""
    deadline = time.monotonic() + within
    count = _purchase_count(database)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _purchase_count(database)
        if now == count:
            return count
        count = now
    raise BenchError(f"purchases were still being stored {within:.0f}s after the last phase")


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
