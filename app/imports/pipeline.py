"""Reading and validating a file's chunks ahead of the database, in a thread or in processes.

Validation is most of an import's CPU (the API's model, per row). With `jobs=1` the next chunk
is read and validated in a thread while the database stores this one; with more, chunks are
validated by that many worker processes (each with its own interpreter, so they run in
parallel), and the main process only parses the CSV and stores. Either way chunks come out in
file order, at most `jobs + 1` ahead, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import IO

from app.imports.formats import Format, Record, records
from app.imports.schemas import Reject, Row, check


@dataclass(frozen=True, slots=True)
class Chunk:
    number: int
    rows: list[Row]
    rejects: list[Reject]
    size: int  # rows read, good and bad
    bytes_read: int


def validate(batch: list[Record], text_cells: bool) -> tuple[list[Row], list[Reject]]:
    """One chunk's rows through the API's model (a worker process's whole job)."""
    rows: list[Row] = []
    rejects: list[Reject] = []
    for record in batch:
        checked = check(record, text_cells=text_cells)
        if isinstance(checked, Reject):
            rejects.append(checked)
        else:
            rows.append(checked)
    return rows, rejects


def _raw(source: IO[bytes], fmt: Format, size: int) -> Iterator[tuple[list[Record], int]]:
    """Chunks of `size` rows (good and bad) counted from the start of the file, so every run
    cuts the same file into the same numbered chunks; with the bytes read so far."""
    stream = records(source, fmt)
    while batch := list(islice(stream, size)):
        yield batch, source.tell()


def _validated(raw: Iterator[tuple[list[Record], int]], text_cells: bool) -> Iterator[Chunk]:
    for number, (batch, bytes_read) in enumerate(raw):
        rows, rejects = validate(batch, text_cells)
        yield Chunk(number, rows, rejects, len(batch), bytes_read)


async def chunks(source: IO[bytes], fmt: Format, size: int, jobs: int) -> AsyncIterator[Chunk]:
    """The file's chunks, validated, in order."""
    raw = _raw(source, fmt, size)
    text_cells = fmt is Format.CSV
    if jobs <= 1:
        async for chunk in _in_thread(_validated(raw, text_cells)):
            yield chunk
        return
    # spawn, not fork: the parent has threads (the event loop's executor, aiosqlite's).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        pending: deque[tuple[Future[tuple[list[Row], list[Reject]]], int, int]] = deque()
        for number, (batch, bytes_read) in enumerate(raw):
            pending.append((pool.submit(validate, batch, text_cells), len(batch), bytes_read))
            if len(pending) > jobs:
                yield await _ready(number - jobs, *pending.popleft())
        while pending:
            yield await _ready(number - len(pending) + 1, *pending.popleft())


async def _ready(
    number: int, future: Future[tuple[list[Row], list[Reject]]], size: int, bytes_read: int
) -> Chunk:
    rows, rejects = await asyncio.wrap_future(future)
    return Chunk(number, rows, rejects, size, bytes_read)


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
