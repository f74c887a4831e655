"""The policy keys of subscriptions.yaml that used to be constants: each value honoured, through the engine and the CLI.

The shipped rules keep today's behaviour (downgrades, fewer devices and removals refused mid-term; the new term
starts at the old end); a copy of them with one key changed shows the other value. Numbers are worked out by
hand next to them, with the notation of test_subscription.py (36 months from 2025-06-01 end on 2028-06-01).
"""

from __future__ import annotations

import json

import pytest

from engine.inference.compile import load as load_compiled
from tests.test_subscription import codes, copy_rules, invoke, line_of, problems_of, request, run_amend, run_renew, units

DOWNGRADE = ("tier-downgrade: refused", "tier-downgrade: allowed")
FEWER = ("fewer-devices: refused", "fewer-devices: allowed")
REMOVAL = ("addon-removal: refused", "addon-removal: allowed")
RENEWAL_DATE = ("start: old-end", "start: renewal-date")


@pytest.fixture(scope="module")
def shipped():
    return load_compiled()


@pytest.fixture(scope="module")
def lenient(tmp_path_factory):
    """The shipped rules with every reduction allowed mid-term and renewals starting on their date."""
    rules = copy_rules(tmp_path_factory.mktemp("lenient"), {"subscriptions.yaml": [DOWNGRADE, FEWER, REMOVAL,
                                                                                  RENEWAL_DATE]})
    return load_compiled(rules)


def notices(result) -> list[tuple[str, str]]:
    return [(item["code"], item["rule"]) for item in result.notices]


# ------------------------------------------------------------------------------------------ tier-downgrade

def test_an_allowed_downgrade_changes_the_tier_and_charges_nothing(lenient):
    result = run_amend(lenient, request({"date": "2026-01-10", "tier": "essential"}, tier="advanced", devices=25))
    assert result.valid, result.violations
    # Essential includes 25 devices: the 25 devices need no licence, so no line at all
    assert result.lines == [] and result.subscription["tier"] == "essential" and result.subscription["devices"] == 25
    assert result.subscription["end"] == "2028-06-01"  # the term is unchanged
    assert notices(result) == [("not-credited", "policy.mid-term-downgrade")]
    [notice] = result.notices
    assert "nothing is credited" in notice["message"] and "subscriptions.yaml:" in notice["where"]
    assert "policy.mid-term-downgrade" in [item["rule"] for item in result.fired]


def test_a_downgrade_to_a_tier_that_includes_fewer_devices_buys_the_missing_licences(lenient):
    result = run_amend(lenient, request({"date": "2026-01-10", "tier": "essential"}, tier="advanced", devices=60))
    assert result.valid, result.violations
    # Advanced includes 50: 10 licences paid. Essential includes 25: 60 devices need 35, so 25 more.
    # 2026-01-10 is in month 8 (anniversary 7 = 2026-01-01): 36 - 7 = 29 months; 25 x 29 = 725 units.
    assert units(result) == {"EPO-AMD-DEV": 725}
    assert result.subscription["devices"] == 60
    assert ("devices-after-downgrade", "policy.mid-term-devices") in notices(result)


def test_an_allowed_downgrade_is_still_validated_by_the_rules(lenient):
    data = request({"date": "2026-01-10", "tier": "essential"}, tier="advanced", devices=25,
                   addons=[{"id": "insulation-monitoring"}])
    result = run_amend(lenient, data)
    # Insulation Monitoring needs Advanced: the downgraded configuration is refused, nothing is charged
    assert not result.valid and result.lines == []
    assert ("requires-tier", "addon.epo.insulation-monitoring") in codes(result)


def test_the_shipped_policy_still_refuses_a_downgrade(shipped):
    result = run_amend(shipped, request({"date": "2026-01-10", "tier": "essential"}, tier="advanced", devices=25))
    assert codes(result) == [("mid-term-downgrade", "policy.mid-term-downgrade")]
    assert result.subscription["tier"] == "advanced"


# ------------------------------------------------------------------------------------------ fewer-devices

def test_allowed_fewer_devices_lower_the_total_without_credit(lenient):
    result = run_amend(lenient, request({"date": "2025-09-01", "devices": 90}))
    assert result.valid and result.lines == [] and result.subscription["devices"] == 90
    assert notices(result) == [("not-credited", "policy.mid-term-fewer-devices")]
    assert "from 100 to 90" in result.notices[0]["message"]


