"""Semantic checks: codes and 1-based positions of what a schema cannot say; rule ids; the synthetic catalogue."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bench.synthetic import generate_catalog
from engine.catalogue import check
from engine.catalogue.load import build_catalog, load_catalog, warnings_of
from engine.catalogue.check import CHECKS, check_catalog
from engine.problem import CompanionError, Problem
from engine.catalogue.source import parse_yaml

# A small catalogue written in flow style, so that positions are easy to count.
BADGES = """\
badges:
  - {id: power, name: Power, unlocks: [{product: epo}]}
"""
TIERS = """\
products:
  - id: epo
    name: EPO
    versions: ["2023", "2024"]
    licenses: {subscription: {terms: [12]}}
    tiers:
      - {id: essential, name: E, devices: {included: 1, max: 10}, references: {subscription-12: E-1}}
      - {id: advanced, name: A, devices: {included: 1, max: 10}, references: {subscription-12: A-1}}
      - {id: expert, name: X, devices: {included: 1, max: 10}, references: {subscription-12: X-1}}
    upgrades:
      - {from: essential, to: advanced}
      - {from: advanced, to: expert}
"""
ADDONS = """\
addons:
  - {id: one, product: epo, name: One, references: {subscription-12: AD-1}}
  - {id: two, product: epo, name: Two, references: {subscription-12: AD-2}}
devices:
  - {product: epo, name: D, references: {subscription-12: DEV-1}}
