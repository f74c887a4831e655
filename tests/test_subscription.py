"""Subscriptions: calendar months, amendments, renewals, refusals, request errors, policy checks, CLI.

Every expected number is worked out by hand in a comment next to it. Notation: anniversary(k) is the start
date moved k calendar months (the day clamped to the month's last day); a date in [anniversary(k),
anniversary(k+1)) is in month k+1; with a started month charged, an N-month term amended then costs N - k
months.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.catalogue.load import load_catalog, rules_of
from engine.cli import cli
from engine.inference.compile import load as load_compiled
from engine.problem import CompanionError
from engine.catalogue.schema import BUNDLED_RULES
from engine.catalogue.policies.subscriptions import CHANGE, RENEWAL
from engine.services.changes import amendment_from_data
from engine.services.months import Proration, add_months, month_index
from engine.services.subscriptions import amend, renew

D = dt.date.fromisoformat
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compiled():
    return load_compiled()


def request(change: dict | None = None, renewal: dict | None = None, **subscription) -> dict:
    """An EPO Essential 36-month subscription started 2025-06-01 with 100 devices, and a change or renewal."""
    data = {
        "partner": {"badges": ["power-management"], "country": "US"},
        "subscription": {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
                         "start": "2025-06-01", "tier": "essential", "devices": 100, "addons": []},
    }
    data["subscription"].update(subscription)
    if change is not None:
        data["change"] = change
    if renewal is not None:
        data["renewal"] = renewal
    return data


def run_amend(compiled, data: dict):
    return amend(compiled, amendment_from_data(data, compiled.catalog, CHANGE))


def run_renew(compiled, data: dict):
    return renew(compiled, amendment_from_data(data, compiled.catalog, RENEWAL))


def units(result) -> dict[str, int]:
    return {line["reference"]: line["units"] for line in result.lines}


def codes(result) -> list[tuple[str, str]]:
    return [(item["code"], item["rule"]) for item in result.violations]


# ------------------------------------------------------------------------------------------ calendar months

def test_add_months_clamps_to_the_month_end_and_returns_to_the_31st():
    start = D("2025-01-31")
    # Feb 2025 has 28 days -> 28th; March has 31 -> back to the 31st; April has 30 -> 30th.
    assert [add_months(start, k) for k in range(4)] == [D("2025-01-31"), D("2025-02-28"), D("2025-03-31"),
                                                        D("2025-04-30")]
    # 36 months later: January 2028 has 31 days.
    assert add_months(start, 36) == D("2028-01-31")


def test_add_months_from_a_leap_day():
    start = D("2024-02-29")
    # 12 months: February 2025 has no 29th -> 28th; 48 months: 2028 is a leap year -> 29th again.
    assert add_months(start, 12) == D("2025-02-28")
    assert add_months(start, 36) == D("2027-02-28")
    assert add_months(start, 48) == D("2028-02-29")
    assert add_months(start, 1) == D("2024-03-29")


def test_month_index_at_the_boundaries():
    start = D("2025-01-31")
    # anniversary(1) = 2025-02-28, anniversary(2) = 2025-03-31
    assert month_index(start, D("2025-02-27")) == 0
    assert month_index(start, D("2025-02-28")) == 1
    assert month_index(start, D("2025-03-30")) == 1
    assert month_index(start, D("2025-03-31")) == 2


@pytest.mark.parametrize("date, index, months", [
    ("2025-06-01", 0, 36),  # the start date: month 1, 36 - 0 = 36
    ("2025-09-01", 3, 33),  # the vendor's example: anniversary(3) = 2025-09-01, 36 - 3 = 33
    ("2025-09-15", 3, 33),  # inside month 4 (2025-09-01 .. 2025-09-30): started month charged, 36 - 3 = 33
    ("2025-08-31", 2, 34),  # the day before anniversary(3): month 3, 36 - 2 = 34
    ("2028-05-01", 35, 1),  # anniversary(35) = 2028-05-01: the last month, 36 - 35 = 1
    ("2028-05-31", 35, 1),  # the day before the end (2028-06-01): 36 - 35 = 1
])
def test_proration_with_a_started_month_charged(date, index, months):
    proration = Proration(D("2025-06-01"), 36, D(date), "charge")
    assert proration.end == D("2028-06-01")  # 2025-06-01 + 36 months
    assert (proration.index, proration.months) == (index, months)


@pytest.mark.parametrize("date, months", [
    ("2025-06-01", 36),  # the first day of month 1: not started before the date, 36 - 0 = 36
    ("2025-06-02", 35),  # month 1 has started: free, 36 - 0 - 1 = 35
    ("2025-09-01", 33),  # the first day of month 4: 36 - 3 = 33
    ("2025-09-15", 32),  # month 4 has started: 36 - 3 - 1 = 32
    ("2028-05-01", 1),   # the first day of month 36, the last: 36 - 35 = 1
    ("2028-05-31", 1),   # month 36, the last, has started: free would leave 0; the last month is charged
])
def test_proration_with_a_started_month_free(date, months):
    assert Proration(D("2025-06-01"), 36, D(date), "free").months == months


@pytest.mark.parametrize("partial_month, last_month, date, months", [
    ("free", "charge", "2028-05-15", 1),    # inside month 36 of 36: one month, whatever partial_month says
    ("free", "free", "2028-05-15", 0),      # the policy makes it free: 36 - 35 - 1 = 0
    ("charge", "free", "2028-05-15", 0),    # the last month's own key decides, not partial_month
    ("charge", "charge", "2028-05-15", 1),  # 36 - 35 = 1
    ("free", "free", "2028-05-01", 1),      # the first day of month 36: a whole month is left, 36 - 35 = 1
    ("free", "free", "2028-04-15", 1),      # inside month 35: partial_month free, 36 - 34 - 1 = 1
])
def test_proration_in_the_last_month(partial_month, last_month, date, months):
    proration = Proration(D("2025-06-01"), 36, D(date), partial_month, last_month)
    assert proration.months == months
    assert proration.in_last_month == (date == "2028-05-15")


# ------------------------------------------------------------------------------------------ amendments

def test_the_vendors_example_33_months_of_essential_to_advanced(compiled):
    result = run_amend(compiled, request({"date": "2025-09-01", "tier": "advanced"}))
    assert result.valid, result.violations
    [line] = result.lines
    # 2025-09-01 = anniversary(3) of 2025-06-01: 36 - 3 = 33 months x 1 = 33 units
    assert line["reference"] == "EPO-AMD-ESS-ADV"
    assert (line["quantity"], line["months"], line["units"]) == (1, 33, 33)
    assert line["derivation"] == "33 months x epo essential->advanced"
    assert line["rule"] == "upgrade.epo.essential.advanced"
    assert result.subscription["end"] == "2028-06-01"  # unchanged: 2025-06-01 + 36 months
    assert result.subscription["tier"] == "advanced"
    # 100 devices on Essential (25 included) = 75 licences paid; Advanced includes 50: 50 + 75 = 125 covered
    assert result.subscription["devices"] == 125
    assert [notice["code"] for notice in result.notices] == ["devices-kept"]
    assert result.steps[-1] == "months charged: 36 - 3 = 33"


def test_amendment_on_the_start_date_is_charged_the_full_term(compiled):
    result = run_amend(compiled, request({"date": "2025-06-01", "tier": "advanced"}))
    assert units(result) == {"EPO-AMD-ESS-ADV": 36}  # month 1 of 36: 36 - 0 = 36


def test_amendment_on_the_day_before_the_end_is_charged_one_month(compiled):
    result = run_amend(compiled, request({"date": "2028-05-31", "tier": "advanced"}))
    # end 2028-06-01; anniversary(35) = 2028-05-01 <= 2028-05-31: month 36, 36 - 35 = 1
    assert units(result) == {"EPO-AMD-ESS-ADV": 1}
    assert result.lines[0]["derivation"] == "1 month x epo essential->advanced"


@pytest.mark.parametrize("date", ["2028-06-01", "2028-06-02", "2031-01-01"])
def test_amendment_on_or_after_the_end_date_is_refused(compiled, date):
    result = run_amend(compiled, request({"date": date, "tier": "advanced"}))
    assert not result.valid and result.lines == []
    [violation] = result.violations
    assert (violation["code"], violation["rule"], violation["path"]) == ("after-end", "policy.unit", "change.date")
    assert violation["where"].startswith("rules/subscriptions.yaml:")
    assert "renew" in violation["hint"]


def test_amendment_before_the_start_is_refused(compiled):
    result = run_amend(compiled, request({"date": "2025-05-31", "tier": "advanced"}))
    assert codes(result) == [("before-start", "policy.unit")]


def test_start_on_the_31st(compiled):
    data = request({"date": "2025-03-30", "tier": "advanced"}, start="2025-01-31")
    result = run_amend(compiled, data)
    # anniversaries 2025-02-28 (1), 2025-03-31 (2): 2025-03-30 is in month 2, 36 - 1 = 35; end 2028-01-31
    assert units(result) == {"EPO-AMD-ESS-ADV": 35}
    assert result.subscription["end"] == "2028-01-31"
    assert any("February 2025 has no day 31" in step for step in result.steps)  # the clamp is explained
    # one day later is anniversary(2): 36 - 2 = 34
    data["change"]["date"] = "2025-03-31"
    assert units(run_amend(compiled, data)) == {"EPO-AMD-ESS-ADV": 34}


def test_start_on_a_leap_day(compiled):
    data = request({"date": "2025-02-28", "devices": 90}, start="2024-02-29", term_months=12, devices=80)
    # end = 2024-02-29 + 12 months = 2025-02-28 (no Feb 29th in 2025): on the end date, refused
    assert codes(run_amend(compiled, data)) == [("after-end", "policy.unit")]
    data["change"]["date"] = "2025-02-27"
    result = run_amend(compiled, data)
    # anniversary(11) = 2025-01-29 <= 2025-02-27 < 2025-02-28: month 12, 12 - 11 = 1 month;
    # devices 80 -> 90 on Essential (25 included): licences 55 -> 65, 10 x 1 = 10 units
    assert units(result) == {"EPO-AMD-DEV": 10}
    assert result.subscription["end"] == "2025-02-28"
    # on 2024-03-29 = anniversary(1): 12 - 1 = 11 months
    data["change"]["date"] = "2024-03-29"
    assert units(run_amend(compiled, data)) == {"EPO-AMD-DEV": 110}  # 10 x 11


def test_a_12_month_term(compiled):
    data = request({"date": "2025-12-10", "addons": [{"id": "powerscada-anywhere", "quantity": 3}]},
                   term_months=12)
    result = run_amend(compiled, data)
    # end 2026-06-01; 2025-12-10 is in month 7 (anniversary(6) = 2025-12-01): 12 - 6 = 6 months; 3 x 6 = 18
    assert result.subscription["end"] == "2026-06-01"
    [line] = result.lines
    assert (line["reference"], line["quantity"], line["months"], line["units"]) == ("EPO-AMD-ANY", 3, 6, 18)
    assert line["derivation"] == "6 months x 3 x epo powerscada-anywhere = 18"


def test_combined_tier_devices_and_addon_change(compiled):
    data = request({"date": "2025-09-15", "tier": "advanced", "devices": 150,
                    "addons": [{"id": "insulation-monitoring"}]})
    result = run_amend(compiled, data)
    assert result.valid, result.violations
    # month 4 (2025-09-01 .. 2025-09-30): 36 - 3 = 33 months
    # tier: 1 x 33 = 33; devices: paid 100 - 25 = 75, needed 150 - 50 = 100, 25 more x 33 = 825;
    # insulation monitoring (needs Advanced, satisfied by the upgrade): 1 x 33 = 33
    assert units(result) == {"EPO-AMD-ESS-ADV": 33, "EPO-AMD-DEV": 825, "EPO-AMD-IMS": 33}
    state = result.subscription
    assert (state["tier"], state["devices"], state["addons"]) == ("advanced", 150,
                                                                  [{"id": "insulation-monitoring", "quantity": 1}])


def test_several_amendments_in_a_row(compiled):
    first = run_amend(compiled, request({"date": "2025-09-01", "tier": "advanced"}))
    # 33 months (the vendor's example); the subscription now covers 125 devices (50 included + 75 paid)
    assert units(first) == {"EPO-AMD-ESS-ADV": 33}
    state = dict(first.subscription)
    state.pop("end"), state.pop("last_day")
    second = run_amend(compiled, {"partner": {"badges": ["power-management"], "country": "US"}, "subscription": state,
                                  "change": {"date": "2026-02-20", "devices": 200,
                                             "addons": [{"id": "insulation-monitoring"}]}})
    # 2026-02-20 is in month 9 (anniversary(8) = 2026-02-01): 36 - 8 = 28 months
    # devices: paid 125 - 50 = 75, needed 200 - 50 = 150: 75 x 28 = 2100; insulation monitoring 1 x 28 = 28
    assert units(second) == {"EPO-AMD-DEV": 2100, "EPO-AMD-IMS": 28}
    state = dict(second.subscription)
    state.pop("end"), state.pop("last_day")
    third = run_amend(compiled, {"partner": {"badges": ["power-management"], "country": "US"}, "subscription": state,
                                 "change": {"date": "2028-05-31", "tier": "expert"}})
    # the last day covered: month 36, 1 month of advanced -> expert
    assert units(third) == {"EPO-AMD-ADV-EXP": 1}
    assert third.subscription["end"] == "2028-06-01"  # the end never moves
    # Expert includes 100; paid 150 stay: 250 devices covered
    assert third.subscription["devices"] == 250


def test_amended_configuration_is_validated_like_any_other(compiled):
    # Insulation monitoring needs Advanced: added to Essential, the rules refuse it
    result = run_amend(compiled, request({"date": "2025-09-01", "addons": [{"id": "insulation-monitoring"}]}))
    assert not result.valid and result.lines == []
    assert ("requires-tier", "addon.epo.insulation-monitoring") in codes(result)
    # Essential allows at most 100 devices
    result = run_amend(compiled, request({"date": "2025-09-01", "devices": 150}))
    assert ("over-limit", "tier.epo.essential") in codes(result)
    # a partner without an EPO badge cannot amend an EPO subscription either
    data = request({"date": "2025-09-01", "tier": "advanced"})
    data["partner"]["badges"] = ["building-automation"]
    assert ("not-entitled", "product.epo") in codes(run_amend(compiled, data))


def test_no_change_charges_nothing(compiled):
    result = run_amend(compiled, request({"date": "2025-09-01", "tier": "essential", "devices": 100}))
    assert result.valid and result.lines == []
    assert [notice["code"] for notice in result.notices] == ["no-change"]


def test_more_devices_within_the_included_ones_cost_nothing(compiled):
    result = run_amend(compiled, request({"date": "2025-09-01", "devices": 20}, devices=10))
    # Essential includes 25: 10 -> 20 devices need no licence
    assert result.valid and result.lines == [] and result.subscription["devices"] == 20


# ------------------------------------------------------------------------------------------ refusals

def test_downgrade_mid_term_is_refused_with_both_locations(compiled):
    data = request({"date": "2026-01-10", "tier": "essential"}, tier="advanced")
    result = run_amend(compiled, data)
    [violation] = result.violations
    assert (violation["code"], violation["rule"], violation["path"]) == (
        "mid-term-downgrade", "policy.mid-term-downgrade", "change.tier")
    assert violation["where"].startswith("rules/subscriptions.yaml:")
    assert "renew" in violation["hint"] and "2028-06-01" in violation["hint"]


def test_downgrade_refusal_points_at_the_request_field_in_a_file(compiled, tmp_path):
    path = tmp_path / "down.yaml"
    path.write_text("partner: {badges: [power-management], country: US}\n"
                    "subscription: {product: epo, license: subscription, term_months: 36, start: 2025-06-01,\n"
                    "               tier: advanced, devices: 60}\n"
                    "change:\n"
                    "  date: 2026-01-10\n"
                    "  tier: essential\n")
    from engine.services.changes import read_amendment

    result = amend(compiled, read_amendment(path, compiled.catalog))
    assert result.violations[0]["at"] == f"{path}:6:9"  # line 6, column 9: the value of change.tier


def test_fewer_devices_mid_term_is_refused(compiled):
    result = run_amend(compiled, request({"date": "2025-09-01", "devices": 90}))
    assert codes(result) == [("mid-term-removal", "policy.mid-term-fewer-devices")]
    assert result.violations[0]["path"] == "change.devices"


def test_addon_removal_mid_term_is_refused(compiled):
    data = request({"date": "2025-09-01", "remove_addons": [{"id": "insulation-monitoring"}]},
                   tier="advanced", addons=[{"id": "insulation-monitoring"}])
    result = run_amend(compiled, data)
    assert codes(result) == [("mid-term-removal", "policy.mid-term-removal")]
    assert result.violations[0]["path"] == "change.remove_addons[0].id"


def test_not_an_upgrade_path_names_the_paths_that_exist(tmp_path):
    # the sample declares every upward move; without PME's Essential -> Expert it is no path
    rules = copy_rules(tmp_path, {"tiers.yaml": [("      - {from: essential, to: expert}          # every upward move: \"whenever you need to\"\n", "")],
                                  "subscriptions.yaml": [("      - {from: essential, to: expert, reference: PME-AMD-ESS-EXP}\n", "")]})
    data = request({"date": "2025-07-01", "tier": "expert"}, product="pme", tier="essential", devices=25)
    result = run_amend(load_compiled(rules), data)
    [violation] = result.violations
    assert (violation["code"], violation["rule"]) == ("not-an-upgrade-path", "policy.mid-term-upgrade")
    assert "essential->advanced (" in violation["hint"] and "rules/tiers.yaml:" in violation["hint"]


def test_perpetual_license_cannot_be_amended_or_renewed(compiled):
    data = request({"date": "2025-09-01", "tier": "advanced"}, product="ebo", version="7.2", license="perpetual",
                   devices=60)
    data["partner"]["badges"] = ["building-automation"]
    del data["subscription"]["term_months"]
    result = run_amend(compiled, data)
    assert codes(result) == [("no-term", "policy.perpetual")]
    assert result.violations[0]["path"] == "subscription.license"
    renewal = copy.deepcopy(data)
    renewal["renewal"] = renewal.pop("change")
    assert codes(run_renew(compiled, renewal)) == [("no-term", "policy.perpetual")]


def test_a_policy_that_refuses_mid_term_additions(tmp_path):
    rules = copy_rules(tmp_path, {"subscriptions.yaml": [("more-devices: allowed", "more-devices: refused"),
                                                         ("more-addons: allowed", "more-addons: refused"),
                                                         ("tier-upgrade: allowed", "tier-upgrade: refused")]})
    compiled = load_compiled(rules)
    result = run_amend(compiled, request({"date": "2025-09-01", "tier": "advanced", "devices": 150,
                                          "addons": [{"id": "powerscada-anywhere"}]}))
    assert sorted(codes(result)) == [("not-allowed-mid-term", "policy.mid-term-addons"),
                                     ("not-allowed-mid-term", "policy.mid-term-devices"),
                                     ("not-allowed-mid-term", "policy.mid-term-upgrade")]


def test_partial_month_free_policy(tmp_path):
    compiled = load_compiled(copy_rules(tmp_path, {"subscriptions.yaml": [("partial_month: charge",
                                                                           "partial_month: free")]}))
    # 2025-09-15 is inside month 4: free, so 36 - 3 - 1 = 32; on 2025-09-01 (its first day) 36 - 3 = 33
    assert units(run_amend(compiled, request({"date": "2025-09-15", "tier": "advanced"}))) == {"EPO-AMD-ESS-ADV": 32}
    assert units(run_amend(compiled, request({"date": "2025-09-01", "tier": "advanced"}))) == {"EPO-AMD-ESS-ADV": 33}


# ------------------------------------------------------------------------------------------ the last month

LAST_MONTH = {"date": "2028-05-15", "tier": "advanced"}  # inside month 36 of 36, 2028-05-01 .. 2028-05-31
FREE_PARTIAL = ("partial_month: charge", "partial_month: free")


def without_last_month(rules: Path) -> Path:
    """Drop the last_month key from the policy, so that its default decides."""
    path = rules / "subscriptions.yaml"
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if not line.lstrip().startswith("last_month:")))
    return rules


def test_a_change_in_a_started_last_month_is_charged_a_month_by_default(tmp_path):
    """Regression: with partial_month free an upgrade in the last month was charged 0 months, silently."""
    compiled = load_compiled(without_last_month(copy_rules(tmp_path, {"subscriptions.yaml": [FREE_PARTIAL]})))
    result = run_amend(compiled, request(LAST_MONTH))
    assert result.valid, result.violations
    # 2028-05-15 is in month 36 (anniversary 35 = 2028-05-01): partial_month free would charge 36 - 35 - 1 = 0
    assert units(result) == {"EPO-AMD-ESS-ADV": 1} and result.term["months"] == 1
    assert [item["code"] for item in result.notices] == ["devices-kept"]  # nothing said to be free
    assert "policy.last-month" in [item["rule"] for item in result.fired]
    assert any("[policy.last-month: charge]" in step for step in result.steps)


@pytest.mark.parametrize("partial_month", ["charge", "free"])
def test_a_policy_that_refuses_changes_in_the_last_month(tmp_path, partial_month):
    compiled = load_compiled(copy_rules(tmp_path, {"subscriptions.yaml": [
        ("partial_month: charge", f"partial_month: {partial_month}"), ("last_month: charge", "last_month: refuse")]}))
    result = run_amend(compiled, request(LAST_MONTH))
    assert not result.valid and result.lines == []
    [violation] = result.violations
    assert (violation["code"], violation["rule"], violation["path"]) == ("last-month", "policy.last-month",
                                                                         "change.date")
    assert "last month" in violation["message"] and "renew" in violation["hint"] and "2028-06-01" in violation["hint"]
    assert "subscriptions.yaml:" in violation["where"]
    # On the first day of the last month a whole month is left: not a partial month, charged 36 - 35 = 1.
    whole_month = run_amend(compiled, request({"date": "2028-05-01", "tier": "advanced"}))
    assert whole_month.valid and units(whole_month) == {"EPO-AMD-ESS-ADV": 1}


def test_a_policy_that_makes_the_last_month_free_says_so(tmp_path):
    rules = copy_rules(tmp_path, {"subscriptions.yaml": [FREE_PARTIAL, ("last_month: charge", "last_month: free")]})
    compiled = load_compiled(rules)
    result = run_amend(compiled, request(LAST_MONTH))
    assert result.valid and units(result) == {"EPO-AMD-ESS-ADV": 0} and result.term["months"] == 0
    [notice] = [item for item in result.notices if item["rule"] == "policy.last-month"]
    assert notice["code"] == "last-month-free" and "nothing is charged" in notice["message"]
    request_file = tmp_path / "amend.yaml"
    request_file.write_text(json.dumps(request(LAST_MONTH)))
    text = invoke("amend", str(request_file), "--rules", str(rules)).output
    assert "0 months charged" in text and "notice[last-month-free] policy.last-month" in text


def test_the_last_month_key_is_a_located_rule():
    rules = rules_of(load_catalog())
    text = (BUNDLED_RULES / "subscriptions.yaml").read_text()
    assert rules["policy.last-month"].line == line_of(text, "last_month: charge")


def test_a_last_month_value_the_schema_does_not_know_is_located(tmp_path):
    rules = copy_rules(tmp_path, {"subscriptions.yaml": [("last_month: charge", "last_month: prorate")]})
    text = (rules / "subscriptions.yaml").read_text()
    assert ("schema", "subscriptions.yaml", line_of(text, "last_month: prorate"), 15, "") in problems_of(rules)


# ------------------------------------------------------------------------------------------ request errors

@pytest.mark.parametrize("change, code, path, hint", [
    ({"date": "2025-09-01", "tier": "advnced"}, "unknown-ref", "change.tier", "did you mean 'advanced'?"),
    ({"date": "2025-09-01", "addons": [{"id": "insulation-monitor"}]}, "unknown-ref", "change.addons[0].id",
     "did you mean 'insulation-monitoring'?"),
    ({"date": "2025-09-01", "remove_addons": [{"id": "powerscada"}]}, "unknown-ref", "change.remove_addons[0].id",
     ""),
    ({"date": "2025-02-30"}, "bad-date", "change.date", "2025-06-01"),
    ({"date": "next week"}, "request-schema", "change.date", ""),
    ({"tier": "advanced"}, "request-schema", "change", ""),
    ({"date": "2025-09-01", "colour": "red"}, "request-schema", "change", ""),
])
def test_request_errors_have_a_path_and_a_hint(compiled, change, code, path, hint):
    with pytest.raises(CompanionError) as error:
        amendment_from_data(request(change), compiled.catalog, CHANGE)
    [problem] = error.value.problems
    assert (problem.code, problem.path) == (code, path)
    assert hint in problem.hint


def test_unknown_product_and_badge_are_request_errors(compiled):
    data = request({"date": "2025-09-01"}, product="epx")
    data["partner"]["badges"] = ["power-managment"]
    with pytest.raises(CompanionError) as error:
        amendment_from_data(data, compiled.catalog, CHANGE)
    found = {(problem.code, problem.path, problem.hint) for problem in error.value.problems}
    assert ("unknown-ref", "subscription.product", "did you mean 'epo'?") in found
    assert ("unknown-ref", "partner.badges[0]", "did you mean 'power-management'?") in found


def test_a_renewal_request_given_to_amend_is_a_request_error(compiled):
    with pytest.raises(CompanionError) as error:
        amendment_from_data(request(renewal={"date": "2028-05-01"}), compiled.catalog, CHANGE)
    assert [(problem.code, problem.path) for problem in error.value.problems] == [("wrong-kind", "renewal")]


def test_a_subscription_without_a_term_is_a_request_error(compiled):
    data = request({"date": "2025-09-01"})
    del data["subscription"]["term_months"]
    with pytest.raises(CompanionError) as error:
        amendment_from_data(data, compiled.catalog, CHANGE)
    assert [(problem.code, problem.path) for problem in error.value.problems] == [("missing", "subscription")]


# ------------------------------------------------------------------------------------------ renewals

def test_renewal_starts_at_the_old_end_and_allows_downgrades_and_removals(compiled):
    data = request(renewal={"date": "2028-05-02", "term_months": 12, "tier": "essential", "devices": 80,
                            "remove_addons": [{"id": "insulation-monitoring"}]},
                   tier="advanced", devices=150, addons=[{"id": "insulation-monitoring"}])
    result = run_renew(compiled, data)
    assert result.valid, result.violations
    # new term: 2028-06-01 (old end) + 12 months = 2029-06-01
    assert (result.subscription["start"], result.subscription["end"]) == ("2028-06-01", "2029-06-01")
    # normal BOM of the renewed configuration: Essential 1-year, 80 - 25 = 55 device licences
    assert [(line["reference"], line["quantity"], line["months"]) for line in result.bom] == [
        ("EPO-ESS-SUB-1Y", 1, 12), ("EPO-DEV-SUB-1Y", 55, 12)]
    assert {notice["code"] for notice in result.notices} == {"renewal-downgrade", "renewal-removal"}


def test_renewal_of_the_current_configuration_keeps_the_term(compiled):
    result = run_renew(compiled, request(renewal={"date": "2026-01-01"}))
    # 36 months again from 2028-06-01: ends 2031-06-01; 100 - 25 = 75 device licences
    assert (result.subscription["start"], result.subscription["end"]) == ("2028-06-01", "2031-06-01")
    assert [(line["reference"], line["quantity"], line["months"]) for line in result.bom] == [
        ("EPO-ESS-SUB-3Y", 1, 36), ("EPO-DEV-SUB-3Y", 75, 36)]


def test_late_renewal_is_back_dated_to_the_old_end(compiled):
    result = run_renew(compiled, request(renewal={"date": "2028-06-20"}, term_months=12, start="2027-06-01"))
    # old end 2028-06-01, asked 19 days later; new term 2028-06-01 .. 2029-06-01
    assert (result.subscription["start"], result.subscription["end"]) == ("2028-06-01", "2029-06-01")
    [notice] = [notice for notice in result.notices if notice["code"] == "late-renewal"]
    assert "19 days after the end" in notice["message"]


def test_renewal_after_the_whole_back_dated_term_is_refused(compiled):
    result = run_renew(compiled, request(renewal={"date": "2029-06-01"}, term_months=12, start="2027-06-01"))
    # back-dated term 2028-06-01 .. 2029-06-01 would already be over on 2029-06-01
    assert codes(result) == [("renewal-lapsed", "policy.late-renewal")]


def test_late_renewal_restart_policy(tmp_path):
    compiled = load_compiled(copy_rules(tmp_path, {"subscriptions.yaml": [("late: backdate", "late: restart")]}))
    result = run_renew(compiled, request(renewal={"date": "2028-06-20"}, term_months=12, start="2027-06-01"))
    # starts on the renewal date: 2028-06-20 + 12 months = 2029-06-20
    assert (result.subscription["start"], result.subscription["end"]) == ("2028-06-20", "2029-06-20")


def test_renewal_before_the_start_is_refused(compiled):
    assert codes(run_renew(compiled, request(renewal={"date": "2025-05-01"}))) == [("before-start", "policy.unit")]


def test_renewal_term_must_be_offered(compiled):
    result = run_renew(compiled, request(renewal={"date": "2028-05-01", "term_months": 24}))
    assert ("term-not-offered", "license.epo") in codes(result)


# ------------------------------------------------------------------------------------------ the policy file

def copy_rules(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("badges.yaml", "tiers.yaml", "addons.yaml", "subscriptions.yaml"):
        text = (BUNDLED_RULES / name).read_text(encoding="utf-8")
        for old, new in edits.get(name, ()):
            assert old in text, old
            text = text.replace(old, new, 1)
        (rules / name).write_text(text, encoding="utf-8")
    return rules


def problems_of(rules: Path) -> list[tuple[str, str, int, int, str]]:
    with pytest.raises(CompanionError) as error:
        load_catalog(rules)
    return [(problem.code, Path(problem.where.file).name, problem.where.line, problem.where.column, problem.rule)
            for problem in error.value.problems]


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def test_shipped_policy_loads_and_registers_its_rules_and_references():
    catalog = load_catalog()
    rules = rules_of(catalog)
    text = (BUNDLED_RULES / "subscriptions.yaml").read_text()
    assert rules["policy.partial-month"].line == line_of(text, "partial_month:")
    assert rules["policy.mid-term-downgrade"].line == line_of(text, "tier-downgrade:")
    assert rules["amendment.epo.devices"].line == line_of(text, "devices: EPO-AMD-DEV")
    assert "amendment.epo.addon.insulation-monitoring" in rules
    assert rules["upgrade.epo.essential.advanced"].file.endswith("tiers.yaml")  # reused, not redefined
    assert catalog.references["EPO-AMD-ESS-ADV"].kind == "amendment"


def test_check_an_undeclared_path_with_did_you_mean(tmp_path):
    rules = copy_rules(tmp_path, {"tiers.yaml": [("      - {from: essential, to: expert}          # every upward move: \"whenever you need to\"\n", "")], "subscriptions.yaml": [
        ("{from: essential, to: advanced, reference: EBO-AMD-ESS-ADV}",
         "{from: essential, to: advnced, reference: EBO-AMD-ESS-ADV}")]})
    text = (rules / "subscriptions.yaml").read_text()
    found = problems_of(rules)
    assert ("unknown-ref", "subscriptions.yaml", line_of(text, "PME-AMD-ESS-EXP"), 16,
            "upgrade.pme.essential.expert") in found
    assert ("unknown-ref", "subscriptions.yaml", line_of(text, "advnced"), 16, "upgrade.ebo.essential.advnced") in found
    # and the real path lost its reference
    assert ("missing-reference", "subscriptions.yaml", line_of(text, "product: ebo"), 14,
            "upgrade.ebo.essential.advanced") in found


def test_check_a_declared_path_without_reference(tmp_path):
    rules = copy_rules(tmp_path, {"subscriptions.yaml": [
        ("      - {from: advanced, to: expert, reference: EPO-AMD-ADV-EXP}\n", "")]})
    text = (rules / "subscriptions.yaml").read_text()
    assert problems_of(rules) == [("missing-reference", "subscriptions.yaml", line_of(text, "product: epo"), 14,
                                   "upgrade.epo.advanced.expert")]


def test_check_references_unique_across_the_catalogue(tmp_path):
    rules = copy_rules(tmp_path, {"subscriptions.yaml": [("devices: EPO-AMD-DEV", "devices: EPO-DEV-SUB-3Y"),
                                                         ("reference: EPO-AMD-BPT}", "reference: EPO-AMD-IMS}")]})
    text = (rules / "subscriptions.yaml").read_text()
    found = problems_of(rules)
    assert ("duplicate-reference", "subscriptions.yaml", line_of(text, "EPO-DEV-SUB-3Y"), 14,
            "amendment.epo.devices") in found
    assert ("duplicate-reference", "subscriptions.yaml", line_of(text, "backup-power-testing"), 47,
            "amendment.epo.addon.backup-power-testing") in found


def test_check_unknown_product_addon_and_duplicates(tmp_path):
    rules = copy_rules(tmp_path, {"subscriptions.yaml": [
        ("{id: insulation-monitoring, reference: EPO-AMD-IMS}", "{id: insulation-monitor, reference: EPO-AMD-IMS}"),
        ("  - product: pme\n", "  - product: pmx\n    devices: PMX-AMD-DEV\n  - product: epo\n    devices: EPO-AMD-DEV2\n"
                               "  - product: pme\n")]})
    text = (rules / "subscriptions.yaml").read_text()
    lines = text.splitlines()
    first_epo, second_epo = [number for number, line in enumerate(lines, 1) if line == "  - product: epo"]
    second_devices = lines.index("    devices: EPO-AMD-DEV") + 1
    found = problems_of(rules)
    assert ("unknown-ref", "subscriptions.yaml", line_of(text, "product: pmx"), 14, "product.pmx") in found
    assert ("unknown-ref", "subscriptions.yaml", line_of(text, "insulation-monitor,"), 14,
            "amendment.epo.addon.insulation-monitor") in found
    # the entry listed first wins; the shipped epo entry, later, is the duplicate, and so is its devices line
    assert ("duplicate-id", "subscriptions.yaml", second_epo, 14, "product.epo") in found
    assert ("duplicate-id", "subscriptions.yaml", second_devices, 5, "amendment.epo.devices") in found
    # the two epo entries are merged: only the renamed add-on lacks its reference
    assert [problem for problem in found if problem[0] == "missing-reference"] == [
        ("missing-reference", "subscriptions.yaml", first_epo, 14, "amendment.epo.addon.insulation-monitoring")]


def test_check_schema_problems_are_located(tmp_path):
    rules = copy_rules(tmp_path, {"subscriptions.yaml": [("partial_month: charge", "partial_month: prorate"),
                                                         ("tier-downgrade: refused", "tier-downgrade: credited")]})
    text = (rules / "subscriptions.yaml").read_text()
    found = problems_of(rules)
    assert ("schema", "subscriptions.yaml", line_of(text, "prorate"), 18, "") in found
    assert ("schema", "subscriptions.yaml", line_of(text, "tier-downgrade: credited"), 21, "") in found


def test_rules_without_a_policy_cannot_amend(tmp_path):
    rules = copy_rules(tmp_path, {})
    (rules / "subscriptions.yaml").unlink()
    compiled = load_compiled(rules)
    with pytest.raises(CompanionError) as error:
        run_amend(compiled, request({"date": "2025-09-01", "tier": "advanced"}))
    assert error.value.problems[0].code == "no-policy"


# ------------------------------------------------------------------------------------------ command line

def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_amend_vendor_example_text_and_explain():
    result = invoke("amend", str(ROOT / "examples/amend-epo-vendor-example.yaml"), "--explain")
    assert result.exit_code == 0, result.output
    assert "1 x EPO-AMD-ESS-ADV     33 months =     33 units  33 months x epo essential->advanced" in result.output
    assert "months charged: 36 - 3 = 33" in result.output
    assert "used up: months 1-3 of 36, 2025-06-01 .. 2025-08-31: not charged" in result.output
    assert "upgrade.epo.essential.advanced at rules/tiers.yaml:" in result.output


def test_cli_amend_json():
    result = invoke("amend", str(ROOT / "examples/amend-epo-combined.yaml"), "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert document["term"]["months"] == 33  # 2025-09-15 in month 4: 36 - 3
    assert [line["units"] for line in document["lines"]] == [33, 825, 33]  # 1 x 33, 25 x 33, 1 x 33


def test_cli_amend_refused_exits_1():
    result = invoke("amend", str(ROOT / "examples/amend-epo-downgrade-refused.yaml"))
    assert result.exit_code == 1
    assert "error[mid-term-downgrade] policy.mid-term-downgrade at change.tier" in result.output


def test_cli_bad_request_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("partner: {badges: [power-management], country: US}\n"
                    "subscription: {product: epo, license: subscription, term_months: 36, start: 2025-06-01,\n"
                    "               tier: essentail}\n"
                    "change: {date: 2025-09-01}\n")
    result = CliRunner().invoke(cli, ["amend", str(path)])
    assert result.exit_code == 2
    assert f"{path}:3:22: error[unknown-ref] at subscription.tier: epo has no tier 'essentail'; did you mean " \
           "'essential'?" in result.output


def test_cli_renew_json_and_text():
    result = invoke("renew", str(ROOT / "examples/renew-epo-downgrade.yaml"), "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert document["term"]["new_start"] == "2028-06-01" and document["term"]["new_end"] == "2029-06-01"
    result = invoke("renew", str(ROOT / "examples/renew-pme-late.yaml"), "--explain")
    assert result.exit_code == 0 and "back-dated" in result.output


def test_every_example_has_its_documented_exit_code():
    for path in sorted((ROOT / "examples").glob("amend-*.yaml")) + sorted((ROOT / "examples").glob("renew-*.yaml")):
        verb = "renew" if path.name.startswith("renew-") else "amend"
        expected = 1 if "refused" in path.name else 0
        assert invoke(verb, str(path)).exit_code == expected, path.name


def test_rules_without_policy_on_the_cli(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(BUNDLED_RULES, rules, ignore=shutil.ignore_patterns("subscriptions.yaml", "*.schema.json"))
    result = CliRunner().invoke(cli, ["amend", str(ROOT / "examples/amend-epo-vendor-example.yaml"),
                                      "--rules", str(rules)])
    assert result.exit_code == 1 and "no-policy" in result.output


def test_whole_numbers_written_with_a_decimal_point_amend_as_integers(compiled):
    """The combined example with 36.0, 100.0, 150.0 and 1.0 charges exactly what it charges with integers."""
    change = {"date": "2025-09-15", "tier": "advanced", "devices": 150,
              "addons": [{"id": "insulation-monitoring", "quantity": 1}]}
    plain = run_amend(compiled, request(change))
    decimal = run_amend(compiled, request({**change, "devices": 150.0,
                                           "addons": [{"id": "insulation-monitoring", "quantity": 1.0}]},
                                          term_months=36.0, devices=100.0))
    assert plain.valid and decimal.valid
    assert decimal.lines == plain.lines and decimal.subscription == plain.subscription
    assert units(decimal)["EPO-AMD-DEV"] == 825  # (150 - 50) - (100 - 25) = 25 more licences x 33 months
    assert all(type(value) is int for line in decimal.lines for value in (line["quantity"], line["units"]))


@pytest.mark.parametrize("where, day", [("start", "9999-12-31"), ("start", "1999-12-31"), ("date", "9999-01-01")])
def test_dates_outside_the_business_calendar_are_request_errors(compiled, where, day):
    """Regression: a start in year 9999 plus a 36-month term made add_months raise (a 500 in the web app)."""
    data = request({"date": day if where == "date" else "2025-09-01", "tier": "advanced"},
                   **({"start": day} if where == "start" else {}))
    with pytest.raises(CompanionError) as error:
        run_amend(compiled, data)
    [problem] = [problem for problem in error.value.problems if problem.code == "bad-date"]
    assert problem.message == f"'{day}' is outside 2000-01-01 .. 2999-12-31"
    assert problem.path == ("subscription.start" if where == "start" else "change.date")


def test_the_engine_decides_upgrade_paths_and_a_path_may_carry_a_condition(tmp_path):
    # EPO essential -> expert opens only from 2027-01-01 (sample edit): the change rules compiled from the
    # declared paths decide it, and the explanation cites the path rule and each condition with its value.
    rules = tmp_path / "rules"
    shutil.copytree(BUNDLED_RULES, rules)
    tiers = rules / "tiers.yaml"
    text = tiers.read_text(encoding="utf-8")
    written = "        when: {change.months_left: {at_least: 12}}\n"  # the sample's EPO essential -> expert
    assert text.count(written) == 1
    tiers.write_text(text.replace(written, "        when: {date: {at_least: 2027-01-01}}\n"), encoding="utf-8")
    line = next(number for number, row in enumerate(tiers.read_text().splitlines(), 1) if "2027-01-01" in row)
    compiled = load_compiled(rules)
    early = run_amend(compiled, request({"date": "2026-06-01", "tier": "expert"}))
    [violation] = early.violations
    assert (violation["code"], violation["rule"]) == ("not-an-upgrade-path", "upgrade.epo.essential.expert")
    assert violation["message"] == "the upgrade path essential -> expert is open only when date is at least 2027-01-01"
    [date_condition] = [item for item in violation["conditions"] if item["fact"] == "date"]
    where = date_condition.pop("where")
    assert date_condition == {"condition": "date is at least 2027-01-01", "reads": "the date is at least 2027-01-01",
                              "fact": "date", "saw": "2026-06-01", "held": False, "required": True}
    assert where.endswith(f"rules/tiers.yaml:{line}:33")  # the date after `when: {date: {at_least: `
    assert any(item["rule"] == "upgrades.epo" for item in early.fired)
    # From 2027 the same move is an upgrade along the path: 36 - 19 months charged (2027-01-04 is in month 20).
    late = run_amend(compiled, request({"date": "2027-01-04", "tier": "expert"}))
    assert late.valid, late.violations
    assert [(line["reference"], line["months"]) for line in late.lines] == [("EPO-AMD-ESS-EXP", 17)]
    path = next(item for item in late.fired if item["rule"] == "upgrade.epo.essential.expert")
    assert path["where"].endswith(f"rules/tiers.yaml:{line - 2}:9")
    assert "date is at least 2027-01-01 holds (saw 2027-01-04, at " in path["what"]
