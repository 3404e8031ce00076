"""The daily statistics as the API shows them."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from app.sales.schemas import MoneyOut


class DayOut(BaseModel):
    date: date
    purchases: int
    revenue: dict[str, MoneyOut] = Field(description="Sum of totals per currency, exact.")
    purchases_by_currency: dict[str, int]


class TotalsOut(BaseModel):
    purchases: int
    revenue: dict[str, MoneyOut]
    purchases_by_currency: dict[str, int]
    average_order_value: dict[str, MoneyOut] = Field(
        description="Revenue / purchases per currency, rounded half-even to the cent."
    )
    new_customers: int = Field(description="Buyers in the range created in the range.")
    returning_customers: int = Field(description="Buyers in the range created before it.")


class DailyStats(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "from": "2026-11-28",
                    "to": "2026-11-29",
                    "tz": "Europe/Berlin",
                    "days": [
                        {
                            "date": "2026-11-28",
                            "purchases": 2,
                            "revenue": {"EUR": "25.00"},
                            "purchases_by_currency": {"EUR": 2},
                        },
                        {
                            "date": "2026-11-29",
                            "purchases": 1,
                            "revenue": {"USD": "5.00"},
                            "purchases_by_currency": {"USD": 1},
                        },
                    ],
                    "totals": {
                        "purchases": 3,
                        "revenue": {"EUR": "25.00", "USD": "5.00"},
                        "purchases_by_currency": {"EUR": 2, "USD": 1},
                        "average_order_value": {"EUR": "12.50", "USD": "5.00"},
                        "new_customers": 1,
                        "returning_customers": 1,
                    },
                }
            ]
        },
    )

    from_: date = Field(alias="from", serialization_alias="from")
    to: date
    tz: str
    days: list[DayOut] = Field(description="One bucket per local day of the range, empty or not.")
    totals: TotalsOut
