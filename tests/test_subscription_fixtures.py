"""Amend and renew fixture cases through engine.fixtures: every subscription rule is exercised (coverage 100%).

CASES is a fixture file in the format of docs/fixtures.md (request kinds `amend` and `renew`, evaluated by
engine.fixtures.kinds.fixture_amend / fixture_renew); it is run here with those kinds registered for the test.
Numbers: a 36-month term from 2025-06-01 amended on 2025-09-01 (= anniversary 3) is charged 36 - 3 = 33
months; a 12-month term from 2025-03-15 amended on 2025-07-01 (in month 4, begun 2025-06-15) 12 - 3 = 9.
"""

from __future__ import annotations

import shutil

import pytest

from engine import fixtures
from engine.catalogue.load import load_catalog, rules_of
from engine.fixtures.kinds import fixture_amend, fixture_renew
from engine.catalogue.policies.subscriptions import POLICY_FILE
from engine.catalogue.schema import BUNDLED_RULES

EPO = ('partner: {badges: [power-management], country: US}\n'
       '      subscription: {product: epo, version: "2024", license: subscription, term_months: 36, start: 2025-06-01, ')
PME = ('partner: {badges: [power-management]}\n'
       '      subscription: {product: pme, version: "2024", license: subscription, term_months: 12, start: 2025-03-15, ')
EBO = ('partner: {badges: [building-automation]}\n'
       '      subscription: {product: ebo, version: "7.2", license: subscription, term_months: 36, start: 2025-06-01, ')

