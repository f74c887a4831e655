"""Bad input of every kind gets a clear 4xx (JSON with a path in the API, a visible problem on pages), never a 500.

Each test is a regression case of a bug a probe found; its name says what the user sent.
"""

from __future__ import annotations

import json
import random

import pytest

from web_support import PARTNER, PASSWORD, csrf_of, issue, sign_in, token_for

HUGE_ID = "9223372036854775808"  # one past SQLite's largest integer: the database driver raised OverflowError


def signed_in(app, email: str):
    """Return a client signed in as a new power-management partner EMAIL (projects of their own)."""
    from engine.locker import accounts
    from engine import locker
    from web.state import store

    with app.app_context():
        locker.add_user(store(), email, company="T", badges=["power-management"], country="US")
        accounts.set_password(store(), email, PASSWORD)
    client = app.test_client()
    assert sign_in(client, email).status_code == 302
    return client


@pytest.mark.parametrize("method,url", [
    ("GET", f"/projects/{HUGE_ID}"), ("GET", f"/projects/{HUGE_ID}/bom.csv"), ("GET", f"/projects/{HUGE_ID}/checkout"),
    ("POST", f"/projects/{HUGE_ID}/checkout"), ("POST", f"/projects/{HUGE_ID}/copy"),
    ("POST", f"/projects/{HUGE_ID}/delete"), ("GET", "/configure?project=99999999999999999999999"),
])
def test_a_project_id_too_large_or_not_ascii_digits_is_an_unknown_project(partner, method, url):
    response = partner.open(url, method=method, data={"csrf_token": csrf_of(partner.get("/projects").text)})
    assert response.status_code == 404
    assert "unknown-project" in response.text and "no project" in response.text


def test_updating_a_project_of_a_huge_id_is_an_unknown_project(partner):
    token = csrf_of(partner.get("/projects").text)
    response = partner.post("/projects", data={"csrf_token": token, "action": "update", "project": HUGE_ID,
                                               "name": "Plant", "configuration": '{"product": "epo"}'})
    assert response.status_code == 404 and "unknown-project" in response.text


def test_a_project_id_in_arabic_indic_digits_names_no_project(app):
    client = signed_in(app, "arabic-indic@integrator.example")
    token = csrf_of(client.get("/projects").text)
    saved = client.post("/projects", data={"csrf_token": token, "name": "Plant", "configuration": '{"product": "epo"}'})
    project_id = int(saved.location.rsplit("project=", 1)[1])
    arabic = "".join(chr(0x660 + int(digit)) for digit in str(project_id))  # int() reads them as the id
    assert client.get(f"/projects/{project_id}").status_code == 302
    response = client.get(f"/projects/{arabic}")
    assert response.status_code == 404 and "unknown-project" in response.text
    assert client.get(f"/configure?project={arabic}").status_code == 404
    bearer = token_for(app.test_client(), "arabic-indic@integrator.example")
    response = client.get(f"/api/v1/projects/{arabic}/bom.csv", headers=bearer)
    assert response.status_code == 404 and response.json["error"]["code"] == "unknown-project"


@pytest.mark.parametrize("project_id", [HUGE_ID, "1" * 5000])
def test_api_project_bom_of_a_huge_id_is_an_unknown_project(client, bearer, project_id):
    response = client.get(f"/api/v1/projects/{project_id}/bom.csv", headers=bearer)
    assert response.status_code == 404
    assert response.json["error"]["code"] == "unknown-project" and response.json["error"]["path"] == "project_id"


@pytest.mark.parametrize("locker_id", ["²", "%D9%A3", "1_0"])
def test_api_locker_id_other_than_ascii_digits_is_a_422(client, bearer, locker_id):
    response = client.get(f"/api/v1/locker?locker_id={locker_id}", headers=bearer)
    assert response.status_code == 422 and response.json["error"]["path"] == "locker_id"


