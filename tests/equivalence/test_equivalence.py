"""Equivalence (issue #14): on the shipped catalogue, the corpus and every fixture case keep their recorded outcomes.

tests/equivalence/verdicts.json.gz was written by record.py before the rule compiler's rewrite. The corpus
(corpus.py: 5,000 validate, 500 amend, 500 renew requests) is regenerated and must be the recorded one
while rules/ is unchanged; each recorded request is evaluated through the public facade and each fixture case
run, and every outcome must equal the recorded one, except those expected_changes.yaml lists with a reason.
A failure prints the first differences: the request, its outcome before and after.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ and tests/ are not installed packages
    sys.path.insert(0, str(ROOT))

from engine import BUNDLED_RULES, load  # noqa: E402
from engine.fixtures.run import forget_compiled  # noqa: E402
from tests.equivalence.corpus import UNSOLD_TERMS  # noqa: E402
from tests.equivalence.snapshot import (ExpectedChange, compare, fixture_cases, fixture_requests,  # noqa: E402
                                        observe_all, observe_fixtures, read_expected_changes, read_recording,
                                        report, unused)


@pytest.fixture(scope="module")
def recording():
    return read_recording()


@pytest.fixture(scope="module")
def compiled():
    return load(BUNDLED_RULES)  # the process-wide compilation, shared with the fixtures' runner


@pytest.fixture(scope="module")
def expected():
    return read_expected_changes()


def requests_of(recording) -> dict:
    return {request_id: (kind, data) for request_id, kind, data in recording["requests"]}


def test_the_corpus_reaches_every_corner_of_the_catalogue(recording, compiled):
    catalog = compiled.catalog
    configurations = [data["configuration"] for _, kind, data in recording["requests"] if kind == "validate"]
    seen = {(c["product"], c.get("version"), c["license"], c.get("term_months"), c["tier"]) for c in configurations}
    for product in catalog.products.values():
        for version in (None, *product.versions):
            for license in ("subscription", "perpetual"):
                for term in (None, *product.terms, *UNSOLD_TERMS):
                    for tier in product.tiers:
                        for name in (tier.id, *tier.former_names):
                            assert (product.id, version, license, term, name) in seen
        for tier in product.tiers:
            counts = {c.get("devices") for c in configurations if (c["product"], c["tier"]) == (product.id, tier.id)}
            for boundary in (tier.devices_included, tier.devices_max):
                assert {boundary - 1, boundary, boundary + 1} <= counts, (product.id, tier.id)
        for addon in catalog.addons.get(product.id, {}).values():
            if addon.max_quantity is not None:
                assert any({"id": addon.id, "quantity": addon.max_quantity + 1} in c.get("addons", ())
                           for c in configurations if c["product"] == product.id)
    badge_sets = {tuple(data["partner"]["badges"]) for _, kind, data in recording["requests"] if kind == "validate"}
    assert () in badge_sets and all((badge,) in badge_sets for badge in catalog.badges)
    assert tuple(sorted(catalog.badges)) in badge_sets
    codes: dict[str, set] = {"validate": set(), "amend": set(), "renew": set()}
    lines = set()
    for request_id, kind, _ in recording["requests"]:
        outcome = recording["outcomes"][request_id]
        codes[kind] |= {code for _, code in outcome.get("violations", []) + outcome.get("notices", [])}
        codes[kind] |= {code for code, _ in outcome.get("errors", [])}
        lines |= {line[0] for line in outcome.get("lines", []) if kind == "amend"}
    assert {"not-entitled", "version-too-low", "license-not-offered", "term-not-offered", "term-ignored",
            "former-name", "over-limit", "requires-tier", "requires-addon", "excluded", "unknown-ref"} <= codes["validate"]
    assert {"mid-term-downgrade", "not-an-upgrade-path", "mid-term-removal", "devices-kept", "no-change", "before-start",
            "after-end", "no-term", "over-limit", "requires-tier", "over-removal"} <= codes["amend"]
    assert {"renewal-downgrade", "renewal-removal", "late-renewal", "renewal-lapsed", "before-start", "no-term",
            "term-not-offered", "over-limit"} <= codes["renew"]
    # every amendment reference (each declared upgrade path, device licence and add-on) is charged somewhere
    written = yaml.safe_load((Path(BUNDLED_RULES) / "subscriptions.yaml").read_text(encoding="utf-8"))["amendments"]
    references = {item["devices"] for item in written} | {entry["reference"] for item in written
                                                          for entry in item["tiers"] + item["addons"]}
    assert references and references <= lines


def test_every_corpus_request_keeps_its_outcome(recording, compiled, expected):
    differences = compare(recording["outcomes"], observe_all(compiled, recording["requests"]),
                          requests_of(recording), expected)
    stale = [entry for entry in unused(expected, differences) if entry.fixture is None]
    if stale:
        warnings.warn("expected_changes.yaml entries no request needed: " + "; ".join(map(str, stale)))
    unexpected = [item for item in differences if item.allowed is None]
    assert not unexpected, report(differences, len(recording["outcomes"]), "corpus requests")


def test_every_fixture_case_keeps_its_outcome(recording, expected):
    differences = compare(recording["fixtures"], observe_fixtures(), fixture_requests(fixture_cases()), expected)
    added = [item for item in differences if item.before is None]  # cases written after the recording
    differences = [item for item in differences if item.before is not None]
    if added:
        warnings.warn(f"{len(added)} fixture cases are newer than the recording: " + ", ".join(i.id for i in added))
    unexpected = [item for item in differences if item.allowed is None]
    assert not unexpected, report(differences, len(recording["fixtures"]), "fixture cases")


def test_the_expected_changes_are_listed_with_reasons(expected, tmp_path):
    assert all(entry.reason for entry in expected)
    bad = tmp_path / "expected_changes.yaml"
    bad.write_text("changes:\n  - id: v0001\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs a reason"):
        read_expected_changes(bad)
    bad.write_text("changes:\n  - {match: {colour: red}, reason: why not}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="match takes"):
        read_expected_changes(bad)


# ----------------------------------------------------------------------- the comparison can fail

def _rules_with_pme_essential_max(tmp_path: Path, maximum: int) -> Path:
    """Copy rules/ with PME Essential's device maximum changed (rules/ itself is not touched)."""
    rules = tmp_path / "rules"
    shutil.copytree(BUNDLED_RULES, rules)
    tiers = rules / "tiers.yaml"
    head, pme = tiers.read_text(encoding="utf-8").split("  - id: pme\n", 1)
    assert "devices: {included: 25, max: 100}" in pme.split("  - id: epo\n")[0]
    pme = pme.replace("devices: {included: 25, max: 100}", f"devices: {{included: 25, max: {maximum}}}", 1)
    tiers.write_text(head + "  - id: pme\n" + pme, encoding="utf-8")
    return rules


