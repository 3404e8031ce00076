"""Request and response models of the key endpoints, and the scope names."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_LIFETIME_DAYS = 3650


class Scope(StrEnum):
    """What a key may do. Scopes do not imply each other: an admin key cannot read purchases
    unless it also has `read`."""

    READ = "read"  # the read endpoints: customers and purchases
    WRITE = "write"  # customer corrections and erasure
    ADMIN = "admin"  # creating, listing and revoking keys


KeyName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: KeyName = Field(description="Who or what the key is for.")
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    # A lifetime rather than a date: nothing the schema allows is refused later (a date could
    # be in the past), and no clock but the server's matters.
    expires_in_days: int | None = Field(
        default=None, ge=1, le=MAX_LIFETIME_DAYS, description="Days until the key stops working."
    )


class KeyOut(BaseModel):
    """A key as listed: everything but the secret, which is never stored."""

    id: int
    name: str
    prefix: str = Field(description="The first characters of the secret, to recognise it.")
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class CreatedKey(KeyOut):
    secret: str = Field(description="The bearer secret. Shown this once; only its hash is kept.")


class KeyList(BaseModel):
    items: list[KeyOut]
