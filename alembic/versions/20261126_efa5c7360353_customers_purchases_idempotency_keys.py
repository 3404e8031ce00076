"""customers purchases idempotency keys

Revision ID: efa5c7360353
Revises:
Create Date: 2026-11-26 10:52:18.891032
"""

from collections.abc import Sequence

import sqlalchemy as sa

import app.core.columns
from alembic import op

revision: str = "efa5c7360353"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer")),
        sa.UniqueConstraint("email", name=op.f("uq_customer_email")),
    )
    op.create_table(
        "purchase",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("item", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", app.core.columns.Money(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total", app.core.columns.Money(precision=16, scale=2), nullable=False),
        sa.Column("purchased_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_purchase_currency_code_length")),
        sa.CheckConstraint("quantity BETWEEN 1 AND 10000", name=op.f("ck_purchase_quantity_range")),
        sa.CheckConstraint("unit_price >= 0", name=op.f("ck_purchase_unit_price_not_negative")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name=op.f("fk_purchase_customer_id_customer"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase")),
    )
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.create_index("ix_purchase_customer_id_id", ["customer_id", "id"], unique=False)

    op.create_table(
        "idempotency_key",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "purchase_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["purchase_id"],
            ["purchase.id"],
            name=op.f("fk_idempotency_key_purchase_id_purchase"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_key")),
    )


def downgrade() -> None:
    op.drop_table("idempotency_key")
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.drop_index("ix_purchase_customer_id_id")

    op.drop_table("purchase")
    op.drop_table("customer")
