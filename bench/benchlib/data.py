"""Generated purchases, and the growth of the tables to millions of rows."""

# ruff: noqa: S608, S311

from __future__ import annotations

import json
import random
import time
from typing import Any

from .common import FIRST_NAMES, ITEMS
from .postgres import psql


def email_for(prefix: str, n: int) -> str:
    """The Lua script's addresses: every 4th in mixed case."""
    if n % 4 == 0:
        return f"Customer.{n}@{prefix.upper()}.Example.COM"
    return f"customer.{n}@{prefix}.example.com"


def purchases(total: int, distinct: int, prefix: str, *, seed: int = 5) -> list[dict[str, Any]]:
    """`total` contract-shaped purchases over `distinct` emails, each used total/distinct times,
    shuffled (so a batch holds a few repeats, whose last name wins)."""
    rng = random.Random(seed)
    numbers = [i % distinct for i in range(total)]
    rng.shuffle(numbers)
    return [
        {
            "customer": {"email": email_for(prefix, n), "name": f"{rng.choice(FIRST_NAMES)} {n}"},
            "item": rng.choice(ITEMS),
            "quantity": rng.randint(1, 5),
            "unit_price": f"{rng.randint(0, 199)}.{rng.randint(0, 99):02d}",
            "currency": "EUR",
        }
        for n in numbers
    ]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def seed_growth(database: str, customers: int, purchases_count: int) -> dict[str, float]:
    """Set-based: one INSERT … SELECT per table into the real tables, then VACUUM ANALYZE."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    psql(
        "INSERT INTO customer (email, name, created_at, updated_at) "
        "SELECT 'seed.' || g || '@seed.example.com', 'Seed ' || g, "
        "now() - make_interval(mins => g), now() - make_interval(mins => g) "
        f"FROM generate_series(1, {customers}) AS g",
        database,
    )
    timings["customers_s"] = time.monotonic() - started
    started = time.monotonic()
    # Each seeded customer gets purchases_count / customers of them, spread through the table.
    psql(
        "INSERT INTO purchase (customer_id, item, quantity, unit_price, currency, total, "
        "purchased_at) "
        "SELECT c.id, 'seeded item', 1 + g % 5, (g % 20000) / 100.0, 'EUR', "
        "(g % 20000) / 100.0 * (1 + g % 5), now() - make_interval(secs => g) "
        f"FROM generate_series(0, {purchases_count - 1}) AS g "
        "JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM customer "
        "WHERE email LIKE 'seed.%@seed.example.com') AS c "
        f"ON c.k = g % {customers}",
        database,
    )
    timings["purchases_s"] = time.monotonic() - started
    started = time.monotonic()
    psql("VACUUM ANALYZE customer", database)
    psql("VACUUM ANALYZE purchase", database)
    psql("CHECKPOINT", database)
    timings["vacuum_s"] = time.monotonic() - started
    return timings
