"""idempotency key scope and expiry

Keys get a scope (part of the primary key, so one caller's key never answers another's once
credentials exist) and an index on created_at, so expired keys are purged without a table scan.

Revision ID: 3b9d2e41c7a8
Revises: efa5c7360353
Create Date: 2026-11-29 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "3b9d2e41c7a8"
down_revision: str | None = "efa5c7360353"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scope", sa.String(length=64), server_default="public", nullable=False)
        )
        batch_op.drop_constraint("pk_idempotency_key", type_="primary")
        batch_op.create_primary_key("pk_idempotency_key", ["scope", "key"])
        batch_op.create_index("ix_idempotency_key_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    # Keys of other scopes than "public" would collide once the scope is gone.
    op.execute("DELETE FROM idempotency_key WHERE scope <> 'public'")
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_key_created_at")
        batch_op.drop_constraint("pk_idempotency_key", type_="primary")
        batch_op.create_primary_key("pk_idempotency_key", ["key"])
        batch_op.drop_column("scope")
