"""Use cases: the rules around the SQL. No HTTP here, and no commit (the request owns it)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.db import write_transaction
from app.core.errors import (
    Conflict,
    Gone,
    InvalidCursor,
    NotFound,
    PreconditionFailed,
)
from app.core.metrics import tally
from app.sales.idempotency import Captured, RetryKey, once, utcnow
from app.sales.repository.capture import (
    CaptureRepository,
    NewPurchase,
    Order,
    UpsertedCustomer,
)
from app.sales.repository.corrections import CorrectionRepository
from app.sales.repository.reads import CustomerReadRepository, PurchaseReadRepository
from app.sales.repository.rows import CustomerRow, PurchaseRow
from app.sales.schemas import (
    BatchIn,
    BatchOut,
    CapturedPurchase,
    CustomerDetail,
    CustomerOut,
    CustomerPage,
    CustomerPatch,
    PurchaseIn,
    PurchaseOut,
    PurchasePage,
)


def _customer_out(row: CustomerRow) -> CustomerOut:
    return CustomerOut(
        id=row.id,
        email=row.email,
        name=row.name,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _purchase_out(row: PurchaseRow) -> PurchaseOut:
    return PurchaseOut(
        id=row.id,
        customer=_customer_out(row.customer),
        item=row.item,
        quantity=row.quantity,
        unit_price=row.unit_price,
        currency=row.currency,
        total=row.total,
        purchased_at=row.purchased_at,
    )


def _buyers(purchases: list[PurchaseIn]) -> dict[str, str]:
    """Each distinct buyer's email and name; a later occurrence of an email wins the name
    (dicts keep the last value per key)."""
    return {p.customer.email: p.customer.name for p in purchases}


def _captured(
    p: PurchaseIn,
    *,
    purchase_id: int,
    customer: CustomerOut,
    created: bool,
    total: Decimal,
    now: datetime,
) -> CapturedPurchase:
    """What the caller is told of one stored purchase: its input and what the database gave it."""
    return CapturedPurchase(
        id=purchase_id,
        customer=customer,
        customer_created=created,
        item=p.item,
        quantity=p.quantity,
        unit_price=p.unit_price,
        currency=p.currency,
        total=total,
        purchased_at=now,
    )


def _count_stored(purchases: int, customers: Collection[UpsertedCustomer]) -> tuple[int, int]:
    """(created, updated) customers; all three counts go to the metrics once committed."""
    created = sum(1 for customer in customers if customer.created)
    updated = len(customers) - created
    tally(purchases=purchases, created=created, updated=updated)
    return created, updated


def _batch_out(
    captured: list[CapturedPurchase], customers: Collection[UpsertedCustomer]
) -> BatchOut:
    """What a batch stored, summed up for the caller."""
    created, updated = _count_stored(len(captured), customers)
    return BatchOut(purchases=captured, customers_created=created, customers_updated=updated)


async def _store(conn: AsyncConnection, purchases: list[PurchaseIn]) -> BatchOut:
    """Upsert each distinct customer once, then insert every purchase, in input order."""
    now = utcnow()
    people = _buyers(purchases)
    repository = CaptureRepository(conn)
    if len(people) == 1:
        ((email, name),) = people.items()
        upserted = {email: await repository.upsert(email=email, name=name, now=now)}
    else:
        upserted = await repository.upsert_many(people, now=now)
    stored = await repository.add_many(
        [
            NewPurchase(
                customer_id=upserted[p.customer.email].customer.id,
                item=p.item,
                quantity=p.quantity,
                unit_price=p.unit_price,
                currency=p.currency,
                purchased_at=now,
            )
            for p in purchases
        ]
    )
    # One CustomerOut per customer, shared by that customer's purchases.
    out = {email: _customer_out(customer.customer) for email, customer in upserted.items()}
    captured = [
        _captured(
            p,
            purchase_id=purchase_id,
            customer=out[p.customer.email],
            created=upserted[p.customer.email].created,
            total=total,
            now=now,
        )
        for p, (purchase_id, total) in zip(purchases, stored, strict=True)
    ]
    return _batch_out(captured, upserted.values())


async def _store_autocommit(conn: AsyncConnection, data: PurchaseIn) -> CapturedPurchase:
    """PostgreSQL: the whole capture as one self-committing statement."""
    now = utcnow()
    stored = await CaptureRepository(conn).capture_autocommit(
        email=data.customer.email,
        name=data.customer.name,
        item=data.item,
        quantity=data.quantity,
        unit_price=data.unit_price,
        currency=data.currency,
        now=now,
    )
    _count_stored(1, [stored.customer])
    return _captured(
        data,
        purchase_id=stored.purchase_id,
        customer=_customer_out(stored.customer.customer),
        created=stored.customer.created,
        total=stored.total,
        now=now,
    )


async def capture_purchase(
    conn: AsyncConnection, *, data: PurchaseIn, idempotency_key: RetryKey | None = None
) -> Captured:
    """Store one purchase and upsert its customer; with a key, at most once per key.

    `conn` has no transaction yet. Without a key, PostgreSQL needs only one statement; every
    other case runs its statements in one transaction.
    """
    if idempotency_key is None and conn.dialect.name == "postgresql":
        return Captured((await _store_autocommit(conn, data)).model_dump_json(), False)

    async def store() -> tuple[str, int]:
        purchase = (await _store(conn, [data])).purchases[0]
        return purchase.model_dump_json(), purchase.id

    async with write_transaction(conn):
        if idempotency_key is None:
            return Captured((await store())[0], False)
        return await once(conn, idempotency_key, request=data.model_dump_json(), store=store)


async def capture_batch(
    conn: AsyncConnection, *, data: BatchIn, idempotency_key: RetryKey | None = None
) -> Captured:
    """All of the batch or nothing; with a key, at most once per key. `conn` has no
    transaction yet: without a key PostgreSQL needs only one statement, every other case runs
    several in one transaction."""
    if idempotency_key is None and conn.dialect.name == "postgresql":
        batch = await _store_many_autocommit(conn, data.purchases)
        return Captured(batch.model_dump_json(), False)

    async def store() -> tuple[str, None]:
        return (await _store(conn, data.purchases)).model_dump_json(), None

    async with write_transaction(conn):
        if idempotency_key is None:
            return Captured((await store())[0], False)
        return await once(conn, idempotency_key, request=data.model_dump_json(), store=store)


async def _store_many_autocommit(conn: AsyncConnection, purchases: list[PurchaseIn]) -> BatchOut:
    now = utcnow()
    orders = [
        Order(p.customer.email, p.item, p.quantity, p.unit_price, p.currency) for p in purchases
    ]
    stored = await CaptureRepository(conn).capture_many_autocommit(
        _buyers(purchases), orders, now=now
    )
    customers = {s.customer.customer.id: s.customer for s in stored}
    # One CustomerOut per customer, shared by that customer's purchases.
    out = {key: _customer_out(customer.customer) for key, customer in customers.items()}
    captured = [
        _captured(
            p,
            purchase_id=s.purchase_id,
            customer=out[s.customer.customer.id],
            created=s.customer.created,
            total=s.total,
            now=now,
        )
        for p, s in zip(purchases, stored, strict=True)
    ]
    return _batch_out(captured, customers.values())


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        prefix, _, value = text.partition(":")
        last_id = int(value)
        if prefix != "id" or not 0 < last_id < 2**63:
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("The cursor is not one this API returned.") from None
    return last_id


def _next_cursor(ids: list[int], limit: int) -> str | None:
    return encode_cursor(ids[-1]) if len(ids) == limit else None


async def list_purchases(
    conn: AsyncConnection, *, customer_email: str | None, cursor: str | None, limit: int
) -> PurchasePage:
    rows = await PurchaseReadRepository(conn).page(
        customer_email=customer_email, before_id=decode_cursor(cursor), limit=limit
    )
    return PurchasePage(
        items=[_purchase_out(row) for row in rows],
        next_cursor=_next_cursor([row.id for row in rows], limit),
    )


async def get_purchase(conn: AsyncConnection, *, purchase_id: int) -> PurchaseOut:
    row = await PurchaseReadRepository(conn).get(purchase_id)
    if row is None:
        raise NotFound(f"No purchase with id {purchase_id}.")
    return _purchase_out(row)


async def list_customers(
    conn: AsyncConnection,
    *,
    email: str | None,
    cursor: str | None,
    limit: int,
    email_prefix: str | None = None,
) -> CustomerPage:
    rows = await CustomerReadRepository(conn).page(
        email=email, email_prefix=email_prefix, before_id=decode_cursor(cursor), limit=limit
    )
    return CustomerPage(
        items=[_customer_out(row) for row in rows],
        next_cursor=_next_cursor([row.id for row in rows], limit),
    )


async def get_customer(conn: AsyncConnection, *, customer_id: int) -> CustomerDetail:
    row = await CustomerReadRepository(conn).get(customer_id)
    if row is None:
        raise NotFound(f"No customer with id {customer_id}.")
    return await _detail(conn, row)


async def _detail(conn: AsyncConnection, row: CustomerRow) -> CustomerDetail:
    count, totals = await CustomerReadRepository(conn).totals(row.id)
    return CustomerDetail(
        **_customer_out(row).model_dump(),
        purchase_count=count,
        totals=totals,
        erased=row.email == tombstone_email(row.id),
    )


# --- corrections and erasure of a customer ---


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


def tombstone_email(customer_id: int) -> str:
    """What an erased customer's email becomes: unique per customer, and under `.invalid`,
    which capture refuses, so no later purchase can ever match it."""
    return f"erased-{customer_id}@invalid"


ERASED_NAME = "(erased)"


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
        return await _detail(conn, row), etag(row)


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
