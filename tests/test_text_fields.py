"""Text fields refuse exactly Unicode's control and surrogate characters."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from app.sales.schemas import CustomerIn

# Every Cc and Cs code point lies in the Basic Multilingual Plane.
BMP = 0x10000


def test_the_refused_characters_are_exactly_unicodes_control_and_surrogate_ones() -> None:
    refused = []
    for code in range(BMP):
        try:
            CustomerIn(email="tim@example.com", name=f"Tim{chr(code)}Tim")
        except ValueError:
            refused.append(code)
    expected = [code for code in range(BMP) if unicodedata.category(chr(code)) in ("Cc", "Cs")]
    assert refused == expected
    assert not [
        code
        for code in range(BMP, sys.maxunicode + 1)
        if unicodedata.category(chr(code)) in ("Cc", "Cs")
    ]


@pytest.mark.parametrize("name", ["Zoë", "李雷", "O'Brien", "Anne-Marie", "🙂 Smile"])
def test_names_in_any_script_are_accepted(name: str) -> None:
    assert CustomerIn(email="tim@example.com", name=name).name == name
