"""Every SQL statement of the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.models import AuditEvent
from app.audit.schemas import AuditEventOut


class AuditRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(
        self,
        *,
        at: datetime,
        action: str,
        customer_id: int,
        fields: Sequence[str],
        credential: str,
    ) -> None:
        await self.conn.execute(
            insert(AuditEvent).values(
                at=at,
                action=action,
                customer_id=customer_id,
                fields=",".join(fields),
                credential=credential,
            )
        )

    async def page(
        self, *, customer_id: int | None, before_id: int | None, limit: int
    ) -> list[AuditEventOut]:
        """Newest first, keyset-paginated on id."""
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if customer_id is not None:
            query = query.where(AuditEvent.customer_id == customer_id)
        if before_id is not None:
            query = query.where(AuditEvent.id < before_id)
        return [
            AuditEventOut(
                id=row.id,
                at=row.at,
                action=row.action,
                customer_id=row.customer_id,
                fields=row.fields.split(",") if row.fields else [],
                credential=row.credential,
            )
            for row in await self.conn.execute(query)
        ]
