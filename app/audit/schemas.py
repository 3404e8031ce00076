"""The audit trail as the API shows it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class AuditEventOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 2,
                    "at": "2026-11-29T10:15:00Z",
                    "action": "customer.corrected",
                    "customer_id": 7,
                    "fields": ["name"],
                    "credential": "admin-token",
                }
            ]
        }
    )

    id: int
    at: datetime
    action: str = Field(description="`customer.corrected` or `customer.erased`.")
    customer_id: int
    fields: list[str] = Field(description="Which fields changed; their values are never kept.")
    credential: str = Field(description="Which credential made the change (never the secret).")


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None
