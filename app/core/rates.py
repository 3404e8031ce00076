"""A rate limit as APP_RATE_LIMIT_CAPTURES writes it: parsed with the settings, enforced by
app.core.ratelimit (kept apart so that reading the settings imports neither Redis nor Starlette).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_RATE = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*(?:burst\s+(\d+))?\s*$",
    re.IGNORECASE,
)
_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: int

    def __str__(self) -> str:
        return f"{self.per_second:g}/s burst {self.burst}"


def parse_rate(text: str) -> Rate | None:
    """`20/s burst 40`, `600/min` (burst: the count given), or `off` (None)."""
    if text.strip().lower() in ("off", "none", "0"):
        return None
    match = _RATE.match(text)
    if not match:
        raise ValueError("expected e.g. '20/s burst 40', '600/min' or 'off'")
    count = float(match[1])
    per_second = count / _PERIOD_SECONDS[match[2][0].lower()]
    burst = int(match[3]) if match[3] else max(1, math.ceil(count))
    if per_second <= 0 or burst < 1:
        raise ValueError("the rate and the burst must be above zero")
    return Rate(per_second, burst)
