"""An import killed midway (SIGKILL), then run again, stores each good row exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.engine import pooler_connect_args
from app.imports.models import ImportChunk
from tests.imports.helpers import HEADER, purchases

SCRIPT = Path(sys.executable).parent / "purchase-capture"
ROWS = 20_000
CHUNK_ROWS = 100


def _file(tmp_path: Path) -> tuple[Path, list[str]]:
    """ROWS rows, each with its own item; every 50th row is refused."""
    lines, good = [HEADER], []
    for n in range(ROWS):
        if n % 50 == 49:
            lines.append(f"bad-{n},Tim,item {n},1,1.00,EUR")
        else:
            lines.append(f"buyer{n % 300}@example.com,Buyer,item {n},1,1.00,EUR")
            good.append(f"item {n}")
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, good


async def _import(
    path: Path, database_url: str, pooler: str, *options: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "import",
        str(path),
        "--no-progress",
        "--chunk-rows",
        str(CHUNK_ROWS),
        *options,
        env={
            **os.environ,
            "APP_DATABASE_URL": database_url,
            "APP_DATABASE_POOLER": pooler,
            "APP_ENVIRONMENT": "test",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _chunks_stored(database_url: str, pooler: str) -> int:
    # A plain engine: its reads do not queue behind the importer's write lock on SQLite.
    connect_args = {} if database_url.startswith("sqlite") else pooler_connect_args(pooler)
    reader = create_async_engine(database_url, connect_args=connect_args)
    try:
        async with reader.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(ImportChunk))
            return int(count or 0)
    finally:
        await reader.dispose()


async def test_a_killed_import_run_again_stores_each_good_row_once(
    engine: AsyncEngine, empty_database: str, database_pooler: str, tmp_path: Path
) -> None:
    path, good = _file(tmp_path)
    first = await _import(path, empty_database, database_pooler)
    async with asyncio.timeout(120):
        while True:  # until five chunks are committed
            if (
                first.returncode is not None
                or await _chunks_stored(empty_database, database_pooler) >= 5
            ):
                break
            await asyncio.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    stored_before = await _chunks_stored(empty_database, database_pooler)
    assert first.returncode == -signal.SIGKILL
    assert stored_before < ROWS // CHUNK_ROWS  # it was killed midway

    second = await _import(path, empty_database, database_pooler)
    out, _ = await second.communicate()

    assert second.returncode == 65
    assert f", {stored_before * CHUNK_ROWS * 49 // 50:,} were stored by an earlier run" in (
        out.decode()
    )
    assert sorted(p[1] for p in await purchases(engine)) == sorted(good)


async def test_a_killed_import_leaves_no_worker_process_behind(
    empty_database: str, database_pooler: str, tmp_path: Path
) -> None:
    path, _ = _file(tmp_path)
    importer = await _import(path, empty_database, database_pooler, "--jobs", "2")
    async with asyncio.timeout(120):
        while True:  # until two chunks are committed
            if await _chunks_stored(empty_database, database_pooler) >= 2:
                break
            await asyncio.sleep(0.02)
    importer.send_signal(signal.SIGKILL)

    async with asyncio.timeout(30):  # its stdout ends when no worker holds it any more
        await importer.communicate()

    assert importer.returncode == -signal.SIGKILL
