"""The subscription policy's choices over the JSON API and the Subscriptions pages.

`lenient` is an app on a copy of the bundled rules that allows every reduction mid-term and starts a renewal
on its date; the shared `app` serves the bundled rules, which keep today's refusals. Numbers as in
tests/test_subscription_choices.py.
"""

from __future__ import annotations

import re
import shutil
from datetime import date

import pytest

from engine import locker
from engine.catalogue.schema import BUNDLED_RULES
from engine.clock import Clock
from engine.locker import accounts
from web.state import store
from web_support import PASSWORD, csrf_of, issue, make_app, seed_users, sign_in, token_for

EDITS = [("tier-downgrade: refused", "tier-downgrade: allowed"), ("fewer-devices: refused", "fewer-devices: allowed"),
         ("addon-removal: refused", "addon-removal: allowed"), ("start: old-end", "start: renewal-date")]
RUNNING = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36, "start": "2025-06-01", "tier": "advanced",
           "devices": 25, "addons": [{"id": "powerscada-anywhere", "quantity": 1}]}


@pytest.fixture(scope="module")
def lenient(tmp_path_factory):
    """An app whose rules allow downgrades, fewer devices and removals mid-term, and renew on the renewal date."""
    tmp = tmp_path_factory.mktemp("lenient")
    rules = tmp / "rules"
    shutil.copytree(BUNDLED_RULES, rules)
    policy = rules / "subscriptions.yaml"
    text = policy.read_text(encoding="utf-8")
    for old, new in EDITS:
        assert old in text
        text = text.replace(old, new, 1)
    policy.write_text(text, encoding="utf-8")
    application = make_app(tmp, RULES_DIR=str(rules))
    seed_users(application)
    return application


@pytest.mark.parametrize("change, rule, state", [
    ({"date": "2026-01-10", "tier": "essential"}, "policy.mid-term-downgrade", ("tier", "essential")),
    ({"date": "2026-01-10", "devices": 20}, "policy.mid-term-fewer-devices", ("devices", 20)),
    ({"date": "2026-01-10", "remove_addons": [{"id": "powerscada-anywhere"}]}, "policy.mid-term-removal",
     ("addons", [])),
])
def test_api_amend_allows_a_reduction_the_policy_allows_and_refuses_it_otherwise(lenient, app, change, rule, state):
    client = lenient.test_client()
    result = client.post("/api/v1/amend", json={"subscription": RUNNING, "change": change},
                         headers=token_for(client)).json
    assert result["valid"] is True and result["lines"] == []
    assert result["subscription"][state[0]] == state[1] and result["subscription"]["end"] == "2028-06-01"
    assert [(item["code"], item["rule"]) for item in result["notices"]] == [("not-credited", rule)]
    shipped = app.test_client()
    refused = shipped.post("/api/v1/amend", json={"subscription": RUNNING, "change": change},
                           headers=token_for(shipped)).json
    assert refused["valid"] is False and [item["rule"] for item in refused["violations"]] == [rule]


def test_api_renew_on_the_renewal_date_or_at_the_old_end(lenient, app):
    body = {"subscription": RUNNING, "renewal": {"date": "2028-03-15"}}
    client = lenient.test_client()
    early = client.post("/api/v1/renew", json=body, headers=token_for(client)).json
    assert early["term"]["new_start"] == "2028-03-15" and early["term"]["new_end"] == "2031-03-15"
    assert "early-renewal" in [item["code"] for item in early["notices"]]
    shipped = app.test_client()
    assert shipped.post("/api/v1/renew", json=body, headers=token_for(shipped)).json["term"]["new_start"] == "2028-06-01"


