"""py-spy on a one-worker service under wrk, folded into a summary by package."""

# ruff: noqa: S603

from __future__ import annotations

import argparse
import collections
import datetime as dt
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .common import RESULTS, VENV_BIN, BenchError, say
from .load import wrk_random
from .postgres import fresh_database
from .proc import RssSampler, postmaster_pid
from .report import Report, fmt, per_req
from .runs import git_info
from .service import Service


def profile(args: argparse.Namespace, report: Report, cleanup: list[Callable[[], None]]) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix=f"profile-{stamp}-"))
    sampler = RssSampler()
    postmaster = postmaster_pid()
    db = f"bench_{stamp}_profile"
    say(f"profile database {db}, alembic upgrade head")
    fresh_database(db, cleanup)
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