def test_api_locker_id_of_5000_digits_is_not_yours(client, bearer):
    response = client.get("/api/v1/locker?locker_id=" + "1" * 5000, headers=bearer)
    assert response.status_code == 403 and response.json["error"]["path"] == "locker_id"
    assert len(response.json["error"]["message"]) < 120


def post_raw(client, url: str, data, headers=None):
    """POST DATA as JSON text written by Python's encoder (it escapes a lone surrogate as \\ud800)."""
    return client.post(url, data=json.dumps(data), content_type="application/json", headers=headers or {})


def test_api_token_with_a_lone_surrogate_password_is_refused_not_a_500(client):
    response = post_raw(client, "/api/v1/tokens", {"email": PARTNER, "password": "\ud800"})
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad-text" and response.json["error"]["path"] == "password"


@pytest.mark.parametrize("body,path", [
    ({"configuration": {"product": "epo", "tier": "\ud800"}}, "configuration.tier"),
    ({"configuration": {"product": "epo"}, "partner": {"company": "Volt \udfff"}}, "partner.company"),
    ({"configuration": {"product": "epo", "addons": [{"id": "a"}, {"id": "b\ud83d"}]}}, "configuration.addons[1].id"),
    ({"configuration": {"product": "epo", "\ud800": 1}}, "configuration.\ufffd"),
])
def test_api_body_with_a_lone_surrogate_is_a_400_bad_text_at_its_path(client, bearer, body, path):
    response = post_raw(client, "/api/v1/validate", body, bearer)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad-text" and response.json["error"]["path"] == path


def test_api_a_surrogate_pair_is_text(client, bearer):
    body = {"configuration": {"product": "epo"}, "partner": {"company": "Volt \U0001F600"}}  # escaped as a pair
    assert post_raw(client, "/api/v1/options", body, bearer).status_code == 200


@pytest.mark.parametrize("url", ["/projects", "/activate"])
def test_form_configuration_with_a_lone_surrogate_or_nested_too_deep_is_a_visible_422(partner, url):
    token = csrf_of(partner.get("/projects").text)
    for configuration, code in (('{"product": "\\ud800"}', "bad-text"), ("[" * 5000, "too-deep")):
        response = partner.post(url, data={"csrf_token": token, "name": "Plant", "configuration": configuration,
                                           "date": "2025-06-01"})
        assert response.status_code == 422 and code in response.text
        assert 'class="problems"' in response.text


MALFORMED = ['{"product": "epo", "addons": "x"}', '{"product": "epo", "addons": [1]}', '{"product": {"a": 1}}',
             '{"product": ["epo"]}', '{"product": "epo", "devices": NaN}', '{"product": "epo", "devices": 1e400}']


@pytest.mark.parametrize("configuration", MALFORMED)
def test_saving_or_activating_a_malformed_configuration_is_a_visible_422(app, configuration):
    client = signed_in(app, f"malformed-{MALFORMED.index(configuration)}@integrator.example")
    token = csrf_of(client.get("/projects").text)
    for url in ("/projects", "/activate"):
        response = client.post(url, data={"csrf_token": token, "name": "Plant", "configuration": configuration,
                                          "date": "2025-06-01"})
        assert response.status_code == 422, url
        assert "request-schema" in response.text and "configuration." in response.text
    page = client.get("/projects")
    assert page.status_code == 200 and "Plant" not in page.text  # nothing was saved