def test_the_comparison_flags_a_changed_device_limit(recording, tmp_path):
    rules = _rules_with_pme_essential_max(tmp_path, 99)
    requests = requests_of(recording)
    try:
        after = observe_all(load(rules), recording["requests"])
        known = {entry.id for entry in read_expected_changes() if entry.id}  # changed on purpose elsewhere
        differences = [item for item in compare(recording["outcomes"], after, requests) if item.id not in known]
        fixture_differences = compare(recording["fixtures"], observe_fixtures(rules),
                                      fixture_requests(fixture_cases(rules)))
    finally:
        forget_compiled(str(rules.resolve()))
    assert differences, "PME Essential's maximum went from 100 to 99 and no corpus outcome changed"
    changed = {item.id: item for item in differences}
    # v1000, from the enumerated corners: PME Essential with exactly 100 devices was valid, now is over the limit
    assert requests["v1000"][1]["configuration"] == {"product": "pme", "license": "subscription", "term_months": 12,
                                                     "tier": "essential", "devices": 100}
    assert changed["v1000"].before["valid"] is True
    assert changed["v1000"].after["valid"] is False
    assert ["tier.pme.essential", "over-limit"] in changed["v1000"].after["violations"]
    products = {(item.request.get("configuration") or item.request["subscription"])["product"] for item in differences}
    assert products == {"pme"}
    text = report(differences, len(recording["outcomes"]), "corpus requests", shown=len(differences))
    assert text.startswith(f"{len(differences)} of 6000 corpus requests changed outcome unexpectedly")
    assert "--- v1000 (validate)" in text and "  before:  " in text and "  after:   " in text
    assert '"devices": 100' in text.split("--- v1000 (validate)")[1].split("---")[0]
    assert [item.id for item in fixture_differences if item.id in recording["fixtures"]] == [
        "tests/fixtures/devices/limits.yaml::PME Essential at its maximum, perpetual device licences"]
    assert '"devices": 100' in report(fixture_differences, len(recording["fixtures"]), "fixture cases")
    # a change listed in expected_changes.yaml, with its reason, is allowed
    allowed = [item for item in compare(recording["outcomes"], after, requests,
                                        [ExpectedChange("PME Essential sells at most 99 devices",
                                                        match=(("product", "pme"),))]) if item.id not in known]
    assert allowed and all(item.allowed for item in allowed)
    assert "0 of 6000 corpus requests changed outcome unexpectedly" in report(allowed, 6000, "corpus requests")
