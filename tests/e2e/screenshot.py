"""Takes the README's screenshots of the real page, served by the real app on a fresh database.

    python -m tests.e2e.screenshot [DIR]      (`make screenshot`; DIR defaults to docs/)

Writes DIR/screenshot.png (desktop: Tim's first purchase recorded) and DIR/screenshot-phone.png
(phone width: a field error the shopper can fix).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright, expect

from tests.e2e.harness import AppServer, chromium_path, launch_chromium
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

            await browser.close()


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    executable = chromium_path()
    if executable is None:
        sys.exit("Debian's chromium is not installed: run `make chromium`")
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(take(out, executable))
    for name in ("screenshot.png", "screenshot-phone.png"):
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
