"""Reading import files: CSV with a header or JSON Lines, as people's tools write them.

A file is read twice. `scan` reads it whole once, before anything is stored: it hashes the
bytes (the ledger's key), counts the rows (the progress bar's total) and refuses a file that is
not what it claims (bytes that are not UTF-8, a bad header, an unterminated quote), so such a
file never leaves half of itself stored. `raw_rows` then streams the rows for the import.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

REQUIRED_COLUMNS = ("email", "name", "item", "quantity", "unit_price", "currency")
OPTIONAL_COLUMNS = ("purchased_at",)
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
_BLOCK = 1 << 20
_BOM = codecs.BOM_UTF8


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


class MalformedFile(Exception):
    """The file as a whole cannot be read as its format: nothing of it is stored."""

    def __init__(self, reason: str, *, line: int | None = None) -> None:
        super().__init__(f"line {line}: {reason}" if line is not None else reason)
        self.reason = reason
        self.line = line


@dataclass(frozen=True, slots=True)
class Scan:
    sha256: str
    size: int
    rows: int
    columns: tuple[str, ...]  # the CSV header as written; empty for JSON Lines


class Record(NamedTuple):
    """One row as read: its line number, its fields by column, and its original cells.

    A named tuple, not a dataclass: a million of them are built, and a frozen dataclass costs
    three times as much to build.
    """

    line: int
    fields: dict[str, Any] | None  # None: the row could not be read (see `problem`)
    original: list[str]
    problem: tuple[str, str] | None = None  # (field, reason) of a row that cannot be read


def guess_format(path: Path | None) -> Format:
    """By extension: .jsonl / .ndjson are JSON Lines, anything else CSV."""
    if path is not None and path.suffix.lower() in (".jsonl", ".ndjson"):
        return Format.JSONL
    return Format.CSV


def scan(source: IO[bytes], fmt: Format) -> Scan:
    """Hash, check and count the whole file; raise MalformedFile naming the first problem."""
    digest = hashlib.sha256()
    size = 0
    newlines = 0
    decoder = codecs.getincrementaldecoder("utf-8")()
    while block := source.read(_BLOCK):
        digest.update(block)
        try:
            decoder.decode(block)
        except UnicodeDecodeError as error:
            line = newlines + block.count(b"\n", 0, error.start) + 1
            raise MalformedFile("bytes that are not UTF-8", line=line) from None
        newlines += block.count(b"\n")
        size += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise MalformedFile("bytes that are not UTF-8", line=newlines + 1) from None
    source.seek(0)
    if not source.read(_BLOCK).removeprefix(_BOM).strip():
        raise MalformedFile("the file is empty")
    source.seek(0)
    if fmt is Format.JSONL:
        text = _text(source)
        rows = sum(1 for line in text if line.strip())
        text.detach()  # leaves the file open for the import's own pass
        columns: tuple[str, ...] = ()
    else:
        columns, rows = _scan_csv(_text(source))
    source.seek(0)
    return Scan(digest.hexdigest(), size, rows, columns)


def _text(source: IO[bytes]) -> io.TextIOWrapper:
    # utf-8-sig drops Excel's BOM; newline="" hands CRLF and quoted newlines to csv intact.
    return io.TextIOWrapper(source, encoding="utf-8-sig", newline="")


def _scan_csv(text: io.TextIOWrapper) -> tuple[tuple[str, ...], int]:
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise MalformedFile("the file is empty")
        columns = _check_header(header)
        rows = 0
        for row in reader:
            if row:
                rows += 1
    except csv.Error as error:
        raise MalformedFile(_csv_reason(error), line=reader.line_num) from None
    finally:
        text.detach()
    return columns, rows


def _csv_reason(error: csv.Error) -> str:
    reason = str(error)
    if "unexpected end of data" in reason:
        return "a quoted field is not closed before the end of the file"
    return f"not valid CSV: {reason}"


def _check_header(header: list[str]) -> tuple[str, ...]:
    columns = tuple(name.strip() for name in header)
    unknown = [name for name in columns if name not in COLUMNS]
    if unknown:
        raise MalformedFile(f"unknown column {unknown[0]!r} in the header", line=1)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise MalformedFile(f"missing column {missing[0]!r} in the header", line=1)
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise MalformedFile(f"column {repeated[0]!r} appears twice in the header", line=1)
    return columns


# A row as read: its first line's number and its cells (a JSON Lines row: the line as read).
# Plain tuples of text, cheap to hand to a worker process, which makes them Records.
RawRow = tuple[int, list[str]]


def raw_rows(source: IO[bytes], fmt: Format) -> Iterator[RawRow]:
    """The rows of a file `scan` accepted, in file order, with their first line's number."""
    text = _text(source)
    try:
        if fmt is Format.JSONL:
            yield from _jsonl_rows(text)
        else:
            yield from _csv_rows(text)
    finally:
        text.detach()


def records(source: IO[bytes], fmt: Format, columns: tuple[str, ...]) -> Iterator[Record]:
    """The rows as Records (`columns`: the scanned header; empty for JSON Lines)."""
    for raw in raw_rows(source, fmt):
        yield record(raw, fmt, columns)


def _csv_rows(text: io.TextIOWrapper) -> Iterator[RawRow]:
    reader = csv.reader(text, strict=True)
    next(reader)  # the header, as `scan` read it
    start = reader.line_num + 1
    for row in reader:
        if row:
            yield start, row
        start = reader.line_num + 1


def _jsonl_rows(text: io.TextIOWrapper) -> Iterator[RawRow]:
    for number, line in enumerate(text, start=1):
        if line.strip():
            yield number, [line]  # as read: JSON errors name the positions they always did


def record(raw: RawRow, fmt: Format, columns: tuple[str, ...]) -> Record:
    """A raw row's fields by column, or why it cannot be read."""
    line, cells = raw
    if fmt is Format.CSV:
        if len(cells) == len(columns):
            return Record(line, dict(zip(columns, cells, strict=True)), cells)
        reason = f"has {len(cells)} fields where the header has {len(columns)}"
        return Record(line, None, cells, ("row", reason))
    original = [cells[0].rstrip("\r\n")]
    try:
        value = orjson.loads(cells[0])
    except orjson.JSONDecodeError as error:
        return Record(line, None, original, ("row", f"not valid JSON: {error}"))
    if not isinstance(value, dict):
        return Record(line, None, original, ("row", "must be a JSON object"))
    return Record(line, value, original)
