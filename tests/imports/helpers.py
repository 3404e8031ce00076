"""Helpers shared by the import and export tests."""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.imports.formats import Format
from app.imports.service import ImportReport, Mode, import_purchases
from app.sales.models import Customer, Purchase

HEADER = "email,name,item,quantity,unit_price,currency"
GOOD = "tim@example.com,Tim,book,2,12.50,EUR"

PurchaseTuple = tuple[str, str, int, Decimal, str, datetime]


async def run_import(
    engine: AsyncEngine,
    content: bytes | str,
    tmp_path: Path,
    *,
    fmt: Format = Format.CSV,
    mode: Mode = Mode.STORE,
    chunk_rows: int = 2,
    jobs: int = 1,
) -> ImportReport:
    """Import `content` as a file in tmp_path; rejects go to tmp_path / "rejects.csv"
    (`jobs` > 1: validated in that many worker processes)."""
    data = content.encode() if isinstance(content, str) else content
    return await import_purchases(
        engine,
        source=io.BytesIO(data),
        fmt=fmt,
        rejects_path=tmp_path / "rejects.csv",
        mode=mode,
        chunk_rows=chunk_rows,
        jobs=jobs,
    )


async def customers(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(Customer.email, Customer.name).order_by(Customer.email))
        return [(row.email, row.name) for row in rows]


async def purchases(engine: AsyncEngine) -> list[PurchaseTuple]:
    """(email, item, quantity, unit_price, currency, purchased_at) in id order."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                Customer.email,
                Purchase.item,
                Purchase.quantity,
                Purchase.unit_price,
                Purchase.currency,
                Purchase.purchased_at,
            )
            .join(Customer, Customer.id == Purchase.customer_id)
            .order_by(Purchase.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def csv_lines(*rows: str, header: str = HEADER, end: str = "\n") -> str:
    return end.join([header, *rows]) + end


def columns(items: list[Any], index: int) -> list[Any]:
    return [item[index] for item in items]
