"""Money safety in the browser (issue #12): Chromium against `companion serve` (2 workers, SQLite), whole journeys.

Activating, redeeming and amending, then reloading the result page three times, then going Back and sending
the form again: one Activation ID, one credit or debit, shown on the pages and counted in the database. A double
click, and a second click while the server is still answering the first, issue one Activation ID. The activate
and amend buttons work on a 390 px wide phone. Every user here has vouchers for more than one activation, so a
second debit would succeed and show. The server dates debits by its real clock (UTC).

Back does not always show the form page Chromium had: it may fetch it again (the pages vary on Cookie, and the
session cookie is re-signed on every request; the redeem form and its result are both /locker). A form page
fetched again for a request already sent keeps that request's key (activate, amend), and the locker's forms
are keyed by what they say (a voucher code redeems once), so sending them again replays the first result.
(Playwright turns off Chromium's back/forward cache; a partner's Chrome may restore the page from it.)
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from engine import locker
from engine.locker.db import open_store
from live_support import ledger as live_ledger, require_chromium, seed_partners, serving, sign_in

pytestmark = pytest.mark.browser

ESSENTIAL_QUERY = "product=epo&version=2024&license=subscription&term_months=36&tier=essential&devices=100"
ESSENTIAL_VOUCHERS = (("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75))
THREE_ACTIVATIONS = ESSENTIAL_VOUCHERS * 3
AFTER_ONE = {"EPO-DEV-SUB-3Y": 150, "EPO-ESS-SUB-3Y": 2}  # THREE_ACTIVATIONS less one activation
AMENDMENTS = (("EPO-AMD-ESS-ADV", 36), ("EPO-AMD-ESS-ADV", 36))  # essential to advanced on the day: 36 months
USERS = {
    "activator": THREE_ACTIVATIONS,
    "redeemer": (),
    "amender": ESSENTIAL_VOUCHERS + AMENDMENTS,
    "double-clicker": THREE_ACTIVATIONS,
    "phone": ESSENTIAL_VOUCHERS + AMENDMENTS,
}
ACTIVATION_ID = re.compile(r"ACT-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}")
REPLAYED = "You had sent this form already: nothing was done a second time. This is its result."
A_MOMENT = 1_100  # milliseconds a partner looks at a result page: the session cookie is re-signed after it


def email_of(name: str) -> str:
    return f"{name}@integrator.example"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`companion serve` on a temporary SQLite file with the users of this module and a voucher code to redeem."""
    require_chromium()
    root = tmp_path_factory.mktemp("browser-money")
    url = f"sqlite:///{root / 'money.sqlite3'}"
    store = open_store(url)
    code = seed_partners(store, USERS, email_of, "Browser Money")
    with serving(root, url) as base:
        yield {"base": base, "store": store, "code": code}
    store.close()


def signed_in(new_page, site, name: str, **viewport):
    page = new_page(**viewport)
    sign_in(page, site["base"], email_of(name))
    return page


def submit(page, selector: str) -> None:
    """Press a form's button and wait for the page it leads to (after the redirect)."""
    with page.expect_navigation():
        page.click(selector)


def shown_id(page) -> str:
    return page.locator("#activation-id").inner_text().strip()


def flashes(page) -> list[str]:
    return page.locator(".flash").all_inner_texts()


def locker_balances(page, base: str) -> dict[str, int]:
    """The balances the Locker page shows."""
    page.goto(base + "/locker")
    rows = page.locator("#balances tbody tr")
    return {rows.nth(index).locator("td").nth(0).inner_text(): int(rows.nth(index).locator("td").nth(2).inner_text())
            for index in range(rows.count())}


def balances_in_another_tab(page, base: str) -> dict[str, int]:
    """The balances the Locker page shows, looked at in a second tab (the first keeps its history)."""
    tab = page.context.new_page()
    try:
        return locker_balances(tab, base)
    finally:
        tab.close()


def ledger(store, name: str) -> list[tuple]:
    """NAME's ledger rows, oldest first: (kind, reference, quantity, activation ID)."""
    return live_ledger(store, email_of(name))


def debits_of(store, name: str, activation_id: str) -> list[tuple]:
    return sorted((reference, quantity) for kind, reference, quantity, of in ledger(store, name)
                  if kind == "activation" and of == activation_id)