"""

SHAPES = {
    "badge": re.compile(r"^badge\.[a-z0-9-]+$"),
    "product": re.compile(r"^product\.[a-z0-9-]+$"),
    "tier": re.compile(r"^tier\.[a-z0-9-]+\.[a-z0-9-]+$"),
    "upgrade": re.compile(r"^upgrade\.[a-z0-9-]+\.[a-z0-9-]+\.[a-z0-9-]+$"),
    "addon": re.compile(r"^addon\.[a-z0-9-]+\.[a-z0-9-]+$"),
    "devices": re.compile(r"^devices\.[a-z0-9-]+$"),
    "license": re.compile(r"^license\.[a-z0-9-]+$"),  # a product's licence models and terms
}


def catalog_of(badges: str = BADGES, tiers: str = TIERS, addons: str = ADDONS):
    """Build the typed catalogue from texts (they must pass the schema)."""
    sources = {name: parse_yaml(text, name) for name, text in
               (("badges.yaml", badges), ("tiers.yaml", tiers), ("addons.yaml", addons))}
    for source in sources.values():
        assert source.problems == []
    return build_catalog(Path("."), sources, "test")


def spots(problems) -> list[tuple]:
    """Return (file, line, column, code, rule) of each problem, sorted."""
    return sorted((p.where.file, p.where.line, p.where.column, p.code, p.rule) for p in problems)


def test_small_catalogue_is_clean():
    assert check_catalog(catalog_of()) == []


def test_shipped_rules_load_with_zero_problems():
    catalog = load_catalog()
    assert warnings_of(catalog) == ()
    assert {"ebo", "pme", "epo"} <= set(catalog.products)


def test_every_rule_id_is_unique_and_in_a_documented_shape():
    catalog = load_catalog()
    ids = [badge.rule for badge in catalog.badges.values()]
    for product in catalog.products.values():
        ids += [product.rule, f"license.{product.id}"] + [tier.rule for tier in product.tiers] + [up.rule for up in product.upgrades]
    ids += [addon.rule for addons in catalog.addons.values() for addon in addons.values()]
    ids += [license.rule for license in catalog.devices.values()]
    assert len(ids) == len(set(ids))
    assert set(catalog.rules()) == set(ids)
    for rule in ids:
        kind = rule.split(".")[0]
        assert kind in SHAPES and SHAPES[kind].match(rule), rule
    assert "tier.epo.advanced" in ids and "addon.epo.insulation-monitoring" in ids and "badge.power-management" in ids


def test_every_check_documents_a_failing_example():
    for code, function in CHECKS.items():
        assert code in function.__doc__ and "Failing" in function.__doc__, code


def test_upgrade_typo_names_the_tier_it_meant():
    tiers = TIERS.replace("{from: essential, to: advanced}", "{from: essential, to: advnced}")
    # line 11 is `      - {from: essential, to: advnced}`: `advnced` starts at column 31
    [problem] = list(check.check_references(catalog_of(tiers=tiers)))
    assert (problem.where.line, problem.where.column, problem.code) == (11, 31, "unknown-ref")
    assert problem.rule == "upgrade.epo.essential.advnced"
    assert problem.hint == "did you mean 'advanced'?"
    assert list(check.check_upgrade_paths(catalog_of(tiers=tiers))) == []  # no echo as 'unreachable'


def test_all_unknown_references_are_reported_not_only_the_first():
    addons = ADDONS.replace("name: One,", "name: One, requires: {addons: [tow]}, excludes: [thre],")
    # line 2: `  - {id: one, product: epo, name: One, requires: {addons: [tow]}, excludes: [thre], ...`: tow at
    # column 60, thre at 78
    problems = list(check.check_references(catalog_of(addons=addons)))
    assert spots(problems) == [("addons.yaml", 2, 60, "unknown-ref", "addon.epo.one"),
                               ("addons.yaml", 2, 78, "unknown-ref", "addon.epo.one")]
    assert sorted(problem.hint for problem in problems) == ["defined: one, two", "did you mean 'two'?"]


def test_unknown_badge_product_and_version():
    badges = BADGES.replace("[{product: epo}]", '[{product: epo, min_version: "2025"}, {product: ep}]')
    # line 2: `  - {id: power, name: Power, unlocks: [{product: epo, min_version: "2025"}, {product: ep}]}`:
    # "2025" at column 68, ep at 87
    problems = list(check.check_references(catalog_of(badges=badges)))
    assert spots(problems) == [("badges.yaml", 2, 68, "unknown-version", "badge.power"),
                               ("badges.yaml", 2, 87, "unknown-ref", "badge.power")]


def test_duplicate_ids_are_reported_at_the_second():
    tiers = TIERS.replace("{id: expert, name: X", "{id: advanced, name: X")
    addons = ADDONS.replace("{id: two,", "{id: one,")
    problems = list(check.check_duplicate_ids(catalog_of(tiers=tiers, addons=addons)))
    # tiers line 9 `      - {id: advanced, ...`: the id at column 14; addons line 3 `  - {id: one, ...`: column 10
    assert spots(problems) == [("addons.yaml", 3, 10, "duplicate-id", "addon.epo.one"),
                               ("tiers.yaml", 9, 14, "duplicate-id", "tier.epo.advanced")]
    assert all("first at line" in problem.message for problem in problems)


def test_duplicate_commercial_reference_across_files():
    addons = ADDONS.replace("subscription-12: AD-2", "subscription-12: X-1")
    # addons line 3: `  - {id: two, product: epo, name: Two, references: {subscription-12: X-1}}`: X-1 at column 70
    [problem] = list(check.check_commercial_references(catalog_of(addons=addons)))
    assert (problem.where.file, problem.where.line, problem.where.column) == ("addons.yaml", 3, 70)
    assert (problem.code, problem.rule) == ("duplicate-reference", "addon.epo.two")
    assert "tier.epo.expert" in problem.message


def test_missing_and_unsold_offer_references():
    tiers = TIERS.replace("terms: [12]", "terms: [12, 36]").replace(
        "references: {subscription-12: E-1}", "references: {subscription-12: E-1, subscription-36: E-3, perpetual: E-P}")
    problems = list(check.check_commercial_references(catalog_of(tiers=tiers)))
    codes = {(problem.code, problem.rule) for problem in problems}
    assert ("unknown-offer", "tier.epo.essential") in codes
    # every other tier, add-on and device licence lacks its 36-month reference
    assert {rule for code, rule in codes if code == "missing-reference"} == {
        "tier.epo.advanced", "tier.epo.expert", "addon.epo.one", "addon.epo.two", "devices.epo"}


def test_downgrade_and_cycle_at_the_path_that_goes_back():
    tiers = TIERS.replace("      - {from: advanced, to: expert}\n",
                          "      - {from: advanced, to: expert}\n      - {from: expert, to: essential}\n")
    # line 13: `      - {from: expert, to: essential}`: `essential` at column 28
    problems = list(check.check_upgrade_paths(catalog_of(tiers=tiers)))
    assert spots(problems) == [("tiers.yaml", 13, 28, "cycle", "upgrade.epo.expert.essential"),
                               ("tiers.yaml", 13, 28, "downgrade", "upgrade.epo.expert.essential")]
    assert "cycle: essential -> advanced -> expert -> essential" in min(problems, key=lambda p: p.code).message


def test_unreachable_tier():
    tiers = TIERS.replace("      - {from: advanced, to: expert}\n", "")
    [problem] = list(check.check_upgrade_paths(catalog_of(tiers=tiers)))
    # line 9: `      - {id: expert, ...`: the id at column 14
    assert (problem.where.line, problem.where.column, problem.code, problem.rule) == (
        9, 14, "unreachable", "tier.epo.expert")


def test_a_long_upgrade_chain_does_not_exhaust_the_stack():
    """Regression: cycles were found recursively; 1,200 chained tiers raised RecursionError."""
    count = 1200
    tiers = "\n".join(f"      - {{id: t{i}, name: T, devices: {{included: 0, max: 0}}, "
                      f"references: {{subscription-12: R{i}}}}}" for i in range(count))
    upgrades = "\n".join(f"      - {{from: t{i}, to: t{i + 1}}}" for i in range(count - 1))
    text = (f"products:\n  - id: epo\n    name: P\n    versions: ['1']\n    licenses: {{subscription: {{terms: [12]}}}}\n"
            f"    tiers:\n{tiers}\n    upgrades:\n{upgrades}\n      - {{from: t{count - 1}, to: t0}}\n")
    problems = list(check.check_upgrade_paths(catalog_of(tiers=text)))
    assert sorted(problem.code for problem in problems) == ["cycle", "downgrade"]


def test_impossible_prerequisites():
    addons = """\
