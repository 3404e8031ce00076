"""What a caller is shown of stored rows: the response models built from them, and the
tombstone an erased customer shows instead of its email and name."""

from __future__ import annotations

from app.sales.repository.rows import CustomerRow, PurchaseRow
from app.sales.schemas import CustomerOut, PurchaseOut


def customer_out(row: CustomerRow) -> CustomerOut:
    return CustomerOut(
        id=row.id,
        email=row.email,
        name=row.name,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def purchase_out(row: PurchaseRow) -> PurchaseOut:
    return PurchaseOut(
        id=row.id,
        customer=customer_out(row.customer),
        item=row.item,
        quantity=row.quantity,
        unit_price=row.unit_price,
        currency=row.currency,
        total=row.total,
        purchased_at=row.purchased_at,
    )


def tombstone_email(customer_id: int) -> str:
    """What an erased customer's email becomes: unique per customer, and under `.invalid`,
    which capture refuses, so no later purchase can ever match it."""
    return f"erased-{customer_id}@invalid"


ERASED_NAME = "(erased)"
