"""The price fast path: a string it takes gets the price the full checks give, and every
other input the full checks' own answer (value or errors)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError, WrapValidator

from app.sales.schemas import PRICE_SHAPE, PRICE_TEXT, Price

FAST = TypeAdapter(Price)
# The same annotation without its outermost validator, the fast path: the checks alone.
METADATA = get_args(Price)[1:]
assert isinstance(METADATA[-1], WrapValidator)
CHECKED: TypeAdapter[Decimal] = TypeAdapter(Annotated[Decimal, *METADATA[:-1]])


def answer(adapter: TypeAdapter[Any], value: Any) -> tuple[str, Any]:
    try:
        price = adapter.validate_python(value)
    except ValidationError as error:
        return "refused", json.loads(error.json(include_url=False))  # ctx's errors as text
    return "price", (type(price), str(price))


@settings(max_examples=300, deadline=None)
@given(st.from_regex(PRICE_TEXT, fullmatch=True))
def test_a_price_string_of_the_spec_pattern_is_the_price_the_checks_give(text: str) -> None:
    assert answer(FAST, text) == answer(CHECKED, text)
    assert answer(FAST, text)[0] == "price"


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(PRICE_SHAPE, fullmatch=True)
    | st.text(max_size=14)
    | st.integers()
    | st.floats()
    | st.decimals()
    | st.booleans()
    | st.none()
)
def test_any_other_input_gets_the_checks_own_answer(value: Any) -> None:
    assert answer(FAST, value) == answer(CHECKED, value)


@pytest.mark.parametrize(
    "value",
    [
        "12.50",
        "0",
        "0.00",
        "000000012.5",
        "999999999.99",
        "1000000000",
        "1.001",
        "12.50\n",
        " 12.50",
        "12,50",
        "-1",
        "+1",
        "1e3",
        "NaN",
        "",
        "١٢",  # Arabic-Indic digits: not [0-9]
        12.5,
        -0.001,
        1e9,
        float("nan"),
        float("inf"),
        Decimal("12.345"),
        Decimal("-0"),
        True,
        None,
        ["12.50"],
    ],
)
def test_hand_picked_prices_get_the_checks_own_answer(value: Any) -> None:
    assert answer(FAST, value) == answer(CHECKED, value)
