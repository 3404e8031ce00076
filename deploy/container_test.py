#!/usr/bin/env python3
"""`make container-test`: build the real Dockerfile, bring the real compose.yaml up, use it.

These machines have no Docker engine and reach no image registry, so the test runs the same
files with Debian's podman and PyPI's podman-compose, on local stand-ins for the two official
base images, built from Debian packages with debootstrap:

  localhost/standin/python:3.11-slim   Debian 12, python3 (3.11) + venv + pip, `python` command
  localhost/standin/postgres:17        Debian 13, PostgreSQL 17, with an entrypoint that follows
                                       the official image's contract (deploy/standin/)

They are kept in podman's own storage (so every clone on the machine shares them) and rebuilt
only when missing or when their recipe changes (a label holds the recipe's hash).
The python stand-in also trusts the extra CAs this host trusts (/usr/local/share/ca-certificates),
so that pip inside the image build reaches PyPI as the host does; the Dockerfile is untouched.
podman-compose runs podman through deploy/podman-compat, which supplies what Debian 12's podman
4.3 lacks for compose.yaml's depends_on conditions (see that file).

Steps, each timed: prerequisites (apt), stand-in images, image build (compose's `build:`; then
checks: non-root, health check, no build or dev tools, no secrets baked in, no start without a
token), compose without the required secrets, compose up (db -> migrate -> app, the order
checked from podman's timestamps), health, API round trip (page and /docs with their assets,
two purchases, one customer), app restart, JSON logs, SIGTERM stop, compose down -v. Teardown
runs whatever happens, also on SIGTERM or Ctrl-C.

Environment: APP_PORT (host port; default: a free one), CONTAINER_TEST_KEEP=1 (leave the stack
up on failure, for a look), DEBIAN_MIRROR (default http://deb.debian.org/debian),
PODMAN_COMPOSE (default .venv/bin/podman-compose).
"""

# This script's job is running podman, apt and debootstrap with arguments it builds itself.
# ruff: noqa: S603, S607

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROJECT = "purchase-capture-ctest"
PY_STANDIN = "localhost/standin/python:3.11-slim"
PG_STANDIN = "localhost/standin/postgres:17"
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


# ---------------------------------------------------------------- steps and their timings
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


# ---------------------------------------------------------------- helpers
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


# ---------------------------------------------------------------- step 0: prerequisites
def ensure_packages() -> None:
    missing = []
    for pkg in APT_PACKAGES:
        probe = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, check=False, text=True
        )
        if "install ok installed" not in probe.stdout:
            missing.append(pkg)
    if not missing:
        print("    all present: " + " ".join(APT_PACKAGES))
        return
    if os.geteuid() != 0:
        raise StepFailed("missing Debian packages and not root: " + " ".join(missing))
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    for attempt in range(3):  # another apt may hold the lists lock for a while
        if run(["apt-get", *lock, "update", "-qq"], check=False).returncode == 0:
            break
        time.sleep(20 * (attempt + 1))
    else:
        raise StepFailed("apt-get update failed three times")
    env = {**ENV, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def find_podman_compose() -> str:
    wanted = os.environ.get("PODMAN_COMPOSE") or str(ROOT / ".venv" / "bin" / "podman-compose")
    if not Path(wanted).exists() and shutil.which("podman-compose"):
        wanted = shutil.which("podman-compose") or wanted
    if not Path(wanted).exists():
        raise StepFailed(f"{wanted} not found: run `make install` (the ops extra has it)")
    return wanted


# ---------------------------------------------------------------- step 1: stand-in images
def recipe_hash(*parts: object) -> str:
    """What a stand-in is made of; a change rebuilds it (bump STANDIN_RECIPE for code changes)."""
    digest = hashlib.sha256(STANDIN_RECIPE.encode())
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
    return digest.hexdigest()[:16]


def host_extra_cas() -> list[Path]:
    """CAs this machine trusts beyond Debian's (an egress proxy's, a company's): pip inside a
    build trusts what the host trusts. A stand-in-only concern; the Dockerfile is untouched."""
    return sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))


def image_recipe(image: str) -> str | None:
    probe = run(
        [
            "podman",
            "image",
            "inspect",
            "--format",
            '{{ index .Labels "' + RECIPE_LABEL + '" }}',
            image,
        ],
        check=False,
        capture=True,
        quiet=True,
    )
    return probe.stdout.decode().strip() if probe.returncode == 0 else None


def debootstrap(suite: str, target: Path, include: list[str]) -> None:
    cmd = ["debootstrap", "--variant=minbase"]
    if include:
        cmd.append("--include=" + ",".join(include))
    log = target.parent / f"debootstrap-{suite}.log"
    with log.open("wb") as fh:
        proc = subprocess.run(
            [*cmd, suite, str(target), MIRROR], stdout=fh, stderr=fh, check=False, env=ENV
        )
    if proc.returncode != 0:
        print(log.read_text(errors="replace")[-4000:])
        raise StepFailed(f"debootstrap {suite} failed (log above)")
    print(f"    debootstrap {suite} (+{len(include)} packages) done")


def shrink_and_import(rootfs: Path, image: str, recipe: str, changes: list[str]) -> None:
    for rel in SHRINK:
        path = rootfs / rel
        if path.is_dir():
            shutil.rmtree(path)
            path.mkdir(parents=True)
    tar = subprocess.Popen(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."], stdout=subprocess.PIPE
    )
    cmd = ["podman", "import", "--quiet"]
    for change in [*changes, f"LABEL {RECIPE_LABEL}={recipe}"]:
        cmd += ["--change", change]
    imported = subprocess.run(
        [*cmd, "-", image], stdin=tar.stdout, env=ENV, check=False, capture_output=True
    )
    tar.wait()
    if imported.returncode != 0 or tar.returncode != 0:
        raise StepFailed(f"podman import {image} failed: {imported.stderr.decode()[-2000:]}")
    print(f"    imported {image} (recipe {recipe})")


