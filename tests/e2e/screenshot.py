"""Takes the README's screenshots of the real page, served by the real app on a fresh database.

    python -m tests.e2e.screenshot [DIR]      (`make screenshot`; DIR defaults to docs/)

Writes DIR/screenshot.png (desktop: Tim's first purchase recorded), DIR/screenshot-phone.png
(phone width: a field error the shopper can fix) and DIR/screenshot-admin.png (the owner's
dashboard over two weeks of purchases).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright, expect

from tests.e2e.harness import AppServer, chromium_or_exit, launch_chromium
from tests.e2e.test_purchase_page import fill, outcome, submit_button
from tests.servers import ROOT


async def open_page(browser: Browser, server: AppServer, width: int, height: int) -> Page:
    context = await browser.new_context(
        base_url=server.base_url,
        viewport={"width": width, "height": height},
        device_scale_factor=1,
        locale="en-GB",
        color_scheme="light",
        reduced_motion="reduce",
    )
    page = await context.new_page()
    await page.goto("/")
    return page


async def take(out: Path, executable: str) -> None:
    with tempfile.TemporaryDirectory() as workdir, AppServer(Path(workdir)) as server:
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright, executable)

            desktop = await open_page(browser, server, 1024, 760)
            await fill(desktop, email="tim@example.com")
            await submit_button(desktop).click()
            await expect(outcome(desktop)).to_contain_text("Welcome, new customer!")
            await desktop.mouse.click(5, 5)  # no focus ring on the button in the picture
            await desktop.screenshot(path=out / "screenshot.png", full_page=True)

            phone = await open_page(browser, server, 390, 844)
            await fill(phone, email="tim@example.com", item="pen", unit_price="2.495")
            await submit_button(phone).click()
            await expect(phone.locator("#unit_price-error")).not_to_be_empty()
            await phone.screenshot(path=out / "screenshot-phone.png", full_page=True)

            await seed_two_weeks(server)
            admin = await open_page(browser, server, 1280, 900)
            await admin.goto("/admin")
            await admin.get_by_label("Admin token").fill(server.admin_token)
            await admin.get_by_role("button", name="Sign in").click()
            await admin.get_by_label("Range").select_option("30")
            await admin.get_by_role("button", name="Show").click()
            await expect(admin.locator("#chart")).to_have_attribute("data-points", "30")
            await admin.mouse.click(5, 5)
            await admin.screenshot(path=out / "screenshot-admin.png", full_page=False)

            await browser.close()


async def seed_two_weeks(server: AppServer) -> None:
    """Purchases through the API, then spread over the last 14 days in the database (the API
    stamps every purchase with the time it arrived)."""
    rng = random.Random(14)
    names = ["Tim", "Sue", "Ana", "Bo", "Kai", "Lea", "Max", "Noor", "Ola", "Pia"]
    async with server.api() as client:
        for n in range(60):
            name = rng.choice(names)
            body = {
                "customer": {"email": f"{name.lower()}@example.com", "name": name},
                "item": rng.choice(["book", "pen", "T-shirt", "mug", "poster"]),
                "quantity": rng.randint(1, 3),
                "unit_price": f"{rng.randint(150, 4000) / 100:.2f}",
                "currency": "EUR" if n % 4 else "USD",
            }
            response = await client.post("/api/v1/purchases", json=body)
            response.raise_for_status()
    now = datetime.now(UTC)
    database = server.database_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(database) as db:
        for (purchase_id,) in db.execute("SELECT id FROM purchase").fetchall():
            when = now - timedelta(minutes=rng.randint(0, 14 * 24 * 60))
            stamp = when.replace(tzinfo=None).isoformat(sep=" ")
            db.execute("UPDATE purchase SET purchased_at = ? WHERE id = ?", (stamp, purchase_id))
        db.execute(
            "UPDATE customer SET created_at = (SELECT min(purchased_at) FROM purchase "
            "WHERE customer_id = customer.id)"
        )
        # History rewritten behind the service's back: the statistics' rollup starts over (the
        # server's background fold reads every purchase again within seconds).
        db.executescript(
            "DELETE FROM stats_sales; DELETE FROM stats_buyers; DELETE FROM stats_customer_span;"
            " UPDATE stats_fold SET purchase_id = 0;"
        )


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    executable = chromium_or_exit()
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(take(out, executable))
    for name in ("screenshot.png", "screenshot-phone.png", "screenshot-admin.png"):
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
