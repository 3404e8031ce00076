"""What a process tree costs, read from /proc: CPU seconds, RSS, the PostgreSQL backends."""

from __future__ import annotations

import collections
import os
import resource
import threading
from pathlib import Path

from .common import TICKS

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
