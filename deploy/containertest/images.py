"""Step 0 and 1: the Debian packages podman needs, and the stand-in base images built with
debootstrap (rebuilt only when their recipe changes)."""

# ruff: noqa: S603, S607

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .common import (
    APT_PACKAGES,
    DEPLOY,
    ENV,
    HAPROXY_STANDIN,
    MIRROR,
    PG_MAJOR,
    PG_STANDIN,
    PG_SUITE,
    PGBOUNCER_STANDIN,
    POOLER_PACKAGES,
    POOLER_SUITE,
    PY_PACKAGES,
    PY_STANDIN,
    PY_SUITE,
    RECIPE_LABEL,
    ROOT,
    SHRINK,
    STANDIN_RECIPE,
    StepFailed,
    run,
)


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


def recipe_hash(*parts: object) -> str:
    """What a stand-in is made of; a change rebuilds it (bump STANDIN_RECIPE for code changes)."""
    digest = hashlib.sha256(STANDIN_RECIPE.encode())
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
    return digest.hexdigest()[:16]


def host_extra_cas() -> list[Path]:
    """CAs this machine trusts beyond Debian's (an egress proxy's, a company's): pip and uv
    inside a build trust what the host trusts. A stand-in-only concern; the Dockerfile is
    untouched."""
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


def install_in_chroot(rootfs: Path, packages: list[str], then: str = "true") -> None:
    """apt-get install in the rootfs without starting any service it brings, then `then`."""
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    install = (
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
        f"{' '.join(packages)} >/dev/null && apt-get clean && {then}"
    )
    run(
        ["chroot", str(rootfs), "sh", "-c", install],
        env={**ENV, "DEBIAN_FRONTEND": "noninteractive"},
    )
    policy.unlink()
    (rootfs / "etc/resolv.conf").write_text("")


def add_entrypoint(rootfs: Path, script: Path, name: str) -> None:
    target = rootfs / "usr/local/bin" / name
    shutil.copy(script, target)
    target.chmod(0o755)


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
        # Without Debian's default cluster.
        (rootfs / "etc/postgresql-common").mkdir(parents=True, exist_ok=True)
        (rootfs / "etc/postgresql-common/createcluster.conf").write_text(
            "create_main_cluster = false\n"
        )
        install_in_chroot(rootfs, [f"postgresql-{PG_MAJOR}"])
        add_entrypoint(rootfs, entrypoint, "docker-entrypoint.sh")
        shrink_and_import(rootfs, PG_STANDIN, recipe, changes)
    return True


def build_scale_standins() -> bool:
    """PgBouncer and HAProxy from Debian 12, one rootfs imported as two images; True if built."""
    entrypoint = DEPLOY / "standin" / "pgbouncer-entrypoint.sh"
    path = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    pgbouncer = [
        "ENV LANG=C.UTF-8",
        path,
        'ENTRYPOINT ["pgbouncer-entrypoint.sh"]',
        "EXPOSE 5432",
    ]
    haproxy = [
        "ENV LANG=C.UTF-8",
        path,
        "USER haproxy",
        'ENTRYPOINT ["haproxy", "-W", "-db"]',
        'CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]',
        "STOPSIGNAL SIGUSR1",
    ]
    recipe = recipe_hash(
        MIRROR, POOLER_SUITE, POOLER_PACKAGES, SHRINK, pgbouncer, haproxy, entrypoint.read_bytes()
    )
    if image_recipe(PGBOUNCER_STANDIN) == recipe and image_recipe(HAPROXY_STANDIN) == recipe:
        print(f"    cached: {PGBOUNCER_STANDIN}, {HAPROXY_STANDIN} (recipe {recipe})")
        return False
    with scratch_dir() as tmp:
        rootfs = tmp / "rootfs"
        debootstrap(POOLER_SUITE, rootfs, [])
        install_in_chroot(
            rootfs,
            POOLER_PACKAGES,
            then="(id postgres >/dev/null 2>&1 || useradd --system --user-group postgres) && "
            "mkdir -p /usr/local/etc/haproxy",
        )
        add_entrypoint(rootfs, entrypoint, entrypoint.name)
        shrink_and_import(rootfs, PGBOUNCER_STANDIN, recipe, pgbouncer)
        shrink_and_import(rootfs, HAPROXY_STANDIN, recipe, haproxy)
    return True
