"""GET /api/v1/stats/daily: the dashboard's figures and chart, behind the admin credential."""

from __future__ import annotations

import re
from datetime import date
from functools import cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator, BeforeValidator

from app.core.db import ReadConnectionDep
from app.sales.api import problems
from app.sales.auth import require_read
from app.stats import service
from app.stats.schemas import DailyStats

router = APIRouter(prefix="/api/v1", tags=["stats"], dependencies=[Depends(require_read)])


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())  # reads the zone files: once per process


def _known_zone(name: str) -> str:
    # Only names of the IANA database: ZoneInfo would also try a path-like key on disk.
    if name not in _zone_names():
        raise ValueError("not an IANA time zone name, such as 'Europe/Berlin' or 'UTC'")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not an IANA time zone name") from None
    return name


def _calendar_date(value: object) -> object:
    # Pydantic reads a number ("0.0") as a Unix time; the spec's `format: date` is YYYY-MM-DD.
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("a calendar date as YYYY-MM-DD")
    return value


CalendarDate = Annotated[date | None, BeforeValidator(_calendar_date)]

TimeZone = Annotated[
    str,
    Query(max_length=64, description="IANA time zone: where each day begins.", examples=["UTC"]),
    AfterValidator(_known_zone),
]


@router.get(
    "/stats/daily",
    responses=problems(400, 401, 403, 422, 503),
    summary="Purchases, revenue and buyers per local day over a range",
    response_model_by_alias=True,
)
async def daily_stats(
    conn: ReadConnectionDep,
    from_: Annotated[
        CalendarDate,
        Query(alias="from", description="First local day (default: 29 days before `to`)."),
    ] = None,
    to: Annotated[CalendarDate, Query(description="Last local day (default: today).")] = None,
    tz: TimeZone = "UTC",
) -> DailyStats:
    return await service.daily(conn, first=from_, last=to, zone=ZoneInfo(tz))
