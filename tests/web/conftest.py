"""Fixtures of the web tests: one app on a temporary database with the test users, signed-in clients."""

from __future__ import annotations

import shutil
from datetime import date

import pytest

from engine.clock import Clock
from engine.catalogue.schema import BUNDLED_RULES
from live_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_chromium
from web_support import MANAGER, make_app, seed_users, sign_in, token_for


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    """One app, bundled rules, a temporary database with the test users."""
    application = make_app(tmp_path_factory.mktemp("web"))
    seed_users(application)
    return application


@pytest.fixture
def clock(app):
    """Set the server's date of the shared app for one test: clock("2025-06-01"); the real clock comes back after."""
    saved = app.config["CLOCK"]

    def set_day(day: str) -> None:
        app.config["CLOCK"] = Clock(fixed=date.fromisoformat(day))

    yield set_day
    app.config["CLOCK"] = saved


@pytest.fixture
def client(app):
    """An anonymous client."""
    return app.test_client()


@pytest.fixture
def partner(app):
    """A client signed in as the power-management partner."""
    client = app.test_client()
    assert sign_in(client).status_code == 302
    return client


@pytest.fixture
def manager(app):
    """A client signed in as the product manager."""
    client = app.test_client()
    assert sign_in(client, MANAGER).status_code == 302
    return client


@pytest.fixture
def bearer(client):
    """The partner's bearer header."""
    return token_for(client)


@pytest.fixture
def rules_copy(tmp_path):
    """A private copy of the bundled rules (for edits)."""
    target = tmp_path / "rules"
    shutil.copytree(BUNDLED_RULES, target)
    return target


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (one per test module)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser, request):
    """Open pages in fresh contexts (new_page(width=390) for a phone); screenshot them all when the test fails."""
    pages = []

    def open_page(width: int = 1280, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(15_000)
        pages.append(page)
        return page

    yield open_page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for index, page in enumerate(pages):
            try:
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{index}.png"), full_page=True)
            except Exception:  # noqa: BLE001 - a screenshot must never hide the real failure
                pass
    for page in pages:
        page.context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (browser tests screenshot their pages when the call failed)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