def test_devices_given_up_are_bought_again_to_come_back(lenient):
    # After going down to 90 (65 licences beyond the 25 included), 100 devices need 10 licences again:
    # 2025-10-01 is anniversary 4, 36 - 4 = 32 months; 10 x 32 = 320 units.
    result = run_amend(lenient, request({"date": "2025-10-01", "devices": 100}, devices=90))
    assert units(result) == {"EPO-AMD-DEV": 320}


def test_fewer_devices_with_an_upgrade_keep_only_what_was_asked_for(lenient):
    result = run_amend(lenient, request({"date": "2025-09-01", "tier": "advanced", "devices": 90}))
    assert result.valid, result.violations
    # 75 licences paid; Advanced includes 50, so 90 devices need 40: none to buy; only the upgrade, 33 months
    assert units(result) == {"EPO-AMD-ESS-ADV": 33} and result.subscription["devices"] == 90
    assert "devices-kept" not in [code for code, _ in notices(result)]  # 125 would be covered without the reduction


def test_the_shipped_policy_still_refuses_fewer_devices(shipped):
    result = run_amend(shipped, request({"date": "2025-09-01", "devices": 90}))
    assert codes(result) == [("mid-term-removal", "policy.mid-term-fewer-devices")]


# ------------------------------------------------------------------------------------------ addon-removal

def test_an_allowed_removal_drops_the_addon_without_credit(lenient):
    data = request({"date": "2025-09-01", "remove_addons": [{"id": "insulation-monitoring"}]}, tier="advanced",
                   addons=[{"id": "insulation-monitoring"}])
    result = run_amend(lenient, data)
    assert result.valid and result.lines == [] and result.subscription["addons"] == []
    assert notices(result) == [("not-credited", "policy.mid-term-removal")]
    assert "insulation-monitoring is removed" in result.notices[0]["message"]


def test_an_allowed_partial_removal_lowers_the_quantity(lenient):
    data = request({"date": "2025-09-01", "remove_addons": [{"id": "powerscada-anywhere", "quantity": 1}]},
                   addons=[{"id": "powerscada-anywhere", "quantity": 3}])
    result = run_amend(lenient, data)
    assert result.valid and result.subscription["addons"] == [{"id": "powerscada-anywhere", "quantity": 2}]
    assert "goes down from 3 to 2" in result.notices[0]["message"]


def test_the_shipped_policy_still_refuses_a_removal(shipped):
    data = request({"date": "2025-09-01", "remove_addons": [{"id": "insulation-monitoring"}]}, tier="advanced",
                   addons=[{"id": "insulation-monitoring"}])
    assert codes(run_amend(shipped, data)) == [("mid-term-removal", "policy.mid-term-removal")]


# ------------------------------------------------------------------------------------------ no change

def test_a_change_within_the_included_devices_is_not_called_no_change(shipped):
    """Regression: 10 -> 20 devices (Essential includes 25) said 'the change leaves the subscription as it is'."""
    result = run_amend(shipped, request({"date": "2025-09-01", "devices": 20}, devices=10))
    assert result.valid and result.lines == [] and result.subscription["devices"] == 20
    assert "no-change" not in [code for code, _ in notices(result)]


# ------------------------------------------------------------------------------------------ renewal.start

def test_renewal_date_starts_the_new_term_on_the_renewal_day(lenient):
    result = run_renew(lenient, request(renewal={"date": "2028-03-15"}))
    assert result.valid, result.violations
    # 36 months from 2028-03-15 end on 2031-03-15
    assert (result.term["new_start"], result.term["new_end"]) == ("2028-03-15", "2031-03-15")
    assert result.subscription["start"] == "2028-03-15"
    [notice] = [item for item in result.notices if item["rule"] == "policy.renewal"]
    # 2028-03-15 .. 2028-05-31 is lost: 17 + 30 + 31 = 78 days
    assert notice["code"] == "early-renewal" and "78 days before the end (2028-06-01)" in notice["message"]
    assert "2028-03-15 .. 2028-05-31" in notice["message"] and "not credited" in notice["message"]
    assert any("[policy.renewal: renewal-date]" in step for step in result.steps)


