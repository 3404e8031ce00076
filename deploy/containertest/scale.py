"""The `scale` profile of compose.yaml, run for real: PgBouncer in transaction pooling, three app
replicas pointed at it, HAProxy in front (docs/scaling.md).

Run after the default stack's steps, with its `app` stopped, so every PostgreSQL backend of the
database is PgBouncer's: a purchase through the proxy is stored once, requests reach every
replica, captures still answer 201 with one replica stopped, and under 48 concurrent captures
PostgreSQL never shows more backends than PgBouncer's pool.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .checks import purchase
from .common import StepFailed, free_port, out, run, step, wait_until
from .compose import Stack

REPLICAS = 3
POOL_SIZE = 4  # PgBouncer's default_pool_size here: small, so that the bound shows
CONCURRENT = 48  # three replicas' 16 pooled connections each


def pgbouncer_address(stack: Stack) -> str:
    """PgBouncer's address on the compose network, as PostgreSQL sees its connections come."""
    addresses = out(
        [
            "podman",
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            stack.container("pgbouncer"),
        ]
    ).split()
    if not addresses:
        raise StepFailed("PgBouncer's container has no address on the compose network")
    return str(ipaddress.ip_address(addresses[0]))


def backends(stack: Stack, pgbouncer: str) -> int:
    """Client backends on the `purchases` database that PgBouncer (at `pgbouncer`) opened.

    The unscaled `app` service talks to PostgreSQL directly, and folds the statistics' rollup
    every 2 s even when no request reaches it: its connection is not PgBouncer's to bound.
    """
    sql = (  # the address went through ipaddress: no quote can be in it
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'purchases' "  # noqa: S608
        f"AND backend_type = 'client backend' AND client_addr = '{pgbouncer}'"
    )
    db = stack.container("db")
    password = stack.env["POSTGRES_PASSWORD"]
    psql = ["psql", "-h", "127.0.0.1", "-U", "purchases", "-d", "purchases", "-Atc", sql]
    said = out(["podman", "exec", "-e", f"PGPASSWORD={password}", db, *psql])
    return int(said)


def served_by(stack: Stack, name: str) -> int:
    """How many access lines the replica container `name` logged."""
    logs = run(["podman", "logs", name], capture=True, quiet=True).stdout.decode(errors="replace")
    count = 0
    for line in logs.splitlines():
        with contextlib.suppress(ValueError):
            count += json.loads(line).get("event") == "request"
    return count


def scale_steps(stack: Stack) -> None:
    proxy_port = free_port()
    proxy = f"http://127.0.0.1:{proxy_port}"
    stack.env |= {
        "APP_REPLICAS": str(REPLICAS),
        "PGBOUNCER_POOL_SIZE": str(POOL_SIZE),
        "PROXY_PORT": str(proxy_port),
    }

    with step(f"scale profile up: pgbouncer, {REPLICAS} app replicas, proxy on {proxy_port}"):
        stack.compose_run("--profile", "scale", "up", "--detach", timeout=600)
        names = [str(item["Names"][0]) for item in stack.replicas().get("app-replica", [])]
        print(f"    replicas: {', '.join(names)}")
        if len(names) != REPLICAS:
            raise StepFailed(f"wanted {REPLICAS} app replicas, got {names}")

    with step("the proxy answers, every replica healthy"):
        for name in names:
            wait_until(
                f"{name}'s health check",
                lambda name=name: (
                    run(  # type: ignore[misc]
                        ["podman", "healthcheck", "run", name],
                        check=False,
                        capture=True,
                        quiet=True,
                    ).returncode
                    == 0
                ),
                180,
            )
        wait_until("GET /readyz through the proxy", lambda: _ready(stack, proxy), 60)

    with step("a purchase through the proxy is stored once; requests reach every replica"):
        key = {"Idempotency-Key": f"scale-{secrets.token_hex(4)}"}
        body = purchase("scaled", "3.00") | {
            "customer": {"email": "sue@example.com", "name": "Sue"}
        }
        first = stack.request(
            "POST", "/api/v1/purchases", body, expect=201, base=proxy, headers=key
        )
        again = stack.request(
            "POST", "/api/v1/purchases", body, expect=201, base=proxy, headers=key
        )
        if again["id"] != first["id"]:
            raise StepFailed(f"the replay stored another purchase: {first['id']} != {again['id']}")
        for _ in range(REPLICAS * 6):
            stack.request("GET", "/readyz", base=proxy)
        stored = stack.request(
            "GET", "/api/v1/purchases?customer_email=sue@example.com", auth=True, base=proxy
        )
        if len(stored["items"]) != 1:
            raise StepFailed(f"wanted one stored purchase, got {stored['items']}")
        spread = {name: served_by(stack, name) for name in names}
        print(f"    stored once (id {first['id']}); access lines per replica: {spread}")
        if not all(spread.values()):
            raise StepFailed(f"the proxy left a replica without requests: {spread}")

    with step("one replica stopped: captures still answer 201 through the others"):
        run(["podman", "stop", "--time", "10", names[0]], capture=True)
        for n in range(20):
            stack.request(
                "POST", "/api/v1/purchases", purchase(f"while one is down {n}", "1.00"),
                expect=201, base=proxy,
            )  # fmt: skip
        print(f"    {names[0]} stopped; 20 captures through the proxy, all 201")

    with step(f"{CONCURRENT} concurrent captures: at most {POOL_SIZE} PostgreSQL backends"):
        peak, done = _under_load(stack, proxy)
        print(f"    {done} captures answered 201; peak backends on the database: {peak}")
        if peak > POOL_SIZE:
            raise StepFailed(f"{peak} backends, more than PgBouncer's pool of {POOL_SIZE}")
        if peak == 0:
            raise StepFailed("no backend seen under load: the sampling saw nothing")


def _ready(stack: Stack, proxy: str) -> bool:
    return stack.request("GET", "/readyz", base=proxy) is not None


def _under_load(stack: Stack, proxy: str) -> tuple[int, int]:
    """(peak backends sampled, captures answered) while CONCURRENT clients capture at once."""
    peak = 0
    loading = threading.Event()
    loading.set()
    pgbouncer = pgbouncer_address(stack)

    def sample() -> None:
        nonlocal peak
        while loading.is_set():
            peak = max(peak, backends(stack, pgbouncer))

    def capture(n: int) -> Any:
        for i in range(8):
            stack.request(
                "POST", "/api/v1/purchases", purchase(f"load {n}-{i}", "2.00"),
                expect=201, base=proxy,
            )  # fmt: skip
        return n

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
            done = len(list(pool.map(capture, range(CONCURRENT)))) * 8
    finally:
        loading.clear()
        sampler.join(timeout=30)
    return peak, done
