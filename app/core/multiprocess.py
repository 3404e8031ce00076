"""Metrics that stay right with several worker processes: prometheus_client's multiprocess mode.

With `--workers N` each worker is its own process, and a scrape is answered by whichever worker
the kernel hands the connection to; with one registry per process a scrape would see that
worker's counts only. In multiprocess mode every worker writes its values to files of its own in
the directory named by PROMETHEUS_MULTIPROC_DIR, and a scrape sums the files of all of them.

- `python -m app` sets the directory up before uvicorn spawns the workers (`prepare_directory`):
  prometheus_client picks its value class when it is first imported, so the variable must be in
  the workers' environment from the start.
- Counters and histograms of a worker that has exited stay in the sums (their files are kept),
  so a restarted worker never makes a counter go backwards. Gauges are "live" (only processes
  still running count): `mark_process_dead` drops a worker's gauge files.
- `WorkerProcessCollector` reports each live worker's process metrics, labelled by pid.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def directory() -> Path | None:
    """The multiprocess directory of this run, or None in single-process mode."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


@contextmanager
def prepared_directory(workers: int) -> Iterator[Path | None]:
    """The directory for this run, set in the environment for the workers to inherit.

    An operator's PROMETHEUS_MULTIPROC_DIR is used as given, emptied of an earlier run's files
    first: counts of processes long gone would otherwise be added to this run's. Without one, a
    single process needs none; several get a fresh temporary directory, removed when the service
    stops.
    """
    given = directory()
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        for stale in given.glob("*.db"):
            stale.unlink(missing_ok=True)
        yield given
        return
    if workers <= 1:
        yield None
        return
    made = Path(tempfile.mkdtemp(prefix="purchase-capture-metrics-"))
    os.environ[ENV] = str(made)
    try:
        yield made
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(made, ignore_errors=True)


def mark_process_dead(pid: int, path: Path) -> None:
    """Drop a worker's live gauges (its counters stay in the sums)."""
    multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def live_workers(path: Path) -> list[int]:
    """The workers that are running, by the live-gauge files they hold in `path`.

    uvicorn's supervisor has no hook for a worker's death, and a worker killed outright (SIGKILL,
    the OOM killer) runs no shutdown of its own; so a scrape does the bookkeeping: a worker whose
    files are there but whose process is not is marked dead before the values are read, and its
    pool gauge no longer counts. Workers that stop normally mark themselves dead on shutdown.
    """
    live = []
    for pid in sorted(_pids_with_live_gauges(path)):
        if _is_sibling_worker(pid):
            live.append(pid)
        else:
            mark_process_dead(pid, path)
    return live


def _pids_with_live_gauges(path: Path) -> set[int]:
    pids = set()
    for name in os.listdir(path):
        match = _LIVE_GAUGE_FILE.match(name)
        if match:
            pids.add(int(match.group(1)))
    return pids


def _is_sibling_worker(pid: int) -> bool:
    """This process, or a running (not zombie) child of the same supervisor: a pid reused by an
    unrelated process after the worker died does not count."""
    if pid == os.getpid():
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not Path("/proc/self").exists()  # no /proc: nothing to judge by, keep it
    # The command name may hold spaces and parentheses: state and ppid follow the last ')'.
    state, ppid = stat.rpartition(")")[2].split()[:2]
    return state != "Z" and int(ppid) == os.getppid()


class WorkerProcessCollector(Collector):
    """The library's process metrics (memory, CPU, file descriptors, start time) for every live
    worker, each sample labelled with the worker's pid.

    prometheus_client's ProcessCollector reads one process's /proc entry and does not work in
    multiprocess mode (its values are not written to the files, so a scrape would report the
    answering worker only, unlabelled). Here the answering worker runs it once per live worker
    (`pid=` it takes), and adds the label, so the series of each process stay apart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for pid in live_workers(self.path):
            collector = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for family in collector.collect():
                into = merged.setdefault(
                    family.name,
                    Metric(family.name, family.documentation, family.type, family.unit),
                )
                for sample in family.samples:
                    labels = {**sample.labels, "pid": str(pid)}
                    into.add_sample(sample.name, labels, sample.value, sample.timestamp)
        return list(merged.values())