def activation_ids(store, name: str) -> list[str]:
    return [item.id for item in locker.list_activations(store, email_of(name))]


def reload_three_times(page, activation_id: str) -> None:
    """Read the result page a moment, then F5 three times: a GET of the stored activation, never the form again."""
    page.wait_for_timeout(A_MOMENT)
    for _ in range(3):
        page.reload()
        assert shown_id(page) == activation_id and REPLAYED not in flashes(page)


def test_activating_then_reloading_three_times_then_back_and_resubmitting_issues_one_activation_id(site, new_page):
    base, store = site["base"], site["store"]
    page = signed_in(new_page, site, "activator")
    page.goto(base + "/activate?" + ESSENTIAL_QUERY)
    submit(page, "#activate-button")
    assert re.search(r"/activations/ACT-", page.url)
    activation_id = shown_id(page)
    assert ACTIVATION_ID.fullmatch(activation_id)
    assert f"Activated: your Activation ID is {activation_id}." in flashes(page)
    reload_three_times(page, activation_id)
    assert balances_in_another_tab(page, base) == AFTER_ONE
    assert activation_ids(store, "activator") == [activation_id]
    assert debits_of(store, "activator", activation_id) == [("EPO-DEV-SUB-3Y", -75), ("EPO-ESS-SUB-3Y", -1)]
    page.go_back()
    assert page.url.endswith("/activate?" + ESSENTIAL_QUERY)
    submit(page, "#activate-button")
    assert shown_id(page) == activation_id, "a second Activation ID"
    assert REPLAYED in flashes(page)
    assert activation_ids(store, "activator") == [activation_id]
    assert locker_balances(page, base) == AFTER_ONE
    assert page.locator("main").inner_text().count(activation_id) == 1  # listed once under Activations
    assert locker.balances(store, email_of("activator")) == AFTER_ONE


def test_redeeming_then_reloading_three_times_then_back_and_resubmitting_credits_once(site, new_page):
    base, store, code = site["base"], site["store"], site["code"]
    page = signed_in(new_page, site, "redeemer")
    page.goto(base + "/locker")
    assert page.locator("#balances").inner_text() == "No vouchers yet."
    page.fill("input[name=code]", code)
    submit(page, "button:has-text('Redeem')")
    assert page.url == base + "/locker"
    assert f"Voucher {code} redeemed: 25 x EPO-DEV-SUB-3Y (balance 25)." in flashes(page)
    page.wait_for_timeout(A_MOMENT)
    for _ in range(3):
        page.reload()
        assert flashes(page) == []
    assert balances_in_another_tab(page, base) == {"EPO-DEV-SUB-3Y": 25}
    page.go_back()
    page.fill("input[name=code]", code)  # the field is not restored (autocomplete off): the partner types it again
    submit(page, "button:has-text('Redeem')")
    said, main = flashes(page), page.locator("main").inner_text()
    assert locker_balances(page, base) == {"EPO-DEV-SUB-3Y": 25}  # credited once, whatever the page said
    assert [row[:3] for row in ledger(store, "redeemer")] == [("redemption", "EPO-DEV-SUB-3Y", 25)]
    assert REPLAYED in said, said
    assert f"Voucher {code} redeemed: 25 x EPO-DEV-SUB-3Y (balance 25)." in said
    assert "already redeemed" not in main and "already been redeemed" not in main


def test_amending_with_activation_then_reloading_then_back_and_resubmitting_debits_once(site, new_page):
    base, store = site["base"], site["store"]
    page = signed_in(new_page, site, "amender")
    page.goto(base + "/activate?" + ESSENTIAL_QUERY)
    submit(page, "#activate-button")
    parent = shown_id(page)
    page.goto(base + "/subscriptions")
    form = page.locator(f"#amend-{parent}")
    assert form.locator("input[name=date]").input_value() == datetime.now(timezone.utc).date().isoformat()
    form.locator("select[name=tier]").select_option("advanced")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "36 months" in page.locator("#months").inner_text()  # activated today, amended today: the whole term
    submit(page, "#activate-change")
    amendment = shown_id(page)
    assert ACTIVATION_ID.fullmatch(amendment) and amendment != parent
    assert f"Amendment activated: the new Activation ID is {amendment}." in flashes(page)
    reload_three_times(page, amendment)
    assert balances_in_another_tab(page, base) == {"EPO-AMD-ESS-ADV": 36}
    page.go_back()
    assert f"/subscriptions/{parent}/amend?" in page.url
    # Whatever the page shows now, nothing more was debited (the parent can be amended once).
    assert activation_ids(store, "amender") == [parent, amendment]
    assert debits_of(store, "amender", amendment) == [("EPO-AMD-ESS-ADV", -36)]
    assert page.locator("#activate-change").count() == 1, page.locator("main").inner_text()[:300]
    submit(page, "#activate-change")
    assert shown_id(page) == amendment and REPLAYED in flashes(page)
    assert "already-changed" not in page.content()
    assert locker_balances(page, base) == {"EPO-AMD-ESS-ADV": 36}
    assert activation_ids(store, "amender") == [parent, amendment]


