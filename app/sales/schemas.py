"""Request and response bodies: the API contract, validated strictly."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any

import email_validator
import pycountry
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from app.core.columns import CENT

MAX_PRICE = Decimal(1_000_000_000)
MAX_BATCH = 1000
# Text fields: no control characters (PostgreSQL cannot store NUL), and not blank once the
# surrounding whitespace (str.strip's, which is stripped) is gone. The spec states both exactly.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_SPACE = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
PRINTABLE_TEXT = f"^[^{_CONTROL}]*[^{_CONTROL}{_SPACE}][^{_CONTROL}]*$"
SPECIAL_USE_DOMAIN_REFUSED = r"^(?!.*[@.](?:arpa|invalid|local|localhost|onion|test)$)"
# A price given as a string: what the spec documents, exactly (0 <= price < 1e9, 2 decimals).
PRICE_TEXT = r"^[0-9]{1,9}(\.[0-9]{1,2})?$"
PRICE_SHAPE = r"^[0-9]{1,9}(\.[0-9]+)?$"
_PRICE_TEXT = re.compile(PRICE_TEXT)
_PRICE_SHAPE = re.compile(PRICE_SHAPE)


@cache
def iso_4217_codes() -> frozenset[str]:
    return frozenset(currency.alpha_3 for currency in pycountry.currencies)


# The everyday address: an ASCII dot-atom local part and ASCII host labels under a top-level
# domain of letters. email-validator spends ~25 us on any address (a third of a batch's CPU);
# one of this shape is checked here instead, and all others still go to email-validator. Every
# address the fast path accepts, email-validator accepts and normalises the same way:
# tests/test_email_fast_path.py checks that on generated and hand-picked addresses.
PLAIN_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
EMAIL_MAX_LENGTH = 254
LOCAL_PART_MAX_LENGTH = 64
# RFC 6761's special-use domains, which email-validator refuses in any form ("x@a.test").
_SPECIAL_USE_DOMAINS = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)
_SPECIAL_USE_SUFFIXES = tuple(f".{name}" for name in _SPECIAL_USE_DOMAINS)


def is_plain_email(value: str) -> bool:
    match = PLAIN_EMAIL.fullmatch(value)
    if match is None or len(value) > EMAIL_MAX_LENGTH:
        return False
    domain = match["domain"].lower()
    return (
        len(match["local"]) <= LOCAL_PART_MAX_LENGTH
        # "ab--" labels are IDNA's (and "xn--" ones Punycode): email-validator's to judge.
        and "--" not in domain
        and domain not in _SPECIAL_USE_DOMAINS
        and not domain.endswith(_SPECIAL_USE_SUFFIXES)
    )


def normalise_email(value: str) -> str:
    if is_plain_email(value):
        return value.lower()
    return normalise_email_fully(value)


def normalise_email_fully(value: str) -> str:
    """email-validator's verdict and normal form (lower-cased whole: emails compare so)."""
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"not a valid email address: {error}") from None
    return checked.normalized.lower()


# Unicode's Cc (control) and Cs (surrogate) categories, exactly: PostgreSQL cannot store NUL,
# and no text field has any use for the others.
_CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _printable(value: str) -> str:
    if _CONTROL_OR_SURROGATE.search(value):
        raise ValueError("must not contain control characters")
    return value


def _price_input(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError('must be a number or a decimal string such as "12.50"')
    # Plain digits only (no sign, exponent, spaces or "_"): what the spec's pattern allows;
    # the number of decimals and the bounds are then checked, and worded, as for numbers.
    if isinstance(value, str) and not _PRICE_SHAPE.fullmatch(value):
        raise ValueError('must be a decimal string such as "12.50"')
    return value


def _quantity_input(value: Any) -> Any:
    # JSON has one number type: 3.0 is the integer 3 (as JSON Schema says); 2.5 and "3" are not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _price_schema(schema: dict[str, Any]) -> None:
    # What Decimal's constraints mean for a JSON string or number, in JSON Schema terms.
    for keyword in ("type", "decimal_places", "ge", "lt", "pattern"):
        schema.pop(keyword, None)
    schema["anyOf"] = [
        {"type": "string", "pattern": PRICE_TEXT},
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1e9, "multipleOf": 0.01},
    ]


def _currency_schema(schema: dict[str, Any]) -> None:
    schema["enum"] = sorted(iso_4217_codes())


def _to_cents(value: Decimal) -> Decimal:
    # One canonical form, so "12.5", 12.50 and "1.25E1" are the same price (and request hash).
    return value.quantize(CENT)


def _price_text_fast(value: Any, checked: ValidatorFunctionWrapHandler) -> Any:
    """A string of the spec's own price pattern is a valid price whatever the checks below:
    at most 9 digits and 2 decimals (so >= 0, < 1e9, finite), converted as they convert it.

    The checks are four Python functions Pydantic chains after a before-validator (some 8 us
    a price, a quarter of a bulk import's validation); every other input still takes them.
    tests/test_price_fast_path.py holds both paths to the same answers.
    """
    if type(value) is str and _PRICE_TEXT.fullmatch(value):
        return _to_cents(Decimal(value))
    return checked(value)


