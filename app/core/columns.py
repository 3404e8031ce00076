"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Dialect,
    Integer,
    Numeric,
    SQLColumnExpression,
    func,
    type_coerce,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

CENT = Decimal("0.01")

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Money(TypeDecorator[Decimal]):
    """Exact amounts with two decimals: NUMERIC on PostgreSQL, integer cents on SQLite.

    SQLite stores NUMERIC values with a fraction as binary floats, so sums there could drift by
    a cent; integer cents keep every figure, including SUM(), exact.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int = 12, scale: int = 2) -> None:
        if scale != 2:
            raise ValueError("Money always has two decimal places")
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, 2, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = Decimal(value).quantize(CENT)
        if dialect.name == "sqlite":
            return int(value.scaleb(2))
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-2).quantize(CENT)
        return Decimal(value).quantize(CENT)


# SQLite's SUM() of integers fails with "integer overflow" past 2**63 - 1 cents: about 9,200
# purchases of the largest total (under 10**15 cents). `money_sum` adds the cents in three parts
# of five decimal digits each, which `summed_money` puts together in Python, exactly. A part
# stays under 10**5, so its SUM() overflows only past 9 * 10**13 rows, more than a SQLite file
# can hold (2**48 bytes at most, and a purchase row takes more than 3 of them).
SUM_PART = 10**5


def money_sum(column: SQLColumnExpression[Decimal], dialect: str) -> list[ColumnElement[Any]]:
    """SUM(column) of a Money column, as the expressions `summed_money` reads back exactly."""
    if dialect != "sqlite":
        return [func.sum(column)]  # NUMERIC sums exactly, with no bound worth the name
    cents = type_coerce(column, BigInteger)
    # SQLite's `/` of two integers truncates, and its `%` keeps the dividend's sign, so that
    # cents == high * 10**10 + middle * 10**5 + low for any integer.
    upper = cents.op("/")(SUM_PART)
    return [
        func.sum(cents.op("%")(SUM_PART)),
        func.sum(upper.op("%")(SUM_PART)),
        func.sum(upper.op("/")(SUM_PART)),
    ]


def summed_money(parts: Sequence[Any], dialect: str) -> Decimal:
    """The amount from what the expressions of `money_sum` returned."""
    if dialect != "sqlite":
        return Decimal(parts[0])
    return Decimal(cents_from_parts(parts)).scaleb(-2).quantize(CENT)


def cents_from_parts(parts: Sequence[Any]) -> int:
    """Cents from sums of their parts of five digits, lowest first (as `money_sum` splits
    them, and the statistics' rollup keeps them)."""
    return sum(int(part or 0) * SUM_PART**power for power, part in enumerate(parts))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both databases (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
