"""Exports: exact money, ISO times, filters, and import(export(db)) == db."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from app.cli import cli
from app.core.engine import create_engine
from app.core.settings import Settings
from app.imports import repository
from app.imports.formats import Format
from app.imports.models import ImportChunk
from app.imports.service import export_rows
from app.sales.models import Customer, Purchase
from tests.imports.helpers import csv_lines, customers, purchases, run_import

PURCHASED_AT = "email,name,item,quantity,unit_price,currency,purchased_at"


async def _export(
    engine: AsyncEngine,
    kind: Literal["purchases", "customers"] = "purchases",
    fmt: Format = Format.CSV,
    since: datetime | None = None,
    until: datetime | None = None,
) -> str:
    out = io.StringIO(newline="")
    await export_rows(engine, kind=kind, out=out, fmt=fmt, since=since, until=until)
    return out.getvalue()


async def test_purchases_export_in_the_import_columns_with_exact_money(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = csv_lines(
        'tim@example.com,"Smith, Tim",book,3,0.10,EUR,2024-03-01T10:00:00.5+02:00',
        "sue@example.com,Sue,pen,1,999999999.99,USD,2024-03-02T00:00:00Z",
        header=PURCHASED_AT,
    )
    await run_import(engine, content, tmp_path)

    assert await _export(engine) == (
        f"{PURCHASED_AT}\n"
        'tim@example.com,"Smith, Tim",book,3,0.10,EUR,2024-03-01T08:00:00.500000+00:00\n'
        "sue@example.com,Sue,pen,1,999999999.99,USD,2024-03-02T00:00:00.000000+00:00\n"
    )


async def test_purchases_export_as_json_lines(engine: AsyncEngine, tmp_path: Path) -> None:
    content = csv_lines(
        "tim@example.com,Tim,book,3,0.10,EUR,2024-03-02T00:00:00Z", header=PURCHASED_AT
    )
    await run_import(engine, content, tmp_path)

    assert await _export(engine, fmt=Format.JSONL) == (
        '{"email":"tim@example.com","name":"Tim","item":"book","quantity":3,'
        '"unit_price":"0.10","currency":"EUR","purchased_at":"2024-03-02T00:00:00.000000+00:00"}\n'
    )


@pytest.mark.parametrize("kind", ["purchases", "customers"])
async def test_csv_is_quoted_as_the_csv_module_quotes_it(
    engine: AsyncEngine, tmp_path: Path, kind: Literal["purchases", "customers"]
) -> None:
    """The database writes the CSV (COPY, or SQLite's own string functions): the same text
    Python's csv module writes from the JSON Lines export's values."""
    content = csv_lines(
        'tim@example.com,"Smith, ""Tim""",\'a\' \\ b,3,0.10,EUR,2024-03-02T00:00:00Z',
        'sue@example.com," Sue ",é ü 😀,1,1.00,USD,2024-03-02T00:00:00Z',
        "o'brien@example.com,O'Brien,\"x,y\",1,1.00,USD,2024-03-02T00:00:00Z",
        header=PURCHASED_AT,
    )
    await run_import(engine, content, tmp_path)
    lines = (await _export(engine, kind, Format.JSONL)).splitlines()
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    for line in lines:
        writer.writerow(json.loads(line).values())

    assert (await _export(engine, kind)).split("\n", 1)[1] == expected.getvalue()


@pytest.mark.parametrize("kind", ["purchases", "customers"])
async def test_csv_quoting_holds_batch_after_batch(
    engine: AsyncEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: Literal["purchases", "customers"],
) -> None:
    """SQLite quotes only the rows of a batch that need it: batches of plain rows, of mixed
    ones and of quoted ones alone all come out as the csv module writes them."""
    monkeypatch.setattr(repository, "EXPORT_BATCH", 2)
    names = ["Tim", "Sue", "Smith, Ann", "Bo", 'Al "Big" Lee', "Cy, Jr", "Di"]
    content = csv_lines(
        *(f"buyer{n}@example.com,{_quoted(name)},item,1,1.00,EUR" for n, name in enumerate(names))
    )
    await run_import(engine, content, tmp_path)
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    for line in (await _export(engine, kind, Format.JSONL)).splitlines():
        writer.writerow(json.loads(line).values())

    assert (await _export(engine, kind)).split("\n", 1)[1] == expected.getvalue()


