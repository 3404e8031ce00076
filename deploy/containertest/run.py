"""The test, step by step (see deploy/container_test.py for what each step proves)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from .checks import check_json_logs, check_round_trip, purchase
from .common import (
    APP_IMAGE,
    HAPROXY_STANDIN,
    PG_STANDIN,
    PGBOUNCER_STANDIN,
    PROJECT,
    PY_STANDIN,
    TIMINGS,
    StepFailed,
    free_port,
    out,
    print_timings,
    run,
    step,
)
from .compose import Stack
from .images import (
    build_postgres_standin,
    build_python_standin,
    build_scale_standins,
    ensure_packages,
    find_podman_compose,
)
from .scale import scale_steps


def main() -> int:
    compose_bin = ""
    stack: Stack | None = None
    failed = False
    keep = os.environ.get("CONTAINER_TEST_KEEP") == "1"

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        with step("prerequisites (Debian packages, podman-compose)"):
            ensure_packages()
            compose_bin = find_podman_compose()
            print(
                "    "
                + out(["podman", "--version"])
                + ", "
                + out([compose_bin, "--version"]).splitlines()[0]
            )
        with step(f"stand-in base image {PY_STANDIN}") as notes:
            notes.append("built with debootstrap" if build_python_standin() else "cached")
        with step(f"stand-in base image {PG_STANDIN}") as notes:
            notes.append("built with debootstrap" if build_postgres_standin() else "cached")
        with step(f"stand-in images {PGBOUNCER_STANDIN}, {HAPROXY_STANDIN}") as notes:
            notes.append("built with debootstrap" if build_scale_standins() else "cached")

        port = int(os.environ.get("APP_PORT") or free_port())
        stack = Stack(compose_bin, port)
        with step("clean up leftovers of an earlier run"):
            stack.down(timeout=5, check=False, capture=True)

        with step("build the real Dockerfile (compose build, PYTHON_IMAGE=stand-in)"):
            stack.compose_run("build", "app", timeout=1500)
            # Every code change leaves the previous build's layers untagged; drop the old ones
            # (the layer cache of the last day stays, and uv's download cache always does).
            run(
                ["podman", "image", "prune", "--force", "--filter", "until=24h"],
                quiet=True,
                capture=True,
                check=False,
            )
            user = out(["podman", "image", "inspect", "--format", "{{.Config.User}}", APP_IMAGE])
            health = out(
                [
                    "podman",
                    "image",
                    "inspect",
                    "--format",
                    "{{json .Config.Healthcheck}}",
                    APP_IMAGE,
                ]
            )
            print(f"    image user: {user}; healthcheck: {health}")
            if user.split(":")[0] in ("", "0", "root"):
                raise StepFailed("the image runs as root")
            probe = run(
                [
                    "podman",
                    "run",
                    "--rm",
                    "--entrypoint",
                    "sh",
                    APP_IMAGE,
                    "-c",
                    "command -v gcc cc make pip uv; python -c 'import importlib.util as u;"
                    ' print(*(m for m in ("pip", "uv", "pytest", "mypy", "ruff")'
                    " if u.find_spec(m)))'; exit 0",
                ],
                capture=True,
                quiet=True,
            )
            if probe.stdout.strip():
                raise StepFailed(f"build or dev tools in the image: {probe.stdout.decode()}")
            print("    no gcc, cc, make, pip, uv, pytest, mypy or ruff in the runtime image")
            env = json.loads(
                out(["podman", "image", "inspect", "--format", "{{json .Config.Env}}", APP_IMAGE])
            )
            baked = [
                e.split("=")[0]
                for e in env
                if e.startswith(("APP_ADMIN_TOKEN=", "APP_DATABASE_URL=", "POSTGRES_"))
            ]
            if baked:
                raise StepFailed(f"secrets or their defaults baked into the image: {baked}")
            probe_name = f"{PROJECT}-no-token"
            try:
                refused = run(
                    [
                        "podman",
                        "run",
                        "--rm",
                        "--name",
                        probe_name,
                        "-e",
                        "WEB_CONCURRENCY=2",  # compose's default: uvicorn's worker supervisor
                        APP_IMAGE,
                    ],
                    check=False,
                    capture=True,
                    timeout=60,
                    quiet=True,
                )
            finally:
                run(
                    ["podman", "rm", "--force", "--time", "0", probe_name],
                    check=False,
                    capture=True,
                    quiet=True,
                )
            said = (refused.stdout + refused.stderr).decode(errors="replace")
            if refused.returncode != 3 or "APP_ADMIN_TOKEN" not in said:
                raise StepFailed(
                    f"the image did not refuse to start without APP_ADMIN_TOKEN (exit code"
                    f" {refused.returncode}, 3 expected): {said[-1500:]}"
                )
            print(f"    no token, no start (exit code {refused.returncode}, names APP_ADMIN_TOKEN)")

        with step("compose refuses to start without the required secrets"):
            stack.check_required_variables()

        with step("compose up: db (healthy) -> migrate (completed) -> app"):
            print(
                "    (podman's 'unable to get systemd connection' errors below are expected: "
                "no systemd here, deploy/podman-compat runs the health checks)"
            )
            stack.compose_run("up", "--detach", timeout=600)
            status, code = stack.state("migrate")
            print(f"    migrate: {status}, exit code {code}")
            if status != "exited" or code != 0:
                raise StepFailed(f"migrate did not complete successfully ({status}, {code})")
            stack.check_start_order()

        with step(f"wait for the app to be healthy and ready on 127.0.0.1:{port}"):
            stack.wait_healthy_and_ready()

        with step("API: page, /docs, two purchases, read back, one customer"):
            for path in ("/", "/docs"):
                stack.check_page(path)
            stack.request("GET", "/openapi.json")
            stack.request("GET", "/api/v1/customers?email=tim@example.com", expect=401)
            for item, price in (("book", "12.50"), ("T-shirt", "19.90")):
                made = stack.request("POST", "/api/v1/purchases", purchase(item, price), expect=201)
                print(f"    POST Tim purchased a {item}: 201 {json.dumps(made)[:120]}")
            check_round_trip(stack)

        with step("restart the app container, data survives"):
            stack.compose_run("restart", "app", timeout=120)
            stack.wait_healthy_and_ready()
            check_round_trip(stack, after_restart=True)

        with step("logs: every stdout line of app and every line of migrate are JSON"):
            check_json_logs(stack, "app")
            check_json_logs(stack, "migrate", stderr=True)

        with step("graceful stop: SIGTERM, exit code 0 well within the grace period"):
            name = stack.container("app")
            started = time.monotonic()
            run(["podman", "stop", "--time", "30", name], capture=True)
            took = time.monotonic() - started
            status, code = stack.state("app")
            print(f"    stopped in {took:.1f}s, exit code {code}")
            if code != 0 or took > 25:
                raise StepFailed(f"not a graceful stop: exit code {code} after {took:.1f}s")

        scale_steps(stack)

        with step("compose down -v removes it all"):
            stack.down(timeout=10, check=True)
            left = stack.containers()
            volumes = out(
                [
                    "podman",
                    "volume",
                    "ls",
                    "--format",
                    "{{.Name}}",
                    "--filter",
                    f"label=io.podman.compose.project={PROJECT}",
                ]
            )
            if left or volumes:
                raise StepFailed(f"left behind: containers {list(left)}, volumes {volumes}")
            print("    no containers, no volumes left")
            stack = None
    except (StepFailed, KeyboardInterrupt) as exc:
        failed = True
        print(f"\nFAILED: {exc}", file=sys.stderr, flush=True)
        if stack is not None:
            stack.dump_logs()
    finally:
        if stack is not None and not (failed and keep):
            with step("teardown (compose down -v)"):
                stack.down(timeout=5, check=False)
        print_timings()
    checks = [(n, st) for n, _, st in TIMINGS if not n.startswith("teardown")]
    counts = {
        "passed": sum(1 for _, st in checks if st.startswith("ok")),
        "failed": sum(1 for _, st in checks if st == "FAILED") or int(failed),
        "skipped": sum(1 for _, st in checks if st.startswith("SKIPPED")),
    }
    line = f"container-test: {counts['passed']} passed, {counts['failed']} failed"
    print("\n" + line + (f", {counts['skipped']} skipped" if counts["skipped"] else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
