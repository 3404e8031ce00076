"""A file's row as the API's purchase: one definition of what a valid purchase is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, NamedTuple

from pydantic import AwareDatetime, BeforeValidator, Field, ValidationError

from app.core.messages import friendly_message
from app.imports.formats import COLUMNS, Record
from app.sales.schemas import PurchaseIn


def _iso_text(value: Any) -> Any:
    # Lax datetime parsing would take a number as Unix time: only ISO 8601 text is a date here.
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date and time with an offset")
    return value


PurchasedAt = Annotated[AwareDatetime, BeforeValidator(_iso_text), Field(strict=False)]


class ImportedPurchase(PurchaseIn):
    """The API's purchase plus when it was made: the API stamps the time it receives a
    purchase, a file carries history (and without the column, the import stamps it too)."""

    purchased_at: PurchasedAt | None = None


class Row(NamedTuple):
    """A valid row, normalised as the API normalises it (email lower-cased, price in cents)."""

    line: int
    email: str
    name: str
    item: str
    quantity: int
    unit_price: Decimal
    currency: str
    purchased_at: datetime | None


@dataclass(frozen=True, slots=True)
class Reject:
    """A refused row: the row as written, its line, and the field(s) and reason(s)."""

    line: int
    original: Sequence[str]
    field: str
    reason: str


_CUSTOMER_FIELDS = ("email", "name")


def _model_input(fields: Mapping[str, Any], *, text_cells: bool) -> dict[str, Any]:
    """The JSON body the API would have been sent for this row.

    CSV cells are all text: an empty cell is a value not given (the API's default applies), and
    a quantity of digits is the number it spells, as it would be in JSON.
    """
    data: dict[str, Any] = {}
    customer: dict[str, Any] = {}
    for key, value in fields.items():
        if text_cells:
            if value == "":
                continue
            if key == "quantity" and value.isascii() and value.isdigit():
                value = int(value)
        (customer if key in _CUSTOMER_FIELDS else data)[key] = value
    data["customer"] = customer
    return data


def _cells_input(cells: dict[str, str]) -> dict[str, Any]:
    """`_model_input` for the everyday CSV row, every cell filled: built in one go."""
    if "" in cells.values():
        return _model_input(cells, text_cells=True)
    quantity: Any = cells["quantity"]
    data = {
        "customer": {"email": cells["email"], "name": cells["name"]},
        "item": cells["item"],
        "quantity": int(quantity) if quantity.isascii() and quantity.isdigit() else quantity,
        "unit_price": cells["unit_price"],
        "currency": cells["currency"],
    }
    if "purchased_at" in cells:
        data["purchased_at"] = cells["purchased_at"]
    return data


def _field(loc: tuple[int | str, ...]) -> str:
    # ("customer", "email") is the file's "email" column.
    if len(loc) >= 2 and loc[0] == "customer":
        return str(loc[1])
    return ".".join(str(part) for part in loc) or "row"


def check(record: Record, *, text_cells: bool) -> Row | Reject:
    """Validate one row with the API's model; a row the API would refuse is refused."""
    if record.fields is None:
        field, reason = record.problem or ("row", "cannot be read")
        return Reject(record.line, record.original, field, reason)
    if text_cells:  # the header was checked: no unknown column
        data = _cells_input(record.fields)
    else:
        unknown = [key for key in record.fields if key not in COLUMNS]
        if unknown:
            return Reject(record.line, record.original, unknown[0], "is not a known field")
        data = _model_input(record.fields, text_cells=False)
    try:
        p = ImportedPurchase.model_validate(data)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        return Reject(
            record.line,
            record.original,
            ";".join(_field(problem["loc"]) for problem in problems),
            "; ".join(friendly_message(problem) for problem in problems),
        )
    return Row(
        record.line,
        p.customer.email,
        p.customer.name,
        p.item,
        p.quantity,
        p.unit_price,
        p.currency,
        p.purchased_at,
    )
