"""Import and export use cases: chunking, validation, the ledger, the reject file.

No terminal here: the CLI passes a progress callback. Each chunk is one transaction that writes
the chunk's ledger row, its customers and its purchases, or none of them.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from app.imports.formats import Format, Scan, scan
from app.imports.pipeline import Chunk, chunks
from app.imports.repository import ExportRepository, ImportRepository
from app.imports.schemas import Reject
from app.imports.writers import write_rows

CHUNK_ROWS = 5000
EXIT_STORED = 0
EXIT_REJECTED = 65  # EX_DATAERR


class Mode(StrEnum):
    STORE = "store"  # store the good rows, reject the bad ones
    STRICT = "strict"  # store nothing if any row is bad
    DRY_RUN = "dry-run"  # validate only


@dataclass(frozen=True, slots=True)
class Progress:
    rows: int
    rows_total: int
    bytes: int
    bytes_total: int


ProgressCallback = Callable[[Progress], None]


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    stored: int = 0  # purchases this run stored
    already_stored: int = 0  # good rows an earlier run of the same file stored
    rejected: int = 0
    customers_created: int = 0
    customers_updated: int = 0
    rejects_path: Path | None = None
    mode: Mode = Mode.STORE
    file_sha256: str = ""
    first_rejects: list[Reject] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        return EXIT_REJECTED if self.rejected else EXIT_STORED


class _Rejects:
    """The reject file, opened at the first bad row: the row as written, then where and why.

    An earlier run's file is removed first, so the file there is always this run's.
    """

    def __init__(self, path: Path, scanned: Scan) -> None:
        path.unlink(missing_ok=True)
        self.path = path
        self.header = [*scanned.columns, "line", "field", "reason"] if scanned.columns else None
        self.file: IO[str] | None = None
        self.writer: Any = None

    def add(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        if self.writer is None:
            self.file = self.path.open("w", encoding="utf-8", newline="")
            self.writer = csv.writer(self.file)
            self.writer.writerow(self.header or ["row", "line", "field", "reason"])
        self.writer.writerows(
            [*reject.original, reject.line, reject.field, reject.reason] for reject in rejects
        )

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


async def import_purchases(
    engine: AsyncEngine,
    *,
    source: IO[bytes],
    fmt: Format,
    rejects_path: Path,
    mode: Mode = Mode.STORE,
    progress: ProgressCallback | None = None,
    chunk_rows: int = CHUNK_ROWS,
    jobs: int = 1,
) -> ImportReport:
    """Import a seekable file; raises formats.MalformedFile before storing anything.

    `jobs` > 1 validates in that many worker processes (app.imports.pipeline).
    """
    scanned = scan(source, fmt)
    if mode is Mode.STRICT:
        checked = await _run(None, source, fmt, scanned, rejects_path, progress, chunk_rows, jobs)
        if checked.rejected:
            checked.mode = mode
            return checked
        source.seek(0)
    if mode is Mode.DRY_RUN:
        report = await _run(None, source, fmt, scanned, rejects_path, progress, chunk_rows, jobs)
    else:
        report = await _run(engine, source, fmt, scanned, rejects_path, progress, chunk_rows, jobs)
    report.mode = mode
    return report


async def _run(
    engine: AsyncEngine | None,
    source: IO[bytes],
    fmt: Format,
    scanned: Scan,
    rejects_path: Path,
    progress: ProgressCallback | None,
    chunk_rows: int,
    jobs: int,
) -> ImportReport:
    """One pass over the file: validate every chunk, and store it when given an engine."""
    report = ImportReport(file_sha256=scanned.sha256)
    rejects = _Rejects(rejects_path, scanned)
    if progress:
        progress(Progress(0, scanned.rows, 0, scanned.size))
    try:
        if engine is None:
            async for chunk in chunks(
                source, fmt, scanned.columns, size=chunk_rows, jobs=jobs, stage=None
            ):
                _tally(report, chunk, rejects, scanned, progress)
        else:
            async with engine.connect() as conn:
                repository = ImportRepository(conn)
                done = await repository.chunks_done(scanned.sha256)
                await conn.commit()
                size = next(iter(done.values()), chunk_rows)  # a resumed run cuts as before
                async for chunk in chunks(
                    source, fmt, scanned.columns, size=size, jobs=jobs, stage=repository.stage
                ):
                    if chunk.number in done:
                        report.already_stored += chunk.good
                    else:
                        await _store(repository, scanned.sha256, chunk, report)
                    _tally(report, chunk, rejects, scanned, progress)
                if report.stored:
                    await repository.analyze()
    finally:
        rejects.close()
    if report.rejected:
        report.rejects_path = rejects_path
    return report


def _tally(
    report: ImportReport,
    chunk: Chunk,
    rejects: _Rejects,
    scanned: Scan,
    progress: ProgressCallback | None,
) -> None:
    report.rows += chunk.size
    report.rejected += len(chunk.rejects)
    rejects.add(chunk.rejects)
    report.first_rejects.extend(chunk.rejects[: max(0, 5 - len(report.first_rejects))])
    if progress:
        progress(Progress(report.rows, scanned.rows, chunk.bytes_read, scanned.size))


async def _store(
    repository: ImportRepository, file_sha256: str, chunk: Chunk, report: ImportReport
) -> None:
    """One chunk, one transaction: the ledger row, the customers and the purchases."""
    now = datetime.now(UTC)
    async with repository.conn.begin():
        claimed = await repository.claim_chunk(
            file_sha256=file_sha256,
            chunk=chunk.number,
            chunk_rows=chunk.size,
            purchases=chunk.good,
            now=now,
        )
        if not claimed:  # another run stored it meanwhile
            report.already_stored += chunk.good
            return
        if chunk.staged is not None:
            created, updated = await repository.store_chunk(chunk.staged, now=now)
            report.customers_created += created
            report.customers_updated += updated
    report.stored += chunk.good


async def export_rows(
    engine: AsyncEngine,
    *,
    kind: Literal["purchases", "customers"],
    out: IO[str],
    fmt: Format,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Stream purchases (in the import's own columns, so an export imports back as it was)
    or customers to `out`; returns how many rows were written."""
    written = 0
    async with engine.connect() as conn:
        repository = ExportRepository(conn)
        columns = _EXPORT_COLUMNS[kind]
        if fmt is Format.CSV:
            csv.writer(out, lineterminator="\n").writerow(columns)
        if fmt is Format.CSV and repository.copies_csv:
            return await _copy_csv(repository, kind, out, since, until, progress)
        if fmt is Format.CSV:
            async for lines, count in repository.csv_lines(kind, since=since, until=until):
                out.write(lines)
                written += count
                if progress:
                    progress(written)
            return written
        async for batch in repository.rows(kind, since=since, until=until):
            write_rows(out, fmt, columns, batch)
            written += len(batch)
            if progress:
                progress(written)
    return written


async def _copy_csv(
    repository: ExportRepository,
    kind: Literal["purchases", "customers"],
    out: IO[str],
    since: datetime | None,
    until: datetime | None,
    progress: Callable[[int], None] | None,
) -> int:
    lines = 0

    async def sink(data: bytes) -> None:
        nonlocal lines
        out.write(data.decode())
        if progress:  # a line per row: no stored text holds a newline (control characters)
            lines += data.count(b"\n")
            progress(lines)

    return await repository.copy_csv(kind, since=since, until=until, sink=sink)


_EXPORT_COLUMNS = {
    "purchases": (
        "email",
        "name",
        "item",
        "quantity",
        "unit_price",
        "currency",
        "purchased_at",
    ),
    "customers": ("email", "name", "created_at", "updated_at"),
}
