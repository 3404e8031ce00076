"""The owner's dashboard at /admin, driven in Chromium against the real app."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from tests.e2e.conftest import Api, OpenPage
from tests.e2e.harness import AppServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

PHONE = {"width": 390, "height": 844}


async def buy(api: Api, email: str, name: str = "Tim", **fields: Any) -> dict[str, Any]:
    body = {
        "customer": {"email": email, "name": name},
        "item": "book",
        "unit_price": "12.50",
        "currency": "EUR",
        **fields,
    }
    response = await api.client.post("/api/v1/purchases", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def open_dashboard(
    open_page: OpenPage, server: AppServer, errors: list[str], **options: Any
) -> Page:
    def watch(page: Page) -> None:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page = await open_page(server, watch=watch, **options)
    await page.goto("/admin")
    return page


async def sign_in(page: Page, token: str) -> None:
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


@pytest_asyncio.fixture(loop_scope="session")
async def console_errors() -> AsyncIterator[list[str]]:
    """Console errors of the dashboard; the test fails if there were any it did not expect."""
    errors: list[str] = []
    yield errors
    assert errors == [], errors


@pytest_asyncio.fixture(loop_scope="session")
async def dashboard(open_page: OpenPage, server: AppServer, console_errors: list[str]) -> Page:
    page = await open_dashboard(open_page, server, console_errors)
    await sign_in(page, server.admin_token)
    await expect(page.locator("#dashboard")).to_be_visible()
    return page


async def test_the_dashboard_is_served_with_a_strict_csp(api: Api) -> None:
    response = await api.client.get("/admin")

    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp


async def test_a_wrong_token_is_refused_with_a_clear_message(
    open_page: OpenPage, server: AppServer
) -> None:
    # The refused sign-in's 401 is logged by the browser itself; no other error is expected.
    errors: list[str] = []
    page = await open_dashboard(open_page, server, errors)

    await sign_in(page, "not-the-token")

    await expect(page.locator("#signin-error")).to_have_text(
        "That token is not valid. Check it and try again."
    )
    await expect(page.locator("#dashboard")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('admin-token')") is None
    assert all("401" in error for error in errors), errors


async def test_sign_in_keeps_the_token_in_session_storage_and_sign_out_forgets_it(
    dashboard: Page, server: AppServer
) -> None:
    assert await dashboard.evaluate("sessionStorage.getItem('admin-token')") == server.admin_token
    assert server.admin_token not in dashboard.url

    await dashboard.get_by_role("button", name="Sign out").click()

    await expect(dashboard.get_by_label("Admin token")).to_be_visible()
    assert await dashboard.evaluate("sessionStorage.getItem('admin-token')") is None


async def test_key_figures_equal_the_api(dashboard: Page, api: Api) -> None:
    await buy(api, f"fig.{secrets.token_hex(3)}@example.com", unit_price="0.10", quantity=3)
    await buy(api, f"fig.{secrets.token_hex(3)}@example.com", currency="USD", unit_price="5")
    await dashboard.get_by_label("Range").select_option("7")
    await dashboard.get_by_role("button", name="Show").click()
    caption = dashboard.locator("#daily-caption")
    await expect(caption).to_contain_text("(UTC)")
    first, last = (await caption.inner_text()).split(", ")[1].split(" (")[0].split(" to ")

    stats = (await api.client.get("/api/v1/stats/daily", params={"from": first, "to": last})).json()

    totals = stats["totals"]
    await expect(dashboard.locator("#fig-purchases")).to_have_text(str(totals["purchases"]))
    revenue = " · ".join(f"{c} {v}" for c, v in totals["revenue"].items())
    await expect(dashboard.locator("#fig-revenue")).to_have_text(revenue)
    aov = " · ".join(f"{c} {v}" for c, v in totals["average_order_value"].items())
    await expect(dashboard.locator("#fig-aov")).to_have_text(aov)
    await expect(dashboard.locator("#fig-new")).to_have_text(str(totals["new_customers"]))
    returning = str(totals["returning_customers"])
    await expect(dashboard.locator("#fig-returning")).to_have_text(returning)


@pytest.mark.parametrize(("choice", "days"), [("1", 1), ("7", 7), ("90", 90)])
async def test_the_chart_and_table_have_one_point_per_day(
    dashboard: Page, choice: str, days: int
) -> None:
    await dashboard.get_by_label("Range").select_option(choice)
    await dashboard.get_by_role("button", name="Show").click()

    await expect(dashboard.locator("#chart")).to_have_attribute("data-points", str(days))
    await expect(dashboard.locator("#chart canvas")).to_have_count(1)
    await expect(dashboard.locator("#daily-table tbody tr")).to_have_count(days)


async def test_a_custom_range_in_a_time_zone(dashboard: Page) -> None:
    await dashboard.get_by_label("Range").select_option("custom")
    await dashboard.get_by_label("From", exact=True).fill("2026-03-01")
    await dashboard.get_by_label("To", exact=True).fill("2026-03-10")
    await dashboard.get_by_label("Time zone").fill("America/New_York")
    await dashboard.get_by_role("button", name="Show").click()

    await expect(dashboard.locator("#daily-caption")).to_have_text(
        "Per day, 2026-03-01 to 2026-03-10 (America/New_York)"
    )
    await expect(dashboard.locator("#chart")).to_have_attribute("data-points", "10")


async def test_purchases_page_through_and_filter_by_email(dashboard: Page, api: Api) -> None:
    email = f"pager.{secrets.token_hex(3)}@example.com"
    for n in range(25):
        await buy(api, email, item=f"item {n}")
    await dashboard.get_by_role("link", name="Purchases").click()
    await dashboard.get_by_label("Customer email").fill(email)
    await dashboard.get_by_role("button", name="Filter").click()
    rows = dashboard.locator("#purchases-table tbody tr")
    await expect(rows).to_have_count(20)
    await expect(rows.first).to_contain_text("item 24")

    await dashboard.get_by_role("button", name="Older").click()

    await expect(rows).to_have_count(5)
    await expect(rows.last).to_contain_text("item 0")
    await expect(dashboard.get_by_role("button", name="Older")).to_be_disabled()


async def test_customers_search_by_email_prefix(dashboard: Page, api: Api) -> None:
    prefix = f"srch{secrets.token_hex(3)}"
    await buy(api, f"{prefix}.a@example.com", name="Ann")
    await buy(api, f"{prefix}.b@example.com", name="Bob")
    await dashboard.get_by_role("link", name="Customers").click()

    await dashboard.get_by_label("Email starts with").fill(prefix.upper())
    await dashboard.get_by_role("button", name="Search").click()

    rows = dashboard.locator("#customers-table tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("Bob")


async def _open_customer(dashboard: Page, customer_id: int) -> None:
    await dashboard.evaluate(f"location.hash = '#/customers/{customer_id}'")
    await expect(dashboard.locator("#customer-title")).to_have_text(
        f"Customer {customer_id}", use_inner_text=True
    )


async def test_correct_a_name_and_see_it(dashboard: Page, api: Api) -> None:
    created = await buy(api, f"fix.{secrets.token_hex(3)}@example.com", name="Tmi")
    customer_id = created["customer"]["id"]
    await _open_customer(dashboard, customer_id)

    await dashboard.get_by_label("Name", exact=True).fill("Tim")
    await dashboard.get_by_role("button", name="Save correction").click()

    await expect(dashboard.locator("#customer-name")).to_have_text("Tim")
    stored = (await api.client.get(f"/api/v1/customers/{customer_id}")).json()
    assert stored["name"] == "Tim"


async def test_erase_only_after_confirmation(dashboard: Page, api: Api) -> None:
    email = f"gone.{secrets.token_hex(3)}@example.com"
    customer_id = (await buy(api, email))["customer"]["id"]
    await _open_customer(dashboard, customer_id)

    await dashboard.get_by_role("button", name="Erase this customer…").click()
    await dashboard.get_by_role("button", name="Cancel").click()
    assert (await api.customers(email))[0]["id"] == customer_id

    await dashboard.get_by_role("button", name="Erase this customer…").click()
    await dashboard.get_by_role("dialog").get_by_role("button", name="Erase").click()

    await expect(dashboard.locator("#customer-email")).to_have_text(f"erased-{customer_id}@invalid")
    await expect(dashboard.locator("#history-table tbody tr")).to_have_count(1)
    assert await api.customers(email) == []


async def test_keyboard_only_sign_in_and_navigation(
    open_page: OpenPage, server: AppServer, console_errors: list[str]
) -> None:
    page = await open_dashboard(open_page, server, console_errors)
    await expect(page.get_by_label("Admin token")).to_be_focused()

    await page.keyboard.type(server.admin_token)
    await page.keyboard.press("Enter")
    await expect(page.locator("#dashboard")).to_be_visible()
    for _ in range(3):  # Overview, Purchases, Customers
        await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Customers")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#view-customers")).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Sign out")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Email starts with")).to_be_focused()

    await page.keyboard.type("nobody-has-this-prefix")
    await page.keyboard.press("Enter")

    await expect(page.locator("#customers-table tbody")).to_have_text("Nothing here yet.")


async def test_at_phone_width_nothing_overflows(
    open_page: OpenPage, server: AppServer, console_errors: list[str]
) -> None:
    page = await open_dashboard(open_page, server, console_errors, viewport=PHONE)
    await sign_in(page, server.admin_token)
    await expect(page.locator("#chart canvas")).to_have_count(1)

    width = await page.evaluate("document.documentElement.scrollWidth")

    assert width <= PHONE["width"]
    await expect(page.get_by_role("button", name="Sign out")).to_be_in_viewport()
