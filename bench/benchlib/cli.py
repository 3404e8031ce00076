"""The capture benchmark of issue 5: `make bench` (and `make profile`) run bench/run.py -> `main`.

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

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import traceback
from collections.abc import Callable

from .common import ROOT, BenchError, say
from .postgres import ensure_postgres, ensure_tools
from .profile import profile
from .report import Report, write_results
from .runs import benchmark, git_info


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
    parser.add_argument(
        "--no-scale",
        dest="scale",
        action="store_false",
        help="skip the scale phase (1 and 2 processes, direct and through PgBouncer)",
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
