"""statistics rollup: purchases and buyers per UTC quarter-hour

Revision ID: c4e8a1f0b2d7
Revises: 3b7c1e2a9d40
Create Date: 2026-11-29 08:20:00.000000

The rollup starts empty with its watermark at 0: the service's background fold (or
`purchase-capture stats fold`) then folds the purchases already stored, in batches.
"""

from collections.abc import Sequence

import sqlalchemy as sa

import app.core.columns
from alembic import op

revision: str = "c4e8a1f0b2d7"
down_revision: str | None = "3b7c1e2a9d40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    fold = op.create_table(
        "stats_fold",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("purchase_id", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_stats_fold_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_fold")),
    )
    op.bulk_insert(fold, [{"id": 1, "purchase_id": 0}])
    op.create_table(
        "stats_sales",
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("purchases", sa.BigInteger(), nullable=False),
        sa.Column("revenue_low", sa.BigInteger(), nullable=False),
        sa.Column("revenue_mid", sa.BigInteger(), nullable=False),
        sa.Column("revenue_high", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "currency", name=op.f("pk_stats_sales")),
    )
    op.create_table(
        "stats_buyers",
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("firsts", sa.BigInteger(), nullable=False),
        sa.Column("lasts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_stats_buyers")),
    )
    op.create_table(
        "stats_customer_span",
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("first_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_stats_customer_span")),
    )


def downgrade() -> None:
    op.drop_table("stats_customer_span")
    op.drop_table("stats_buyers")
    op.drop_table("stats_sales")
    op.drop_table("stats_fold")