def test_renewal_date_leaves_late_renewals_to_the_late_key(lenient):
    result = run_renew(lenient, request(renewal={"date": "2028-06-20"}))
    assert result.term["new_start"] == "2028-06-01"  # late: backdate, as shipped
    assert [item["code"] for item in result.notices if item["rule"] == "policy.late-renewal"] == ["late-renewal"]


def test_the_shipped_policy_still_starts_an_early_renewal_at_the_old_end(shipped):
    result = run_renew(shipped, request(renewal={"date": "2028-03-15"}))
    assert result.term["new_start"] == "2028-06-01"
    assert "early-renewal" not in [item["code"] for item in result.notices]


# ------------------------------------------------------------------------------------------ bad values

@pytest.mark.parametrize("old, new, column", [
    ("unit: calendar-month", "unit: day", 9),  # the one unit: references are priced per whole month
    ("perpetual: refused", "perpetual: new-licences", 14),  # no second value: see README, "The policy file"
    ("tier-downgrade: refused", "tier-downgrade: credited", 21),
    ("fewer-devices: refused", "fewer-devices: credit", 20),
    ("addon-removal: refused", "addon-removal: allow", 20),
    ("start: old-end", "start: today", 12),
])
def test_a_value_the_schema_does_not_know_is_located(tmp_path, old, new, column):
    rules = copy_rules(tmp_path, {"subscriptions.yaml": [(old, new)]})
    text = (rules / "subscriptions.yaml").read_text()
    assert problems_of(rules) == [("schema", "subscriptions.yaml", line_of(text, new), column, "")]


# ------------------------------------------------------------------------------------------ command line

def amend_file(tmp_path, data: dict):
    path = tmp_path / "request.yaml"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("edit, change, subscription, notice", [
    (DOWNGRADE, {"date": "2026-01-10", "tier": "essential"}, {"tier": "advanced", "devices": 25},
     "notice[not-credited] policy.mid-term-downgrade"),
    (FEWER, {"date": "2025-09-01", "devices": 90}, {}, "notice[not-credited] policy.mid-term-fewer-devices"),
    (REMOVAL, {"date": "2025-09-01", "remove_addons": [{"id": "insulation-monitoring"}]},
     {"tier": "advanced", "addons": [{"id": "insulation-monitoring"}]}, "notice[not-credited] policy.mid-term-removal"),
])
def test_cli_amend_honours_each_allowed_reduction_and_the_shipped_refusal(tmp_path, edit, change, subscription,
                                                                          notice):
    path = amend_file(tmp_path, request(change, **subscription))
    rules = copy_rules(tmp_path, {"subscriptions.yaml": [edit]})
    allowed = invoke("amend", path, "--rules", str(rules))
    assert allowed.exit_code == 0, allowed.output
    assert "AMENDMENT VALID" in allowed.output and notice in allowed.output
    document = json.loads(invoke("amend", path, "--rules", str(rules), "--format", "json").output)
    assert document["valid"] is True and document["lines"] == []
    refused = invoke("amend", path)  # the shipped rules
    assert refused.exit_code == 1 and "AMENDMENT REFUSED" in refused.output


def test_cli_renew_with_renewal_date_and_the_shipped_old_end(tmp_path):
    path = amend_file(tmp_path, request(renewal={"date": "2028-03-15"}))
    rules = copy_rules(tmp_path, {"subscriptions.yaml": [RENEWAL_DATE]})
    early = invoke("renew", path, "--rules", str(rules), "--format", "json")
    assert early.exit_code == 0 and json.loads(early.output)["term"]["new_start"] == "2028-03-15"
    text = invoke("renew", path, "--rules", str(rules)).output
    assert "notice[early-renewal] policy.renewal" in text
    shipped = json.loads(invoke("renew", path, "--format", "json").output)
    assert shipped["term"]["new_start"] == "2028-06-01"


def test_cli_check_locates_a_bad_policy_value(tmp_path):
    rules = copy_rules(tmp_path, {"subscriptions.yaml": [("start: old-end", "start: today")]})
    text = (rules / "subscriptions.yaml").read_text()
    result = invoke("check", "--rules", str(rules))
    assert result.exit_code == 1
    assert f"subscriptions.yaml:{line_of(text, 'start: today')}:12: error[schema]" in result.output
    assert "'today' is not one of ['old-end', 'renewal-date']" in result.output
