"""Browser tests: Playwright drives Debian's Chromium (/usr/bin/chromium, never a downloaded browser) against
`companion serve` (gunicorn) on 127.0.0.1 with a temporary database and a temporary copy of the rules.
Screenshots of failing tests go to test-artifacts/."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from engine.locker import accounts
from engine import locker
from engine.catalogue.schema import BUNDLED_RULES
from engine.locker.db import open_store
from live_support import require_chromium, serving, sign_in
from web_support import MANAGER, PARTNER, PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`companion serve` with 2 workers on a free port, a temporary database and a temporary rules copy."""
    require_chromium()
    root = tmp_path_factory.mktemp("browser")
    rules = root / "rules"
    shutil.copytree(BUNDLED_RULES, rules)
    url = f"sqlite:///{root / 'browser.sqlite3'}"
    with open_store(url) as store:
        for email, badges, role in ((PARTNER, ["power-management"], "partner"), (MANAGER, [], "product-manager")):
            locker.add_user(store, email, company="Browser Test", badges=badges, country="US")
            accounts.set_password(store, email, PASSWORD, role)
        vouchers = {reference: locker.issue_vouchers(store, reference, quantity)[0]
                    for reference, quantity in (("EPO-ADV-SUB-3Y", 1), ("EPO-IMS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 50))}
    with serving(root, url, rules) as base:
        yield {"base": base, "rules": rules, "vouchers": vouchers, "log": root / "serve.log"}


def choose(page, selector: str) -> None:
    """Click a choice; the page's script re-submits the form, wait for the new page."""
    with page.expect_navigation():
        page.check(selector)


def test_partner_configures_saves_downloads_redeems_activates_and_amends(server, new_page):
    base = server["base"]
    page = new_page()
    sign_in(page, base, PARTNER)
    choose(page, "input[name=product][value=epo]")
    choose(page, "input[name=license][value=subscription]")
    choose(page, "input[name=term_months][value='36']")
    choose(page, "input[name=tier][value=essential]")
    monitoring = page.locator("[data-addon=insulation-monitoring]")
    assert monitoring.locator("input[type=checkbox]").is_disabled()
    assert "needs tier advanced or higher" in monitoring.locator(".refused").inner_text()
    choose(page, "input[name=tier][value=advanced]")  # the fix
    assert monitoring.locator("input[type=checkbox]").is_enabled()
    choose(page, "[data-addon=insulation-monitoring] input[type=checkbox]")
    with page.expect_navigation():
        page.fill("input[name=devices]", "100")
        page.press("input[name=devices]", "Tab")
    assert page.locator("#verdict h2").inner_text() == "Valid configuration"
    assert "EPO-IMS-SUB-3Y" in page.locator("#verdict").inner_text()

    page.fill("input[name=name]", "Substation 7")
    with page.expect_navigation():
        page.click("button:has-text('Save as project')")
    assert "Project “Substation 7” saved." in page.locator(".flash").inner_text()
    recommended = page.locator("#exports a.download.recommended")  # a power-management partner in the US
    assert recommended.get_attribute("data-template") == "se-advantage"
    assert page.locator("#exports a.download").count() == 2  # SE Advantage and Generic; iPortal is hidden
    with page.expect_download() as download_info:
        recommended.click()
    download = download_info.value
    assert download.suggested_filename == "substation-7-se-advantage.csv"
    rows = Path(download.path()).read_bytes().decode("utf-8-sig").splitlines()
    assert rows[0] == "Catalog Number,Description,Qty,Term,Product,Version"
    assert any(row.startswith("EPO-IMS-SUB-3Y,") for row in rows[1:])
    assert "sales representative" in page.locator("#checkout-message").inner_text()  # no purchasing account
    page.goto(base + "/projects")
    assert "Substation 7" in page.locator("table.projects").inner_text()

    page.goto(base + "/locker")
    for code in server["vouchers"].values():
        page.fill("input[name=code]", code)
        with page.expect_navigation():
            page.click("button:has-text('Redeem')")
        assert "redeemed" in page.locator(".flash").first.inner_text()
    assert "EPO-DEV-SUB-3Y" in page.locator("#balances").inner_text()

    page.goto(base + "/projects")
    page.click("table.projects a:has-text('Activate')")
    assert page.locator("input[name=date]").count() == 0  # the server dates the activation: today
    with page.expect_navigation():
        page.click("#activate-button")
    activation_id = page.locator("#activation-id").inner_text().strip()
    assert re.fullmatch(r"ACT-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", activation_id)
    guide = page.locator("#update-guide")  # how to put the licence on the installed system, both ways
    assert "activate the licence online" in guide.locator("#guide-online").inner_text()
    assert "offline" in guide.locator("#guide-offline").inner_text()
    assert activation_id in guide.locator("#guide-offline").inner_text()

    page.goto(base + "/subscriptions")
    form = page.locator(f"#amend-{activation_id}")
    form.locator("select[name=tier]").select_option("expert")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    # Activated today and amended today: the whole 36-month term is left to charge.
    assert "36 months" in page.locator("#months").inner_text()
    assert "36" in page.locator("#lines").inner_text() and "EPO-AMD-ADV-EXP" in page.locator("#lines").inner_text()


def test_product_manager_sees_a_broken_rule_file_located_while_partners_keep_working(server, new_page):
    base, rules = server["base"], server["rules"]
    manager, partner = new_page(), new_page()
    sign_in(manager, base, MANAGER)
    manager.goto(base + "/catalogue")
    assert "Rules load cleanly" in manager.locator("#reload-state").inner_text()
    assert manager.locator("svg.diagram").count() >= 3
    version = manager.locator("#rules-version").inner_text()
    tiers = rules / "tiers.yaml"
    good = tiers.read_text()
    try:
        tiers.write_text(good.replace("- {from: advanced, to: expert}", "- {from: advanced, to: expret}"))
        stat = tiers.stat()
        os.utime(tiers, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        time.sleep(1.2)  # each worker checks the files at most once a second
        with manager.expect_navigation():
            manager.click("button:has-text('Check the rule files now')")
        problems = manager.locator("#reload-problems").inner_text()
        assert re.search(r"tiers\.yaml:\d+:\d+", problems) and "expret" in problems
        assert manager.locator("#rules-version").inner_text() == version

        sign_in(partner, base, PARTNER)
        partner.goto(base + "/configure?product=epo&license=subscription&term_months=36&tier=advanced&devices=50")
        assert partner.locator("#verdict h2").inner_text() == "Valid configuration"
    finally:
        tiers.write_text(good)
