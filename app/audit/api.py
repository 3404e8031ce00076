"""GET /api/v1/audit: the trail, newest first, behind the admin credential."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.audit import service
from app.audit.schemas import AuditPage
from app.core.db import ReadConnectionDep
from app.sales.api import MAX_ID, Cursor, Limit, problems
from app.sales.auth import require_read

router = APIRouter(prefix="/api/v1", tags=["audit"], dependencies=[Depends(require_read)])


@router.get(
    "/audit",
    responses=problems(400, 401, 403, 422, 503),
    summary="Who corrected or erased which customer, and when",
)
async def list_audit(
    conn: ReadConnectionDep,
    customer_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only this customer's events.")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AuditPage:
    return await service.list_events(conn, customer_id=customer_id, cursor=cursor, limit=limit)
