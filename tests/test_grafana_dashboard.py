"""The Grafana dashboard shipped in deploy/grafana: valid JSON in Grafana's dashboard model,
the panels operators need, PromQL that Prometheus's own parser accepts (`promtool check rules`)
and only metrics the service really exposes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import purchase

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "purchase-capture.json"
# Grafana's variables, as a dashboard would expand them.
VARIABLES = {"$__rate_interval": "1m", "$job": ".*"}
SELECTED_METRIC = re.compile(r"([a-z_:][a-z0-9_:]*)\{")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    for variable, value in VARIABLES.items():
        exprs = [expr.replace(variable, value) for expr in exprs]
    return exprs


def test_dashboard_is_a_grafana_dashboard_model(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "purchase-capture"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), ids
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"


def test_dashboard_has_the_operators_panels(dashboard: dict[str, Any]) -> None:
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])

    for wanted in ("request rate", "error ratio", "p50", "p99", "captures per second", "pool"):
        assert wanted in titles, titles


def test_dashboard_queries_parse_as_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{n}", "expr": expr}
                    for n, expr in enumerate(expressions(dashboard))
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.json"  # YAML is a superset of JSON
    path.write_text(json.dumps(rules))

    done = subprocess.run(  # noqa: S603 - a fixed command on a file the test wrote
        ["promtool", "check", "rules", str(path)],  # noqa: S607 - installed from the Makefile
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr


async def test_dashboard_queries_only_metrics_the_service_exposes(
    dashboard: dict[str, Any], client: AsyncClient
) -> None:
    assert (await client.post("/api/v1/purchases", json=purchase())).status_code == 201
    exposed = {
        sample.name
        for family in text_string_to_metric_families((await client.get("/metrics")).text)
        for sample in family.samples
    }

    queried = {name for expr in expressions(dashboard) for name in SELECTED_METRIC.findall(expr)}

    assert queried, "no metric selectors found"
    assert queried <= exposed, queried - exposed