@contextmanager
def scratch_dir() -> Iterator[Path]:
    base = Path(os.environ.get("TMPDIR", "/var/tmp"))  # noqa: S108 (disk, not tmpfs; mkdtemp)
    path = Path(tempfile.mkdtemp(prefix="standin-", dir=base))
    try:
        yield path
    finally:
        for sub in ("proc", "sys", "dev/pts", "dev"):  # in case debootstrap left any mounted
            subprocess.run(
                ["umount", "-l", str(path / "rootfs" / sub)], capture_output=True, check=False
            )
        shutil.rmtree(path, ignore_errors=True)


def build_python_standin() -> bool:
    """True if it had to be built, False if the cached one fits."""
    cas = host_extra_cas()
    changes = [
        "ENV LANG=C.UTF-8",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'CMD ["python3"]',
    ]
    recipe = recipe_hash(
        MIRROR, PY_SUITE, PY_PACKAGES, SHRINK, changes, *(p.read_bytes() for p in cas)
    )
    if image_recipe(PY_STANDIN) == recipe:
        print(f"    cached: {PY_STANDIN} (recipe {recipe})")
        return False
    with scratch_dir() as tmp:
        rootfs = tmp / "rootfs"
        debootstrap(PY_SUITE, rootfs, PY_PACKAGES)
        if cas:
            dest = rootfs / "usr/local/share/ca-certificates"
            for ca in cas:
                shutil.copy(ca, dest / ca.name)
            run(["chroot", str(rootfs), "update-ca-certificates"], capture=True)
            print(f"    trusted {len(cas)} extra CA(s) of this host")
        shrink_and_import(rootfs, PY_STANDIN, recipe, changes)
    return True


def build_postgres_standin() -> bool:
    """True if it had to be built, False if the cached one fits."""
    entrypoint = DEPLOY / "standin" / "postgres-entrypoint.sh"
    changes = [
        "ENV LANG=C.UTF-8",
        f"ENV PATH=/usr/lib/postgresql/{PG_MAJOR}/bin:/usr/local/sbin:/usr/local/bin:"
        "/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV PGDATA=/var/lib/postgresql/data",
        "VOLUME /var/lib/postgresql/data",
        'ENTRYPOINT ["docker-entrypoint.sh"]',
        'CMD ["postgres"]',
        "STOPSIGNAL SIGINT",
        "EXPOSE 5432",
    ]
    recipe = recipe_hash(MIRROR, PG_SUITE, PG_MAJOR, SHRINK, changes, entrypoint.read_bytes())
    if image_recipe(PG_STANDIN) == recipe:
        print(f"    cached: {PG_STANDIN} (recipe {recipe})")
        return False
    with scratch_dir() as tmp:
        rootfs = tmp / "rootfs"
        debootstrap(PG_SUITE, rootfs, [])
        # Install without starting anything and without Debian's default cluster.
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        (rootfs / "etc/postgresql-common").mkdir(parents=True, exist_ok=True)
        (rootfs / "etc/postgresql-common/createcluster.conf").write_text(
            "create_main_cluster = false\n"
        )
        shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        install = (
            f"apt-get update -qq && apt-get install -y -qq --no-install-recommends "
            f"postgresql-{PG_MAJOR} >/dev/null && apt-get clean"
        )
        run(
            ["chroot", str(rootfs), "sh", "-c", install],
            env={**ENV, "DEBIAN_FRONTEND": "noninteractive"},
        )
        policy.unlink()
        (rootfs / "etc/resolv.conf").write_text("")
        target = rootfs / "usr/local/bin/docker-entrypoint.sh"
        shutil.copy(entrypoint, target)
        target.chmod(0o755)
        shrink_and_import(rootfs, PG_STANDIN, recipe, changes)
    return True


# ---------------------------------------------------------------- compose and the API
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

    def containers(self) -> dict[str, dict[str, Any]]:
        """service name -> podman's view of its container."""
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
        found = {}
        for item in json.loads(raw or "[]"):
            service = (item.get("Labels") or {}).get("com.docker.compose.service")
            if service:
                found[service] = item
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
        self, method: str, path: str, body: Any = None, auth: bool = False, expect: int = 200
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
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


# ---------------------------------------------------------------- the test
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

        port = int(os.environ.get("APP_PORT") or free_port())
        stack = Stack(compose_bin, port)
        with step("clean up leftovers of an earlier run"):
            stack.compose_run(
                "down", "--volumes", "--timeout", "5", timeout=120, check=False, capture=True
            )

        with step("build the real Dockerfile (compose build, PYTHON_IMAGE=stand-in)"):
            stack.compose_run("build", "app", timeout=1500)
            # Every code change leaves the previous build's layers untagged; drop the old ones
            # (the layer cache of the last day stays, and pip's download cache always does).
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
                    "command -v gcc cc make pip; python -c 'import importlib.util as u;"
                    ' print(*(m for m in ("pip", "pytest", "mypy", "ruff")'
                    " if u.find_spec(m)))'; exit 0",
                ],
                capture=True,
                quiet=True,
            )
            if probe.stdout.strip():
                raise StepFailed(f"build or dev tools in the image: {probe.stdout.decode()}")
            print("    no gcc, cc, make, pip, pytest, mypy or ruff in the runtime image")
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

        with step("compose down -v removes it all"):
            stack.compose_run("down", "--volumes", "--timeout", "10", timeout=180)
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
                stack.compose_run("down", "--volumes", "--timeout", "5", timeout=180, check=False)
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
