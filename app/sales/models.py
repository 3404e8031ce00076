"""Tables: customers, their purchases, and remembered idempotency keys."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.columns import BigIntId, Money, UTCDateTime
from app.core.engine import Base

PUBLIC_SCOPE = "public"


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Purchase(Base):
    __tablename__ = "purchase"
    __table_args__ = (
        CheckConstraint("quantity BETWEEN 1 AND 10000", name="quantity_range"),
        CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
        CheckConstraint("length(currency) = 3", name="currency_code_length"),
        Index("ix_purchase_customer_id_id", "customer_id", "id"),
        # The daily statistics scan purchases by time; on PostgreSQL from the index alone.
        Index(
            "ix_purchase_purchased_at",
            "purchased_at",
            postgresql_include=["currency", "total", "customer_id"],
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("customer.id", ondelete="RESTRICT")
    )
    item: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money(12))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(Money(16))
    purchased_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdempotencyKey(Base):
    """A client's retry key with the response it was first given, kept in the purchase's
    transaction so a crash can never keep one without the other.

    A key belongs to a scope: the same key in two scopes is two keys. Until requests carry a
    credential every key is in `PUBLIC_SCOPE`; an API key's id is what a scope will be then.
    Keys are kept for a while (APP_IDEMPOTENCY_KEY_TTL_HOURS), then purged oldest first by
    `created_at`, which is indexed so the purge never scans the table.
    """

    __tablename__ = "idempotency_key"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True, server_default=PUBLIC_SCOPE)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    # The purchase a single capture stored (a batch's key has none: its body lists them).
    purchase_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("purchase.id", ondelete="CASCADE")
    )
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
