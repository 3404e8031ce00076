"""A file that is not what it claims: one clear line, and nothing of it stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.imports.formats import Format, MalformedFile
from tests.imports.helpers import GOOD, HEADER, purchases, run_import

# Each file's good rows come first, in chunks that would be stored before the problem is met.
MALFORMED = {
    "bytes that are not UTF-8": (
        (HEADER + "\n" + (GOOD + "\n") * 5 + "tim@example.com,Ti\xe9m,book,1,1.00,EUR\n").encode(
            "latin-1"
        ),
        "line 7: bytes that are not UTF-8",
    ),
    "a missing column": (
        "email,name,item,quantity,unit_price\n" + (GOOD + "\n") * 5,
        "line 1: missing column 'currency' in the header",
    ),
    "an unknown column": (
        HEADER + ",colour\n" + (GOOD + ",red\n") * 5,
        "line 1: unknown column 'colour' in the header",
    ),
    "a repeated column": (
        HEADER + ",email\n" + (GOOD + ",x@example.com\n") * 5,
        "line 1: column 'email' appears twice in the header",
    ),
    "an empty file": (b"", "the file is empty"),
    "a file of blank lines and a BOM": (b"\xef\xbb\xbf\r\n\r\n", "the file is empty"),
    "an unterminated quote": (
        HEADER + "\n" + (GOOD + "\n") * 5 + 'tim@example.com,Tim,"book,1,1.00,EUR\n',
        "line 7: a quoted field is not closed before the end of the file",
    ),
}


@pytest.mark.parametrize(("content", "message"), MALFORMED.values(), ids=list(MALFORMED))
async def test_a_malformed_file_is_refused_whole(
    engine: AsyncEngine, tmp_path: Path, content: str | bytes, message: str
) -> None:
    with pytest.raises(MalformedFile) as refused:
        await run_import(engine, content, tmp_path)

    assert str(refused.value) == message
    assert await purchases(engine) == []
    assert not (tmp_path / "rejects.csv").exists()


async def test_json_lines_with_bytes_that_are_not_utf8_are_refused_whole(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    row = b'{"email": "tim@example.com", "name": "Tim", "item": "book", "unit_price": "1"}\n'

    with pytest.raises(MalformedFile, match=r"^line 4: bytes that are not UTF-8$"):
        await run_import(engine, row * 3 + b'{"name": "\xff"}\n', tmp_path, fmt=Format.JSONL)

    assert await purchases(engine) == []
