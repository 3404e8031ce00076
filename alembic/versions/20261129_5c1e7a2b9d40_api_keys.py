"""api keys

Revision ID: 5c1e7a2b9d40
Revises: b7d2e41c9a05
Create Date: 2026-11-29 05:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

import app.core.columns
from alembic import op

revision: str = "5c1e7a2b9d40"
down_revision: str | None = "b7d2e41c9a05"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("scopes", sa.String(length=100), nullable=False),
        sa.Column("created_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", app.core.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", app.core.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", app.core.columns.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_key_prefix")),
    )


def downgrade() -> None:
    op.drop_table("api_key")
