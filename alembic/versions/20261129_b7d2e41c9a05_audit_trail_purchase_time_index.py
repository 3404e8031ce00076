"""audit trail, purchase time index

Revision ID: b7d2e41c9a05
Revises: 3b9d2e41c7a8
Create Date: 2026-11-29 05:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

import app.core.columns
from alembic import op

revision: str = "b7d2e41c9a05"
down_revision: str | None = "3b9d2e41c7a8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("fields", sa.String(length=200), nullable=False),
        sa.Column("credential", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index("ix_audit_event_customer_id_id", ["customer_id", "id"], unique=False)
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.create_index(
            "ix_purchase_purchased_at",
            ["purchased_at"],
            unique=False,
            postgresql_include=["currency", "total", "customer_id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.drop_index("ix_purchase_purchased_at")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_event_customer_id_id")
    op.drop_table("audit_event")