addons:
  - {id: one, product: epo, name: One, requires: {tier: premium}, references: {subscription-12: AD-1}}
  - {id: two, product: epo, name: Two, requires: {addons: [one]}, references: {subscription-12: AD-2}}
  - {id: three, product: epo, name: Three, requires: {addons: [three]}, references: {subscription-12: AD-3}}
  - {id: four, product: epo, name: Four, requires: {addons: [five]}, excludes: [five], references: {subscription-12: AD-4}}
  - {id: five, product: epo, name: Five, references: {subscription-12: AD-5}}
  - {id: six, product: epo, name: Six, requires: {addons: [seven]}, references: {subscription-12: AD-6}}
  - {id: seven, product: epo, name: Seven, excludes: [six], references: {subscription-12: AD-7}}
devices:
  - {product: epo, name: D, references: {subscription-12: DEV-1}}
"""
    problems = list(check.check_prerequisites(catalog_of(addons=addons)))
    assert spots(problems) == [
        ("addons.yaml", 2, 57, "impossible-prerequisite", "addon.epo.one"),    # tier premium: no such tier
        ("addons.yaml", 3, 60, "impossible-prerequisite", "addon.epo.two"),    # needs one, never configurable
        ("addons.yaml", 4, 64, "impossible-prerequisite", "addon.epo.three"),  # requires itself
        ("addons.yaml", 5, 62, "impossible-prerequisite", "addon.epo.four"),   # requires what it excludes
        ("addons.yaml", 7, 60, "impossible-prerequisite", "addon.epo.six"),    # requires its excluder
    ]


def test_devices_included_beyond_max():
    tiers = TIERS.replace("{id: essential, name: E, devices: {included: 1,", "{id: essential, name: E, devices: {included: 11,")
    [problem] = list(check.check_prerequisites(catalog_of(tiers=tiers)))
    # line 7: `      - {id: essential, name: E, devices: {included: 11, ...`: 11 at column 54
    assert (problem.where.line, problem.where.column, problem.code) == (7, 54, "bad-limit")


def test_badges_that_unlock_nothing_and_products_nobody_can_configure():
    badges = "badges:\n  - {id: power, name: Power, unlocks: []}\n"
    problems = list(check.check_badges(catalog_of(badges=badges)))
    # badges line 2: `power` at column 10; tiers line 2: `  - id: epo`: `epo` at column 9
    assert spots(problems) == [("badges.yaml", 2, 10, "no-unlock", "badge.power"),
                               ("tiers.yaml", 2, 9, "not-unlocked", "product.epo")]


def test_former_names_must_not_clash():
    tiers = TIERS.replace("{id: advanced, name: A,", "{id: advanced, name: A, former_names: [essential, old],").replace(
        "{id: expert, name: X,", "{id: expert, name: X, former_names: [old],")
    problems = list(check.check_former_names(catalog_of(tiers=tiers)))
    # line 8 `...former_names: [essential, old]`: essential at column 48; line 9 `...former_names: [old]`: column 46
    assert spots(problems) == [("tiers.yaml", 8, 48, "former-name-clash", "tier.epo.advanced"),
                               ("tiers.yaml", 9, 46, "former-name-clash", "tier.epo.expert")]


def test_load_catalog_raises_every_problem_sorted(tmp_path):
    (tmp_path / "badges.yaml").write_text(BADGES.replace("{product: epo}", "{product: epx}"))
    (tmp_path / "tiers.yaml").write_text(TIERS.replace("to: advanced}", "to: advnced}"))
    (tmp_path / "addons.yaml").write_text(ADDONS.replace("name: One,", "name: One, requires: {tier: premium},"))
    with pytest.raises(CompanionError) as raised:
        load_catalog(tmp_path)
    problems = raised.value.problems
    assert problems == sorted(problems, key=Problem.sort_key)
    assert [(Path(p.where.file).name, p.code) for p in problems] == [
        ("addons.yaml", "impossible-prerequisite"),
        ("badges.yaml", "unknown-ref"),
        ("tiers.yaml", "not-unlocked"),
        ("tiers.yaml", "unknown-ref"),
    ]


def test_synthetic_catalogue_loads_clean(tmp_path):
    generate_catalog(tmp_path, products=5, tiers=4, addons=8, seed=1)
    catalog = load_catalog(tmp_path)
    assert warnings_of(catalog) == ()
    assert len(catalog.products) == 5
    assert all(len(product.tiers) == 4 for product in catalog.products.values())
    assert set(catalog.devices) == set(catalog.products)
    addons = [addon for items in catalog.addons.values() for addon in items.values()]
    assert len(addons) == 40
    assert any(addon.requires_tier for addon in addons) and any(addon.requires_addons for addon in addons)
    assert any(addon.excludes for addon in addons) and any(addon.max_quantity for addon in addons)
    unlocked = {unlock.product for badge in catalog.badges.values() for unlock in badge.unlocks}
    assert unlocked == set(catalog.products)


@pytest.mark.parametrize("size", [(1, 1, 0), (3, 2, 1), (12, 10, 20)])
def test_synthetic_catalogue_is_valid_at_other_sizes(tmp_path, size):
    products, tiers, addons = size
    generate_catalog(tmp_path, products=products, tiers=tiers, addons=addons, seed=7)
    assert warnings_of(load_catalog(tmp_path)) == ()


def test_synthetic_catalogue_is_deterministic(tmp_path):
    generate_catalog(tmp_path / "a", products=4, seed=3)
    generate_catalog(tmp_path / "b", products=4, seed=3)
    for name in ("badges.yaml", "tiers.yaml", "addons.yaml"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_whole_numbers_written_with_a_decimal_point_become_integers(tmp_path):
    """`included: 50.0` passes the schema (JSON Schema counts it as an integer); the catalogue holds 50."""
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parent.parent / "rules", rules)
    tiers = (rules / "tiers.yaml").read_text(encoding="utf-8")
    assert "devices: {included: 50, max: 250}" in tiers and "terms: [12, 36]" in tiers
    tiers = tiers.replace("devices: {included: 50, max: 250}", "devices: {included: 50.0, max: 250.0}", 1)
    (rules / "tiers.yaml").write_text(tiers.replace("terms: [12, 36]", "terms: [12.0, 36]", 1), encoding="utf-8")
    vouchers = (rules / "vouchers.yaml").read_text(encoding="utf-8")
    (rules / "vouchers.yaml").write_text(re.sub(r"units: (\d+)", r"units: \1.0", vouchers, count=1), encoding="utf-8")
    addons = (rules / "addons.yaml").read_text(encoding="utf-8")
    (rules / "addons.yaml").write_text(addons.replace("quantity: {max: 10}", "quantity: {max: 10.0}", 1), encoding="utf-8")
    catalog = load_catalog(rules)
    assert {type(addon.max_quantity) for addons in catalog.addons.values() for addon in addons.values()} <= {int,
                                                                                                         type(None)}
    first = next(product for product in catalog.products.values() if product.tiers[0].devices_included == 50)
    assert type(first.tiers[0].devices_included) is int and type(first.tiers[0].devices_max) is int
    assert all(type(term) is int for product in catalog.products.values() for term in product.terms)
    assert all(type(pack.units) is int for pack in catalog.extras["vouchers.yaml"].packs)