def test_projects_stored_malformed_before_show_as_malformed_and_refuse_exports(app):
    from engine.locker import accounts
    from web.state import store

    email = "stored-malformed@integrator.example"
    client = signed_in(app, email)
    with app.app_context():  # as the form saved them before their shape was checked
        bad = accounts.save_project(store(), email, "Broken", {"product": {"a": 1}})
        accounts.save_project(store(), email, "Broken list", {"product": ["epo"], "addons": "x"})
        good = accounts.save_project(store(), email, "Plant", {"product": "epo", "license": "subscription",
                                                               "term_months": 36, "tier": "essential"})
    page = client.get("/projects")
    assert page.status_code == 200
    assert "Malformed configuration" in page.text and "configuration.product" in page.text
    assert f"/projects/{good.id}/bom.csv" in page.text and f"/projects/{bad.id}/bom.csv" not in page.text
    for url in (f"/projects/{bad.id}", f"/projects/{bad.id}/bom.csv", f"/projects/{bad.id}/checkout"):
        response = client.get(url)
        assert response.status_code == 422 and "bad-configuration" in response.text, url
    token = csrf_of(page.text)
    assert client.post(f"/projects/{bad.id}/copy", data={"csrf_token": token}).status_code == 422
    response = client.get(f"/api/v1/projects/{bad.id}/bom.csv", headers=token_for(app.test_client(), email))
    assert response.status_code == 422 and response.json["error"]["code"] == "bad-configuration"
    assert response.json["problems"][1]["path"] == "configuration.product"
    assert client.post(f"/projects/{bad.id}/delete", data={"csrf_token": token}).status_code == 303


def test_api_bom_of_a_configuration_whose_product_is_an_object_is_a_422(client, bearer):
    response = client.post("/api/v1/bom", json={"configuration": {"product": {"a": 1}}}, headers=bearer)
    assert response.status_code == 422 and response.json["error"]["path"] == "configuration.product"


ADVANCED = "/configure?product=epo&prev_product=epo&license=subscription&term_months=36&tier=advanced"


@pytest.mark.parametrize("quantity,code", [("-7", "below-minimum"), ("0", "below-minimum"), ("1_0", "not-a-number"),
                                           ("\u0661", "not-a-number"), ("99999999999", "above-maximum")])
def test_configure_add_on_quantity_out_of_range_is_a_field_problem_not_1(partner, quantity, code):
    response = partner.get(f"{ADVANCED}&addon=insulation-monitoring&qty-insulation-monitoring={quantity}")
    page = response.text
    assert response.status_code == 422 and code in page and "configuration.addons[0].quantity" in page
    assert "Valid configuration" not in page and "Save as project" not in page  # not the add-on with 1 instead


@pytest.mark.parametrize("devices", ["1_50", "\u0661\u0665\u0660", "-5"])
def test_configure_devices_other_than_ascii_digits_or_negative_is_a_field_problem(partner, devices):
    response = partner.get(f"{ADVANCED}&devices={devices}")
    page = response.text
    assert response.status_code == 422 and "configuration.devices" in page and 'class="problems"' in page
    assert "Valid configuration" not in page


def test_activate_page_with_an_unreadable_quantity_offers_no_activation(partner):
    response = partner.get("/activate?product=epo&license=subscription&term_months=36&tier=advanced"
                           "&addon=insulation-monitoring&qty-insulation-monitoring=-7")
    assert response.status_code == 422
    assert "below-minimum" in response.text and "Activate from my locker" not in response.text


ESSENTIAL = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36, "tier": "essential",
             "devices": 100}


