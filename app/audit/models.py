"""The audit_event table: one row per correction or erasure, never the values themselves."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.columns import BigIntId, UTCDateTime
from app.core.engine import Base


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_customer_id_id", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(40))
    # No foreign key: the trail outlives whatever happens to the row it speaks of.
    customer_id: Mapped[int] = mapped_column(BigIntId)
    # Names of the changed fields, comma-separated ("email,name"): never their values.
    fields: Mapped[str] = mapped_column(String(200))
    credential: Mapped[str] = mapped_column(String(100))
