"""The page itself: served by the app under a strict CSP, nothing fetched from elsewhere,
usable with the keyboard alone and on a phone-width screen."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, Request, expect

from tests.e2e.conftest import Api, OpenPage
from tests.e2e.harness import AppServer
from tests.e2e.test_purchase_page import fill, outcome, submit_button, values

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LABELS = ["Name", "Email", "Item", "Quantity", "Unit price", "Currency"]


async def test_the_page_and_its_assets_come_from_the_app(api: Api) -> None:
    page = await api.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    for asset, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
        answer = await api.client.get(f"/static/{asset}")
        assert answer.status_code == 200
        assert kind in answer.headers["content-type"]


async def test_the_page_loads_only_from_its_own_origin_without_errors(
    open_page: OpenPage, server: AppServer
) -> None:
    requests: list[Request] = []
    failures: list[str] = []
    console_errors: list[str] = []

    def watch(page: Page) -> None:
        page.on("request", lambda r: requests.append(r))
        page.on("requestfailed", lambda r: failures.append(r.url))
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    page = await open_page(server, watch=watch)
    await page.wait_for_load_state("networkidle")

    assert {r.url for r in requests} >= {
        f"{server.base_url}/",
        f"{server.base_url}/static/app.js",
        f"{server.base_url}/static/style.css",
    }
    assert all(r.url.startswith(f"{server.base_url}/") for r in requests), requests
    assert failures == []
    assert console_errors == []
    # No inline script or style for the CSP to block: the module and the sheet are files.
    assert await page.locator("script:not([src])").count() == 0
    assert await page.locator("[style]").count() == 0
    assert await page.locator("script[type=module][src='/static/app.js']").count() == 1


async def test_every_field_is_labelled_and_the_outcome_is_announced(page: Page) -> None:
    for label in LABELS:
        field = page.get_by_label(label, exact=True)
        await expect(field).to_be_visible()
        error_id = f"{await field.get_attribute('id')}-error"
        assert error_id in (await field.get_attribute("aria-describedby") or "").split()
        await expect(page.locator(f"#{error_id}")).to_be_attached()
    await expect(outcome(page)).to_have_attribute("aria-live", "polite")
    currency = page.get_by_label("Currency", exact=True)
    await expect(currency).to_have_value("EUR")
    codes = await currency.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert {"EUR", "USD", "GBP", "CHF", "JPY"} <= set(codes)


async def test_a_purchase_with_the_keyboard_alone(page: Page, api: Api, email: str) -> None:
    keyboard = page.keyboard
    await keyboard.press("Tab")
    await expect(page.get_by_label("Name", exact=True)).to_be_focused()
    await keyboard.type("Tim")
    await keyboard.press("Tab")
    await keyboard.type(email)
    await keyboard.press("Tab")
    await keyboard.type("pen")
    await keyboard.press("Tab")
    await expect(page.get_by_label("Quantity", exact=True)).to_be_focused()
    await keyboard.press("ArrowUp")
    await keyboard.press("Tab")
    await keyboard.type("3.50")
    await keyboard.press("Tab")
    currency = page.get_by_label("Currency", exact=True)
    await expect(currency).to_be_focused()
    await keyboard.type("GBP")
    await expect(currency).to_have_value("GBP")
    await keyboard.press("Tab")
    button = submit_button(page)
    await expect(button).to_be_focused()
    outline = await button.evaluate(
        "b => `${getComputedStyle(b).outlineStyle} ${getComputedStyle(b).outlineWidth}`"
    )
    assert outline == "solid 3px", f"the focus must be visible, got an outline of {outline!r}"
    await keyboard.press("Enter")

    await expect(outcome(page)).to_contain_text(
        "Thanks Tim — your purchase of 2 × pen (3.50 GBP each, 7.00 GBP in total) is recorded."
    )
    [purchase] = await api.purchases(email)
    assert (purchase["quantity"], purchase["unit_price"], purchase["currency"]) == (
        2,
        "3.50",
        "GBP",
    )


async def test_a_field_error_moves_the_keyboard_focus_to_the_field(page: Page, email: str) -> None:
    await fill(page, email=email, item="   ")
    await page.get_by_label("Unit price", exact=True).press("Enter")
    await expect(page.get_by_label("Item", exact=True)).to_be_focused()
    await expect(page.locator("#item-error")).to_have_text("item: required")
    assert (await values(page))["item"] == "   "


@pytest.mark.parametrize("width", [320, 375, 414])
async def test_the_page_works_on_a_phone_width_screen(
    open_page: OpenPage, server: AppServer, api: Api, email: str, width: int
) -> None:
    page = await open_page(
        server,
        viewport={"width": width, "height": 740},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
    for label in LABELS:
        box = await page.get_by_label(label, exact=True).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= width
        assert box["height"] >= 40, f"{label} is too small to tap"

    await fill(page, email=email)
    await submit_button(page).tap()
    await expect(outcome(page)).to_contain_text("is recorded")
    assert len(await api.purchases(email)) == 1
