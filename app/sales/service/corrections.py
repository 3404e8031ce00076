"""Corrections and erasure of a customer, each in one transaction, guarded by If-Match and
recorded in the audit trail."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.db import write_transaction
from app.core.errors import Conflict, Gone, NotFound, PreconditionFailed
from app.sales.idempotency import utcnow
from app.sales.repository.corrections import CorrectionRepository
from app.sales.repository.rows import CustomerRow
from app.sales.schemas import CustomerDetail, CustomerOut, CustomerPatch
from app.sales.service.outputs import ERASED_NAME, tombstone_email
from app.sales.service.reads import customer_detail


@dataclass(frozen=True, slots=True)
class CustomerChange:
    """What the audit trail is told of a correction or an erasure: the names of the fields
    that changed, never their values (an erased value must not live on in the trail)."""

    action: str
    customer_id: int
    fields: tuple[str, ...]
    credential: str
    at: datetime


# Records a change in the caller's transaction; the app wires in the audit trail's (app.main),
# so this module needs no import of it.
RecordChange = Callable[[AsyncConnection, CustomerChange], Awaitable[None]]


def etag(row: CustomerRow | CustomerOut) -> str:
    """A strong ETag of the customer's editable state: any change moves updated_at."""
    state = f"{row.id}|{row.email}|{row.name}|{row.updated_at.isoformat()}"
    return '"' + hashlib.sha256(state.encode()).hexdigest()[:24] + '"'


def _check_precondition(row: CustomerRow, if_match: str | None) -> None:
    """No If-Match is no condition (a correction's route requires one; an erasure's not)."""
    if if_match is None:
        return
    tags = {tag.strip() for tag in if_match.split(",")}
    if "*" not in tags and etag(row) not in tags:
        raise PreconditionFailed(
            "The customer changed since you read it; read it again and retry the change."
        )


async def _locked(customers: CorrectionRepository, customer_id: int) -> CustomerRow:
    row = await customers.get_for_update(customer_id)
    if row is None:
        raise NotFound(f"No customer with id {customer_id}.")
    return row


async def correct_customer(
    conn: AsyncConnection,
    *,
    customer_id: int,
    patch: CustomerPatch,
    if_match: str,
    credential: str,
    record: RecordChange,
) -> tuple[CustomerDetail, str]:
    """Replace the name and/or email in one transaction, if the caller saw the latest version.

    Returns the customer as it now is and its new ETag. `conn` has no transaction yet.
    """
    async with write_transaction(conn):
        customers = CorrectionRepository(conn)
        row = await _locked(customers, customer_id)
        if row.email == tombstone_email(row.id):
            raise Gone(f"Customer {customer_id} was erased; there is nothing left to correct.")
        _check_precondition(row, if_match)
        wanted = {"email": patch.email, "name": patch.name}
        values = {k: v for k, v in wanted.items() if v is not None and v != getattr(row, k)}
        if "email" in values:
            await _refuse_taken_email(customers, values["email"], customer_id)
        if values:
            now = utcnow()
            try:
                row = await customers.overwrite(customer_id, values=values, now=now)
            except IntegrityError:  # a capture took the email since the check above
                raise _email_taken(None) from None
            change = CustomerChange(
                "customer.corrected", customer_id, tuple(sorted(values)), credential, now
            )
            await record(conn, change)
        return await customer_detail(conn, row), etag(row)


async def _refuse_taken_email(
    customers: CorrectionRepository, email: str, customer_id: int
) -> None:
    owner = await customers.id_by_email(email)
    if owner is not None and owner != customer_id:
        raise _email_taken(owner)


def _email_taken(owner: int | None) -> Conflict:
    who = f"customer {owner}" if owner is not None else "another customer"
    return Conflict(
        f"The email belongs to {who}; two customers cannot share an email. "
        "Correct or erase that customer first."
    )


async def erase_customer(
    conn: AsyncConnection,
    *,
    customer_id: int,
    if_match: str | None,
    credential: str,
    record: RecordChange,
) -> None:
    """Replace the email and name by a tombstone; the purchases stay, for the books.

    Erasing an erased customer changes nothing and records nothing (idempotent).
    """
    async with write_transaction(conn):
        customers = CorrectionRepository(conn)
        row = await _locked(customers, customer_id)
        tombstone = tombstone_email(customer_id)
        if row.email == tombstone:
            return
        _check_precondition(row, if_match)
        now = utcnow()
        await customers.overwrite(
            customer_id, values={"email": tombstone, "name": ERASED_NAME}, now=now
        )
        await customers.forget_customer(customer_id, row.email)
        await record(
            conn, CustomerChange("customer.erased", customer_id, ("email", "name"), credential, now)
        )
