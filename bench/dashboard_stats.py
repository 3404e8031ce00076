"""The dashboard's read of issue 14: GET /api/v1/stats/daily over 90 days on the grown database.

`bench/run.py` calls `time_daily_stats` once the growth seed (1M customers, 3M purchases) is in,
against the service it is running, and reports the median against `TARGET_STATS_MS`.
"""

# An http:// URL to our own loopback port (S310).
# ruff: noqa: S310

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
import urllib.error
import urllib.request

TARGET_STATS_MS = 200.0
STATS_DAYS = 90
STATS_RUNS = 5


def time_daily_stats(
    base_url: str, token: str, *, days: int = STATS_DAYS, runs: int = STATS_RUNS
) -> tuple[float, int]:
    """(median milliseconds, purchases counted) of `runs` requests for the `days` ending today
    in Europe/Berlin (a zone with DST, as the owners would use it), after one unmeasured one.

    A refused request (a 503 when the query outlasts APP_DB_STATEMENT_TIMEOUT) still counts
    its time, with -1 purchases: the figure then shows how far off the target it is.
    """
    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=days - 1)
    url = f"{base_url}/api/v1/stats/daily?from={first}&to={today}&tz=Europe/Berlin"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    timings: list[float] = []
    purchases = 0
    for attempt in range(runs + 1):
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                purchases = int(json.loads(response.read())["totals"]["purchases"])
        except urllib.error.HTTPError:
            purchases = -1
        if attempt:
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), purchases
