"""The compose stack under podman-compose: its containers, its requests, its waits and logs."""

from __future__ import annotations

import json
import re
import secrets
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from .common import (
    APP_IMAGE,
    DEPLOY,
    ENV,
    HAPROXY_STANDIN,
    PG_STANDIN,
    PGBOUNCER_STANDIN,
    PROJECT,
    PY_STANDIN,
    ROOT,
    StepFailed,
    out,
    run,
    wait_until,
)


class Stack:
    def __init__(self, compose_bin: str, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.token = secrets.token_hex(24)
        self.env = {
            **ENV,
            "PYTHON_IMAGE": PY_STANDIN,
            "POSTGRES_IMAGE": PG_STANDIN,
            "APP_IMAGE": APP_IMAGE,
            "APP_PORT": str(port),
            "PGBOUNCER_IMAGE": PGBOUNCER_STANDIN,
            "HAPROXY_IMAGE": HAPROXY_STANDIN,
            "POSTGRES_PASSWORD": secrets.token_hex(24),
            "APP_ADMIN_TOKEN": self.token,
            "PODMAN_COMPAT_HEALTH_TIMEOUT": "240",
        }
        self.compose = [
            compose_bin,
            "--podman-path",
            str(DEPLOY / "podman-compat"),
            "--in-pod",
            "false",
            "-p",
            PROJECT,
            "-f",
            str(ROOT / "compose.yaml"),
        ]

    def compose_run(
        self, *args: str, timeout: float = 900, check: bool = True, capture: bool = False
    ) -> None:
        run([*self.compose, *args], env=self.env, timeout=timeout, check=check, capture=capture)

    def down(self, *, timeout: int, check: bool, capture: bool = False) -> None:
        """compose down -v, the scale profile's containers included."""
        self.compose_run(
            "--profile", "scale", "down", "--volumes", "--timeout", str(timeout),
            timeout=180, check=check, capture=capture,
        )  # fmt: skip

    def containers(self) -> dict[str, dict[str, Any]]:
        """service name -> podman's view of its container (the last, for a replicated one)."""
        return {service: items[-1] for service, items in self.replicas().items()}

    def replicas(self) -> dict[str, list[dict[str, Any]]]:
        """service name -> podman's view of each of its containers."""
        raw = out(
            [
                "podman",
                "ps",
                "--all",
                "--format",
                "json",
                "--filter",
                f"label=io.podman.compose.project={PROJECT}",
            ]
        )
        found: dict[str, list[dict[str, Any]]] = {}
        for item in json.loads(raw or "[]"):
            service = (item.get("Labels") or {}).get("com.docker.compose.service")
            if service:
                found.setdefault(service, []).append(item)
        return found

    def container(self, service: str) -> str:
        try:
            return str(self.containers()[service]["Names"][0])
        except KeyError as exc:
            raise StepFailed(f"no container for service {service}") from exc

    def state(self, service: str) -> tuple[str, int]:
        raw = out(
            [
                "podman",
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                self.container(service),
            ]
        )
        status, code = raw.split()
        return status, int(code)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        auth: bool = False,
        expect: int = 200,
        *,
        base: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One request to the app (or to `base`, the scale profile's proxy, say)."""
        data = json.dumps(body).encode() if body is not None else None
        url = (base or self.base) + path
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (http only)
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        if status != expect:
            raise StepFailed(f"{method} {path}: HTTP {status}, wanted {expect}: {payload[:500]!r}")
        ctype_json = payload[:1] in (b"{", b"[")
        return json.loads(payload) if ctype_json else payload.decode(errors="replace")

    def check_page(self, path: str) -> None:
        """The page answers with HTML, and every asset it names on this server loads."""
        html = str(self.request("GET", path))
        if "<html" not in html.lower():
            raise StepFailed(f"GET {path} did not return a page")
        assets = sorted(set(re.findall(r'(?:src|href)="(/[^/"][^"]*)"', html)))
        for asset in assets:
            self.request("GET", asset)
        print(f"    GET {path}: page and its {len(assets)} assets ({', '.join(assets)})")

    def inspect(self, service: str) -> dict[str, Any]:
        return dict(json.loads(out(["podman", "inspect", self.container(service)]))[0])

    def check_start_order(self) -> None:
        """db healthy before migrate started; migrate finished before app started."""
        db, migrate, app = (self.inspect(s)["State"] for s in ("db", "migrate", "app"))
        health_log = (db.get("Health") or db.get("Healthcheck") or {}).get("Log") or []
        healthy_at = min(
            (h["End"] for h in health_log if h.get("ExitCode") == 0), default=None, key=_ts
        )
        if healthy_at is None:
            raise StepFailed("db never passed its health check")
        zero = _ts(db["StartedAt"])
        print(
            f"    seconds after db started: db healthy {_ts(healthy_at) - zero:.2f}, migrate "
            f"{_ts(migrate['StartedAt']) - zero:.2f} to {_ts(migrate['FinishedAt']) - zero:.2f}"
            f", app started {_ts(app['StartedAt']) - zero:.2f}"
        )
        if (
            not _ts(healthy_at)
            <= _ts(migrate["StartedAt"])
            <= _ts(migrate["FinishedAt"])
            <= _ts(app["StartedAt"])
        ):
            raise StepFailed("the services did not start in the order db -> migrate -> app")

    def check_required_variables(self) -> None:
        for var in ("POSTGRES_PASSWORD", "APP_ADMIN_TOKEN"):
            env = {k: v for k, v in self.env.items() if k != var}
            proc = run(
                [*self.compose, "config"],
                env=env,
                check=False,
                capture=True,
                quiet=True,
                timeout=60,
            )
            said = (proc.stdout + proc.stderr).decode(errors="replace")
            if proc.returncode == 0 or var not in said:
                raise StepFailed(f"compose accepted a missing {var}: {said[-800:]}")
            print(f"    without {var}: refused, naming it")

    def healthy(self, service: str) -> bool:
        name = self.container(service)
        return (
            run(
                ["podman", "healthcheck", "run", name], check=False, capture=True, quiet=True
            ).returncode
            == 0
        )

    def wait_healthy_and_ready(self, timeout: float = 180) -> None:
        wait_until("the app container's health check", lambda: self.healthy("app"), timeout)
        wait_until("GET /readyz", lambda: self.request("GET", "/readyz") is not None, 60)

    def dump_logs(self) -> None:
        for service in ("db", "migrate", "app"):
            try:
                name = self.container(service)
            except StepFailed:
                continue
            print(f"\n---- last log lines of {service} ({name})")
            run(["podman", "logs", "--tail", "40", name], check=False, quiet=True)


def _ts(stamp: str) -> float:
    """podman's RFC 3339 time with nanoseconds (in UTC) -> seconds since the epoch."""
    day, _, clock = stamp.replace("T", " ").partition(" ")
    clock = clock.split(" ")[0].rstrip("Z").split("+")[0]
    whole, _, frac = clock.partition(".")
    parsed = datetime.strptime(f"{day} {whole}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return parsed.timestamp() + float(f"0.{frac or 0}")