def activation_of(app, email: str) -> tuple:
    """Return a client signed in as a new partner EMAIL and the Activation ID of their essential subscription."""
    client = signed_in(app, email)
    bearer = token_for(app.test_client(), email)
    for reference, quantity in (("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75)):
        [code] = issue(app, reference, quantity)
        assert client.post("/api/v1/redeem", json={"code": code}, headers=bearer).status_code == 200
    response = client.post("/api/v1/activate", json={"configuration": ESSENTIAL}, headers=bearer)
    return client, response.json["activation"]["id"]


def test_amend_form_add_on_quantity_or_devices_out_of_range_is_a_field_problem(app):
    client, activation_id = activation_of(app, "amend-numbers@integrator.example")
    url = f"/subscriptions/{activation_id}/amend?date=2025-09-01&tier=advanced"
    for query, path, code in (("&addon=insulation-monitoring&addon_quantity=-3", "change.addons[0].quantity",
                               "below-minimum"),
                              ("&addon=insulation-monitoring&addon_quantity=0", "change.addons[0].quantity",
                               "below-minimum"),
                              ("&devices=1_50", "change.devices", "not-a-number"),
                              ("&devices=%D9%A1%D9%A5%D9%A0", "change.devices", "not-a-number")):
        response = client.get(url + query)
        page = response.text
        assert response.status_code == 422 and code in page and path in page, query
        assert "EPO-IMS" not in page and "months</strong>" not in page, query  # no preview of something else


@pytest.mark.parametrize("date", ["2025-W01-1", 20250601, "20250601", "2025-06-01T00:00", "2025-02-30", "1999-12-31",
                                  "3000-01-01", "\u0662\u0660\u0662\u0665-06-01"])
def test_api_activate_date_other_than_yyyy_mm_dd_in_2000_to_2999_is_a_422_at_date(client, bearer, date):
    response = client.post("/api/v1/activate", json={"configuration": ESSENTIAL, "date": date}, headers=bearer)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "bad-date" and response.json["error"]["path"] == "date"


def test_activate_form_refuses_week_dates_and_far_years(app):
    client = signed_in(app, "form-dates@integrator.example")
    page = client.get("/activate?product=epo&license=subscription&term_months=36&tier=essential&devices=100").text
    configuration = json.dumps(ESSENTIAL)
    for date in ("2025-W01-1", "0001-01-01"):
        response = client.post("/activate", data={"csrf_token": csrf_of(page), "configuration": configuration,
                                                  "date": date})
        assert response.status_code == 422 and "bad-date" in response.text, date
        assert "short of vouchers" not in response.text  # the locker was not even asked


def test_api_error_for_20000_add_ons_does_not_echo_the_list(client, bearer):
    body = {"configuration": {"product": "epo", "addons": [{"id": "x"}] * 20000}}  # just under 256 KiB
    response = client.post("/api/v1/validate", json=body, headers=bearer)
    assert response.status_code == 422 and response.json["error"]["path"] == "configuration.addons"
    message = response.json["error"]["message"]
    assert message.endswith("is too long") and " … " in message and len(message) < 250
    assert len(response.data) < 2000  # was 520 KB


def test_api_error_for_20000_unknown_keys_lists_50_and_counts_the_rest(client, bearer):
    body = {"configuration": {"product": "epo"}, **{f"k{number}": 1 for number in range(20000)}}
    response = client.post("/api/v1/validate", json=body, headers=bearer)
    assert response.status_code == 422 and response.json["error"]["path"] == "k0"
    problems = response.json["problems"]
    assert len(problems) == 51 and problems[49]["path"] == "k49"
    assert problems[50]["code"] == "more-problems" and "19950 more problems" in problems[50]["message"]
    assert len(response.data) < 10_000  # was 2.1 MB


def test_api_error_for_a_200000_character_key_is_short(client, bearer):
    response = client.post("/api/v1/validate", json={"configuration": {}, "k" * 200_000: 1}, headers=bearer)
    assert response.status_code == 422 and len(response.data) < 2000


def test_form_error_page_does_not_echo_a_long_configuration(partner):
    configuration = json.dumps({"product": "epo", "addons": [{"id": "insulation-monitoring"}] * 5000})
    response = partner.post("/projects", data={"csrf_token": csrf_of(partner.get("/projects").text), "name": "Plant",
                                               "configuration": configuration})
    assert response.status_code == 422 and "is too long" in response.text
    assert len(response.data) < 10_000


@pytest.mark.parametrize("url,field", [("/locker/redeem", "code"), ("/locker/invite", "email"),
                                       ("/locker/accept", "invitation")])
def test_locker_form_with_a_20000_character_value_still_shows_its_error(partner, url, field):
    rng = random.Random(7)  # a random value: the session cookie compresses a repeated one
    value = "".join(rng.choice("ABCDEFGHJKMNPQRSTUVWXYZ23456789") for _ in range(20000))
    response = partner.post(url, data={"csrf_token": csrf_of(partner.get("/locker").text), field: value})
    assert response.status_code == 303
    assert len(response.headers["Set-Cookie"]) < 4093  # browsers drop a larger cookie, and the message with it
    assert 'class="flash error"' in partner.get("/locker").text
