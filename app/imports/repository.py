"""Every SQL statement of imports and exports. Like app.sales.repository: never commits.

An import chunk lands in a staging table and is then stored by two set-based statements: the
customer upsert (each email's name from its last row in file order), in email order as the
batch endpoint does (so an import beside live traffic locks customers in the same order and
queues instead of deadlocking), and the purchase insert joined to the customers by email. The
SQL reads app.sales.models' tables (customer, purchase) directly, as the API's repository does.

The staging table is filled from one text the database parses itself: CSV for PostgreSQL's
COPY, a JSON array for SQLite's json_each. The text is built where the chunk was validated
(`stage_postgres` / `stage_sqlite`, in a worker process when there are workers), so the
process that talks to the database spends no Python on a row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, Literal, cast

import asyncpg
import orjson
from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.columns import Money, UTCDateTime
from app.core.engine import READ_ONLY
from app.imports.models import ImportChunk
from app.imports.schemas import Row

EXPORT_BATCH = 10_000
COPY_TIMEOUT = 24 * 3600.0  # seconds: an export's COPY ends when the table does

# The staging table: temporary, so each connection has its own and nothing is left behind. Its
# columns are a Row's, the row's line first (file order). On PostgreSQL it lives for one
# chunk's transaction (ON COMMIT DROP, created again by the next): behind PgBouncer in
# transaction pooling the next transaction may run on another server connection, and a table
# kept for the session would stay on this one for other clients.
_STAGED_COLUMNS = Row._fields
_CREATE_STAGING_PG = (
    "CREATE TEMPORARY TABLE import_purchase (line integer, email text, name text, item text,"
    " quantity integer, unit_price numeric(12, 2), currency text, purchased_at timestamptz)"
    " ON COMMIT DROP"
)
# SQLite keeps its temporary tables in memory (temp_store), not in a file of their own.
_CREATE_STAGING_SQLITE = (
    "PRAGMA temp_store = MEMORY",
    "CREATE TEMPORARY TABLE IF NOT EXISTS import_purchase (line INTEGER, email TEXT, name TEXT,"
    " item TEXT, quantity INTEGER, unit_price INTEGER, currency TEXT, purchased_at DATETIME)",
)
_STAGE_SQLITE = (
    "INSERT INTO import_purchase"
    " (line, email, name, item, quantity, unit_price, currency, purchased_at)"
    " SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,"
    " value ->> 6, value ->> 7 FROM json_each(?)"
)


def stage_postgres(rows: Sequence[Row]) -> bytes:
    """A chunk's rows as COPY's CSV: text exactly as PostgreSQL reads the columns' types (a
    price's exact decimal, an ISO time with its offset; None, the empty field, is NULL)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def stage_sqlite(rows: Sequence[Row]) -> bytes:
    """A chunk's rows as a JSON array of arrays, price and time as the columns store them
    (app.core.columns: integer cents, UTC text), with the columns' own bind processors."""
    money, moment = _sqlite_processors()
    return orjson.dumps(
        [
            (
                r.line,
                r.email,
                r.name,
                r.item,
                r.quantity,
                money(r.unit_price),
                r.currency,
                moment(r.purchased_at),
            )
            for r in rows
        ]
    )


def _sqlite_processors() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    dialect = sqlite.dialect()
    money = Money(12)._cached_bind_processor(dialect)
    moment = UTCDateTime()._cached_bind_processor(dialect)
    assert money is not None
    assert moment is not None
    return money, moment


