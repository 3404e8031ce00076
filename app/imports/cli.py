"""`purchase-capture import` and `export`: parse arguments, show progress, call the services.

Exit statuses: 0 everything was stored, 65 some rows were rejected, 1 the run was aborted
(a malformed file, the database), 2 a usage error (Click's own, and bad APP_* settings).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.console import Console
from sqlalchemy.exc import DBAPIError

from app.core.cli import EXIT_USAGE, fail, first_line, load_settings, progress_console
from app.core.engine import create_engine
from app.core.settings import Settings
from app.imports.formats import Format, MalformedFile, guess_format
from app.imports.pipeline import default_jobs
from app.imports.progress import ExportProgress, ImportProgress
from app.imports.service import CHUNK_ROWS, ImportReport, Mode, export_rows, import_purchases

imports_cli = typer.Typer(help="Bulk import and export.", pretty_exceptions_enable=False)


class Kind(StrEnum):
    PURCHASES = "purchases"
    CUSTOMERS = "customers"


@contextmanager
def _input(file: str) -> Iterator[IO[bytes]]:
    """The file, or stdin spooled to a temporary file (the import reads its input twice)."""
    if file == "-":
        with tempfile.TemporaryFile() as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool)
            spool.seek(0)
            yield spool
        return
    try:
        handle = Path(file).open("rb")  # noqa: SIM115  (closed below, after the open is checked)
    except OSError as error:
        raise fail(f"{file}: {error.strerror}", EXIT_USAGE) from None
    with handle:
        yield handle


def _rejects_path(file: str) -> Path:
    if file == "-":
        return Path("stdin.rejects.csv")
    path = Path(file)
    return path.with_name(f"{path.stem}.rejects.csv")


def summary(report: ImportReport) -> str:
    rejected = (
        f"; {report.rejected:,} rows rejected, see {report.rejects_path}" if report.rejected else ""
    )
    if report.mode is Mode.DRY_RUN:
        good = report.rows - report.rejected
        return f"dry run: {good:,} of {report.rows:,} rows are valid{rejected}; nothing stored"
    if report.mode is Mode.STRICT and report.rejected and not report.stored:
        return f"strict: nothing stored{rejected}"
    if report.already_stored and not report.stored:
        return (
            f"nothing new: the {report.already_stored:,} good rows of this file were stored "
            f"by an earlier run{rejected}"
        )
    earlier = (
        f", {report.already_stored:,} were stored by an earlier run"
        if report.already_stored
        else ""
    )
    return (
        f"stored {report.stored:,} purchases ({report.customers_created:,} customers created, "
        f"{report.customers_updated:,} updated){earlier}{rejected}"
    )


@imports_cli.command("import")
def import_command(
    file: Annotated[str, typer.Argument(help="A CSV or JSON Lines file, or - for stdin.")],
    fmt: Annotated[
        Format | None,
        typer.Option("--format", help="csv or jsonl (default: by extension, else csv)."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Store nothing if any row is bad.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate only; store nothing.")
    ] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Hide the progress bar.")
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            show_default=False,
            help="Processes that validate rows (default: one per CPU, at most 4; 1: a thread).",
        ),
    ] = None,
    chunk_rows: Annotated[int, typer.Option(hidden=True, min=1)] = CHUNK_ROWS,
) -> None:
    """Import purchases; bad rows go to <name>.rejects.csv beside the file."""
    if strict and dry_run:
        raise fail("--strict and --dry-run do not go together", EXIT_USAGE)
    settings = load_settings()
    mode = Mode.DRY_RUN if dry_run else Mode.STRICT if strict else Mode.STORE
    fmt = fmt or guess_format(None if file == "-" else Path(file))
    console = progress_console(no_progress)
    with _input(file) as source:
        try:
            report = asyncio.run(
                _import(
                    settings,
                    source,
                    fmt,
                    _rejects_path(file),
                    mode,
                    console,
                    chunk_rows,
                    jobs or default_jobs(),
                )
            )
        except MalformedFile as error:
            raise fail(f"{file}: {error}; nothing stored") from None
        except DBAPIError as error:
            raise fail(
                f"database: {first_line(error)} (the chunks committed so far stay stored: "
                "run the import again to store the rest)"
            ) from None
    typer.echo(summary(report))
    for reject in report.first_rejects:
        typer.echo(f"  line {reject.line}: {reject.field}: {reject.reason}", err=True)
    raise typer.Exit(report.exit_status)


async def _import(
    settings: Settings,
    source: IO[bytes],
    fmt: Format,
    rejects: Path,
    mode: Mode,
    console: Console | None,
    chunk_rows: int,
    jobs: int,
) -> ImportReport:
    engine = create_engine(settings)
    try:
        with ImportProgress(console) as progress:
            return await import_purchases(
                engine,
                source=source,
                fmt=fmt,
                rejects_path=rejects,
                mode=mode,
                progress=progress.update,
                chunk_rows=chunk_rows,
                jobs=jobs,
            )
    finally:
        await engine.dispose()


def _moment(value: str | None) -> datetime | None:
    """ISO 8601; a time without an offset is UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 date or time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@imports_cli.command("export")
def export_command(
    kind: Annotated[Kind, typer.Argument(help="What to export.")],
    since: Annotated[
        str | None, typer.Option(help="From this time on (ISO 8601, UTC if no offset).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO 8601).")] = None,
    fmt: Annotated[
        Format | None,
        typer.Option("--format", help="csv or jsonl (default: by -o's extension, else csv)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Hide the progress bar.")
    ] = False,
) -> None:
    """Export purchases (in the import's columns: it imports back as it was) or customers."""
    start, end = _moment(since), _moment(until)
    settings = load_settings()
    fmt = fmt or guess_format(output)
    console = progress_console(no_progress)
    try:
        out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    except OSError as error:
        raise fail(f"{output}: {error.strerror}", EXIT_USAGE) from None
    try:
        written = asyncio.run(_export(settings, kind, out, fmt, start, end, console))
    except DBAPIError as error:
        raise fail(f"database: {first_line(error)}") from None
    finally:
        if output:
            out.close()
        else:
            out.flush()
    typer.echo(f"exported {written:,} {kind.value}", err=True)


async def _export(
    settings: Settings,
    kind: Kind,
    out: IO[str],
    fmt: Format,
    since: datetime | None,
    until: datetime | None,
    console: Console | None,
) -> int:
    engine = create_engine(settings)
    try:
        with ExportProgress(console, kind.value) as progress:
            return await export_rows(
                engine,
                kind="purchases" if kind is Kind.PURCHASES else "customers",
                out=out,
                fmt=fmt,
                since=since,
                until=until,
                progress=progress.update,
            )
    finally:
        await engine.dispose()
