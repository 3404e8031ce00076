"""A shopper records purchases through the page, in a real Chromium, against the real app.

Every outcome the page shows is checked against the rows the API has stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Locator, Page, Request, Route, expect

from tests.e2e.conftest import Api, OpenPage
from tests.e2e.harness import AppServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ENDPOINT = "**/api/v1/purchases"
FIELDS = ("name", "email", "item", "quantity", "unit_price", "currency")


def is_capture(request: Request) -> bool:
    return request.method == "POST" and request.url.endswith("/api/v1/purchases")


async def fill(
    page: Page,
    *,
    name: str = "Tim",
    email: str,
    item: str = "book",
    quantity: str = "1",
    unit_price: str = "12.50",
    currency: str | None = None,
) -> None:
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Email", exact=True).fill(email)
    await page.get_by_label("Item", exact=True).fill(item)
    await page.get_by_label("Quantity", exact=True).fill(quantity)
    await page.get_by_label("Unit price", exact=True).fill(unit_price)
    if currency is not None:
        await page.get_by_label("Currency", exact=True).select_option(currency)


def submit_button(page: Page) -> Locator:
    return page.get_by_role("button", name="Record purchase")


def outcome(page: Page) -> Locator:
    return page.get_by_role("status")


async def values(page: Page) -> dict[str, str]:
    return {field: await page.locator(f"#{field}").input_value() for field in FIELDS}


def count_captures(page: Page) -> list[Request]:
    """The purchase requests the page sends from now on."""
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request) if is_capture(request) else None)
    return sent


async def test_tim_buys_a_book_as_a_new_customer(page: Page, api: Api, email: str) -> None:
    await expect(page.get_by_label("Currency", exact=True)).to_have_value("EUR")
    await fill(page, email=email)
    async with page.expect_request(is_capture) as sent:
        await submit_button(page).click()

    await expect(outcome(page)).to_contain_text(
        "Thanks Tim — your purchase of 1 × book (12.50 EUR) is recorded."
    )
    await expect(outcome(page)).to_contain_text("Welcome, new customer!")
    request = await sent.value
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"]
    assert request.post_data_json == {
        "customer": {"email": email, "name": "Tim"},
        "item": "book",
        "quantity": 1,
        "unit_price": "12.50",
        "currency": "EUR",
    }

    [customer] = await api.customers(email)
    assert (customer["email"], customer["name"]) == (email, "Tim")
    [purchase] = await api.purchases(email)
    assert purchase["customer"]["id"] == customer["id"]
    assert (purchase["item"], purchase["quantity"], purchase["currency"]) == ("book", 1, "EUR")
    assert (purchase["unit_price"], purchase["total"]) == ("12.50", "12.50")
    # The purchase fields are cleared for the next one; who is buying stays.
    assert await values(page) == {
        "name": "Tim",
        "email": email,
        "item": "",
        "quantity": "1",
        "unit_price": "",
        "currency": "EUR",
    }


async def test_tim_comes_back_with_his_email_in_upper_case(
    page: Page, api: Api, email: str
) -> None:
    await fill(page, email=email)
    await submit_button(page).click()
    await expect(outcome(page)).to_contain_text("Welcome, new customer!")

    await page.reload()
    await fill(
        page,
        name="Timothy",
        email=email.upper(),
        item="pen",
        quantity="3",
        unit_price="1,2",  # a decimal comma is understood
        currency="GBP",
    )
    async with page.expect_request(is_capture) as sent:
        await submit_button(page).click()

    await expect(outcome(page)).to_contain_text(
        "Thanks Timothy — your purchase of 3 × pen (1.20 GBP each, 3.60 GBP in total) is recorded."
    )
    await expect(outcome(page)).to_contain_text("Welcome back, Timothy!")
    await expect(outcome(page)).not_to_contain_text("new customer")
    sent_body = (await sent.value).post_data_json
    assert sent_body is not None
    assert (sent_body["customer"]["email"], sent_body["unit_price"]) == (email.upper(), "1.2")

    [customer] = await api.customers(email)
    assert (customer["email"], customer["name"]) == (email, "Timothy")
    purchases = await api.purchases(email)
    assert sorted((p["item"], p["quantity"], p["total"], p["currency"]) for p in purchases) == [
        ("book", 1, "12.50", "EUR"),
        ("pen", 3, "3.60", "GBP"),
    ]
    assert {p["customer"]["id"] for p in purchases} == {customer["id"]}


async def test_a_server_validation_error_is_shown_at_its_field(
    page: Page, api: Api, email: str
) -> None:
    # The page lets "shop.test" through; the server knows it is a reserved domain.
    bad_email = email.replace("example.com", "shop.test")
    await fill(page, email=bad_email, quantity="2", unit_price="7.5", currency="CHF")
    typed = await values(page)
    async with page.expect_response(lambda r: is_capture(r.request)) as answered:
        await submit_button(page).click()
    answer = await answered.value
    assert answer.status == 422
    assert answer.headers["content-type"].startswith("application/problem+json")

    email_input = page.get_by_label("Email", exact=True)
    email_error = page.locator("#email-error")
    await expect(email_error).to_contain_text("email: ")
    await expect(email_error).to_contain_text("special-use or reserved name")
    await expect(email_input).to_have_attribute("aria-invalid", "true")
    await expect(email_input).to_have_attribute("aria-describedby", "email-error")
    await expect(email_input).to_be_focused()
    await expect(page.locator("#unit_price-error")).to_be_empty()
    await expect(outcome(page)).to_contain_text("Please correct the field marked above.")
    assert await values(page) == typed
    assert await api.customers(bad_email) == []
    assert await api.purchases(bad_email) == []

    # Correcting the address clears its error, and the purchase goes through.
    await email_input.fill(email)
    await expect(email_error).to_be_empty()
    await expect(email_input).not_to_have_attribute("aria-invalid", "true")
    await submit_button(page).click()
    await expect(outcome(page)).to_contain_text("2 × book (7.50 CHF each, 15.00 CHF in total)")
    assert [p["total"] for p in await api.purchases(email)] == ["15.00"]


async def test_the_page_checks_the_servers_rules_before_sending(
    page: Page, api: Api, email: str
) -> None:
    await fill(page, email=email, unit_price="12.345")
    typed = await values(page)
    sent = count_captures(page)
    await submit_button(page).click()

    price = page.get_by_label("Unit price", exact=True)
    await expect(page.locator("#unit_price-error")).to_have_text(
        "unit price: at most 2 decimal places"
    )
    await expect(price).to_have_attribute("aria-invalid", "true")
    await expect(price).to_be_focused()
    await expect(outcome(page)).to_have_text("Please correct the field marked above.")
    assert await values(page) == typed
    assert sent == []
    assert await api.customers(email) == []


# Each row is refused by the page at the same field as by the server.
MIRRORED_RULES = [
    ("name", {"name": "   "}, "name: required"),
    ("email", {"email": "tim@"}, "email: "),
    ("item", {"item": "  "}, "item: required"),
    ("quantity", {"quantity": "0"}, "quantity: a whole number from 1 to 10000"),
    ("quantity", {"quantity": "10001"}, "quantity: a whole number from 1 to 10000"),
    ("unit_price", {"unit_price": "-1"}, "unit price: must not be negative"),
    ("unit_price", {"unit_price": "1000000000"}, "unit price: must be less than 1000000000"),
    ("unit_price", {"unit_price": "12.345"}, "unit price: at most 2 decimal places"),
]


@pytest.mark.parametrize(("field", "typed", "message"), MIRRORED_RULES)
async def test_the_pages_checks_mirror_the_servers_rules(
    page: Page, api: Api, email: str, field: str, typed: dict[str, str], message: str
) -> None:
    form = {"name": "Tim", "email": email, "item": "book", "quantity": "1", "unit_price": "1"}
    form.update(typed)
    sent = count_captures(page)
    await fill(page, **form)
    await submit_button(page).click()
    await expect(page.locator(f"#{field}-error")).to_contain_text(message)
    await expect(page.locator('[aria-invalid="true"]')).to_have_count(1)
    assert sent == []

    body = {
        "customer": {"email": form["email"], "name": form["name"]},
        "item": form["item"],
        "quantity": int(form["quantity"]),
        "unit_price": form["unit_price"],
        "currency": "EUR",
    }
    answer = await api.client.post("/api/v1/purchases", json=body)
    assert answer.status_code == 422
    server_field = {"name": "customer.name", "email": "customer.email"}.get(field, field)
    assert [error["field"] for error in answer.json()["errors"]] == [server_field]


async def test_a_double_click_records_one_purchase(page: Page, api: Api, email: str) -> None:
    await fill(page, email=email)
    sent = count_captures(page)
    await submit_button(page).dblclick()

    await expect(outcome(page)).to_contain_text("your purchase of 1 × book (12.50 EUR) is recorded")
    await page.wait_for_timeout(500)  # room for a second request, were one on its way
    await expect(outcome(page)).to_contain_text("is recorded")
    assert len(sent) == 1
    assert len(await api.purchases(email)) == 1


async def test_the_button_is_disabled_while_a_request_is_in_flight(
    page: Page, api: Api, email: str
) -> None:
    held: list[Route] = []
    await page.route(ENDPOINT, lambda route: held.append(route))
    await fill(page, email=email)
    button = submit_button(page)
    await button.click()

    await expect(button).to_be_disabled()
    await expect(page.locator("form")).to_have_attribute("aria-busy", "true")
    await expect(outcome(page)).to_have_text("Recording your purchase…")
    await page.get_by_label("Unit price", exact=True).press("Enter")  # submit again by keyboard
    await page.wait_for_timeout(300)
    assert len(held) == 1

    await held[0].continue_()
    await expect(outcome(page)).to_contain_text("is recorded")
    await expect(button).to_be_enabled()
    assert len(held) == 1
    assert len(await api.purchases(email)) == 1


async def test_an_unreachable_api_is_said_plainly_and_a_retry_records_once(
    open_page: OpenPage, own_server: AppServer, email: str
) -> None:
    page = await open_page(own_server)
    await fill(page, email=email)
    typed = await values(page)
    await asyncio.to_thread(own_server.stop)

    keys = []
    for _ in range(2):
        async with page.expect_request(is_capture) as sent:
            await submit_button(page).click()
        await expect(outcome(page)).to_contain_text(
            "Could not reach the shop — check your connection and try again."
        )
        await expect(submit_button(page)).to_be_enabled()
        assert await values(page) == typed
        keys.append((await sent.value).headers["idempotency-key"])
    assert keys[0] == keys[1], "an unchanged retry must reuse its Idempotency-Key"

    await page.get_by_label("Quantity", exact=True).fill("2")
    async with page.expect_request(is_capture) as sent:
        await submit_button(page).click()
    await expect(outcome(page)).to_contain_text("Could not reach the shop")
    changed_key = (await sent.value).headers["idempotency-key"]
    assert changed_key != keys[0], "changed data must get a new Idempotency-Key"

    await asyncio.to_thread(own_server.start)
    async with page.expect_request(is_capture) as sent:
        await submit_button(page).click()
    await expect(outcome(page)).to_contain_text("your purchase of 2 × book")
    assert (await sent.value).headers["idempotency-key"] == changed_key
    async with own_server.api() as client:
        stored = await Api(client).purchases(email)
    assert [(p["item"], p["quantity"]) for p in stored] == [("book", 2)]


async def test_a_retry_after_a_lost_answer_does_not_record_twice(
    page: Page, api: Api, email: str
) -> None:
    async def lose_the_answer(route: Route) -> None:
        await route.fetch()  # the server records the purchase...
        await route.abort("connectionreset")  # ...but its answer never reaches the page

    await page.route(ENDPOINT, lose_the_answer, times=1)
    await fill(page, email=email)
    async with page.expect_request(is_capture) as first:
        await submit_button(page).click()
    await expect(outcome(page)).to_contain_text("Could not reach the shop")
    await expect(outcome(page)).to_contain_text("Trying again is safe")
    assert len(await api.purchases(email)) == 1

    async with page.expect_response(lambda r: is_capture(r.request)) as retried:
        await submit_button(page).click()
    await expect(outcome(page)).to_contain_text("your purchase of 1 × book (12.50 EUR) is recorded")
    key = (await first.value).headers["idempotency-key"]
    replay = await retried.value
    assert replay.request.headers["idempotency-key"] == key
    assert replay.headers.get("idempotent-replayed") == "true"
    assert len(await api.purchases(email)) == 1

    # Buying the same again after a success is a new purchase, with a new key.
    await fill(page, email=email)
    async with page.expect_request(is_capture) as again:
        await submit_button(page).click()
    await expect(outcome(page)).to_contain_text("Welcome back, Tim!")
    assert (await again.value).headers["idempotency-key"] != key
    assert len(await api.purchases(email)) == 2


@pytest.mark.parametrize(
    ("status", "body", "shown"),
    [
        (
            503,
            {"title": "Service Unavailable", "status": 503, "request_id": "req-42"},
            ["The shop had a problem recording your purchase", "quote reference req-42"],
        ),
        (
            409,
            {
                "title": "Request in progress",
                "status": 409,
                "detail": "The same Idempotency-Key is being processed.",
            },
            ["Request in progress", "The same Idempotency-Key is being processed."],
        ),
    ],
)
async def test_other_problems_are_shown_in_words(
    page: Page, email: str, status: int, body: dict[str, Any], shown: list[str]
) -> None:
    # Answers the real app gives only when something is wrong: played by the browser here.
    async def answer(route: Route) -> None:
        await route.fulfill(
            status=status, json=body, headers={"Content-Type": "application/problem+json"}
        )

    await page.route(ENDPOINT, answer)
    await fill(page, email=email)
    typed = await values(page)
    await submit_button(page).click()
    for text in shown:
        await expect(outcome(page)).to_contain_text(text)
    await expect(page.locator('[aria-invalid="true"]')).to_have_count(0)
    assert await values(page) == typed