def _known_currency(value: str) -> str:
    if value not in iso_4217_codes():
        raise ValueError("not an ISO 4217 currency code")
    return value


def _money_text(value: Decimal) -> str:
    return f"{value:.2f}"


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=320),
    AfterValidator(normalise_email),
    Field(
        description="Identifies the customer; compared case-insensitively, stored lower-cased.",
        # email-validator refuses the special-use domains (RFC 6761) whatever their form.
        json_schema_extra={"format": "email", "pattern": SPECIAL_USE_DOMAIN_REFUSED},
    ),
]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_printable),
    Field(json_schema_extra={"pattern": PRINTABLE_TEXT}),
]
Item = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_printable),
    Field(json_schema_extra={"pattern": PRINTABLE_TEXT}),
]
Quantity = Annotated[int, Field(ge=1, le=10_000), BeforeValidator(_quantity_input)]
Price = Annotated[
    Decimal,
    BeforeValidator(_price_input),
    Field(
        strict=False,
        ge=0,
        lt=MAX_PRICE,
        decimal_places=2,
        allow_inf_nan=False,
        description='Exact decimal, as a JSON string ("12.50") or number; at most 2 decimals.',
        json_schema_extra=_price_schema,
    ),
    AfterValidator(_to_cents),
    WrapValidator(_price_text_fast),
]
Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    AfterValidator(_known_currency),
    Field(description="ISO 4217 code, upper case.", json_schema_extra=_currency_schema),
]
MoneyOut = Annotated[
    Decimal,
    PlainSerializer(_money_text, return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "pattern": r"^-?\d+\.\d{2}$"}),
]


class StrictModel(BaseModel):
    """Refuses unknown fields and lax coercion (`true` as a number, `"3"` as an integer)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CustomerIn(StrictModel):
    email: Email
    name: Name


class PurchaseIn(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer": {"email": "tim@example.com", "name": "Tim"},
                    "item": "book",
                    "quantity": 1,
                    "unit_price": "12.50",
                    "currency": "EUR",
                }
            ]
        }
    )

    customer: CustomerIn
    item: Item
    quantity: Quantity = 1
    unit_price: Price
    currency: Currency = "EUR"


class BatchIn(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "purchases": [
                        {
                            "customer": {"email": "sue@example.com", "name": "Sue"},
                            "item": "T-shirt",
                            "unit_price": "15.00",
                        },
                        {
                            "customer": {"email": "tim@example.com", "name": "Tim"},
                            "item": "book",
                            "quantity": 2,
                            "unit_price": "12.50",
                            "currency": "EUR",
                        },
                    ]
                }
            ]
        }
    )

    purchases: list[PurchaseIn] = Field(min_length=1, max_length=MAX_BATCH)


class CustomerOut(BaseModel):
    id: int
    email: str
    name: str
    created_at: datetime
    updated_at: datetime


class CustomerDetail(CustomerOut):
    purchase_count: int
    totals: dict[str, MoneyOut] = Field(description="Amount spent per currency.")
    erased: bool = Field(False, description="True once the customer's data was erased.")


class PurchaseOut(BaseModel):
    id: int
    customer: CustomerOut
    item: str
    quantity: int
    unit_price: MoneyOut
    currency: str
    total: MoneyOut
    purchased_at: datetime


class CapturedPurchase(PurchaseOut):
    customer_created: bool = Field(description="True when this request added the customer.")


class BatchOut(BaseModel):
    purchases: list[CapturedPurchase]
    customers_created: int
    customers_updated: int


class PurchasePage(BaseModel):
    items: list[PurchaseOut]
    next_cursor: str | None


class CustomerPage(BaseModel):
    items: list[CustomerOut]
    next_cursor: str | None


# --- corrections (PATCH /customers/{id}) ---


def _patch_schema(schema: dict[str, Any]) -> None:
    # Each field may be left out, but not sent as null, and one of them must be there.
    for prop in schema.get("properties", {}).values():
        choices = [c for c in prop.pop("anyOf", []) if c.get("type") != "null"]
        if choices:
            prop.update(choices[0])
        prop.pop("default", None)
    schema["minProperties"] = 1
    schema["examples"] = [{"name": "Tim Berners"}, {"email": "tim@example.org"}]


class CustomerPatch(StrictModel):
    """A correction: the fields given are replaced, validated and normalised as at capture."""

    model_config = ConfigDict(json_schema_extra=_patch_schema)

    email: Email | None = None
    name: Name | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> CustomerPatch:
        if any(getattr(self, field) is None for field in self.model_fields_set):
            raise ValueError("a field given must not be null; leave it out to keep it")
        if self.email is None and self.name is None:
            raise ValueError("give a name, an email or both")
        return self


class Health(BaseModel):
    status: str
