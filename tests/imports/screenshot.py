"""Renders docs/import.png: a real import of generated rows, drawn by rich, shot by Chromium.

    python -m tests.imports.screenshot [DIR]      (`make import-screenshot`)

The import runs on a fresh SQLite file with the console script's own progress bar; its last
frame and the summary the command prints are recorded as an SVG by rich, and Debian's Chromium
(the browser tests' own) turns that into a PNG.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright
from rich.console import Console
from rich.text import Text

from alembic import command
from app.core.engine import create_engine
from app.core.settings import Settings
from app.imports.cli import summary
from app.imports.formats import Format
from app.imports.progress import ImportProgress
from app.imports.service import ImportReport, import_purchases
from tests.e2e.harness import chromium_or_exit, launch_chromium
from tests.servers import ROOT
from tests.test_migrations import alembic_config

ROWS = 200_000
WIDTH = 112


def _generate(path: Path) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name", "item", "quantity", "unit_price", "currency"])
        for n in range(ROWS):
            price = "1.001" if n % 100 == 99 else f"{n % 5000 / 100 + 1:.2f}"
            writer.writerow([f"buyer{n % 180_000}@example.com", "Buyer", "book", 1, price, "EUR"])


async def _import(url: str, data: Path, live: Console) -> tuple[ImportReport, ImportProgress]:
    engine = create_engine(Settings(environment="test", database_url=url))
    try:
        with data.open("rb") as source, ImportProgress(live) as progress:
            report = await import_purchases(
                engine,
                source=source,
                fmt=Format.CSV,
                rejects_path=data.with_name("purchases.rejects.csv"),
                progress=progress.update,
            )
        return report, progress
    finally:
        await engine.dispose()


async def _png(svg: Path, png: Path, executable: str) -> None:
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright, executable)
        page = await browser.new_page(viewport={"width": 1600, "height": 400})
        await page.goto(svg.as_uri())
        await page.locator("svg").screenshot(path=png)
        await browser.close()


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    executable = chromium_or_exit()
    with tempfile.TemporaryDirectory() as workdir:
        url = f"sqlite+aiosqlite:///{Path(workdir) / 'shot.db'}"
        command.upgrade(alembic_config(url), "head")
        data = Path(workdir) / "purchases.csv"
        _generate(data)
        live = Console(file=io.StringIO(), force_terminal=True, width=WIDTH)
        report, progress = asyncio.run(_import(url, data, live))
        shot = Console(
            record=True, file=io.StringIO(), force_terminal=True, width=WIDTH, highlight=False
        )
        shot.print(Text("$ purchase-capture import purchases.csv", style="bold"))
        assert progress.progress is not None
        shot.print(progress.progress.get_renderable())
        shot.print(summary(report).replace(str(data.parent) + "/", ""))
        for reject in report.first_rejects[:2]:
            shot.print(f"  line {reject.line}: {reject.field}: {reject.reason}")
        svg = Path(workdir) / "import.svg"
        shot.save_svg(str(svg), title="purchase-capture import")
        asyncio.run(_png(svg, out / "import.png", executable))
    print(f"wrote {out / 'import.png'}")


if __name__ == "__main__":
    main()