def _quoted(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_sqlite_export_reads_one_snapshot_while_rows_change(
    engine: AsyncEngine, empty_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows SQLite writes again quoted are read in the snapshot of the rest: a name changed
    (or a customer erased) mid-export does not show up in the rows after it."""
    content = csv_lines(
        "tim@example.com,Tim,book,1,1.00,EUR", 'sue@example.com,"Smith, Sue",pen,1,1.00,EUR'
    )
    await run_import(engine, content, tmp_path)
    monkeypatch.setattr(repository, "EXPORT_BATCH", 1)
    out = io.StringIO(newline="")

    def rename_sue(written: int) -> None:
        if written == 1:  # between the two batches, from a connection of its own
            path = make_url(empty_database).database
            assert path is not None
            with closing(sqlite3.connect(path)) as other, other:
                other.execute("UPDATE customer SET name = 'Sue' WHERE email = 'sue@example.com'")

    await export_rows(engine, kind="purchases", out=out, fmt=Format.CSV, progress=rename_sue)

    assert out.getvalue().splitlines()[2].startswith('sue@example.com,"Smith, Sue",pen,')
    assert dict(await customers(engine))["sue@example.com"] == "Sue"


async def test_since_and_until_bound_the_purchase_time(engine: AsyncEngine, tmp_path: Path) -> None:
    rows = [
        f"tim@example.com,Tim,item {day},1,1.00,EUR,2024-03-0{day}T00:00:00Z" for day in (1, 2, 3)
    ]
    await run_import(engine, csv_lines(*rows, header=PURCHASED_AT), tmp_path)

    exported = await _export(
        engine, since=datetime(2024, 3, 2, tzinfo=UTC), until=datetime(2024, 3, 3, tzinfo=UTC)
    )

    assert [row["item"] for row in csv.DictReader(io.StringIO(exported))] == ["item 2"]


async def test_customers_export_their_email_name_and_times(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await run_import(engine, csv_lines("Tim@Example.com,Tim,book,1,1.00,EUR"), tmp_path)

    (row,) = csv.DictReader(io.StringIO(await _export(engine, kind="customers")))

    assert (row["email"], row["name"]) == ("tim@example.com", "Tim")
    assert datetime.fromisoformat(row["created_at"]).tzinfo is not None
    assert row["created_at"] == row["updated_at"]


def test_export_writes_the_file_given_with_o(run: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(csv_lines("tim@example.com,Tim,book,1,1.00,EUR"))
    assert run.invoke(cli, ["import", str(source)]).exit_code == 0

    result = run.invoke(cli, ["export", "purchases", "-o", str(tmp_path / "out.jsonl")])

    assert result.exit_code == 0, result.output
    assert result.stderr == "exported 1 purchases\n"
    assert '"item":"book"' in (tmp_path / "out.jsonl").read_text()


# The round trip: any purchases the API accepts come back the same after export and import.
_TEXT = (
    st.text(
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
        min_size=1,
        max_size=12,
    )
    .map(str.strip)
    .filter(bool)
)
_PURCHASE = st.fixed_dictionaries(
    {
        "email": st.sampled_from(["tim@example.com", "Sue@Example.COM", "o'neil@example.org"]),
        "name": _TEXT,
        "item": _TEXT,
        "quantity": st.integers(1, 10_000),
        "unit_price": st.integers(0, 99_999_999_999).map(lambda cents: Decimal(cents) / 100),
        "currency": st.sampled_from(["EUR", "USD", "JPY"]),
        "purchased_at": st.datetimes(
            min_value=datetime(1990, 1, 1),
            max_value=datetime(2100, 1, 1),
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]),
        ),
    }
)


def _as_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=PURCHASED_AT.split(","))
    writer.writeheader()
    writer.writerows({**row, "purchased_at": row["purchased_at"].isoformat()} for row in rows)
    return out.getvalue().encode()


async def _round_trip(
    url: str, pooler: str, rows: list[dict[str, Any]], fmt: Format, tmp_path: Path
) -> None:
    engine = create_engine(Settings(environment="test", database_url=url, database_pooler=pooler))
    try:
        await _empty(engine)
        report = await run_import(engine, _as_csv(rows), tmp_path, chunk_rows=3)
        assert report.rejected == 0, report.first_rejects
        before = (await customers(engine), await purchases(engine))

        exported = await _export(engine, fmt=fmt)
        await _empty(engine)
        await run_import(engine, exported, tmp_path, fmt=fmt, chunk_rows=3)

        assert (await customers(engine), await purchases(engine)) == before
    finally:
        await engine.dispose()


async def _empty(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in (Purchase, Customer, ImportChunk):
            await conn.execute(delete(table))


@pytest.mark.parametrize("fmt", list(Format))
def test_importing_an_export_gives_back_the_same_customers_and_purchases(
    empty_database: str, database_pooler: str, tmp_path: Path, fmt: Format
) -> None:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(rows=st.lists(_PURCHASE, min_size=1, max_size=8))
    def round_trip(rows: list[dict[str, Any]]) -> None:
        asyncio.run(_round_trip(empty_database, database_pooler, rows, fmt, tmp_path))

    round_trip()


async def test_an_export_outlasts_the_requests_statement_timeout(
    engine: AsyncEngine, empty_database: str, database_pooler: str, tmp_path: Path
) -> None:
    rows = [f"buyer{n % 50}@example.com,Buyer,item {n},1,1.00,EUR" for n in range(20_000)]
    await run_import(engine, csv_lines(*rows), tmp_path, chunk_rows=5000)
    hurried = create_engine(
        Settings(
            environment="test",
            database_url=empty_database,
            database_pooler=database_pooler,
            db_statement_timeout=0.02,
        )
    )
    try:
        exported = await _export(hurried)
    finally:
        await hurried.dispose()

    assert exported.count("\n") == 20_001
