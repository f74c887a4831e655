"""A voucher match may carry a `when`: it applies only to activations it is known to hold for.

The sample's promotional case: a pack of 25 EPO 36-month device licences usable for new activations only
(`when: {change.kind: absent}`). Checked through the catalogue's matching, the cover fixtures and the
activation of a configuration and of an amendment against a real SQLite locker.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from engine import load
from engine import locker
from engine.activation import activate_change, activate_configuration, matching
from engine.catalogue.schema import BUNDLED_RULES
from engine.fixtures import run_file
from engine.locker.db import open_store
from engine.problem import CompanionError
from engine.services.coverage import Requirement, cover

PROMO = """\
matches:
  EPO-DEV-SUB-3Y:
    - voucher: EPO-DEV-SUB-3Y-P25
      when: {change.kind: absent}      # the pack is a promotion for new activations
"""


@pytest.fixture()
def rules(tmp_path) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(BUNDLED_RULES, directory)
    vouchers = directory / "vouchers.yaml"
    text = vouchers.read_text(encoding="utf-8")
    assert text.count("\nmatches:\n") == 1
    vouchers.write_text(text.replace("\nmatches:\n", "\n" + PROMO, 1), encoding="utf-8")
    return directory


def test_a_conditional_match_applies_only_where_its_condition_is_known_to_hold(rules):
    compiled = load(rules)
    table = matching(compiled.catalog)
    new = {"change.kind": None}
    assert [o.voucher_reference for o in table.applying_to(new).options_of("EPO-DEV-SUB-3Y")] == [
        "EPO-DEV-SUB-3Y-P25", "EPO-DEV-SUB-3Y"]
    assert [o.voucher_reference for o in table.applying_to({"change.kind": "amendment"}).options_of(
        "EPO-DEV-SUB-3Y")] == ["EPO-DEV-SUB-3Y"]
    # no facts at all: the promotion is not spent where nobody said it may be
    assert [o.voucher_reference for o in table.applying_to(None).options_of("EPO-DEV-SUB-3Y")] == ["EPO-DEV-SUB-3Y"]
    # 25 units: a new activation uses the pack, an amendment the singles
    for facts, spent in ((new, {"EPO-DEV-SUB-3Y-P25": 1}), ({"change.kind": "amendment"}, {"EPO-DEV-SUB-3Y": 25})):
        coverage = cover([Requirement("EPO-DEV-SUB-3Y", 25)], {"EPO-DEV-SUB-3Y-P25": 1, "EPO-DEV-SUB-3Y": 30},
                         table.applying_to(facts))
        assert coverage.covered and coverage.debits == spent, facts


def test_the_locker_spends_the_promotion_on_a_new_activation_and_not_on_its_renewal(rules, tmp_path):
    compiled = load(rules)
    store = open_store(f"sqlite:///{tmp_path / 'locker.sqlite3'}")
    today = dt.date(2026, 12, 4)
    email = "alice@acme.example"
    locker.add_user(store, email, company="Acme", badges=["power-management"], country="US")
    for reference, quantity in (("EPO-ADV-SUB-3Y", 2), ("EPO-DEV-SUB-3Y-P25", 2), ("EPO-DEV-SUB-3Y", 25)):
        [code] = locker.issue_vouchers(store, reference, quantity)
        locker.redeem(store, email, code)
    configuration = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
                     "tier": "advanced", "devices": 75, "addons": []}
    first = activate_configuration(store, compiled, email, configuration, today=today)
    # Advanced includes 50: 25 device units, one promotional pack
    assert first.activation.debits == {"EPO-ADV-SUB-3Y": 1, "EPO-DEV-SUB-3Y-P25": 1}, first
    renewed = activate_change(store, compiled, email, first.activation.id, {}, "renewal", today=today)
    # the renewal is a change: the pack left in the locker is not for it; 25 single vouchers are spent
    assert renewed.activation.debits == {"EPO-ADV-SUB-3Y": 1, "EPO-DEV-SUB-3Y": 25}, renewed
    assert locker.balances(store, email)["EPO-DEV-SUB-3Y-P25"] == 1


def test_a_mistake_in_a_match_condition_is_located(rules):
    vouchers = rules / "vouchers.yaml"
    vouchers.write_text(vouchers.read_text(encoding="utf-8").replace("change.kind: absent", "change.knd: absent"),
                        encoding="utf-8")
    line = next(number for number, row in enumerate(vouchers.read_text().splitlines(), 1)
                if "when: {change.knd" in row and not row.lstrip().startswith("#"))
    with pytest.raises(CompanionError) as caught:
        load(rules)
    [problem] = [item for item in caught.value.problems if item.code == "unknown-fact"]
    assert problem.where.line == line and problem.rule == "match.epo-dev-sub-3y.epo-dev-sub-3y-p25"
    assert "did you mean 'change.kind'" in problem.hint


def test_a_cover_fixture_uses_the_promotion_for_a_new_activation(rules, tmp_path):
    suite = tmp_path / "promo.yaml"
    suite.write_text(f"""\
rules: {rules}
cases:
  - name: a new activation of 75 EPO devices spends the promotional pack
    kind: cover
    request:
      partner: {{badges: [power-management], country: US}}
      configuration: {{product: epo, version: "2024", license: subscription, term_months: 36, tier: advanced,
                      devices: 75}}
      locker: {{EPO-ADV-SUB-3Y: 1, EPO-DEV-SUB-3Y-P25: 1, EPO-DEV-SUB-3Y: 30}}
    expect:
      valid: true
      bom:
        - {{reference: EPO-ADV-SUB-3Y, quantity: 1}}
        - {{reference: EPO-DEV-SUB-3Y-P25, quantity: 1, rule: match.epo-dev-sub-3y.epo-dev-sub-3y-p25}}
""", encoding="utf-8")
    done = run_file(suite)
    assert not done.problems and [result.passed for result in done.results] == [True], done
