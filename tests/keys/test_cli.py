"""`purchase-capture keys ...` as an operator runs it, against the test's database."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from app.core.settings import Settings
from tests.helpers import assert_problem, serving
from tests.keys.conftest import bearer
from tests.servers import purchase_capture


def run_cli(
    database_url: str, *args: str, pooler: str = "none"
) -> subprocess.CompletedProcess[str]:
    return purchase_capture(database_url, "keys", *args, pooler=pooler)


async def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        run_cli, settings.database_url, *args, pooler=settings.database_pooler
    )


async def test_a_key_created_by_the_cli_reads_until_revoked(settings: Settings) -> None:
    created = await cli(settings, "create", "--name", "ci", "--scope", "read", "--expires", "90d")
    secret = created.stdout.strip()
    async with serving(settings) as client:
        assert created.returncode == 0, created.stderr
        assert (await client.get("/api/v1/purchases", headers=bearer(secret))).status_code == 200

        listed = await cli(settings, "list")
        key_id = listed.stdout.split()[0]
        revoked = await cli(settings, "revoke", key_id)
        await asyncio.sleep(settings.key_cache_seconds + 0.1)
        refused = await client.get("/api/v1/purchases", headers=bearer(secret))

    assert secret.startswith("pcs_")
    assert secret[:12] in listed.stdout
    assert secret not in listed.stdout + revoked.stdout + revoked.stderr
    assert revoked.returncode == 0, revoked.stderr
    assert_problem(refused, 401)


def test_the_cli_refuses_a_bad_expiry_and_an_unknown_scope(tmp_path: Path) -> None:
    """Refused while parsing the arguments, before any database is opened."""
    nowhere = f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"

    bad_expiry = run_cli(nowhere, "create", "--name", "x", "--scope", "read", "--expires", "soon")
    bad_scope = run_cli(nowhere, "create", "--name", "x", "--scope", "root")

    assert bad_expiry.returncode == 2
    assert "90d" in bad_expiry.stderr
    assert bad_scope.returncode == 2
    assert not (tmp_path / "none.db").exists()


async def test_revoking_an_unknown_key_fails(settings: Settings) -> None:
    done = await cli(settings, "revoke", "4242")

    assert done.returncode == 1
    assert "4242" in done.stderr
