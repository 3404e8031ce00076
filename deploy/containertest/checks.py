"""What a step checks once the stack answers: the API round trip and the JSON logs."""

from __future__ import annotations

import json
from typing import Any

from .common import StepFailed, run
from .compose import Stack


def purchase(item: str, price: str) -> dict[str, Any]:
    return {
        "customer": {"email": "tim@example.com", "name": "Tim"},
        "item": item,
        "quantity": 1,
        "unit_price": price,
        "currency": "EUR",
    }


def check_round_trip(stack: Stack, *, after_restart: bool = False) -> None:
    customers = stack.request("GET", "/api/v1/customers?email=tim@example.com", auth=True)
    purchases = stack.request("GET", "/api/v1/purchases?customer_email=tim@example.com", auth=True)
    items = sorted(p["item"] for p in purchases["items"])
    print(f"    customers: {len(customers['items'])}, purchases: {items}")
    if len(customers["items"]) != 1:
        raise StepFailed(f"wanted exactly one customer, got {customers['items']}")
    if items != ["T-shirt", "book"]:
        raise StepFailed(f"wanted the book and the T-shirt, got {purchases['items']}")
    if after_restart:
        print("    the data survived the app restart")


def check_json_logs(stack: Stack, service: str, *, stderr: bool = False) -> None:
    """Every line `service` wrote to stdout (and to stderr too, if asked) is JSON."""
    logs = run(["podman", "logs", stack.container(service)], capture=True, quiet=True)
    said = logs.stdout + (logs.stderr if stderr else b"")
    lines = [ln for ln in said.decode(errors="replace").splitlines() if ln.strip()]
    bad = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    streams = "stdout and stderr" if stderr else "stdout"
    print(f"    {service}: {len(lines)} {streams} lines, {len(lines) - len(bad)} JSON")
    if not lines:
        raise StepFailed(f"{service} wrote nothing to {streams}")
    if bad:
        raise StepFailed(f"non-JSON log lines from {service}:\n" + "\n".join(bad[:10]))