CASES = f"""\
description: Subscription amendments and renewals; every policy rule and amendment reference
cases:
  - name: EPO vendor example plus devices and every add-on
    kind: amend
    request:
      {EPO}tier: essential, devices: 100}}
      change: {{date: 2025-09-01, tier: advanced, devices: 150, addons: [{{id: powerscada-anywhere, quantity: 2}},
               {{id: insulation-monitoring}}, {{id: backup-power-testing}}]}}
    expect:
      valid: true
      bom:  # 33 months; devices 150 - 50 = 100 needed, 100 - 75 paid = 25
        - {{reference: EPO-AMD-ESS-ADV, quantity: 1, months: 33, units: 33, derivation: 33 months x epo essential->advanced}}
        - {{reference: EPO-AMD-DEV, quantity: 25, months: 33, units: 825, rule: amendment.epo.devices}}
        - {{reference: EPO-AMD-ANY, quantity: 2, months: 33, units: 66}}
        - {{reference: EPO-AMD-IMS, quantity: 1, months: 33, units: 33}}
        - {{reference: EPO-AMD-BPT, quantity: 1, months: 33, units: 33}}
  - name: EPO advanced to expert
    kind: amend
    request:
      {EPO}tier: advanced, devices: 50}}
      change: {{date: 2025-09-01, tier: expert}}
    expect: {{valid: true, bom: [{{reference: EPO-AMD-ADV-EXP, units: 33}}]}}
  - name: EPO essential to expert directly
    kind: amend
    request:
      {EPO}tier: essential, devices: 25}}
      change: {{date: 2025-09-01, tier: expert}}
    expect: {{valid: true, bom: [{{reference: EPO-AMD-ESS-EXP, units: 33}}]}}
  - name: PME essential to advanced with devices and energy analysis
    kind: amend
    request:
      {PME}tier: essential, devices: 25}}
      change: {{date: 2025-07-01, tier: advanced, devices: 60, addons: [{{id: energy-analysis}}]}}
    expect:
      valid: true
      bom:  # 9 months; 60 - 50 = 10 device licences
        - {{reference: PME-AMD-ESS-ADV, units: 9}}
        - {{reference: PME-AMD-DEV, quantity: 10, units: 90}}
        - {{reference: PME-AMD-EAR, units: 9}}
  - name: PME advanced to expert with power quality
    kind: amend
    request:
      {PME}tier: advanced, devices: 50}}
      change: {{date: 2025-07-01, tier: expert, addons: [{{id: power-quality}}]}}
    expect: {{valid: true, bom: [{{reference: PME-AMD-ADV-EXP, units: 9}}, {{reference: PME-AMD-PQP, units: 9}}]}}
  - name: PME energy analysis lite
    kind: amend
    request:
      {PME}tier: essential, devices: 25}}
      change: {{date: 2025-07-01, addons: [{{id: energy-analysis-lite}}]}}
    expect: {{valid: true, bom: [{{reference: PME-AMD-EARL, units: 9}}]}}
  - name: EBO essential to advanced with devices and clients
    kind: amend
    request:
      {EBO}tier: essential, devices: 50}}
      change: {{date: 2025-09-01, tier: advanced, devices: 120, addons: [{{id: extra-clients, quantity: 4}}]}}
    expect:
      valid: true
      bom:
        - {{reference: EBO-AMD-ESS-ADV, units: 33}}
        - {{reference: EBO-AMD-DEV, quantity: 20, units: 660}}
        - {{reference: EBO-AMD-CLI, quantity: 4, units: 132}}
  - name: EBO advanced to advanced plus with the dashboard
    kind: amend
    request:
      {EBO}tier: advanced, devices: 100}}
      change: {{date: 2025-09-01, tier: advanced-plus, addons: [{{id: energy-dashboard}}]}}
    expect: {{valid: true, bom: [{{reference: EBO-AMD-ADV-ADVP, units: 33}}, {{reference: EBO-AMD-ESD, units: 33}}]}}
  - name: EBO essential to advanced plus directly
    kind: amend
    request:
      {EBO}tier: essential, devices: 50}}
      change: {{date: 2025-09-01, tier: advanced-plus}}
    expect: {{valid: true, bom: [{{reference: EBO-AMD-ESS-ADVP, units: 33}}]}}
  - name: downgrade, fewer devices and a removal are refused mid-term
    kind: amend
    request:
      {EPO}tier: advanced, devices: 150, addons: [{{id: insulation-monitoring}}]}}
      change: {{date: 2025-09-01, tier: essential, devices: 100, remove_addons: [{{id: insulation-monitoring}}]}}
    expect:
      valid: false
      violations:
        - {{rule: policy.mid-term-downgrade, code: mid-term-downgrade, path: change.tier}}
        - {{rule: policy.mid-term-fewer-devices, code: mid-term-removal, path: change.devices}}
        - {{rule: policy.mid-term-removal, code: mid-term-removal, path: "change.remove_addons[0].id"}}
  - name: not an upgrade path (EPO Essential -> Expert directly needs 12 months left)
    kind: amend
    request:
      {EPO}tier: essential, devices: 25}}
      change: {{date: 2027-07-01, tier: expert}}
    expect: {{valid: false, violations: [{{rule: upgrade.epo.essential.expert, code: not-an-upgrade-path}}]}}
  - name: PME Essential to Expert directly
    kind: amend
    request:
      {PME}tier: essential, devices: 25}}
      change: {{date: 2025-07-01, tier: expert}}
    expect: {{valid: true, bom: [{{reference: PME-AMD-ESS-EXP, quantity: 1, months: 9}}]}}
  - name: a perpetual licence has no term
    kind: amend
    request:
      partner: {{badges: [building-automation]}}
      subscription: {{product: ebo, version: "7.2", license: perpetual, start: 2025-06-01, tier: essential}}
      change: {{date: 2025-09-01, tier: advanced}}
    expect: {{valid: false, violations: [{{rule: policy.perpetual, code: no-term}}]}}
  - name: on the end date
    kind: amend
    request:
      {EPO}tier: essential, devices: 25}}
      change: {{date: 2028-06-01, tier: advanced}}
    expect: {{valid: false, violations: [{{rule: policy.unit, code: after-end}}]}}
  - name: inside the last month, one month is charged
    kind: amend
    request:
      {EPO}tier: essential, devices: 25}}
      change: {{date: 2028-05-15, devices: 35}}
    expect:  # 2028-05-15 is in month 36 of 36, begun 2028-05-01: last_month charge, 1 month of 10 licences
      valid: true
      notices: []
      bom: [{{reference: EPO-AMD-DEV, quantity: 10, months: 1, units: 10}}]
  - name: unknown tier in a change is a request error
    kind: amend
    request:
      {EPO}tier: essential, devices: 25}}
      change: {{date: 2025-09-01, tier: advnced}}
    expect_error: {{code: unknown-ref, path: change.tier}}
  - name: renewal with a downgrade
    kind: renew
    request:
      {EPO}tier: advanced, devices: 60}}
      renewal: {{date: 2028-05-01, term_months: 12, tier: essential, devices: 60}}
    expect:
      valid: true
      bom: [{{reference: EPO-ESS-SUB-1Y, months: 12}}, {{reference: EPO-DEV-SUB-1Y, quantity: 35, months: 12}}]
  - name: late renewal is back-dated
    kind: renew
    request:
      {PME}tier: advanced, devices: 50}}
      renewal: {{date: 2026-04-01}}
    expect: {{valid: true, notices: [{{rule: policy.late-renewal, code: late-renewal}}]}}
"""


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setitem(fixtures.EVALUATORS, "amend", fixture_amend)
    monkeypatch.setitem(fixtures.EVALUATORS, "renew", fixture_renew)
    path = tmp_path / "subscriptions.yaml"
    path.write_text(CASES, encoding="utf-8")
    result = fixtures.run_file(path)
    assert not result.problems, result.problems
    return result.results


