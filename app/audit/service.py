"""Writing and reading the trail. `record` is what the sales service calls, in its own
transaction, for each correction or erasure (wired in app.main)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.repository import AuditRepository
from app.audit.schemas import AuditPage
from app.sales.service.corrections import CustomerChange
from app.sales.service.cursor import decode_cursor, encode_cursor


async def record(conn: AsyncConnection, change: CustomerChange) -> None:
    await AuditRepository(conn).add(
        at=change.at,
        action=change.action,
        customer_id=change.customer_id,
        fields=change.fields,
        credential=change.credential,
    )


async def list_events(
    conn: AsyncConnection, *, customer_id: int | None, cursor: str | None, limit: int
) -> AuditPage:
    items = await AuditRepository(conn).page(
        customer_id=customer_id, before_id=decode_cursor(cursor), limit=limit
    )
    next_cursor = encode_cursor(items[-1].id) if len(items) == limit else None
    return AuditPage(items=items, next_cursor=next_cursor)
