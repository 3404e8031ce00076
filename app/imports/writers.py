"""Writing export files: money as exact two-decimal text, times as ISO 8601 with an offset."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

import orjson

from app.imports.formats import Format


def _cell(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def write_rows(
    out: IO[str], fmt: Format, columns: Sequence[str], batch: Sequence[Sequence[Any]]
) -> None:
    """One batch of rows in the file's format (a CSV file's header is the caller's)."""
    if fmt is Format.CSV:
        csv.writer(out).writerows([_cell(value) for value in row] for row in batch)
        return
    out.write(
        "".join(
            orjson.dumps(
                {column: _cell(value) for column, value in zip(columns, row, strict=True)}
            ).decode()
            + "\n"
            for row in batch
        )
    )
