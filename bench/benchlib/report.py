"""The table, the targets, the last line, and the Markdown appended to bench/results/."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dashboard_stats import TARGET_STATS_MS

from .common import (
    COMPARISONS,
    RESULTS,
    TARGET_BATCH_FACTOR,
    TARGET_COLLAPSE,
    TARGET_CPU_MS,
    TARGET_GROWN_RATIO,
    TARGET_P99_MS,
    TARGET_RATIO,
    TARGET_RSS_MB,
)
from .load import Phase

# The columns of the scale phase's table (bench/benchlib/scale.py).
SCALE_HEAD = (
    "scale",
    "processes",
    "to PostgreSQL",
    "APP_DATABASE_POOLER",
    "req/s",
    "svc CPU ms/p",
    "PgBouncer CPU ms/p",
    "p99 ms",
    "peak backends",
    "PgBouncer queries/req",
    "errors",
)


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
    scale_rows: list[tuple[str, ...]] = field(default_factory=list)
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
        if self.scale_rows:
            lines += [_plain_table(SCALE_HEAD, self.scale_rows), ""]
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
        if self.scale_rows:
            lines += [_md_table(SCALE_HEAD, self.scale_rows), ""]
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
