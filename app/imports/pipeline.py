"""Reading and validating a file's chunks ahead of the database, in a thread or in processes.

Validation is most of an import's CPU (the API's model, per row). With `jobs=1` the next chunk
is read and validated in a thread while the database stores this one; with more, chunks are
validated by that many worker processes (each with its own interpreter, so they run in
parallel), and the main process only splits the CSV into rows and stores. Either way chunks
come out in file order, at most `jobs + 1` ahead, so memory stays bounded.

What crosses between processes is plain text both ways: a chunk's rows as cells, and back the
good rows already staged for the database (the repository's `stage`: one bytes object) with
the few rejects. Pickling a million Records and Rows (dicts, Decimals, datetimes) cost the main
process more than validating them in a thread.

The cyclic garbage collector is paused meanwhile and collects the young generations once a
chunk: its automatic runs (one per 700 new containers, a million rows' dicts and tuples) walked
the whole heap again and again, a fifth of the CPU of reading and validating. The rows hold no
cycles; what little else does is collected with the chunk.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import IO

from app.imports.formats import Format, RawRow, raw_rows, record
from app.imports.schemas import Reject, Row, check

# The repository's: a chunk's good rows as the one text its store statement takes.
Stage = Callable[[Sequence[Row]], bytes]
# What a worker hands back: the good rows' count, their staged text (None when nothing is
# staged: a dry run, or no good row), and the rejects.
Checked = tuple[int, bytes | None, list[Reject]]


@dataclass(frozen=True, slots=True)
class Chunk:
    number: int
    good: int  # rows that passed
    staged: bytes | None  # the good rows as `stage` gave them
    rejects: list[Reject]
    size: int  # rows read, good and bad
    bytes_read: int


# The most workers an import starts unless told (--jobs). The chunks are stored one at a time
# on one connection, and the database takes about as long for a row as a worker does to
# validate it (bench/results/import-*.md): past a few workers, more only cost memory.
MAX_DEFAULT_JOBS = 4


def default_jobs() -> int:
    """One validating worker process per CPU this process may run on, at most
    MAX_DEFAULT_JOBS (1: a thread)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cpus or 1, MAX_DEFAULT_JOBS)


def validate(
    batch: Sequence[RawRow], fmt: Format, columns: tuple[str, ...]
) -> tuple[list[Row], list[Reject]]:
    """One chunk's rows through the API's model."""
    rows: list[Row] = []
    rejects: list[Reject] = []
    text_cells = fmt is Format.CSV
    for raw in batch:
        checked = check(record(raw, fmt, columns), text_cells=text_cells)
        if isinstance(checked, Reject):
            rejects.append(checked)
        else:
            rows.append(checked)
    return rows, rejects


def _check(
    batch: Sequence[RawRow], fmt: Format, columns: tuple[str, ...], stage: Stage | None
) -> Checked:
    rows, rejects = validate(batch, fmt, columns)
    return len(rows), stage(rows) if stage and rows else None, rejects


def _worker_start() -> None:
    gc.disable()
    importer = multiprocessing.parent_process()
    if importer is not None:
        threading.Thread(target=_exit_with, args=(importer,), daemon=True).start()


def _exit_with(importer: multiprocessing.process.BaseProcess) -> None:
    """End this worker when the importer ends, however it ends (SIGKILL included): the pool
    would never tell it, and it would wait for work forever, holding the importer's stdout."""
    multiprocessing.connection.wait([importer.sentinel])
    os._exit(1)


def _check_in_worker(
    batch: Sequence[RawRow], fmt: Format, columns: tuple[str, ...], stage: Stage | None
) -> Checked:
    """A worker process's whole job."""
    checked = _check(batch, fmt, columns, stage)
    gc.collect(1)
    return checked


def _raw(source: IO[bytes], fmt: Format, size: int) -> Iterator[tuple[list[RawRow], int]]:
    """Chunks of `size` rows (good and bad) counted from the start of the file, so every run
    cuts the same file into the same numbered chunks; with the bytes read so far."""
    stream = raw_rows(source, fmt)
    while batch := list(islice(stream, size)):
        yield batch, source.tell()


async def chunks(
    source: IO[bytes],
    fmt: Format,
    columns: tuple[str, ...],
    *,
    size: int,
    jobs: int,
    stage: Stage | None,
) -> AsyncIterator[Chunk]:
    """The file's chunks, validated (and staged, given `stage`), in order; `columns` is the
    CSV header `scan` read. The collector is paused meanwhile."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        async for chunk in _chunks(source, fmt, columns, size, jobs, stage):
            yield chunk
            gc.collect(1)
    finally:
        if collecting:
            gc.enable()


async def _chunks(
    source: IO[bytes],
    fmt: Format,
    columns: tuple[str, ...],
    size: int,
    jobs: int,
    stage: Stage | None,
) -> AsyncIterator[Chunk]:
    raw = _raw(source, fmt, size)
    if jobs <= 1:
        validated = (
            Chunk(number, *_check(batch, fmt, columns, stage), len(batch), bytes_read)
            for number, (batch, bytes_read) in enumerate(raw)
        )
        async for chunk in _in_thread(validated):
            yield chunk
        return
    with ProcessPoolExecutor(jobs, mp_context=_context(), initializer=_worker_start) as pool:
        pending: deque[tuple[Future[Checked], int, int]] = deque()
        for number, (batch, bytes_read) in enumerate(raw):
            future = pool.submit(_check_in_worker, batch, fmt, columns, stage)
            pending.append((future, len(batch), bytes_read))
            if len(pending) > jobs:
                yield await _ready(number - jobs, *pending.popleft())
        while pending:
            yield await _ready(number - len(pending) + 1, *pending.popleft())


def _context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server that imported this module (and the program) once.

    Not fork: the parent has threads (the event loop's executor, aiosqlite's). Not spawn:
    each worker would start an interpreter and import the program again (its console script
    first: seconds of CPU per worker).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", __name__])
    return context


async def _ready(number: int, future: Future[Checked], size: int, bytes_read: int) -> Chunk:
    good, staged, rejects = await asyncio.wrap_future(future)
    return Chunk(number, good, staged, rejects, size, bytes_read)


async def _in_thread(validated: Iterator[Chunk]) -> AsyncIterator[Chunk]:
    done = object()
    pending = asyncio.ensure_future(asyncio.to_thread(next, validated, done))
    try:
        while (chunk := await pending) is not done:
            pending = asyncio.ensure_future(asyncio.to_thread(next, validated, done))
            assert isinstance(chunk, Chunk)
            yield chunk
    finally:
        if not pending.done():
            await asyncio.wait([pending])  # the thread cannot be stopped: let it finish
