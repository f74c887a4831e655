"""The JSON API: every route, its errors (code and JSON path), authentication and CSRF."""

from __future__ import annotations

import json

import pytest

from web_support import EBO_PARTNER, OTHER, PARTNER, PASSWORD, issue, token_for

EPO_ADVANCED = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36, "tier": "advanced",
                "devices": 150, "addons": [{"id": "insulation-monitoring", "quantity": 1}]}


def test_health_is_public_and_names_the_rules_version(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["reload"]["ok"] is True and response.json["reload"]["problems"] == []
    assert len(response.json["rules_version"]) == 16


def test_token_for_good_credentials_and_401_for_bad_ones(client):
    assert client.post("/api/v1/tokens", json={"email": PARTNER, "password": PASSWORD}).json["token_type"] == "Bearer"
    for body in ({"email": PARTNER, "password": "wrong password!"}, {"email": "nobody@x.example", "password": PASSWORD},
                 {"email": "not an email", "password": PASSWORD}):
        response = client.post("/api/v1/tokens", json=body)
        assert response.status_code == 401 and response.json["error"]["code"] == "bad-credentials"


def test_token_body_errors_have_paths(client):
    response = client.post("/api/v1/tokens", json={"email": PARTNER, "password": 5})
    assert response.status_code == 422 and response.json["error"]["path"] == "password"
    response = client.post("/api/v1/tokens", json={"email": PARTNER, "password": PASSWORD, "extra": 1})
    assert response.status_code == 422 and response.json["problems"][0]["path"] == "extra"


@pytest.mark.parametrize("method,url", [("POST", "/api/v1/validate"), ("POST", "/api/v1/options"),
                                        ("POST", "/api/v1/amend"), ("POST", "/api/v1/renew"),
                                        ("GET", "/api/v1/catalogue"), ("GET", "/api/v1/locker"),
                                        ("POST", "/api/v1/redeem"), ("POST", "/api/v1/activate"),
                                        ("GET", "/api/v1/session")])
def test_every_private_route_needs_authentication(client, method, url):
    response = client.open(url, method=method, json={})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthenticated"


def test_a_forged_or_stale_token_is_refused(client):
    response = client.get("/api/v1/locker", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401


def test_validate_uses_the_stored_badges_not_the_claimed_ones(client):
    headers = token_for(client, EBO_PARTNER)  # building-automation only: epo is not unlocked
    body = {"partner": {"badges": ["power-management"]}, "configuration": EPO_ADVANCED}
    verdict = client.post("/api/v1/validate", json=body, headers=headers).json
    assert verdict["valid"] is False
    assert verdict["violations"][0]["code"] == "not-entitled"


def test_validate_valid_with_explanation(client, bearer):
    response = client.post("/api/v1/validate?explain=true", json={"configuration": EPO_ADVANCED}, headers=bearer)
    assert response.status_code == 200
    verdict = response.json
    assert verdict["valid"] is True
    assert {line["reference"] for line in verdict["bom"]} >= {"EPO-ADV-SUB-3Y", "EPO-IMS-SUB-3Y"}
    assert verdict["explanation"] and all("rule" in item and "where" in item for item in verdict["explanation"])


def test_validate_refused_addon_with_reason(client, bearer):
    configuration = dict(EPO_ADVANCED, tier="essential", devices=50)
    verdict = client.post("/api/v1/validate", json={"configuration": configuration}, headers=bearer).json
    assert verdict["valid"] is False
    [violation] = verdict["violations"]
    assert (violation["rule"], violation["code"]) == ("addon.epo.insulation-monitoring", "requires-tier")


@pytest.mark.parametrize("configuration,code,path", [
    ({"product": "epx", "license": "subscription", "tier": "advanced"}, "unknown-ref", "configuration.product"),
    (dict(EPO_ADVANCED, tier="advnced"), "unknown-ref", "configuration.tier"),
    (dict(EPO_ADVANCED, addons=[{"id": "insulation-monitoring"}, {"id": "nope"}]), "unknown-ref",
     "configuration.addons[1].id"),
    (dict(EPO_ADVANCED, devices="many"), "request-schema", "configuration.devices"),
    (dict(EPO_ADVANCED, colour="blue"), "request-schema", "configuration"),
])
def test_unknown_ids_and_bad_values_answer_422_with_a_json_path(client, bearer, configuration, code, path):
    response = client.post("/api/v1/validate", json={"configuration": configuration}, headers=bearer)
    assert response.status_code == 422
    problem = next(item for item in response.json["problems"] if item["code"] == code)
    assert problem["path"] == path


def test_malformed_json_is_400_and_not_json_is_415(client, bearer):
    response = client.post("/api/v1/validate", data='{"configuration": ', headers=bearer,
                           content_type="application/json")
    assert response.status_code == 400 and response.json["error"] == {
        "status": 400, "code": "bad-json", "message": "the body is not valid JSON", "path": "$"}
    response = client.post("/api/v1/validate", data="configuration=1", headers=bearer)
    assert response.status_code == 415 and response.json["error"]["code"] == "unsupported-media-type"
    for body in ([], "text", 3):
        response = client.post("/api/v1/validate", json=body, headers=bearer)
        assert response.status_code == 422 and response.json["error"]["path"] == "$"
    response = client.post("/api/v1/validate", json={}, headers=bearer)
    assert response.status_code == 422 and response.json["error"]["path"] == "configuration"


@pytest.mark.parametrize("url", ["/api/v1/validate", "/api/v1/options", "/api/v1/amend"])
@pytest.mark.parametrize("depth", [101, 3000, 100_000])
def test_deeply_nested_json_is_400_not_500(client, bearer, url, depth):
    """Regression: 3,000 nested arrays made the JSON decoder raise RecursionError, answered 500."""
    body = '{"configuration": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    response = client.post(url, data=body, headers=bearer, content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == "too-deep"
    assert response.json["error"]["path"] == "$"


def test_a_hundred_levels_of_nesting_still_reach_the_checks(client, bearer):
    body = '{"configuration": ' + "[" * 99 + "]" * 99 + "}"  # the object and 99 arrays: 100 levels
    response = client.post("/api/v1/validate", data=body, headers=bearer, content_type="application/json")
    assert response.status_code == 422 and response.json["error"]["path"] == "configuration"


def test_oversized_body_is_413(client, bearer):
    big = {"configuration": {"product": "epo", "padding": "x" * 300_000}}
    response = client.post("/api/v1/validate", json=big, headers=bearer)
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too-large"


def test_options_lists_allowed_and_excluded_choices(client, bearer):
    body = {"configuration": {"product": "epo", "license": "subscription", "term_months": 36, "tier": "essential"}}
    result = client.post("/api/v1/options", json=body, headers=bearer).json
    addons = {item["value"]: item for item in result["addons"]["options"]}
    assert addons["powerscada-anywhere"]["allowed"] is True
    assert addons["insulation-monitoring"]["allowed"] is False
    assert addons["insulation-monitoring"]["reasons"][0]["code"] == "requires-tier"
    products = {item["value"]: item for item in result["product"]["options"]}
    assert products["ebo"]["allowed"] is False and products["ebo"]["reasons"][0]["code"] == "not-entitled"


def test_catalogue_has_rule_ids_and_places(client, bearer):
    data = client.get("/api/v1/catalogue", headers=bearer).json
    epo = next(product for product in data["products"] if product["id"] == "epo")
    assert epo["rule"] == "product.epo" and epo["where"].endswith(".yaml:" + epo["where"].rsplit(":", 1)[1])
    assert {(u["from"], u["to"]) for u in epo["upgrades"]} >= {("essential", "advanced")}
    monitoring = next(addon for addon in epo["addons"] if addon["id"] == "insulation-monitoring")
    assert monitoring["requires_tier"] == "advanced" and "addons.yaml:" in monitoring["where"]
    assert data["reload"]["ok"] is True


def test_locker_redeem_and_another_users_locker_is_refused(app, client):
    headers = token_for(client, OTHER)
    [code] = issue(app, "EPO-ADV-SUB-3Y", 2)
    redeemed = client.post("/api/v1/redeem", json={"code": code.lower()}, headers=headers)
    assert redeemed.status_code == 200 and redeemed.json["reference"] == "EPO-ADV-SUB-3Y"
    again = client.post("/api/v1/redeem", json={"code": code}, headers=headers)
    assert again.status_code == 409 and again.json["error"]["code"] == "already-redeemed"
    mine = client.get("/api/v1/locker", headers=headers).json
    assert mine["balances"]["EPO-ADV-SUB-3Y"] >= 2
    partner_locker = client.get("/api/v1/locker", headers=token_for(client, PARTNER)).json["id"]
    refused = client.get(f"/api/v1/locker?locker_id={partner_locker}", headers=headers)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
    assert client.get("/api/v1/locker?locker_id=abc", headers=headers).json["error"]["path"] == "locker_id"


def test_redeem_errors_point_at_the_code(client, bearer):
    response = client.post("/api/v1/redeem", json={"code": "not-a-code"}, headers=bearer)
    assert response.status_code == 422 and response.json["error"]["path"] == "code"
    response = client.post("/api/v1/redeem", json={"code": 12}, headers=bearer)
    assert response.status_code == 422 and response.json["error"]["path"] == "code"


def test_activate_shortfall_then_activation_id(app, client, clock):
    headers = token_for(client, OTHER)
    configuration = {"product": "epo", "license": "subscription", "term_months": 12, "tier": "essential"}
    short = client.post("/api/v1/activate", json={"configuration": configuration}, headers=headers)
    assert short.status_code == 200 and short.json["activated"] is False
    assert short.json["shortfall"]["missing"] == {"EPO-ESS-SUB-1Y": 1}
    [code] = issue(app, "EPO-ESS-SUB-1Y", 1)
    client.post("/api/v1/redeem", json={"code": code}, headers=headers)
    clock("2025-06-01")
    done = client.post("/api/v1/activate", json={"configuration": configuration, "date": "2025-06-01"},
                       headers=headers)
    assert done.json["activated"] is True and done.json["activation"]["id"].startswith("ACT-")
    assert done.json["activation"]["term_start"] == "2025-06-01"


def test_activate_errors(client, bearer):
    response = client.post("/api/v1/activate", json={"configuration": {"product": "nope"}}, headers=bearer)
    assert response.status_code == 422 and any(p["path"] == "configuration.product" for p in response.json["problems"])
    response = client.post("/api/v1/activate", json={"configuration": EPO_ADVANCED, "date": "2025-02-30"},
                           headers=bearer)
    assert response.status_code == 422 and response.json["error"]["path"] == "date"
    response = client.post("/api/v1/activate", json={"date": "2025-02-01"}, headers=bearer)
    assert response.status_code == 422 and response.json["error"]["path"] == "configuration"


def test_amend_the_vendor_example_is_33_months(client, bearer):
    body = {"subscription": {"product": "epo", "license": "subscription", "term_months": 36, "start": "2025-06-01",
                             "tier": "essential", "devices": 100, "addons": []},
            "change": {"date": "2025-09-01", "tier": "advanced"}}
    result = client.post("/api/v1/amend?explain=true", json=body, headers=bearer).json
    assert result["valid"] is True and result["term"]["months"] == 33
    assert any(line["months"] == 33 and "essential" in line["derivation"] for line in result["lines"])


def test_renew_starts_a_new_term(client, bearer):
    body = {"subscription": {"product": "epo", "license": "subscription", "term_months": 12, "start": "2025-06-01",
                             "tier": "essential", "devices": 25}, "renewal": {"date": "2026-05-20"}}
    result = client.post("/api/v1/renew", json=body, headers=bearer).json
    assert result["valid"] is True and result["term"]["new_start"] == "2026-06-01"


def test_amend_errors_have_paths(client, bearer):
    response = client.post("/api/v1/amend", json={"change": {"date": "2025-09-01"}}, headers=bearer)
    assert response.status_code == 422 and response.json["error"]["path"] == "activation_id"
    response = client.post("/api/v1/amend", json={"activation_id": "ACT-2222-2222-2222-2222",
                                                  "change": {"date": "2025-09-01"}}, headers=bearer)
    assert response.status_code in (404, 422) and response.json["error"]["path"] == "activation_id"
    body = {"subscription": {"product": "epo", "license": "subscription", "term_months": 36, "start": "2025-06-01",
                             "tier": "essential"}, "change": {"date": "2025-09-01", "tier": "advnced"}}
    response = client.post("/api/v1/amend", json=body, headers=bearer)
    assert response.status_code == 422 and response.json["error"]["path"] == "change.tier"


def test_cookie_session_writes_need_the_csrf_header(partner):
    body = {"configuration": EPO_ADVANCED}
    refused = partner.post("/api/v1/validate", json=body)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "csrf"
    token = partner.get("/api/v1/session").json["csrf_token"]
    assert partner.post("/api/v1/validate", json=body, headers={"X-CSRFToken": token}).status_code == 200
    assert partner.get("/api/v1/catalogue").status_code == 200  # reads need no token


def test_unknown_api_route_and_wrong_method_are_json(client, bearer):
    response = client.get("/api/v1/nothing", headers=bearer)
    assert response.status_code == 404 and response.json["error"]["code"] == "not-found"
    response = client.get("/api/v1/validate", headers=bearer)
    assert response.status_code == 405 and response.json["error"]["code"] == "method-not-allowed"


def test_openapi_document_lists_every_route(client):
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.")
    assert {"/api/v1/" + name for name in ("validate", "options", "amend", "renew", "catalogue", "locker", "redeem",
                                             "activate", "health")} <= set(document["paths"])


def test_an_unexpected_failure_is_a_500_with_an_incident_and_no_trace(app, client, bearer, monkeypatch):
    from web import services

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(services, "catalogue_json", boom)
    response = client.get("/api/v1/catalogue", headers=bearer)
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal" and response.json["error"]["incident"]
    assert "secret internals" not in response.text and "Traceback" not in response.text


def test_amend_and_activate_an_activation_of_the_locker(app, client, clock):
    headers = token_for(client, OTHER)
    configuration = {"product": "epo", "license": "subscription", "term_months": 36, "tier": "essential"}
    for reference, quantity in (("EPO-ESS-SUB-3Y", 1), ("EPO-AMD-ESS-ADV", 33)):
        [code] = issue(app, reference, quantity)
        assert client.post("/api/v1/redeem", json={"code": code}, headers=headers).status_code == 200
    clock("2025-06-01")
    activation = client.post("/api/v1/activate", json={"configuration": configuration, "date": "2025-06-01"},
                             headers=headers).json["activation"]["id"]
    clock("2025-09-01")
    body = {"activation_id": activation, "change": {"date": "2025-09-01", "tier": "advanced"}, "activate": True}
    result = client.post("/api/v1/amend", json=body, headers=headers).json
    assert result["term"]["months"] == 33
    assert result["activation"]["activated"] is True
    assert result["activation"]["activation"]["parent"] == activation
    other_partner = token_for(client, PARTNER)
    refused = client.post("/api/v1/amend", json={"activation_id": activation, "change": {"date": "2025-09-01"}},
                          headers=other_partner)
    assert refused.status_code == 403 and refused.json["error"]["path"] == "activation_id"
    amended = result["activation"]["activation"]["id"]
    for activate in (True, False):  # charging it again, or even quoting it: the subscription has moved on
        again = client.post("/api/v1/amend", json={**body, "activate": activate}, headers=headers)
        assert again.status_code == 409 and again.json["error"]["code"] == "already-changed"
        assert again.json["error"]["path"] == "activation_id" and amended in again.json["error"]["message"]
    renewal = client.post("/api/v1/renew", json={"activation_id": activation, "renewal": {"date": "2028-05-01"}},
                          headers=headers)
    assert renewal.status_code == 409 and renewal.json["error"]["code"] == "already-changed"
    balances = client.get("/api/v1/locker", headers=headers).json
    assert "EPO-AMD-ESS-ADV" not in json.dumps(balances)  # the 33 vouchers were debited once, all of them
    earlier = client.post("/api/v1/amend", json={"activation_id": amended, "change": {"date": "2025-07-01",
                                                                                    "tier": "expert"}},
                          headers=headers)  # a quote of a change dated before the amendment it follows
    assert earlier.status_code == 422 and earlier.json["error"]["code"] == "before-parent"
    assert earlier.json["error"]["path"] == "change.date"


def test_whole_numbers_written_with_a_decimal_point_are_read_as_integers(client, bearer):
    """JSON Schema counts 36.0 as an integer; the bill of materials must then say 36, not 36.0."""
    configuration = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
                     "tier": "advanced", "devices": 150, "addons": [{"id": "insulation-monitoring", "quantity": 1}]}
    decimal = {**configuration, "term_months": 36.0, "devices": 150.0,
               "addons": [{"id": "insulation-monitoring", "quantity": 1.0}]}
    plain = client.post("/api/v1/bom", json={"configuration": configuration, "template": "generic"}, headers=bearer)
    written = client.post("/api/v1/bom", json={"configuration": decimal, "template": "generic"}, headers=bearer)
    assert plain.status_code == 200 and written.status_code == 200
    assert written.data == plain.data and b".0" not in written.data
    verdict = client.post("/api/v1/validate", json={"configuration": decimal}, headers=bearer).json
    assert verdict["valid"] and all(type(line["quantity"]) is int for line in verdict["bom"])


def test_a_key_twice_in_one_json_object_is_refused_not_last_one_wins(client, bearer):
    """The CLI refuses duplicate keys; the API took the last copy silently (`"tier"` twice: which one was meant?)."""
    body = ('{"configuration": {"product": "epo", "license": "subscription", "term_months": 36, '
            '"tier": "expert", "tier": "essential"}}')
    response = client.post("/api/v1/validate", data=body, headers=bearer, content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == "duplicate-key"
    assert response.json["error"]["message"] == "key 'tier' appears twice in one object"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1" * 5000])
def test_numbers_json_does_not_have_are_not_json(client, bearer, number):
    body = '{"configuration": {"product": "epo", "devices": %s}}' % number
    response = client.post("/api/v1/validate", data=body, headers=bearer, content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == "bad-json"


def test_a_body_that_is_not_utf8_is_not_json(client, bearer):
    body = b'{"configuration": {"product": "ep\xff"}}'
    response = client.post("/api/v1/validate", data=body, headers=bearer, content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == "bad-json"
