"""The pages: sign in and out, Configure, Projects, Activate, Subscriptions, Locker, Catalogue."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from web_support import NO_PASSWORD, OTHER, PASSWORD, PARTNER, csrf_of, issue, sign_in

PAGES = ["/configure", "/projects", "/activate", "/subscriptions", "/locker", "/catalogue"]
EPO = {"product": "epo", "prev_product": "epo", "license": "subscription", "term_months": "36"}


def configure_url(**fields) -> str:
    pairs = [(key, value) for key, value in {**EPO, **fields}.items() if key != "addons"]
    pairs += [("addon", addon) for addon in fields.get("addons", ())]
    return "/configure?" + urlencode(pairs)


@pytest.mark.parametrize("page", PAGES)
def test_pages_send_anonymous_visitors_to_sign_in(client, page):
    response = client.get(page)
    assert response.status_code == 302 and response.location.startswith("/signin?next=")


def test_sign_in_wrong_password_and_unknown_users_get_the_same_answer(client):
    for email, password in ((PARTNER, "wrong password here"), ("nobody@x.example", PASSWORD), (NO_PASSWORD, PASSWORD)):
        response = sign_in(client, email, password)
        assert response.status_code == 401 and "Wrong email or password." in response.text


def test_sign_in_sets_a_hardened_cookie_and_sign_out_ends_the_session(client):
    response = sign_in(client)
    assert response.status_code == 302 and response.location == "/configure"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = client.get("/configure")
    assert page.status_code == 200 and PARTNER in page.text
    assert client.post("/signout", data={"csrf_token": csrf_of(page.text)}).status_code == 302
    assert client.get("/configure").status_code == 302


def test_secure_cookie_flag_when_configured(tmp_path):
    from web_support import make_app, seed_users

    app = make_app(tmp_path, SESSION_COOKIE_SECURE=True)
    seed_users(app)
    client = app.test_client()
    response = sign_in(client)
    assert "Secure" in response.headers["Set-Cookie"]


def test_sign_in_without_csrf_token_is_refused(client):
    response = client.post("/signin", data={"email": PARTNER, "password": PASSWORD})
    assert response.status_code == 403 and "csrf" in response.text.lower()


def test_sign_in_is_rate_limited(tmp_path):
    from web_support import make_app, seed_users

    app = make_app(tmp_path, SIGNIN_LIMIT="3 per minute")
    seed_users(app)
    client = app.test_client()
    statuses = [sign_in(client, PARTNER, "wrong password here").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert client.post("/api/v1/tokens", json={"email": PARTNER, "password": PASSWORD}).status_code == 429


def test_sign_in_goes_back_to_a_local_page_only(client):
    token = csrf_of(client.get("/signin").text)
    response = client.post("/signin", data={"email": PARTNER, "password": PASSWORD, "csrf_token": token,
                                            "next": "https://evil.example/"})
    assert response.location == "/configure"
    token = csrf_of(client.get("/signin").text)  # signing in starts a new session, with a new token
    response = client.post("/signin", data={"email": PARTNER, "password": PASSWORD, "csrf_token": token,
                                            "next": "/locker"})
    assert response.location == "/locker"


def test_a_password_change_signs_sessions_out(app, tmp_path):
    from engine.locker import accounts
    from engine import locker
    from web.state import store

    email = "changing@integrator.example"
    with app.app_context():
        locker.add_user(store(), email, company="T", badges=["power-management"], country="US")
        accounts.set_password(store(), email, PASSWORD)
    client = app.test_client()
    assert sign_in(client, email).status_code == 302
    assert client.get("/locker").status_code == 200
    with app.app_context():
        accounts.set_password(store(), email, "another long passphrase")
    assert client.get("/locker").status_code == 302


def test_configure_offers_only_allowed_choices_and_says_why_not(partner):
    page = partner.get(configure_url(tier="essential")).text
    assert re.search(r'value="insulation-monitoring"[^>]*disabled', page)
    assert not re.search(r'value="powerscada-anywhere"[^>]*disabled', page)
    assert "needs tier advanced or higher" in page
    products = page[page.index('id="choice-product"'):page.index('id="choice-version"')]
    assert re.search(r'value="ebo"[^>]*disabled', products)
    assert "contact your vendor representative" in products


def test_configure_fixed_configuration_is_valid_with_bom_and_explanation(partner):
    page = partner.get(configure_url(tier="advanced", devices="150", addons=["insulation-monitoring"])).text
    assert "Valid configuration" in page
    assert "EPO-IMS-SUB-3Y" in page and "EPO-ADV-SUB-3Y" in page
    assert "Why: the rules that decided" in page and "addon.epo.insulation-monitoring" in page
    assert 'name="name"' in page and "/activate?" in page


def test_configure_changing_product_resets_the_other_choices(partner):
    page = partner.get("/configure?product=pme&prev_product=epo&tier=advanced&addon=insulation-monitoring").text
    assert 'class="problems"' not in page  # the epo add-on and tier were dropped, not reported as unknown
    assert 'value="pme" checked' in page


def test_configure_bad_number_is_reported_with_its_path(partner):
    page = partner.get(configure_url(devices="lots")).text
    assert "configuration.devices" in page and "not a whole number" in page


def test_projects_save_open_copy_delete_and_privacy(app, partner):
    page = partner.get(configure_url(tier="advanced")).text
    configuration = re.search(r'name="configuration" value="([^"]+)"', page).group(1).replace("&#34;", '"')
    token = csrf_of(page)
    saved = partner.post("/projects", data={"csrf_token": token, "name": "Plant A", "configuration": configuration,
                                            "action": "new"})
    assert saved.status_code == 303 and "project=" in saved.location
    listing = partner.get("/projects").text
    assert "Plant A" in listing
    project_id = int(re.search(r"/projects/(\d+)\"", listing).group(1))
    reopened = partner.get(f"/projects/{project_id}")
    assert reopened.status_code == 302 and "tier=advanced" in reopened.location
    assert partner.post(f"/projects/{project_id}/copy", data={"csrf_token": token}).status_code == 303
    assert "Plant A (copy)" in partner.get("/projects").text
    other = app.test_client()
    sign_in(other, OTHER)
    assert other.get(f"/projects/{project_id}").status_code == 404
    assert other.post(f"/projects/{project_id}/delete", data={"csrf_token": csrf_of(other.get("/projects").text)}
                      ).status_code == 404
    assert partner.post(f"/projects/{project_id}/delete", data={"csrf_token": token}).status_code == 303
    assert partner.get(f"/projects/{project_id}").status_code == 404


def test_forms_without_csrf_are_refused(partner):
    for url, data in (("/projects", {"name": "x", "configuration": "{}"}), ("/locker/redeem", {"code": "x"}),
                      ("/activate", {"configuration": "{}"}), ("/signout", {})):
        response = partner.post(url, data=data)
        assert response.status_code == 403, url


def test_locker_redeem_invite_and_accept(app):
    owner, guest = app.test_client(), app.test_client()
    sign_in(owner, OTHER)
    [code] = issue(app, "EPO-DEV-SUB-3Y", 25)
    page = owner.get("/locker").text
    response = owner.post("/locker/redeem", data={"csrf_token": csrf_of(page), "code": code}, follow_redirects=True)
    assert "redeemed: 25 x EPO-DEV-SUB-3Y" in response.text and "EPO-DEV-SUB-3Y" in response.text
    response = owner.post("/locker/redeem", data={"csrf_token": csrf_of(page), "code": "ZZZZ"}, follow_redirects=True)
    assert 'class="flash error"' in response.text
    guest_email = "guest@integrator.example"
    from engine.locker import accounts
    from engine import locker
    from web.state import store

    with app.app_context():
        locker.add_user(store(), guest_email, company="T", badges=["power-management"], country="US")
        accounts.set_password(store(), guest_email, PASSWORD)
    response = owner.post("/locker/invite", data={"csrf_token": csrf_of(page), "email": guest_email},
                          follow_redirects=True)
    assert f"sent to {guest_email}" in response.text and "outside your company" in response.text
    sign_in(guest, guest_email)
    page = guest.get("/locker").text
    assert "invites you" in page
    invitation = re.search(r'name="invitation" value="([^"]+)"', page).group(1)
    response = guest.post("/locker/accept", data={"csrf_token": csrf_of(page), "invitation": invitation},
                          follow_redirects=True)
    assert "You now share locker" in response.text and "EPO-DEV-SUB-3Y" in response.text


def test_activate_shows_the_shortfall_then_the_activation_id_and_amend_shows_33_months(app, clock):
    client = app.test_client()
    email = "activator@integrator.example"
    from engine.locker import accounts
    from engine import locker
    from web.state import store

    with app.app_context():
        locker.add_user(store(), email, company="T", badges=["power-management"], country="US")
        accounts.set_password(store(), email, PASSWORD)
    sign_in(client, email)
    query = "product=epo&license=subscription&term_months=36&tier=essential&devices=100"
    page = client.get("/activate?" + query).text
    assert "Activate from my locker" in page
    configuration = re.search(r'name="configuration" value="([^"]+)"', page).group(1).replace("&#34;", '"')
    assert "short of vouchers" in page and "EPO-ESS-SUB-3Y" in page  # before pressing anything
    clock("2025-06-01")
    short = client.post("/activate", data={"csrf_token": csrf_of(page), "configuration": configuration},
                        follow_redirects=True)
    assert "Not activated: your locker is short of" in short.text and "1 × EPO-ESS-SUB-3Y" in short.text
    assert "short of vouchers" in short.text and "EPO-ESS-SUB-3Y" in short.text
    for reference, quantity in (("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75)):
        [code] = issue(app, reference, quantity)
        client.post("/locker/redeem", data={"csrf_token": csrf_of(page), "code": code})
    done = client.post("/activate", data={"csrf_token": csrf_of(page), "configuration": configuration},
                       follow_redirects=True)
    activation_id = re.search(r'<output id="activation-id">([^<]+)</output>', done.text).group(1)
    assert activation_id.startswith("ACT-")
    listing = client.get("/subscriptions").text
    assert activation_id in listing and "Amend during the term" in listing
    preview = client.get(f"/subscriptions/{activation_id}/amend?date=2025-09-01&tier=advanced&devices=100")
    assert preview.status_code == 200
    assert "<strong>33 months</strong>" in preview.text and "EPO-AMD-ESS-ADV" in preview.text
    [code] = issue(app, "EPO-AMD-ESS-ADV", 33)
    client.post("/locker/redeem", data={"csrf_token": csrf_of(page), "code": code})
    clock("2025-09-01")
    amended = client.post(f"/subscriptions/{activation_id}/amend", data={
        "csrf_token": csrf_of(page), "date": "2025-09-01", "tier": "advanced", "devices": "100"},
        follow_redirects=True)
    amendment_id = re.search(r'<output id="activation-id">([^<]+)</output>', amended.text).group(1)
    assert amendment_id.startswith("ACT-") and amendment_id != activation_id
    listing = client.get("/subscriptions").text
    assert f"amendment of {activation_id}" in listing and "Superseded" in listing
    superseded = client.get(f"/subscriptions/{activation_id}/renew?date=2028-05-01&term_months=12")
    assert superseded.status_code == 409 and amendment_id in superseded.text  # renew the amendment instead
    renewal = client.get(f"/subscriptions/{amendment_id}/renew?date=2028-05-01&term_months=12")
    assert "New term" in renewal.text and "2028-06-01" in renewal.text  # the amendment keeps the 2025-06-01 term


def test_another_users_activation_is_refused(app, partner):
    response = partner.get("/subscriptions/ACT-2222-2222-2222-2222/amend?date=2025-09-01")
    assert response.status_code in (404, 422)
    assert "Traceback" not in response.text


def test_catalogue_page_for_product_managers_only(manager, partner):
    page = manager.get("/catalogue")
    assert page.status_code == 200
    assert "<svg" in page.text and "upgrade.epo.essential.advanced" in page.text
    assert "addon.epo.insulation-monitoring" in page.text and "addons.yaml:" in page.text
    assert "Rules load cleanly" in page.text
    assert partner.get("/catalogue").status_code == 403


def test_unknown_page_is_a_plain_404(partner):
    response = partner.get("/no-such-page")
    assert response.status_code == 404 and "Not found" in response.text


def test_security_headers(client):
    response = client.get("/signin")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_account_cache_trusts_a_lookup_for_its_ttl_only(tmp_path):
    from engine.locker import accounts
    from web.state import store
    from web_support import make_app, seed_users

    app = make_app(tmp_path, ACCOUNT_CACHE_SECONDS=3600)
    seed_users(app)
    client = app.test_client()
    sign_in(client, PARTNER)
    assert client.get("/locker").status_code == 200
    with app.app_context():
        accounts.set_password(store(), PARTNER, "another long passphrase")
    assert client.get("/locker").status_code == 200  # still trusted: the lookup is cached
    app.config["ACCOUNT_CACHE_SECONDS"] = 0
    app.extensions["companion.accounts"].clear()
    assert client.get("/locker").status_code == 302


def test_activate_and_configure_with_an_unknown_tier_say_so_and_offer_no_button(partner):
    """Regression: /activate?...&tier=advnced showed an Activate button and no problem; posting it was a 422."""
    query = "product=epo&license=subscription&term_months=36&tier=advnced"
    page = partner.get("/activate?" + query)
    assert page.status_code == 422 and 'id="activate-button"' not in page.text
    assert "did you mean &#39;advanced&#39;" in page.text or "did you mean 'advanced'" in page.text
    configure = partner.get("/configure?" + query)
    assert configure.status_code == 422 and "advnced" in configure.text


def test_a_refusal_says_which_condition_was_not_met_and_what_the_configuration_has(partner):
    page = partner.get(configure_url(tier="essential", devices="150")).text
    panel = page[page.index('id="verdict"'):]
    assert "Not valid yet" in panel and "tier essential allows at most 100 devices" in panel
    why = panel[panel.index('<details class="why">'):panel.index("</details>")]
    assert "Met:\n        the tier is essential" in why and "here: essential" in why
    assert "Not met:\n        the number of devices is at most 100 (required)" in why and "here: 150" in why