def test_every_case_passes(results):
    failed = [(result.name, result.differences) for result in results if not result.passed]
    assert not failed


def test_every_subscription_rule_is_exercised(results):
    catalog = load_catalog()
    policy = catalog.extras[POLICY_FILE]
    wanted = set(policy.rules()) | {upgrade.rule for product in catalog.products.values()
                                    for upgrade in product.upgrades}
    assert wanted <= set(rules_of(catalog))
    exercised = {rule for result in results for rule in result.exercised}
    assert sorted(wanted - exercised) == []


# The other value of each policy key that used to be a constant, as fixture cases over a copy of the bundled
# rules with those keys changed (the shipped values are the cases of tests/fixtures/amendments/).
CHOICES = f"""\
description: subscriptions.yaml allowing downgrades, fewer devices and removals mid-term, renewing on the date
rules: rules
cases:
  - name: a downgrade mid-term changes the tier and charges nothing
    kind: amend
    request:
      {EPO}tier: advanced, devices: 50}}
      change: {{date: 2026-01-10, tier: essential}}
    expect:  # Advanced 50 included, Essential 25: 50 devices need 25 licences, 25 x 29 months (2026-01-10: 36 - 7)
      valid: true
      notices:
        - {{rule: policy.mid-term-downgrade, code: not-credited, message: nothing is credited}}
        - {{rule: policy.mid-term-devices, code: devices-after-downgrade}}
      bom: [{{reference: EPO-AMD-DEV, quantity: 25, months: 29, units: 725}}]
  - name: fewer devices and a removal mid-term, not credited
    kind: amend
    request:
      {EPO}tier: advanced, devices: 150, addons: [{{id: insulation-monitoring}}]}}
      change: {{date: 2026-01-10, devices: 100, remove_addons: [{{id: insulation-monitoring}}]}}
    expect:
      valid: true
      notices:
        - {{rule: policy.mid-term-fewer-devices, code: not-credited, message: from 150 to 100}}
        - {{rule: policy.mid-term-removal, code: not-credited, message: insulation-monitoring is removed}}
      bom: []
  - name: an early renewal starts on its date
    kind: renew
    request:
      {EPO}tier: essential, devices: 100}}
      renewal: {{date: 2028-05-15}}
    expect:  # 2028-05-15 .. 2028-05-31 is lost: 17 days
      valid: true
      notices: [{{rule: policy.renewal, code: early-renewal, message: renewed 17 days before the end (2028-06-01)}}]
      bom: [{{reference: EPO-ESS-SUB-3Y, months: 36}}, {{reference: EPO-DEV-SUB-3Y, quantity: 75, months: 36}}]
"""


def test_the_other_value_of_each_policy_choice_as_fixtures(tmp_path, monkeypatch):
    monkeypatch.setitem(fixtures.EVALUATORS, "amend", fixture_amend)
    monkeypatch.setitem(fixtures.EVALUATORS, "renew", fixture_renew)
    shutil.copytree(BUNDLED_RULES, tmp_path / "rules")
    policy = tmp_path / "rules" / POLICY_FILE
    text = policy.read_text(encoding="utf-8")
    for key, old, new in (("tier-downgrade", "refused", "allowed"), ("fewer-devices", "refused", "allowed"),
                          ("addon-removal", "refused", "allowed"), ("start", "old-end", "renewal-date")):
        text = text.replace(f"{key}: {old}", f"{key}: {new}", 1)
    policy.write_text(text, encoding="utf-8")
    path = tmp_path / "choices.yaml"
    path.write_text(CHOICES, encoding="utf-8")
    result = fixtures.run_file(path)
    assert not result.problems, result.problems
    assert [(item.name, item.differences) for item in result.results if not item.passed] == []
    assert len(result.results) == 3
