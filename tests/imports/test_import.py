"""Importing a file: what is stored, what is refused, and running it twice."""

from __future__ import annotations

import csv
import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.imports import pipeline
from app.imports.formats import Format
from app.imports.service import Mode
from tests.imports.helpers import GOOD, csv_lines, customers, purchases, run_import


async def test_good_rows_are_stored_with_exact_money(engine: AsyncEngine, tmp_path: Path) -> None:
    report = await run_import(
        engine, csv_lines(GOOD, "sue@example.com,Sue,pen,1,0.1,USD"), tmp_path
    )

    assert (report.stored, report.rejected, report.exit_status) == (2, 0, 0)
    assert [(p[0], p[1], p[2], p[3], p[4]) for p in await purchases(engine)] == [
        ("tim@example.com", "book", 2, Decimal("12.50"), "EUR"),
        ("sue@example.com", "pen", 1, Decimal("0.10"), "USD"),
    ]
    assert not (tmp_path / "rejects.csv").exists()


async def test_customers_are_upserted_case_insensitively_and_the_last_name_wins(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    rows = [
        "Tim@Example.com,Tim,book,1,1.00,EUR",
        "sue@example.com,Sue,pen,1,1.00,EUR",
        "TIM@example.COM,Timothy,pen,1,1.00,EUR",
        "tim@example.com,Tim B.,cup,1,1.00,EUR",  # a later chunk (two rows per chunk)
    ]

    report = await run_import(engine, csv_lines(*rows), tmp_path)

    assert await customers(engine) == [("sue@example.com", "Sue"), ("tim@example.com", "Tim B.")]
    assert (report.customers_created, report.customers_updated) == (2, 1)


async def test_purchased_at_is_taken_from_the_file_else_stamped_now(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    before = datetime.now(UTC)
    content = csv_lines(
        "tim@example.com,Tim,book,1,1.00,EUR,2024-03-01T10:00:00+02:00",
        "tim@example.com,Tim,pen,1,1.00,EUR,",
        header="email,name,item,quantity,unit_price,currency,purchased_at",
    )

    await run_import(engine, content, tmp_path)

    stored = await purchases(engine)
    assert stored[0][5] == datetime(2024, 3, 1, 8, tzinfo=UTC)
    assert stored[1][5] >= before


async def test_a_row_the_api_refuses_is_refused(engine: AsyncEngine, tmp_path: Path) -> None:
    bad = [
        "nope,Tim,book,1,1.00,EUR",  # not an email
        "a@b.test,Tim,book,1,1.00,EUR",  # a special-use domain
        "tim@example.com,Tim,book,0,1.00,EUR",  # quantity below 1
        "tim@example.com,Tim,book,1.0,1.00,EUR",  # not a whole number
        "tim@example.com,Tim,book,1,1.001,EUR",  # three decimals
        "tim@example.com,Tim,book,1,-1,EUR",  # negative
        "tim@example.com,Tim,book,1,1.00,eur",  # lower case currency
        "tim@example.com,Tim,book,1,1.00,ABC",  # not ISO 4217
        "tim@example.com,,book,1,1.00,EUR",  # no name
        "tim@example.com,Tim,book,1,1.00,EUR,2024-03-01T10:00:00",  # no offset
    ]
    content = csv_lines(*bad, header="email,name,item,quantity,unit_price,currency,purchased_at")
    content = content.replace(",EUR\n", ",EUR,\n").replace(",eur\n", ",eur,\n")
    content = content.replace(",ABC\n", ",ABC,\n")

    report = await run_import(engine, content, tmp_path)

    assert (report.stored, report.rejected, report.exit_status) == (0, len(bad), 65)
    assert await purchases(engine) == []


async def test_the_reject_file_holds_each_bad_row_with_its_line_field_and_reason(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = csv_lines(
        GOOD,
        'nope,"Tim, Jr.",book,1,1.00,EUR',
        "tim@example.com,Tim,book,1,1.001,EUR",
        "tim@example.com,Tim,book",
    )

    await run_import(engine, content, tmp_path)

    assert (tmp_path / "rejects.csv").read_bytes().decode() == (
        "email,name,item,quantity,unit_price,currency,line,field,reason\r\n"
        'nope,"Tim, Jr.",book,1,1.00,EUR,3,email,'
        "not a valid email address: An email address must have an @-sign.\r\n"
        "tim@example.com,Tim,book,1,1.001,EUR,4,unit_price,at most 2 decimal places\r\n"
        "tim@example.com,Tim,book,5,row,has 3 fields where the header has 6\r\n"
    )


async def test_strict_stores_nothing_when_a_row_is_bad(engine: AsyncEngine, tmp_path: Path) -> None:
    content = csv_lines(GOOD, GOOD, GOOD, "nope,Tim,book,1,1.00,EUR")

    report = await run_import(engine, content, tmp_path, mode=Mode.STRICT)

    assert (report.stored, report.rejected, report.exit_status) == (0, 1, 65)
    assert await purchases(engine) == []
    assert (tmp_path / "rejects.csv").exists()


async def test_strict_stores_a_clean_file(engine: AsyncEngine, tmp_path: Path) -> None:
    report = await run_import(engine, csv_lines(GOOD, GOOD, GOOD), tmp_path, mode=Mode.STRICT)

    assert (report.stored, report.exit_status) == (3, 0)
    assert len(await purchases(engine)) == 3


async def test_dry_run_validates_and_stores_nothing(engine: AsyncEngine, tmp_path: Path) -> None:
    content = csv_lines(GOOD, "nope,Tim,book,1,1.00,EUR")

    report = await run_import(engine, content, tmp_path, mode=Mode.DRY_RUN)

    assert (report.rows, report.rejected, report.stored, report.exit_status) == (2, 1, 0, 65)
    assert await purchases(engine) == []


async def test_running_the_same_file_again_stores_nothing_new(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = csv_lines(GOOD, GOOD, "sue@example.com,Sue,pen,1,1.00,EUR")
    await run_import(engine, content, tmp_path)

    again = await run_import(engine, content, tmp_path)

    assert (again.stored, again.already_stored) == (0, 3)
    assert len(await purchases(engine)) == 3


async def test_a_changed_file_is_a_new_import(engine: AsyncEngine, tmp_path: Path) -> None:
    await run_import(engine, csv_lines(GOOD), tmp_path)

    again = await run_import(engine, csv_lines(GOOD, GOOD), tmp_path)

    assert again.stored == 2
    assert len(await purchases(engine)) == 3


async def test_excel_bom_crlf_quoted_fields_and_any_column_order_are_read(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = b"\xef\xbb\xbf" + csv_lines(
        'EUR,12.50,"say ""hi"", then ""bye""",2,"Smith, Tim",tim@example.com',
        header="currency,unit_price,item,quantity,name,email",
        end="\r\n",
    ).encode("utf-8")

    report = await run_import(engine, content, tmp_path)

    assert report.stored == 1
    assert await customers(engine) == [("tim@example.com", "Smith, Tim")]
    assert (await purchases(engine))[0][1] == 'say "hi", then "bye"'


async def test_a_quoted_newline_reaches_the_api_rule_on_control_characters(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = csv_lines('tim@example.com,Tim,"two\nlines",1,1.00,EUR', GOOD)

    report = await run_import(engine, content, tmp_path)

    assert (report.stored, report.rejected) == (1, 1)
    assert report.first_rejects[0].line == 2
    assert report.first_rejects[0].field == "item"


async def test_json_lines_are_imported_with_json_types(engine: AsyncEngine, tmp_path: Path) -> None:
    content = (
        '{"email": "tim@example.com", "name": "Tim", "item": "book", "quantity": 2,'
        ' "unit_price": "12.50", "currency": "EUR"}\n'
        '{"email": "tim@example.com", "name": "Tim", "item": "book", "quantity": "2",'
        ' "unit_price": "12.50", "currency": "EUR"}\n'
        '{"email": "tim@example.com", "name": "Tim", "item": "book", "unit_price": 1,'
        ' "colour": "red"}\n'
        "[1, 2]\n"
        '{"email": "tim@example.com", "name": "Tim", "item": "bo\n'
    )

    report = await run_import(engine, content, tmp_path, fmt=Format.JSONL)

    assert (report.stored, report.rejected) == (1, 4)
    assert [(r.line, r.field) for r in report.first_rejects] == [
        (2, "quantity"),
        (3, "colour"),
        (4, "row"),
        (5, "row"),
    ]


async def test_worker_processes_store_what_the_thread_stores(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    rows = [f"buyer{n % 4}@example.com,B{n},item {n},1,1.00,EUR" for n in range(30)]
    rows[7] = "nope,Tim,book,1,1.00,EUR"
    content = csv_lines(*rows)

    report = await run_import(engine, content, tmp_path, chunk_rows=4, jobs=2)

    assert (report.stored, report.rejected, report.first_rejects[0].line) == (29, 1, 9)
    assert [p[1] for p in await purchases(engine)] == [f"item {n}" for n in range(30) if n != 7]
    last = {n % 4: f"B{n}" for n in range(30)}  # the last name in file order
    assert await customers(engine) == [(f"buyer{n}@example.com", last[n]) for n in range(4)]


# Rows the API's model has opinions about, as JSON Lines (the API's body, flattened).
TRICKY_ROWS: list[dict[str, Any]] = [
    {"email": "Tim@Example.COM", "name": "Tim", "item": "book", "unit_price": "12.50"},
    {"email": " sue@example.com ", "name": " Sue ", "item": "pen", "unit_price": 12.5},
    {"email": "josé@example.com", "name": "José", "item": "café", "unit_price": "1"},
    {"email": "tim@bücher.example", "name": "Tim", "item": "book", "unit_price": "1.00"},
    {"email": "a@b.test", "name": "Tim", "item": "book", "unit_price": "1.00"},
    {"email": "tim@example..com", "name": "Tim", "item": "book", "unit_price": "1.00"},
    {"email": "x@example.com", "name": 'O\'Brien, "Tim" \\ Jr.', "item": "a,b", "unit_price": 1},
    {"email": "x@example.com", "name": "Tab\there", "item": "book", "unit_price": "1.00"},
    {"email": "x@example.com", "name": "Tim", "item": "😀 \\N", "unit_price": "999999999.99"},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": "1e3"},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": 1e3},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": "0.001"},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": -1},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": 1000000000},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": "12.50 "},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": True},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": "1", "quantity": 3.0},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": "1", "quantity": "3"},
    {"email": "x@example.com", "name": "Tim", "item": "bk", "unit_price": "1", "quantity": 10001},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": "1", "currency": "eur"},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": "1", "currency": "XXX"},
    {"email": "x@example.com", "name": "Tim", "item": "book", "unit_price": "1", "colour": "red"},
    {"email": "x@example.com", "name": "", "item": "book", "unit_price": "1"},
]


async def test_worker_processes_refuse_exactly_what_the_api_refuses(
    engine: AsyncEngine, client: AsyncClient, tmp_path: Path
) -> None:
    """The API first, then the same rows imported by worker processes: the same rows are
    refused, and the same purchases (text, exact money, normalised email) are stored."""
    refused_by_api = []
    for line, row in enumerate(TRICKY_ROWS, start=1):
        body = {key: value for key, value in row.items() if key not in ("email", "name")}
        body["customer"] = {"email": row["email"], "name": row["name"]}
        response = await client.post("/api/v1/purchases", json=body)
        assert response.status_code in (201, 422), response.text
        if response.status_code == 422:
            refused_by_api.append(line)
    by_api = await purchases(engine)
    content = "".join(json.dumps(row) + "\n" for row in TRICKY_ROWS)

    report = await run_import(engine, content, tmp_path, fmt=Format.JSONL, chunk_rows=5, jobs=2)

    with (tmp_path / "rejects.csv").open(newline="", encoding="utf-8") as rejects:
        refused_by_import = [int(reject["line"]) for reject in csv.DictReader(rejects)]
    assert (
        refused_by_import == refused_by_api == [5, 6, 8, 10, 12, 13, 14, 15, 16, 18, 19, 20, 22, 23]
    )
    assert report.stored == len(TRICKY_ROWS) - len(refused_by_api) == len(by_api)
    by_import = (await purchases(engine))[len(by_api) :]
    assert [p[:5] for p in by_import] == [p[:5] for p in by_api]


async def test_a_run_without_rejects_removes_an_earlier_reject_file(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await run_import(engine, csv_lines(GOOD, "nope,Tim,book,1,1.00,EUR"), tmp_path)

    await run_import(engine, csv_lines(GOOD), tmp_path)

    assert not (tmp_path / "rejects.csv").exists()


# The tests of what only PostgreSQL has, directly and through PgBouncer.
ON_POSTGRESQL = pytest.mark.parametrize(
    "database_url",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("pgbouncer", marks=[pytest.mark.postgres, pytest.mark.pgbouncer]),
    ],
    indirect=True,
)


@ON_POSTGRESQL
async def test_the_staging_tables_end_with_each_chunks_transaction(
    engine: AsyncEngine, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    """Behind PgBouncer the next chunk may run on another server connection, and a staging
    table kept for the session would stay on this one for whichever client gets it next."""
    report = await run_import(engine, csv_lines(GOOD, GOOD, GOOD), tmp_path, chunk_rows=1)

    staged = await admin.fetchval(
        "SELECT count(*) FROM pg_class"
        " WHERE relpersistence = 't' AND relname IN ('import_customer', 'import_purchase')"
    )

    assert (report.stored, staged) == (3, 0)


@ON_POSTGRESQL
async def test_an_import_leaves_the_planner_statistics_up_to_date(
    engine: AsyncEngine, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    """Else the next queries (an export right after) are planned for the tables as they were."""
    await run_import(engine, csv_lines(GOOD, "sue@example.com,Sue,pen,1,1.00,EUR"), tmp_path)

    planned = await admin.fetch(  # reltuples: -1 for a table never analysed (nor vacuumed)
        "SELECT relname, reltuples FROM pg_class"
        " WHERE relname IN ('customer', 'purchase') ORDER BY relname"
    )

    assert [tuple(row) for row in planned] == [("customer", 2), ("purchase", 2)]


def test_an_import_starts_a_worker_per_cpu_up_to_a_few(monkeypatch: pytest.MonkeyPatch) -> None:
    """One database connection stores the chunks: on a many-core machine more workers than a
    few would only hold memory."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(64)))
    many = pipeline.default_jobs()
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1})

    assert (many, pipeline.default_jobs()) == (pipeline.MAX_DEFAULT_JOBS, 2)
