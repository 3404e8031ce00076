"""Writing export files from the text columns the export query gives (exact money, ISO times)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import IO, Any

import orjson

from app.imports.formats import Format


def write_rows(
    out: IO[str], fmt: Format, columns: Sequence[str], batch: Sequence[Sequence[Any]]
) -> None:
    """One batch of rows in the file's format (a CSV file's header is the caller's).

    Lines end in LF, as PostgreSQL's COPY writes them. In JSON Lines the quantity is a
    number, as the API takes it; the rest is text.
    """
    if fmt is Format.CSV:
        csv.writer(out, lineterminator="\n").writerows(batch)
        return
    out.write(
        "".join(orjson.dumps(dict(zip(columns, row, strict=True))).decode() + "\n" for row in batch)
    )
