"""Per-client token buckets on the capture endpoints (APP_RATE_LIMIT_CAPTURES).

A request to a capture endpoint needs one token, taken at the edge before its body is read, so
a flood of requests (valid or not) is refused cheaply. A batch then takes one more token per
further purchase it carries once it is validated; that may take the bucket below zero, and the
client waits the debt out before its next request is served. So the long-run rate is the
configured one whatever the batch sizes, and a batch larger than the burst still gets through.

The algorithm is GCRA, the token bucket kept as one number per client: the time at which its
bucket would be full again (its "theoretical arrival time"). Hand-written, because no
maintained library fits: `limits` (behind slowapi) has fixed and sliding windows but no token
bucket, and pyrate-limiter keeps one entry per unit of weight (a batch of 1,000 purchases,
1,000 entries, in Redis a sorted set of them); here a check is a few float operations in
memory, or one Lua script (one round trip) in Redis.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import AppError, problem_response
from app.core.rates import Rate

log = structlog.get_logger(__name__)

CAPTURE_PATHS = frozenset({"/api/v1/purchases", "/api/v1/purchases/batch"})
POLICY = "captures"  # the policy's name in the RateLimit header fields


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int  # whole tokens left (0 when in debt)
    wait_s: float  # refused: until the request would pass; allowed: until the bucket is full


class Buckets(Protocol):
    async def take(self, key: str, *, cost: int, need: int) -> Decision:
        """Takes `cost` tokens if `need` are there; `need=0` takes them whatever is left."""
        ...

    async def close(self) -> None: ...


class MemoryBuckets:
    """This process's buckets: at most `max_keys` clients are remembered. Past that, the full
    buckets are forgotten first (forgetting them changes nothing), then the oldest others."""

    def __init__(
        self, rate: Rate, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = 1.0 / rate.per_second
        self.tolerance = rate.burst * self.interval
        self.max_keys = max_keys
        self.clock = clock
        self._tat: dict[str, float] = {}

    async def take(self, key: str, *, cost: int, need: int) -> Decision:
        now = self.clock()
        tat = max(self._tat.get(key, now), now)
        wait = tat + need * self.interval - self.tolerance - now
        if wait > 0:
            return Decision(False, 0, wait)
        tat += cost * self.interval
        if key not in self._tat and len(self._tat) >= self.max_keys:
            self._forget(now)
        self._tat[key] = tat
        credit = self.tolerance - (tat - now)
        return Decision(True, max(0, int(credit / self.interval + 1e-9)), tat - now)

    def _forget(self, now: float) -> None:
        self._tat = {key: tat for key, tat in self._tat.items() if tat > now}
        for key in list(self._tat)[: max(0, len(self._tat) - self.max_keys * 9 // 10)]:
            del self._tat[key]

    async def close(self) -> None:
        return None


# GCRA in one atomic step, on Redis's clock (the same for every replica). Integer microseconds.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local cost, need = tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat + need * interval - tolerance - now
if wait > 0 then return {0, wait} end
tat = tat + cost * interval
local ttl_ms = math.max(1, math.ceil((tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', ttl_ms)
return {1, tat - now}
"""


class RedisBuckets:
    """Buckets in Redis, shared by every process and replica using the same Redis; each key
    expires when its bucket is full again, so Redis holds only clients that are limited."""

    def __init__(self, rate: Rate, url: str, *, namespace: str = "purchase-capture") -> None:
        self.interval_us = round(1_000_000 / rate.per_second)
        self.tolerance_us = rate.burst * self.interval_us
        self.prefix = f"{namespace}:rate:{POLICY}:"
        self.redis = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.script = self.redis.register_script(_GCRA_LUA)

    async def take(self, key: str, *, cost: int, need: int) -> Decision:
        args = [self.interval_us, self.tolerance_us, cost, need]
        allowed, micros = await self.script(keys=[self.prefix + key], args=args)
        if not allowed:
            return Decision(False, 0, int(micros) / 1e6)
        credit = self.tolerance_us - int(micros)
        return Decision(True, max(0, credit // self.interval_us), int(micros) / 1e6)

    async def close(self) -> None:
        await self.redis.aclose()


class RateLimited(AppError):
    status = 429
    title = "Too many requests"


class CaptureLimiter:
    """The capture endpoints' limit: the buckets, and what a refusal looks like."""

    def __init__(self, rate: Rate, buckets: Buckets) -> None:
        self.rate = rate
        self.buckets = buckets
        self.policy = (
            f'"{POLICY}";q={rate.burst};w={max(1, math.ceil(rate.burst / rate.per_second))}'
        )

    async def take(self, scope: Scope, *, cost: int, need: int) -> RateLimited | None:
        """None if the client may go on, else the error to answer. Without its store (Redis
        down) the limit is not applied: captures matter more than the limit."""
        try:
            decision = await self.buckets.take(client_key(scope), cost=cost, need=need)
        except (RedisError, OSError) as error:
            log.warning("rate limit store unavailable; not limiting", error=type(error).__name__)
            return None
        if decision.allowed:
            return None
        wait = max(1, math.ceil(decision.wait_s))
        return RateLimited(
            f"Too many purchases from this address: the limit is {self.rate}. Retry in {wait} s.",
            headers={
                "Retry-After": str(wait),
                "RateLimit-Policy": self.policy,
                "RateLimit": f'"{POLICY}";r=0;t={wait}',
            },
        )


def client_key(scope: Scope) -> str:
    """The client's address (after a trusted proxy's X-Forwarded-For); IPv6 by its /64, the
    block one subscriber usually holds, so rotating addresses inside it does not help."""
    client = scope.get("client")
    host = client[0] if client else "unknown"
    if ":" in host:
        try:
            return str(ipaddress.IPv6Network(f"{host}/64", strict=False).network_address)
        except ValueError:
            return host
    return host


class RateLimitMiddleware:
    """Takes a capture request's first token before anything reads its body."""

    def __init__(self, app: ASGIApp, limiter: CaptureLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in CAPTURE_PATHS:
            refused = await self.limiter.take(scope, cost=1, need=1)
            if refused is not None:
                response = problem_response(
                    refused.status,
                    refused.detail,
                    title=refused.title,
                    instance=scope["path"],
                    headers=refused.headers,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def charge_batch(scope: Scope, limiter: CaptureLimiter | None, purchases: int) -> None:
    """Takes a validated batch's further purchases (its first was taken at the edge)."""
    if limiter is None or purchases <= 1:
        return
    refused = await limiter.take(scope, cost=purchases - 1, need=0)
    if refused is not None:
        raise refused
