"""Bill-of-materials downloads, checkout and licence-update guidance in the web app (Flask test client).

Checkout talks to a small cart on 127.0.0.1 started by the tests; it fails, times out and deduplicates by
idempotency key on purpose, like the vendor's cart is expected to.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from engine.locker import accounts
from engine import locker
from engine.clock import Clock
from engine.services.exports import export_csv
from engine.inference.request import request_from_data
from web.state import compiled, store
from engine.locker.tables import OrderRow
from web_support import PASSWORD, csrf_of, issue, make_app, sign_in

BUYER = "buyer@integrator.example"  # power-management, US, purchasing account: SE Advantage, checkout
NO_ACCOUNT = "noaccount@integrator.example"  # power-management, US, no purchasing account
EBO = "ebo-us@integrator.example"  # building-automation, US: iPortal
ABROAD = "abroad@integrator.example"  # power-management, FR: Generic only
STRANGER = "stranger@elsewhere.example"
ACCOUNT = "12345678"
FAST = {"timeout": 0.3, "backoff": 0.01, "max_backoff": 0.05, "total": 5.0}
VALID = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36, "tier": "advanced",
         "devices": 150, "addons": [{"id": "insulation-monitoring", "quantity": 1}]}
REFUSED = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36, "tier": "essential",
           "devices": 150}
HEADERS = {"generic": "Line,Commercial reference,Description,Quantity,Term (months)",
           "se-advantage": "Catalog Number,Description,Qty,Term,Product,Version",
           "iportal": "Part Number,Quantity,Description,Subscription Months,Item Type"}


class Cart:
    """The vendor's cart on 127.0.0.1: follows a script of answers, then confirms; one order per idempotency key."""

    def __init__(self, script=()):
        self.script = list(script)  # per request: "500", "503", "422", "timeout", then "ok" forever
        self.received: list[dict] = []
        self.orders: dict[str, str] = {}
        self.lock = threading.Lock()
        cart = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers.get("Idempotency-Key")
                with cart.lock:
                    cart.received.append({"key": key, "body": body})
                    action = cart.script.pop(0) if cart.script else "ok"
                    if action in ("ok", "timeout"):  # a timeout: the order arrives, the answer does not
                        cart.orders.setdefault(key, f"SO-{len(cart.orders) + 1:06d}")
                if action == "timeout":
                    time.sleep(1.0)
                if action in ("500", "503", "422"):
                    self.answer(int(action), {"error": "unknown SKU" if action == "422" else "warehouse offline"})
                else:
                    self.answer(201, {"confirmation": cart.orders[key]})

            def answer(self, status, data):
                try:
                    raw = json.dumps(data).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/orders"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """An app of its own (its cart URL changes per test) with partners of every kind."""
    application = make_app(tmp_path_factory.mktemp("exports"), CHECKOUT_RETRY=FAST)
    with application.app_context():
        db = store()
        for email, badges, country, account in ((BUYER, ["power-management"], "US", ACCOUNT),
                                                (NO_ACCOUNT, ["power-management"], "US", None),
                                                (EBO, ["building-automation"], "US", None),
                                                (ABROAD, ["power-management"], "FR", None),
                                                (STRANGER, ["power-management"], "US", None)):
            locker.add_user(db, email, company="Müller & Söhne", badges=badges, country=country,
                            purchasing_account=account)
            accounts.set_password(db, email, PASSWORD)
    return application


@pytest.fixture
def cart_url(shop):
    """Point the app at a cart for one test (None: no cart configured)."""
    def use(url):
        shop.config["CART_URL"] = url
    yield use
    shop.config["CART_URL"] = None


def client_of(app, email):
    client = app.test_client()
    assert sign_in(client, email).status_code == 302
    return client


def save(app, email, name, configuration=VALID):
    with app.app_context():
        return accounts.save_project(store(), email, name, configuration)


def downloads(page: str) -> list[tuple[str, bool]]:
    """The offered templates of the first project on a page, in order: (template id, marked recommended)."""
    block = re.search(r'<ul class="downloads"[^>]*>(.*?)</ul>', page, re.S).group(1)
    return [(template, "badge" in rest) for template, rest in
            re.findall(r'data-template="([^"]+)".*?</a>(.*?)</li>', block, re.S)]


def stored_orders(app) -> int:
    with app.app_context():
        with store().transaction() as session:
            return session.scalar(select(func.count()).select_from(OrderRow))


def confirm_form(page: str) -> dict:
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
    return {"csrf_token": csrf_of(page), "idempotency_key": key}


# --- downloads -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("email, offered", [
    (BUYER, [("se-advantage", True), ("generic", False)]),
    (EBO, [("iportal", True), ("generic", False)]),
    (ABROAD, [("generic", True)]),
])
def test_projects_page_offers_only_the_partners_templates_recommended_first(shop, email, offered):
    project = save(shop, email, "Offer " + email,
                   {**VALID, "product": "ebo", "version": "7.0", "tier": "essential", "devices": 0, "addons": []}
                   if email == EBO else VALID)
    page = client_of(shop, email).get("/projects").text
    assert downloads(page) == offered
    for template, _ in offered:
        assert f"/projects/{project.id}/bom.csv?template={template}" in page
    hidden = set(HEADERS) - {template for template, _ in offered}
    assert not any(f"template={template}" in page for template in hidden)


def test_each_offered_template_downloads_as_a_csv_attachment(shop):
    project = save(shop, BUYER, "Hospital wing B")
    client = client_of(shop, BUYER)
    for template in ("se-advantage", "generic"):
        response = client.get(f"/projects/{project.id}/bom.csv?template={template}")
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.headers["Content-Disposition"] == f'attachment; filename="hospital-wing-b-{template}.csv"'
        text = response.data.decode("utf-8")
        assert text.startswith("\ufeff" + HEADERS[template] + "\r\n")
        assert "EPO-ADV-SUB-3Y" in text and "EPO-IMS-SUB-3Y" in text
        with shop.app_context():  # exactly the engine's file for this partner
            request = request_from_data({"partner": {"badges": ["power-management"], "country": "US",
                                                     "purchasing_account": ACCOUNT, "company": "Müller & Söhne"},
                                         "configuration": VALID}, compiled().catalog)
            assert response.data == export_csv(compiled(), request, template)
    default = client.get(f"/projects/{project.id}/bom.csv")  # no template: the recommended one
    assert default.data.decode("utf-8").startswith("\ufeff" + HEADERS["se-advantage"])


def test_a_building_automation_partner_gets_the_iportal_file(shop):
    project = save(shop, EBO, "Campus", {"product": "ebo", "version": "7.0", "license": "subscription",
                                         "term_months": 36, "tier": "essential", "devices": 0})
    response = client_of(shop, EBO).get(f"/projects/{project.id}/bom.csv?template=iportal")
    assert response.status_code == 200
    assert response.data.decode("utf-8").splitlines()[0] == "\ufeff" + HEADERS["iportal"]


def test_downloads_are_refused_with_a_clear_reason(shop):
    mine = save(shop, BUYER, "Mine")
    broken = save(shop, BUYER, "Too many devices", REFUSED)
    theirs = save(shop, STRANGER, "Theirs")
    client = client_of(shop, BUYER)

    not_offered = client.get(f"/projects/{mine.id}/bom.csv?template=iportal")
    assert not_offered.status_code == 403
    text = html.unescape(not_offered.text)
    assert "iPortal template is offered to building-automation partners in US" in text
    assert "your templates: se-advantage, generic" in text

    unknown = client.get(f"/projects/{mine.id}/bom.csv?template=genric")
    assert unknown.status_code == 422 and "did you mean 'generic'?" in html.unescape(unknown.text)

    invalid = client.get(f"/projects/{broken.id}/bom.csv?template=generic")
    assert invalid.status_code == 422
    text = html.unescape(invalid.text)
    assert "not a valid configuration" in text and "at most 100 devices" in text

    other = client.get(f"/projects/{theirs.id}/bom.csv?template=generic")
    assert other.status_code == 404 and "text/csv" not in other.headers["Content-Type"]

    anonymous = shop.test_client().get(f"/projects/{mine.id}/bom.csv?template=generic")
    assert anonymous.status_code == 302 and "/signin" in anonymous.headers["Location"]


def test_configure_offers_the_downloads_of_a_saved_unchanged_project(shop):
    client = client_of(shop, BUYER)
    query = "product=epo&version=2024&license=subscription&term_months=36&tier=advanced&devices=150"
    page = client.get("/configure?" + query).text
    assert 'id="exports"' not in page  # not saved yet
    configuration = html.unescape(re.search(r'name="configuration" value="([^"]+)"', page).group(1))
    saved = client.post("/projects", data={"csrf_token": csrf_of(page), "configuration": configuration,
                                           "name": "Saved on Configure", "action": "new"})
    page = client.get(saved.headers["Location"]).text
    assert downloads(page) == [("se-advantage", True), ("generic", False)]
    assert 'id="go-checkout"' in page
    changed = client.get(saved.headers["Location"].replace("devices=150", "devices=120")).text
    assert "save the changes to download" in changed and 'class="downloads"' not in changed


# --- the API ---------------------------------------------------------------------------------------------


def test_api_downloads_channels_and_guide(shop):
    project = save(shop, BUYER, "API project")
    theirs = save(shop, STRANGER, "API theirs")
    client = shop.test_client()
    token = client.post("/api/v1/tokens", json={"email": BUYER, "password": PASSWORD}).json["token"]
    bearer = {"Authorization": f"Bearer {token}"}

    response = client.get(f"/api/v1/projects/{project.id}/bom.csv?template=generic", headers=bearer)
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.data.decode("utf-8").startswith("\ufeff" + HEADERS["generic"])
    refused = client.get(f"/api/v1/projects/{project.id}/bom.csv?template=iportal", headers=bearer)
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "template-not-offered" and refused.json["error"]["path"] == "template"
    assert client.get(f"/api/v1/projects/{theirs.id}/bom.csv", headers=bearer).status_code == 404

    posted = client.post("/api/v1/bom", json={"configuration": VALID, "template": "se-advantage"}, headers=bearer)
    assert posted.status_code == 200 and posted.data.decode("utf-8").startswith("\ufeff" + HEADERS["se-advantage"])
    invalid = client.post("/api/v1/bom", json={"configuration": REFUSED}, headers=bearer)
    assert invalid.status_code == 422 and invalid.json["error"]["code"] == "configuration-refused"

    offer = client.get("/api/v1/channels?product=epo", headers=bearer).json
    assert [item["id"] for item in offer["templates"]] == ["se-advantage", "generic"]
    assert offer["recommended"] == "se-advantage" and offer["checkout"]["allowed"] is True
    assert [item["id"] for item in offer["hidden"]] == ["iportal"]
    typo = client.get("/api/v1/channels?product=epp", headers=bearer)
    assert typo.status_code == 422 and typo.json["error"]["path"] == "product"

    guide = client.get("/api/v1/update-guide?product=epo&version=2022&mode=offline&event=renewal", headers=bearer)
    assert guide.status_code == 200 and guide.json["summary"] == "return the licence and activate it again"
    wrong = client.get("/api/v1/update-guide?product=epo&version=2023&mode=online", headers=bearer)
    assert wrong.status_code == 422 and wrong.json["error"]["path"] == "version"
    assert "did you mean '2024'?" in wrong.json["problems"][0]["hint"]


# --- checkout --------------------------------------------------------------------------------------------


def test_without_a_purchasing_account_the_partner_is_sent_to_the_sales_representative(shop, cart_url):
    project = save(shop, NO_ACCOUNT, "No account")
    client = client_of(shop, NO_ACCOUNT)
    with Cart() as cart:
        cart_url(cart.url)
        page = client.get("/projects").text
        assert "Proceed to checkout" not in page
        assert "contact your" in page and "sales representative" in page
        review = client.get(f"/projects/{project.id}/checkout")
        assert review.status_code == 403
        assert "sales representative" in review.text and 'id="confirm-order"' not in review.text
        forced = client.post(f"/projects/{project.id}/checkout",
                             data={"csrf_token": csrf_of(page), "idempotency_key": "companion-x"})
        assert forced.status_code == 403
    assert cart.received == []


def test_checkout_reviews_confirms_and_stores_the_confirmation_number(shop, cart_url):
    project = save(shop, BUYER, "Substation 9")
    client = client_of(shop, BUYER)
    before = stored_orders(shop)
    with Cart() as cart:
        cart_url(cart.url)
        assert "Proceed to checkout" in client.get("/projects").text
        review = client.get(f"/projects/{project.id}/checkout")
        assert review.status_code == 200
        text = html.unescape(review.text)
        assert "Review the order" in text and ACCOUNT in text and cart.url in text
        assert "EPO-ADV-SUB-3Y" in text and "EPO-IMS-SUB-3Y" in text and '"idempotency_key"' in text
        assert cart.received == []  # reviewing sends nothing
        without_csrf = client.post(f"/projects/{project.id}/checkout", data=confirm_form(review.text) | {
            "csrf_token": ""})
        assert without_csrf.status_code == 403 and cart.received == []
        done = client.post(f"/projects/{project.id}/checkout", data=confirm_form(review.text))
        assert done.status_code == 303
        page = client.get(done.headers["Location"]).text
    assert "Order placed: confirmation number SO-000001." in page
    assert '<output class="confirmation" id="confirmation-number">SO-000001</output>' in page
    assert 'id="confirm-order"' not in page
    [sent] = cart.received
    assert sent["body"]["account"] == ACCOUNT and sent["body"]["project"] == str(project.id)
    assert sent["key"] == sent["body"]["idempotency_key"]
    assert stored_orders(shop) == before + 1
    listing = client.get("/projects").text
    assert re.search(rf'id="project-{project.id}".*?SO-000001', listing, re.S)


def test_a_double_confirm_places_one_order(shop, cart_url):
    project = save(shop, BUYER, "Pressed twice")
    client = client_of(shop, BUYER)
    before = stored_orders(shop)
    with Cart() as cart:
        cart_url(cart.url)
        review = client.get(f"/projects/{project.id}/checkout").text
        first = client.post(f"/projects/{project.id}/checkout", data=confirm_form(review))
        second = client.post(f"/projects/{project.id}/checkout", data=confirm_form(review))  # the stale page again
        assert first.status_code == second.status_code == 303
        page = client.get(second.headers["Location"]).text
    assert len(cart.received) == 2 and len({item["key"] for item in cart.received}) == 1
    assert len(cart.orders) == 1  # the cart saw the same key twice and placed one order
    assert stored_orders(shop) == before + 1  # and the project keeps one confirmation
    assert page.count('class="confirmation"') == 1 and "SO-000001" in page


def test_a_cart_failing_first_then_timing_out_gets_one_order(shop, cart_url):
    project = save(shop, BUYER, "Flaky cart")
    client = client_of(shop, BUYER)
    with Cart(["503", "timeout", "ok"]) as cart:
        cart_url(cart.url)
        review = client.get(f"/projects/{project.id}/checkout").text
        done = client.post(f"/projects/{project.id}/checkout", data=confirm_form(review))
        assert done.status_code == 303
        page = client.get(done.headers["Location"]).text
    assert len(cart.received) == 3 and len({item["key"] for item in cart.received}) == 1
    assert len(cart.orders) == 1 and "SO-000001" in page


def test_when_every_attempt_fails_the_partner_reads_why_and_can_try_again(shop, cart_url):
    project = save(shop, BUYER, "Cart down")
    client = client_of(shop, BUYER)
    before = stored_orders(shop)
    with Cart(["503"] * 4) as cart:
        cart_url(cart.url)
        review = client.get(f"/projects/{project.id}/checkout").text
        failed = client.post(f"/projects/{project.id}/checkout", data=confirm_form(review))
        assert failed.status_code == 502
        text = html.unescape(failed.text)
        assert "did not confirm the order after 4 attempts" in text and "HTTP 503" in text
        assert "It is safe to try again" in text and 'id="confirm-order"' in text and "Try again" in text
        assert stored_orders(shop) == before and cart.orders == {}
        again = client.post(f"/projects/{project.id}/checkout", data=confirm_form(failed.text))
        assert again.status_code == 303
    assert len(cart.orders) == 1 and stored_orders(shop) == before + 1


def test_a_cart_refusal_is_final_and_shown(shop, cart_url):
    project = save(shop, BUYER, "Refused by the cart")
    client = client_of(shop, BUYER)
    with Cart(["422"]) as cart:
        cart_url(cart.url)
        review = client.get(f"/projects/{project.id}/checkout").text
        failed = client.post(f"/projects/{project.id}/checkout", data=confirm_form(review))
    assert failed.status_code == 502 and len(cart.received) == 1
    text = html.unescape(failed.text)
    assert "refused the order (HTTP 422: unknown SKU)" in text and 'id="confirm-order"' not in text


def test_a_changed_order_must_be_reviewed_again_and_no_cart_means_no_button(shop, cart_url):
    project = save(shop, BUYER, "Stale review")
    client = client_of(shop, BUYER)
    with Cart() as cart:
        cart_url(cart.url)
        review = client.get(f"/projects/{project.id}/checkout").text
        stale = client.post(f"/projects/{project.id}/checkout", data=confirm_form(review) | {
            "idempotency_key": "companion-0000"})
        assert stale.status_code == 303
        assert "changed since you reviewed it" in client.get(stale.headers["Location"]).text
    assert cart.received == []
    cart_url(None)
    page = client.get(f"/projects/{project.id}/checkout")
    assert "no cart URL is configured" in page.text and 'id="confirm-order"' not in page.text
    refused = client.post(f"/projects/{project.id}/checkout", data=confirm_form(review))
    assert refused.status_code == 503 and "no cart URL is configured" in refused.text


def test_checkout_of_an_invalid_or_foreign_project_is_refused(shop, cart_url):
    broken = save(shop, BUYER, "Broken order", REFUSED)
    theirs = save(shop, STRANGER, "Not yours")
    client = client_of(shop, BUYER)
    with Cart() as cart:
        cart_url(cart.url)
        page = client.get(f"/projects/{broken.id}/checkout")
        assert page.status_code == 422 and "cannot be ordered" in page.text
        assert 'id="confirm-order"' not in page.text
        assert client.get(f"/projects/{theirs.id}/checkout").status_code == 404
    assert cart.received == []


# --- licence-update guidance -----------------------------------------------------------------------------


def guide_panel(page: str) -> str:
    return html.unescape(re.search(r'<section class="update-guide".*?</section>', page, re.S).group(0))


def test_the_guidance_panel_follows_activation_amendment_and_renewal(shop, monkeypatch):
    email = "guided@integrator.example"
    with shop.app_context():
        locker.add_user(store(), email, company="T", badges=["power-management"], country="US")
        accounts.set_password(store(), email, PASSWORD)
    client = client_of(shop, email)
    page = client.get("/activate?product=epo&version=2022&license=subscription&term_months=36&tier=essential"
                      "&devices=100").text
    assert 'id="update-guide"' not in page
    for reference, quantity in (("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75), ("EPO-AMD-ESS-ADV", 33),
                                ("EPO-ADV-SUB-1Y", 1), ("EPO-DEV-SUB-1Y", 75)):
        [code] = issue(shop, reference, quantity)
        client.post("/locker/redeem", data={"csrf_token": csrf_of(page), "code": code})
    configuration = html.unescape(re.search(r'name="configuration" value="([^"]+)"', page).group(1))
    monkeypatch.setitem(shop.config, "CLOCK", Clock(fixed=date(2025, 6, 1)))
    done = client.post("/activate", data={"csrf_token": csrf_of(page), "configuration": configuration},
                       follow_redirects=True).text
    activation_id = re.search(r'<output id="activation-id">([^<]+)</output>', done).group(1)
    panel = guide_panel(done)
    assert "EcoStruxure Power Operation 2022" in panel
    assert "Online system: activate the licence online" in panel
    assert "Offline system: activate the licence offline" in panel
    assert f"enter the Activation ID {activation_id}" in panel and "sample text" in panel

    monkeypatch.setitem(shop.config, "CLOCK", Clock(fixed=date(2025, 9, 1)))
    amended = client.post(f"/subscriptions/{activation_id}/amend", data={
        "csrf_token": csrf_of(page), "date": "2025-09-01", "tier": "advanced", "devices": "100"},
        follow_redirects=True).text
    panel = guide_panel(amended)
    assert "Online system: refresh the licence" in panel
    assert "Offline system: return the licence and activate it again" in panel
    assert f"Activation ID {activation_id}" in panel and "2022" in panel

    amendment_id = re.search(r'<output id="activation-id">([^<]+)</output>', amended).group(1)
    monkeypatch.setitem(shop.config, "CLOCK", Clock(fixed=date(2028, 5, 1)))
    renewed = client.post(f"/subscriptions/{amendment_id}/renew", data={
        "csrf_token": csrf_of(page), "date": "2028-05-01", "term_months": "12"}, follow_redirects=True).text
    panel = guide_panel(renewed)
    assert "Renewal activated" in renewed
    assert "Online system: refresh the licence" in panel and f"Activation ID {amendment_id}" in panel


def test_deleting_an_ordered_project_keeps_its_order(shop, cart_url):
    project = save(shop, BUYER, "Ordered then deleted")
    client = client_of(shop, BUYER)
    with Cart() as cart:
        cart_url(cart.url)
        review = client.get(f"/projects/{project.id}/checkout").text
        assert client.post(f"/projects/{project.id}/checkout", data=confirm_form(review)).status_code == 303
    before = stored_orders(shop)
    page = client.get("/projects").text
    assert client.post(f"/projects/{project.id}/delete", data={"csrf_token": csrf_of(page)}).status_code == 303
    assert stored_orders(shop) == before
    with shop.app_context():
        with store().transaction() as session:
            row = session.scalar(select(OrderRow).where(OrderRow.project_name == "Ordered then deleted"))
            assert row.project_id is None and row.confirmation == "SO-000001"


def test_a_new_project_with_a_deleted_projects_id_places_its_own_order(shop, cart_url):
    """Regression: SQLite gives a deleted project's id to the next one; its order had the old key and the cart
    answered with the old confirmation, so no order was placed."""
    first = save(shop, BUYER, "Ordered, deleted, id reused")
    client = client_of(shop, BUYER)
    with Cart() as cart:
        cart_url(cart.url)
        review = client.get(f"/projects/{first.id}/checkout").text
        assert client.post(f"/projects/{first.id}/checkout", data=confirm_form(review)).status_code == 303
        page = client.get("/projects").text
        assert client.post(f"/projects/{first.id}/delete", data={"csrf_token": csrf_of(page)}).status_code == 303
        second = save(shop, BUYER, "Ordered, deleted, id reused")  # the same configuration, the same name
        assert second.id == first.id  # the premise: SQLite reused the id
        review = client.get(f"/projects/{second.id}/checkout").text
        done = client.post(f"/projects/{second.id}/checkout", data=confirm_form(review))
        page = client.get(done.headers["Location"]).text
    assert len(cart.received) == 2 and cart.received[0]["key"] != cart.received[1]["key"]
    assert len(cart.orders) == 2 and "Order placed: confirmation number SO-000002." in page
