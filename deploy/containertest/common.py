"""Paths, image names, the environment podman runs in, and the timed steps with their helpers."""

# ruff: noqa: S603

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROJECT = "purchase-capture-ctest"
PY_STANDIN = "localhost/standin/python:3.11-slim"
PG_STANDIN = "localhost/standin/postgres:17"
# The scale profile's two: edoburu/pgbouncer's and the official haproxy image's contracts.
PGBOUNCER_STANDIN = "localhost/standin/pgbouncer:1.18"
HAPROXY_STANDIN = "localhost/standin/haproxy:2.6"
APP_IMAGE = "localhost/purchase-capture:container-test"
RECIPE_LABEL = "org.purchase-capture.standin-recipe"
STANDIN_RECIPE = "1"  # bump to rebuild both stand-ins after changing how they are built
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
APT_PACKAGES = [
    "podman",
    "buildah",
    "runc",
    "debootstrap",
    "slirp4netns",
    "fuse-overlayfs",
    "containernetworking-plugins",
    # CNI's DNS for compose's network: without it `db` does not resolve in the other containers
    # (podman does not pull it in; a machine that had it by chance hid the missing step).
    "golang-github-containernetworking-plugin-dnsname",
    "iptables",
    "uidmap",
]
PY_SUITE, PY_PACKAGES = (
    "bookworm",
    ["python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates"],
)
PG_SUITE, PG_MAJOR = "trixie", "17"
POOLER_SUITE, POOLER_PACKAGES = "bookworm", ["pgbouncer", "haproxy"]
SHRINK = [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "var/log/apt",
    "var/cache/debconf/templates.dat-old",
]

ENV = dict(os.environ)
ENV["CONTAINERS_CONF"] = str(DEPLOY / "containers.conf")
ENV["BUILDAH_FORMAT"] = "docker"  # keep HEALTHCHECK (the OCI image format has none)
ENV.setdefault("LANG", "C.UTF-8")


class StepFailed(Exception):
    pass


class Skip(Exception):
    pass


TIMINGS: list[tuple[str, float, str]] = []


@contextmanager
def step(name: str) -> Iterator[list[str]]:
    """Time a step; what the body appends to the yielded list is added to its status."""
    print(f"\n==> {name}", flush=True)
    start = time.monotonic()
    status = "ok"
    notes: list[str] = []
    try:
        yield notes
        if notes:
            status += f" ({', '.join(notes)})"
    except Skip as exc:
        status = f"SKIPPED: {exc}"
        print(f"    skipped: {exc}", flush=True)
    except BaseException:
        status = "FAILED"
        raise
    finally:
        took = time.monotonic() - start
        TIMINGS.append((name, took, status))
        print(f"<== {name}: {status} in {took:.1f}s", flush=True)


def print_timings() -> None:
    total = sum(t for _, t, _ in TIMINGS)
    width = max((len(n) for n, _, _ in TIMINGS), default=10)
    print("\ncontainer-test step timings:")
    for name, took, status in TIMINGS:
        print(f"  {name:<{width}}  {took:7.1f}s  {status}")
    print(f"  {'total':<{width}}  {total:7.1f}s")


def run(
    cmd: list[str],
    *,
    check: bool = True,
    capture: bool = False,
    timeout: float = 900,
    env: dict[str, str] | None = None,
    quiet: bool = False,
    input_: bytes | None = None,
) -> subprocess.CompletedProcess[Any]:
    if not quiet:
        print("    $ " + shlex.join(cmd), flush=True)
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            capture_output=capture,
            timeout=timeout,
            env=env or ENV,
            input=input_,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"timed out after {timeout:.0f}s: {shlex.join(cmd)}") from exc
    if check and proc.returncode != 0:
        detail = ""
        if capture:
            detail = "\n" + (proc.stdout or b"").decode(errors="replace")[-3000:]
            detail += (proc.stderr or b"").decode(errors="replace")[-3000:]
        raise StepFailed(f"exit code {proc.returncode}: {shlex.join(cmd)}{detail}")
    return proc


def out(cmd: list[str], **kw: Any) -> str:
    return str(run(cmd, capture=True, quiet=True, **kw).stdout.decode().strip())


def wait_until(what: str, probe: Callable[[], bool], timeout: float, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if probe():
                return
        except (OSError, urllib.error.URLError, StepFailed, ValueError):
            pass
        if time.monotonic() > deadline:
            raise StepFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
