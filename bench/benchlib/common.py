"""Paths, targets and the run's clock, shared by every part of the benchmark."""

from __future__ import annotations

import operator
import os
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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
