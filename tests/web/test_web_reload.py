"""Hot reload: rule edits are picked up without a restart; a broken edit keeps the last good catalogue."""

from __future__ import annotations

import importlib
import os

import pytest

from web_support import MANAGER, make_app, seed_users, sign_in, token_for

EPO = {"product": "epo", "license": "subscription", "term_months": 36, "tier": "advanced", "devices": 50}


def touch_later(path):
    """Make sure the next write gets a newer modification time than the last one."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def live_app(tmp_path, rules_copy):
    application = make_app(tmp_path, RULES_DIR=str(rules_copy), RELOAD_INTERVAL=0)
    seed_users(application)
    return application


def test_a_broken_edit_keeps_the_last_good_catalogue_and_is_reported_located(live_app, rules_copy):
    client = live_app.test_client()
    headers = token_for(client)
    before = client.get("/api/v1/health").json["rules_version"]
    tiers = rules_copy / "tiers.yaml"
    good = tiers.read_text()
    tiers.write_text(good.replace("      - {from: essential, to: advanced}", "      - {from: essentail, to: advanced}", 1))
    touch_later(tiers)
    health = client.get("/api/v1/health")
    assert health.status_code == 200 and health.json["status"] == "degraded"
    assert health.json["rules_version"] == before
    problem = next(p for p in health.json["reload"]["problems"]
                   if p["code"] == "unknown-ref" and "essentail" in p["message"])
    assert "tiers.yaml:" in problem["where"] and problem["where"].split(":")[-2].isdigit()
    assert "did you mean 'essential'" in problem["hint"]
    verdict = client.post("/api/v1/validate", json={"configuration": EPO}, headers=headers)
    assert verdict.status_code == 200 and verdict.json["valid"] is True and verdict.json["rules_version"] == before
    manager = live_app.test_client()
    sign_in(manager, MANAGER)
    page = manager.get("/catalogue").text
    assert "The last edit does not load" in page and "tiers.yaml:" in page and "essentail" in page
    tiers.write_text(good)
    touch_later(tiers)
    touch_later(tiers)
    health = client.get("/api/v1/health").json
    assert health["status"] == "ok" and health["rules_version"] == before


def test_a_good_edit_is_served_without_a_restart(live_app, rules_copy):
    client = live_app.test_client()
    headers = token_for(client)
    before = client.get("/api/v1/health").json["rules_version"]
    addons = rules_copy / "addons.yaml"
    addons.write_text(addons.read_text().replace("quantity: {max: 10}                      # concurrent web clients",
                                                 "quantity: {max: 2}", 1))
    touch_later(addons)
    after = client.get("/api/v1/health").json
    assert after["status"] == "ok" and after["rules_version"] != before and after["reload"]["reloads"] == 2
    configuration = dict(EPO, addons=[{"id": "powerscada-anywhere", "quantity": 5}])
    verdict = client.post("/api/v1/validate", json={"configuration": configuration}, headers=headers).json
    assert verdict["valid"] is False and verdict["rules_version"] == after["rules_version"]


def test_checks_are_throttled_to_the_interval(tmp_path, rules_copy):
    application = make_app(tmp_path, RULES_DIR=str(rules_copy), RELOAD_INTERVAL=3600)
    client = application.test_client()
    before = client.get("/api/v1/health").json["rules_version"]
    addons = rules_copy / "addons.yaml"
    addons.write_text(addons.read_text() + "\n# a comment changes the content hash\n")
    touch_later(addons)
    assert client.get("/api/v1/health").json["rules_version"] == before  # not checked again within the hour
    application.extensions["companion.rules"].check_now()
    assert client.get("/api/v1/health").json["rules_version"] != before


def test_rules_that_never_loaded_answer_503_with_the_problems(tmp_path, rules_copy):
    (rules_copy / "badges.yaml").write_text("badges: [\n")
    application = make_app(tmp_path, RULES_DIR=str(rules_copy))
    seed_users(application)
    client = application.test_client()
    health = client.get("/api/v1/health")
    assert health.status_code == 503 and health.json["status"] == "down"
    assert health.json["reload"]["problems"][0]["where"].startswith(str(rules_copy / "badges.yaml"))
    response = client.post("/api/v1/validate", json={"configuration": EPO}, headers=token_for(client))
    assert response.status_code == 503 and response.json["error"]["code"] == "no-catalogue"
    manager = application.test_client()
    sign_in(manager, MANAGER)
    page = manager.get("/catalogue")
    assert page.status_code == 200 and "No catalogue is loaded" in page.text


def test_an_edit_that_trips_a_bug_is_reported_not_served_as_good(live_app, rules_copy, monkeypatch):
    """Regression: a reload failing with anything but CompanionError gave one 500, then health said ok forever.

    No rule edit is known to do that any more, so the failure is injected: load_catalog raises a plain error.
    """
    live = importlib.import_module("web.live")  # the module (web.state.live is the accessor)
    client = live_app.test_client()
    headers = token_for(client)
    before = client.get("/api/v1/health").json["rules_version"]

    def broken(directory):
        raise OverflowError("a bug")

    monkeypatch.setattr(live, "load_catalog", broken)
    tiers = rules_copy / "tiers.yaml"
    tiers.write_text(tiers.read_text() + "\n# touched\n")
    touch_later(tiers)
    health = client.get("/api/v1/health")
    assert health.status_code == 200 and health.json["status"] == "degraded"
    [problem] = health.json["reload"]["problems"]
    assert problem["code"] == "internal" and "incident" in problem["message"]
    verdict = client.post("/api/v1/validate", json={"configuration": EPO}, headers=headers)
    assert verdict.status_code == 200 and verdict.json["rules_version"] == before
    assert client.get("/api/v1/health").json["status"] == "degraded"  # still reported on the next check


AMEND = {"subscription": {"product": "epo", "license": "subscription", "term_months": 36, "start": "2025-06-01",
                          "tier": "essential", "devices": 100, "addons": []},
         "change": {"date": "2025-09-01", "tier": "advanced"}}


@pytest.mark.parametrize("name", ["subscriptions.yaml", "exports.yaml"])
def test_an_optional_rule_file_that_vanishes_is_a_broken_edit_until_it_returns(live_app, rules_copy, name):
    """Regression: deleting subscriptions.yaml was a good edit; every amendment then failed with no-policy."""
    client = live_app.test_client()
    headers = token_for(client)
    before = client.get("/api/v1/health").json["rules_version"]
    path = rules_copy / name
    text = path.read_text()
    path.unlink()
    health = client.get("/api/v1/health")
    assert health.status_code == 200 and health.json["status"] == "degraded"
    assert health.json["rules_version"] == before
    [problem] = health.json["reload"]["problems"]
    assert problem["code"] == "missing-rule-file" and problem["where"] == str(path)
    assert name in problem["message"] and "restore" in problem["hint"] and "restart" in problem["hint"]
    amended = client.post("/api/v1/amend", json=AMEND, headers=headers)  # the last good catalogue still amends
    assert amended.status_code == 200 and amended.json["term"]["months"] == 33
    assert amended.json["rules_version"] == before
    template = client.post("/api/v1/bom", json={"configuration": EPO, "template": "se-advantage"}, headers=headers)
    assert template.status_code == 200 and template.text.startswith("\ufeffCatalog Number")
    assert client.get("/api/v1/health").json["status"] == "degraded"  # still reported on the next check
    path.write_text(text)
    touch_later(path)
    health = client.get("/api/v1/health").json
    assert health["status"] == "ok" and health["rules_version"] == before and health["reload"]["problems"] == []


def test_a_required_rule_file_that_vanishes_is_reported_as_vanished(live_app, rules_copy):
    client = live_app.test_client()
    headers = token_for(client)
    before = client.get("/api/v1/health").json["rules_version"]
    tiers = rules_copy / "tiers.yaml"
    tiers.unlink()
    health = client.get("/api/v1/health").json
    assert health["status"] == "degraded" and health["rules_version"] == before
    [problem] = health["reload"]["problems"]  # one problem: not also the loader's missing-file for it
    assert problem["code"] == "missing-rule-file" and problem["where"] == str(tiers)
    assert "restore" in problem["hint"] and "cannot load without it" in problem["hint"]
    verdict = client.post("/api/v1/validate", json={"configuration": EPO}, headers=headers).json
    assert verdict["valid"] is True and verdict["rules_version"] == before


def test_a_vanished_file_and_a_broken_edit_are_both_reported(live_app, rules_copy):
    client = live_app.test_client()
    (rules_copy / "subscriptions.yaml").unlink()
    tiers = rules_copy / "tiers.yaml"
    tiers.write_text(tiers.read_text().replace("      - {from: essential, to: advanced}",
                                               "      - {from: essentail, to: advanced}", 1))
    touch_later(tiers)
    problems = client.get("/api/v1/health").json["reload"]["problems"]
    assert {"missing-rule-file", "unknown-ref"} <= {problem["code"] for problem in problems}


def test_a_restart_serves_the_rules_without_the_removed_file(tmp_path, rules_copy):
    (rules_copy / "subscriptions.yaml").unlink()
    application = make_app(tmp_path, RULES_DIR=str(rules_copy))
    seed_users(application)
    client = application.test_client()
    health = client.get("/api/v1/health").json
    assert health["status"] == "ok" and health["reload"]["problems"] == []
    response = client.post("/api/v1/amend", json=AMEND, headers=token_for(client))
    assert response.status_code != 200 and response.json["error"]["code"] == "no-policy"
