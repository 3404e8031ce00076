"""The full run: pgbench, then the service phase by phase."""

# ruff: noqa: S603, S607

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from dashboard_stats import STATS_DAYS, time_daily_stats

from .common import PGBENCH_SCRIPT, PGBENCH_SPLIT_SCRIPT, ROOT, BenchError, say
from .data import dumps, purchases, seed_growth
from .load import Phase, batch_phase, pgbench_phase, wrk_budget, wrk_random
from .postgres import drop_database, fold_rollup, fresh_database, psql
from .proc import RssSampler, postmaster_pid
from .report import Report, per_req
from .scale import scale
from .service import Service
from .tracing import OtlpSink


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
        fresh_database(pg_db, cleanup)
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
    fresh_database(db, cleanup)
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
        say("growth: purchase-capture stats fold (the dashboard's rollup, as after a bulk load)")
        report.notes.append(f"stats fold of the growth seed: {fold_rollup(db):.1f}s")
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
    if args.scale:
        scale(
            args,
            report,
            stamp=stamp,
            workdir=workdir,
            sampler=sampler,
            postmaster=postmaster,
            cleanup=cleanup,
        )
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
