"""The api_key table: what is kept of a key (never the secret itself)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.columns import BigIntId, UTCDateTime
from app.core.engine import Base


class ApiKey(Base):
    """A key is found by its visible `prefix` (unique, not secret) and proven by `secret_hash`,
    the SHA-256 of the whole secret, compared in constant time. SHA-256 without salt or
    stretching is right here: the secret is 238 random bits, not a password to guess.
    """

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    # Space-separated scope names, sorted: "admin read".
    scopes: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