# Created or updated, told apart as the API tells them
# (app.sales.repository.capture._upsert_statement).
# PostgreSQL: one statement, the upsert's RETURNING feeding the purchase insert, so purchases
# join the chunk's few thousand customers, not the whole customer table. (A join to `customer`
# itself was planned against never-analysed temporary tables as a hash of the whole table, per
# chunk: an import slowed down as the table grew.)
_STORE_PG = """\
WITH buyers AS (
    SELECT DISTINCT ON (email) email, name FROM import_purchase ORDER BY email, line DESC
), upserted AS (
    INSERT INTO customer AS c (email, name, created_at, updated_at)
    SELECT email, name, $1::timestamptz, $1::timestamptz FROM buyers ORDER BY email
    ON CONFLICT (email) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at
    RETURNING c.id, c.email, c.xmax = 0 AS created
), inserted AS (
    INSERT INTO purchase
        (customer_id, item, quantity, unit_price, currency, total, purchased_at)
    SELECT u.id, s.item, s.quantity, s.unit_price, s.currency, s.unit_price * s.quantity,
           coalesce(s.purchased_at, $1::timestamptz)
    FROM import_purchase AS s JOIN upserted AS u ON u.email = s.email
    ORDER BY s.line
)
SELECT count(*) FILTER (WHERE created) AS created, count(*) AS total FROM upserted"""
# SQLite cannot nest an INSERT in WITH; "WHERE true" tells its parser the ON CONFLICT is the
# upsert's, not a join's. A bare column beside max() is SQLite's documented "the row with the
# maximum": each email's name from its last line.
_UPSERT_SQLITE = text(
    """\
INSERT INTO customer (email, name, created_at, updated_at)
SELECT email, name, :now, :now
FROM (SELECT email, name, max(line) FROM import_purchase GROUP BY email)
WHERE true ORDER BY email
ON CONFLICT (email) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at
RETURNING created_at = updated_at AS created"""
).bindparams(bindparam("now", type_=UTCDateTime()))
# The total as the API computes it, unit price times quantity, exact on both (NUMERIC on
# PostgreSQL, integer cents on SQLite); a row without a time is stamped with the chunk's.
# SQLite looks each staged email up in customer's unique index.
_INSERT_PURCHASES_SQLITE = text(
    """\
INSERT INTO purchase (customer_id, item, quantity, unit_price, currency, total, purchased_at)
SELECT c.id, s.item, s.quantity, s.unit_price, s.currency, s.unit_price * s.quantity,
       coalesce(s.purchased_at, :now)
FROM import_purchase AS s JOIN customer AS c ON c.email = s.email
ORDER BY s.line"""
).bindparams(bindparam("now", type_=UTCDateTime()))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    # asyncpg takes bytes as they are, but its annotations want a file or an async iterable.
    yield data


class ImportRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self._staging_ready = False

    async def chunks_done(self, file_sha256: str) -> dict[int, int]:
        """The ledger of a file: chunk number -> chunk size it was cut with."""
        rows = await self.conn.execute(
            select(ImportChunk.chunk, ImportChunk.chunk_rows).where(
                ImportChunk.file_sha256 == file_sha256
            )
        )
        return {row.chunk: row.chunk_rows for row in rows}

    async def claim_chunk(
        self, *, file_sha256: str, chunk: int, chunk_rows: int, purchases: int, now: datetime
    ) -> bool:
        """Write the chunk's ledger row first in its transaction; False if it is there already.

        A concurrent run importing the same chunk waits here on PostgreSQL (the key's lock)
        until the other commits, then finds the row: each chunk is stored once either way.
        """
        insert_fn = postgresql.insert if self.postgres else sqlite.insert
        stmt = (
            insert_fn(ImportChunk)
            .values(
                file_sha256=file_sha256,
                chunk=chunk,
                chunk_rows=chunk_rows,
                purchases=purchases,
                imported_at=now,
            )
            .on_conflict_do_nothing()
            .returning(ImportChunk.chunk)
        )
        return (await self.conn.execute(stmt)).first() is not None

    @property
    def stage(self) -> Callable[[Sequence[Row]], bytes]:
        """The function that turns a chunk's rows into the text `store_chunk` takes."""
        return stage_postgres if self.postgres else stage_sqlite

    async def store_chunk(self, staged: bytes, *, now: datetime) -> tuple[int, int]:
        """Upsert the customers and insert the purchases of a chunk's rows as `stage` gave
        them, in the caller's transaction; returns (customers created, customers updated)."""
        if self.postgres:
            return await self._store_pg(staged, now)
        return await self._store_sqlite(staged, now)

    async def _store_pg(self, staged: bytes, now: datetime) -> tuple[int, int]:
        driver = await self._driver()
        await driver.execute(_CREATE_STAGING_PG)  # in the caller's transaction, dropped at its end
        await driver.copy_to_table(
            "import_purchase", source=_once(staged), columns=_STAGED_COLUMNS, format="csv"
        )
        counts = await driver.fetchrow(_STORE_PG, now)
        assert counts is not None
        created: int = counts["created"]
        return created, counts["total"] - created

    async def _store_sqlite(self, staged: bytes, now: datetime) -> tuple[int, int]:
        if not self._staging_ready:
            for statement in _CREATE_STAGING_SQLITE:
                await self.conn.exec_driver_sql(statement)
            self._staging_ready = True
        await self.conn.exec_driver_sql(_STAGE_SQLITE, (staged.decode(),))
        flags = (await self.conn.execute(_UPSERT_SQLITE, {"now": now})).scalars().all()
        await self.conn.execute(_INSERT_PURCHASES_SQLITE, {"now": now})
        await self.conn.exec_driver_sql("DELETE FROM import_purchase")
        created = sum(1 for flag in flags if flag)
        return created, len(flags) - created

    async def analyze(self) -> None:
        """PostgreSQL: refresh the planner's statistics of the tables an import grew, in a
        transaction of its own (SQLite: nothing; its planner needs none for these queries).

        Autovacuum would, but only some time later; until then the planner plans the next
        queries (an export right after, the API's reads) for tables a fraction of their size.
        SKIP_LOCKED: a table another ANALYZE or VACUUM holds is being analysed already.
        """
        if not self.postgres:
            return
        driver = await self._driver()
        async with driver.transaction():
            await driver.execute("SET LOCAL statement_timeout = 0")
            await driver.execute("ANALYZE (SKIP_LOCKED) customer, purchase")

    async def _driver(self) -> asyncpg.Connection:
        raw = await self.conn.get_raw_connection()
        return cast(asyncpg.Connection, raw.driver_connection)


