"""import ledger

Revision ID: 3b7c1e2a9d40
Revises: 5c1e7a2b9d40
Create Date: 2026-11-29 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

import app.core.columns
from alembic import op

revision: str = "3b7c1e2a9d40"
down_revision: str | None = "5c1e7a2b9d40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "import_chunk",
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("chunk", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("chunk_rows", sa.Integer(), nullable=False),
        sa.Column("purchases", sa.Integer(), nullable=False),
        sa.Column("imported_at", app.core.columns.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("file_sha256", "chunk", name=op.f("pk_import_chunk")),
    )


def downgrade() -> None:
    op.drop_table("import_chunk")