def wait_for_the_result(page) -> None:
    """Wait for an Activation ID's page after clicks whose first navigation Chromium may abort for the second
    (page.wait_for_url would report that abort as its own failure)."""
    for _ in range(600):
        if "/activations/ACT-" in page.url:
            break
        page.wait_for_timeout(25)
    page.wait_for_load_state()


def test_a_double_click_and_a_second_click_while_the_server_answers_issue_one_activation_id(site, new_page):
    base, store = site["base"], site["store"]
    page = signed_in(new_page, site, "double-clicker")
    page.goto(base + "/activate?" + ESSENTIAL_QUERY)
    page.dblclick("#activate-button")
    wait_for_the_result(page)
    first = shown_id(page)
    assert activation_ids(store, "double-clicker") == [first]

    # Chromium sends one POST for a double click. A server slow to answer gets two: hold the first answer back
    # until the second click has gone, as when a partner clicks again because nothing seems to happen. The page
    # shown again knows this configuration was activated; a second licence takes the explicit button.
    page.goto(base + "/activate?" + ESSENTIAL_QUERY)
    assert first in page.locator("#sent-before a").get_attribute("href")
    posts, held = [], []

    def slow_server(route):
        if route.request.method != "POST":
            route.continue_()
            return
        posts.append(route.request.post_data)
        answer = route.fetch(max_redirects=0)  # the server has answered, and acted, when this returns
        if len(posts) == 1:
            held.append(route)
        else:
            route.fulfill(response=answer)

    posting = re.compile(r".*/activate$")
    page.route(posting, slow_server)
    button = page.locator("#activate-another")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)  # the mouse: locator.click() would wait for the pending navigation
    for _ in range(400):
        if held:
            break
        page.wait_for_timeout(25)
    assert held, "the first click sent nothing"
    page.mouse.click(x, y)
    wait_for_the_result(page)
    try:
        held[0].abort()  # Chromium dropped this navigation for the second one
    except Exception:  # noqa: BLE001 - already cancelled
        pass
    page.unroute(posting)
    second = shown_id(page)
    assert len(posts) == 2 and posts[0] == posts[1]  # the same form, the same idempotency key, sent twice
    assert REPLAYED in flashes(page)
    assert second != first and activation_ids(store, "double-clicker") == [first, second]
    assert locker.balances(store, email_of("double-clicker")) == {"EPO-DEV-SUB-3Y": 75, "EPO-ESS-SUB-3Y": 1}


def press_on_a_phone(page, selector: str) -> str:
    """Press a button that must be visible, enabled and within the 390 px; return the Activation ID shown after."""
    button = page.locator(selector)
    button.scroll_into_view_if_needed()
    assert button.is_visible() and button.is_enabled()
    box = button.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box  # reachable without scrolling sideways
    submit(page, selector)  # Playwright's click also checks that nothing covers the button
    assert page.locator("#activation-id").is_visible()
    return shown_id(page)


def test_on_a_390_px_phone_the_activate_and_amend_buttons_work_and_show_the_id(site, new_page):
    base, store = site["base"], site["store"]
    page = signed_in(new_page, site, "phone", width=390, height=844)
    page.goto(base + "/activate?" + ESSENTIAL_QUERY)
    parent = press_on_a_phone(page, "#activate-button")
    page.goto(f"{base}/subscriptions/{parent}/amend?tier=advanced")
    amendment = press_on_a_phone(page, "#activate-change")
    assert ACTIVATION_ID.fullmatch(parent) and ACTIVATION_ID.fullmatch(amendment)
    assert activation_ids(store, "phone") == [parent, amendment]