# Exports as text the database formats itself, so a row costs Python almost nothing: money
# as exact two-decimal text (SQLite keeps integer cents, app.core.columns.Money) and times as
# ISO 8601 in UTC (SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff" UTC text,
# app.core.columns.UTCDateTime).
# Integer cents as two-decimal text (cheaper than printf; prices are never negative).
_PRICE_TEXT_SQLITE = "(p.unit_price / 100) || '.' || substr(p.unit_price % 100 + 100, 2)"
_EXPORTS = {
    ("purchases", "postgresql"): (
        "c.email, c.name, p.item, p.quantity, p.unit_price::text, p.currency,"
        " to_char(p.purchased_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    ),
    ("purchases", "sqlite"): (
        "c.email, c.name, p.item, p.quantity,"
        f" {_PRICE_TEXT_SQLITE}, p.currency,"
        " replace(p.purchased_at, ' ', 'T') || '+00:00'"
    ),
    ("customers", "postgresql"): (
        "c.email, c.name,"
        " to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'),"
        " to_char(c.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    ),
    ("customers", "sqlite"): (
        "c.email, c.name, replace(c.created_at, ' ', 'T') || '+00:00',"
        " replace(c.updated_at, ' ', 'T') || '+00:00'"
    ),
}


def _csv_field(column: str) -> str:
    """SQLite: a text column as Python's csv module writes it (QUOTE_MINIMAL, LF lines):
    quoted, its quotes doubled, when it holds a comma, a quote or a line feed."""
    return (
        f"CASE WHEN instr({column}, ',') OR instr({column}, '\"') OR instr({column}, char(10))"
        f" THEN '\"' || replace({column}, '\"', '\"\"') || '\"' ELSE {column} END"
    )


# SQLite: each row as its CSV line, written by SQLite, so a row costs Python one string (the
# columns above as the csv module would write them; numbers and times never hold , " or LF).
# The quoting costs SQLite more than the rest of the line: it is only for the rows that need it
# (`ExportRepository.csv_lines`).
_CSV_LINES_SQLITE = {
    "purchases": " || ',' || ".join(
        (
            _csv_field("c.email"),
            _csv_field("c.name"),
            _csv_field("p.item"),
            "p.quantity",
            _PRICE_TEXT_SQLITE,
            "p.currency",  # three capitals: the API's and the import's Currency
            "replace(p.purchased_at, ' ', 'T') || '+00:00'",
        )
    )
    + " || char(10)",
    "customers": " || ',' || ".join(
        (
            _csv_field("c.email"),
            _csv_field("c.name"),
            "replace(c.created_at, ' ', 'T') || '+00:00'",
            "replace(c.updated_at, ' ', 'T') || '+00:00'",
        )
    )
    + " || char(10)",
}
# The same lines without quoting, by one printf: right for every row whose text holds no comma,
# quote or LF, at half the cost.
_PLAIN_LINES_SQLITE = {
    "purchases": (
        "printf('%s,%s,%s,%d,%d.%02d,%s,%s+00:00' || char(10), c.email, c.name, p.item,"
        " p.quantity, p.unit_price / 100, p.unit_price % 100, p.currency,"
        " replace(p.purchased_at, ' ', 'T'))"
    ),
    "customers": (
        "printf('%s,%s,%s+00:00,%s+00:00' || char(10), c.email, c.name,"
        " replace(c.created_at, ' ', 'T'), replace(c.updated_at, ' ', 'T'))"
    ),
}
_SEPARATORS = {"purchases": 6, "customers": 3}  # commas in a line of fields that need no quotes


def _plain(text: str, rows: int, separators: int) -> bool:
    """Whether `rows` plain lines are CSV as they are: no field in them holds a comma, a quote
    or an LF, for they hold exactly the commas and LFs that separate their fields and rows."""
    return '"' not in text and text.count(",") == rows * separators and text.count("\n") == rows


_EXPORT_FROM = {
    "purchases": ("purchase AS p JOIN customer AS c ON c.id = p.customer_id", "p"),
    "customers": ("customer AS c", "c"),
}


class ExportRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @property
    def copies_csv(self) -> bool:
        """PostgreSQL writes CSV itself (COPY TO), at several times Python's speed."""
        return self.conn.dialect.name == "postgresql"

    def _select(
        self,
        kind: Literal["purchases", "customers"],
        since: datetime | None,
        until: datetime | None,
        placeholder: Callable[[str, int], str],
        columns: str | None = None,
    ) -> tuple[str, dict[str, datetime]]:
        """The export's SELECT (in id order; of `columns`, else the kind's own) and its bound
        times, with the driver's placeholders. Purchases are filtered on purchased_at,
        customers on created_at."""
        source, alias = _EXPORT_FROM[kind]
        moment = f"{alias}.purchased_at" if kind == "purchases" else f"{alias}.created_at"
        params = {name: value for name, value in (("since", since), ("until", until)) if value}
        conditions = [
            f"{moment} {'>=' if name == 'since' else '<'} {placeholder(name, n)}"
            for n, name in enumerate(params, start=1)
        ]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        columns = columns or _EXPORTS[kind, self.conn.dialect.name]
        # Only this module's fragments in it: the times are bound parameters.
        return f"SELECT {columns} FROM {source}{where} ORDER BY {alias}.id", params  # noqa: S608

    async def rows(
        self,
        kind: Literal["purchases", "customers"],
        *,
        since: datetime | None,
        until: datetime | None,
    ) -> AsyncIterator[Sequence[Sequence[Any]]]:
        """Rows as text columns, in batches from a server-side cursor."""
        if self.conn.dialect.name == "sqlite":
            async for batch in self._sqlite_rows(kind, since, until):
                yield batch
            return
        sql, params = self._select(kind, since, until, lambda name, _: f":{name}")
        query = text(sql).bindparams(*(bindparam(name, type_=UTCDateTime()) for name in params))
        result = await self.conn.stream(query.execution_options(yield_per=EXPORT_BATCH), params)
        async for batch in result.partitions(EXPORT_BATCH):
            yield batch

    async def csv_lines(
        self,
        kind: Literal["purchases", "customers"],
        *,
        since: datetime | None,
        until: datetime | None,
    ) -> AsyncIterator[tuple[str, int]]:
        """SQLite: the rows as CSV (no header) SQLite writes itself, a batch at a time: the
        text and how many rows it holds.

        Each line is first written without quoting (`_PLAIN_LINES_SQLITE`); the rows of a batch
        whose line is not plain CSV are read again by id and written quoted. One deferred read
        transaction holds both reads to one snapshot.
        """
        _, alias = _EXPORT_FROM[kind]
        separators = _SEPARATORS[kind]
        await self.conn.execution_options(**{READ_ONLY: True})
        async with self.conn.begin():
            columns = f"{alias}.id, {_PLAIN_LINES_SQLITE[kind]}"
            async for batch in self._sqlite_rows(kind, since, until, columns):
                text = "".join([line for _, line in batch])
                if not _plain(text, len(batch), separators):
                    text = await self._quoted(kind, batch, separators)
                yield text, len(batch)

    async def _quoted(
        self,
        kind: Literal["purchases", "customers"],
        batch: Sequence[Sequence[Any]],
        separators: int,
    ) -> str:
        """The batch's text, its lines that are not plain CSV written again quoted."""
        ids = [row_id for row_id, line in batch if not _plain(line, 1, separators)]
        source, alias = _EXPORT_FROM[kind]
        # Only this module's fragments in it: the ids are a bound parameter.
        lines = f"{alias}.id, {_CSV_LINES_SQLITE[kind]}"
        sql = f"SELECT {lines} FROM {source} WHERE {alias}.id IN (SELECT value FROM json_each(?))"  # noqa: S608
        raw = (await self.conn.get_raw_connection()).driver_connection
        assert raw is not None
        async with raw.execute(sql, (orjson.dumps(ids).decode(),)) as cursor:
            quoted = dict(await cursor.fetchall())
        return "".join([quoted.get(row_id, line) for row_id, line in batch])

    async def _sqlite_rows(
        self,
        kind: Literal["purchases", "customers"],
        since: datetime | None,
        until: datetime | None,
        columns: str | None = None,
    ) -> AsyncIterator[Sequence[Sequence[Any]]]:
        # Straight from the driver's cursor: plain tuples, without SQLAlchemy's row objects.
        sql, params = self._select(kind, since, until, lambda _, n: "?", columns)
        moment = UTCDateTime()._cached_bind_processor(self.conn.dialect)
        assert moment is not None
        raw = (await self.conn.get_raw_connection()).driver_connection
        assert raw is not None
        async with raw.execute(sql, [moment(value) for value in params.values()]) as cursor:
            while batch := await cursor.fetchmany(EXPORT_BATCH):
                yield batch

    async def copy_csv(
        self,
        kind: Literal["purchases", "customers"],
        *,
        since: datetime | None,
        until: datetime | None,
        sink: Callable[[bytes], Coroutine[Any, Any, None]],
    ) -> int:
        """PostgreSQL: COPY the rows out as CSV (no header) to `sink`; returns the row count.

        One statement that runs as long as the table is big: it is exempt from the service's
        statement timeout (a request's bound, app.core.db) and given COPY_TIMEOUT on the client. It
        reads one snapshot, in a read-only transaction.
        """
        sql, params = self._select(kind, since, until, lambda _, n: f"${n}::timestamptz")
        driver = cast(asyncpg.Connection, (await self.conn.get_raw_connection()).driver_connection)
        async with driver.transaction(isolation="repeatable_read", readonly=True):
            await driver.execute("SET LOCAL statement_timeout = 0")
            status = await driver.copy_from_query(
                sql, *params.values(), output=sink, format="csv", timeout=COPY_TIMEOUT
            )
        return int(status.split()[-1])