def test_an_allowed_downgrade_is_activated_without_a_debit(lenient):
    """Regression: a change with no line was refused as nothing-to-activate, so the new state could not be kept."""
    client = lenient.test_client()
    headers = token_for(client)
    [code] = issue(lenient, "EPO-ADV-SUB-3Y", 1)
    assert client.post("/api/v1/redeem", json={"code": code}, headers=headers).status_code == 200
    configuration = {key: RUNNING[key] for key in ("product", "version", "license", "term_months", "tier", "devices")}
    lenient.config["CLOCK"] = Clock(fixed=date(2025, 6, 1))
    activation = client.post("/api/v1/activate", json={"configuration": configuration, "date": "2025-06-01"},
                             headers=headers).json["activation"]["id"]
    before = {key: value for key, value in client.get("/api/v1/locker", headers=headers).json.items()
              if key != "activations"}
    lenient.config["CLOCK"] = Clock(fixed=date(2026, 1, 10))
    body = {"activation_id": activation, "change": {"date": "2026-01-10", "tier": "essential"}, "activate": True}
    response = client.post("/api/v1/amend", json=body, headers=headers)
    assert response.status_code == 200, response.json
    outcome = response.json["activation"]
    assert outcome["activated"] is True and outcome["activation"]["configuration"]["tier"] == "essential"
    assert any(notice.startswith("no voucher is debited: tier advanced goes down to essential")
               for notice in outcome["notices"])
    after = client.get("/api/v1/locker", headers=headers).json
    assert {key: value for key, value in after.items() if key != "activations"} == before  # nothing debited
    assert [item["kind"] for item in after["activations"]] == ["activation", "amendment"]


def test_the_amend_form_offers_lower_tiers_and_add_on_removal_and_previews_them(lenient):
    client = lenient.test_client()
    assert sign_in(client).status_code == 302
    headers = token_for(client)
    [code] = issue(lenient, "EPO-ADV-SUB-3Y", 1)
    [addon_code] = issue(lenient, "EPO-ANY-SUB-3Y", 1)
    for voucher in (code, addon_code):
        assert client.post("/api/v1/redeem", json={"code": voucher}, headers=headers).status_code == 200
    lenient.config["CLOCK"] = Clock(fixed=date(2026, 1, 10))
    configuration = {key: RUNNING[key] for key in ("product", "version", "license", "term_months", "tier", "devices", "addons")}
    activation = client.post("/api/v1/activate", json={"configuration": configuration}, headers=headers).json
    activation_id = activation["activation"]["id"]
    listing = client.get("/subscriptions").text
    form = listing[listing.index(f'id="amend-{activation_id}"'):]
    form = form[:form.index("</form>")]
    assert '<option value="essential"' in form and "Advanced (current)" in form  # a lower tier is offered
    assert re.search(r'<select name="remove_addon">.*<option value="powerscada-anywhere"', form, re.S)
    preview = client.get(f"/subscriptions/{activation_id}/amend?date=2026-01-10&tier=essential"
                         "&remove_addon=powerscada-anywhere")
    assert preview.status_code == 200 and "The amendment is possible" in preview.text
    assert "tier advanced goes down to essential" in preview.text and "is removed" in preview.text
    assert "nothing is credited" in preview.text and 'id="activate-change"' in preview.text
    done = client.post(f"/subscriptions/{activation_id}/amend", data={
        "csrf_token": csrf_of(preview.text), "date": "2026-01-10", "tier": "essential",
        "remove_addon": "powerscada-anywhere"}, follow_redirects=True)
    new_id = re.search(r'<output id="activation-id">([^<]+)</output>', done.text).group(1)
    assert new_id != activation_id
    assert "epo · subscription 36 months · essential · 25 devices." in client.get("/subscriptions").text


def test_the_shipped_rules_refuse_the_same_preview(app, clock):
    client = app.test_client()
    email = "reducer@integrator.example"
    with app.app_context():
        locker.add_user(store(), email, company="T", badges=["power-management"], country="US")
        accounts.set_password(store(), email, PASSWORD)
    sign_in(client, email)
    headers = token_for(client, email)
    [code] = issue(app, "EPO-ADV-SUB-3Y", 1)
    assert client.post("/api/v1/redeem", json={"code": code}, headers=headers).status_code == 200
    clock("2026-01-10")
    configuration = {key: RUNNING[key] for key in ("product", "version", "license", "term_months", "tier", "devices")}
    activation_id = client.post("/api/v1/activate", json={"configuration": configuration},
                                headers=headers).json["activation"]["id"]
    preview = client.get(f"/subscriptions/{activation_id}/amend?date=2026-01-10&tier=essential")
    assert "Not possible" in preview.text and "cannot go down to essential" in preview.text
    assert 'id="activate-change"' not in preview.text
