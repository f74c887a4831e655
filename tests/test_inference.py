"""Compile, evaluate and explain: verdicts a partner would see, checked by hand against rules/*.yaml."""

from __future__ import annotations

import shutil

import pytest
import yaml

from engine.catalogue.load import load_catalog
from engine.catalogue.schema import BUNDLED_RULES
from engine.clock import server_clock
from engine.inference.compile import compile_catalog, load, product_rules
from engine.inference.evaluate import evaluate
from engine.inference.options import options
from engine.problem import CompanionError
from engine.inference.request import request_from_data


@pytest.fixture(scope="module")
def compiled():
    return load(None)


def verdict_of(compiled, configuration, badges=("power-management",), **partner):
    partner.setdefault("country", "US")  # EPO subscriptions are sold in some countries only (constraints.yaml)
    partner = {key: value for key, value in partner.items() if value is not None}
    request = request_from_data({"partner": {"badges": list(badges), **partner}, "configuration": configuration},
                                compiled.catalog)
    return evaluate(compiled, request)


def epo(**changes):
    configuration = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
                     "tier": "advanced", "devices": 0, "addons": []}
    configuration.update(changes)
    return configuration


def codes(verdict):
    return sorted((item["rule"], item["code"]) for item in verdict.violations)


def bom(verdict):
    return [(line["reference"], line["quantity"], line["months"]) for line in verdict.bom]


def test_valid_epo_advanced_has_the_expected_bill_of_materials(compiled):
    verdict = verdict_of(compiled, epo(devices=150, addons=[{"id": "insulation-monitoring"}]))
    assert verdict.valid
    # advanced includes 50 devices, so 150 devices need 100 device licences; 36-month references.
    assert bom(verdict) == [("EPO-ADV-SUB-3Y", 1, 36), ("EPO-DEV-SUB-3Y", 100, 36), ("EPO-IMS-SUB-3Y", 1, 36)]
    assert verdict.rules_version == compiled.catalog.rules_version


def test_devices_within_the_included_count_add_no_device_line(compiled):
    verdict = verdict_of(compiled, epo(devices=50))
    assert bom(verdict) == [("EPO-ADV-SUB-3Y", 1, 36)]


def test_device_limit_is_inclusive(compiled):
    assert verdict_of(compiled, epo(tier="essential", devices=100)).valid  # essential max is 100
    refused = verdict_of(compiled, epo(tier="essential", devices=101))
    assert codes(refused) == [("tier.epo.essential", "over-limit")]
    assert refused.violations[0]["saw"] == {"configuration.tier": "essential", "configuration.devices": 101}
    assert [(item["condition"], item["saw"], item["held"], item["required"])
            for item in refused.violations[0]["conditions"]] == [
        ("configuration.tier is essential", "essential", True, False),
        ("configuration.devices is at most 100", 101, False, True)]
    assert "advanced" in refused.violations[0]["hint"]  # the next tier that fits 101 devices
    assert refused.bom == []


def test_product_no_badge_unlocks_is_refused_with_the_account_message(compiled):
    verdict = verdict_of(compiled, {"product": "ebo", "version": "7.2", "license": "perpetual", "tier": "essential"})
    assert codes(verdict) == [("product.ebo", "not-entitled")]
    assert "contact your vendor representative to check your account settings" in verdict.violations[0]["message"]
    assert verdict.violations[0]["where"] == "rules/tiers.yaml:13:9"  # `  - id: ebo`


def test_badges_add_up(compiled):
    configuration = {"product": "ebo", "version": "7.2", "license": "perpetual", "tier": "essential"}
    assert not verdict_of(compiled, configuration, badges=["power-automation"]).valid
    assert verdict_of(compiled, configuration, badges=["power-automation", "building-automation"]).valid
    fired = [rule.rule for rule in verdict_of(compiled, epo(), badges=["power-management", "power-automation"]).fired]
    assert fired.count("badge.power-management") == 1 and fired.count("badge.power-automation") == 1


def test_minimum_version_of_the_product(compiled):
    base = {"product": "ebo", "license": "subscription", "term_months": 12, "tier": "essential"}
    assert verdict_of(compiled, {**base, "version": "7.0"}, badges=["building-automation"]).valid
    refused = verdict_of(compiled, {**base, "version": "6.0"}, badges=["building-automation"])
    assert codes(refused) == [("product.ebo", "version-too-low")]
    assert refused.violations[0]["message"] == ("EcoStruxure Building Operation is configurable from version 7.0 "
                                                "only; the configuration has 6.0")
    assert refused.violations[0]["where"] == "rules/tiers.yaml:15:29"


def test_a_refusal_s_condition_keeps_the_case_of_its_values(compiled):
    refused = verdict_of(compiled, epo(), country="JP")
    assert codes(refused) == [("availability.epo-subscription", "not-available")]
    assert refused.violations[0]["condition"].startswith("configuration.license is subscription, unless "
                                                         "partner.country is one of [US, CA, GB")
    not_entitled = verdict_of(compiled, epo(), badges=[])
    assert "include power-management" in not_entitled.violations[0]["condition"]
    assert not_entitled.violations[0]["condition"].startswith("Unless partner.badges")


def test_missing_version_assumes_the_latest_with_a_notice(compiled):
    verdict = verdict_of(compiled, {k: v for k, v in epo().items() if k != "version"})
    assert verdict.valid
    assert [(item["code"], "2024" in item["message"]) for item in verdict.notices] == [("version-assumed", True)]


@pytest.mark.parametrize("written", ["sustainability-pack", "Sustainability Pack", "sustainability pack",
                                     "SUSTAINABILITY-PACK", "Sustainability_Pack", " Sustainability  Pack "])
def test_former_tier_name_is_understood_with_a_notice(compiled, written):
    verdict = verdict_of(compiled, {"product": "ebo", "version": "7.2", "license": "perpetual",
                                    "tier": written}, badges=["building-automation"])
    assert verdict.valid
    assert verdict.notices[0]["message"].startswith("tier 'Sustainability Pack' is now called 'advanced-plus'")
    assert [(item["rule"], item["code"]) for item in verdict.notices] == [("tier.ebo.advanced-plus", "former-name")]
    assert bom(verdict) == [("EBO-ADVP-PERP", 1, None)]


def test_license_models_and_terms(compiled):
    perpetual = {k: v for k, v in epo(license="perpetual").items() if k != "term_months"}
    assert bom(verdict_of(compiled, perpetual, country=None)) == [("EPO-ADV-PERP", 1, None)]  # sold perpetual too
    assert codes(verdict_of(compiled, epo(), country=None)) == [("availability.epo-subscription", "not-available")]
    assert codes(verdict_of(compiled, epo(term_months=24))) == [("license.epo", "term-not-offered")]
    no_term = {k: v for k, v in epo().items() if k != "term_months"}
    assert codes(verdict_of(compiled, no_term)) == [("license.epo", "term-not-offered")]
    assert bom(verdict_of(compiled, epo(term_months=12))) == [("EPO-ADV-SUB-1Y", 1, 12)]


def test_addon_prerequisites_exclusions_and_limits(compiled):
    assert codes(verdict_of(compiled, epo(tier="essential", addons=[{"id": "insulation-monitoring"}]))) == [
        ("addon.epo.insulation-monitoring", "requires-tier")]
    assert codes(verdict_of(compiled, epo(addons=[{"id": "backup-power-testing"}]))) == [
        ("addon.epo.backup-power-testing", "requires-addon")]
    assert codes(verdict_of(compiled, epo(addons=[{"id": "powerscada-anywhere", "quantity": 11}]))) == [
        ("addon.epo.powerscada-anywhere", "over-limit")]
    assert verdict_of(compiled, epo(addons=[{"id": "powerscada-anywhere", "quantity": 10}])).valid
    pme = {"product": "pme", "version": "2024", "license": "perpetual", "tier": "advanced",
           "addons": [{"id": "energy-analysis"}, {"id": "energy-analysis-lite"}]}
    assert codes(verdict_of(compiled, pme)) == [("addon.pme.energy-analysis", "excluded")]


def test_several_violations_are_all_reported(compiled):
    verdict = verdict_of(compiled, epo(tier="essential", devices=150, term_months=24,
                                       addons=[{"id": "backup-power-testing"}]))
    assert codes(verdict) == [
        ("addon.epo.backup-power-testing", "requires-addon"),
        ("addon.epo.backup-power-testing", "requires-tier"),
        ("license.epo", "term-not-offered"),
        ("tier.epo.essential", "over-limit"),
    ]


def test_not_entitled_stops_before_the_options_are_judged(compiled):
    verdict = verdict_of(compiled, epo(tier="essential", devices=999), badges=["building-automation"])
    assert codes(verdict) == [("product.epo", "not-entitled")]


def test_explanation_lists_fired_rules_in_order_with_locations(compiled):
    verdict = verdict_of(compiled, epo(tier="essential", addons=[{"id": "insulation-monitoring"}]))
    trace = verdict.trace
    assert trace[0]["rule"] == "badge.power-management" and trace[0]["kind"] == "entitle"
    assert trace[0]["where"] == "rules/badges.yaml:17:18"
    refusal = next(item for item in trace if item["kind"] == "violation")
    assert refusal["rule"] == "addon.epo.insulation-monitoring"
    assert refusal["saw"]["configuration.tier"] == "essential"
    assert "unless configuration.tier is at least advanced" in refusal["condition"]
    violation = verdict.violations[0]
    assert violation["required"] == {"tier": ">= advanced"}
    assert violation["where"] == "rules/addons.yaml:22:13"


@pytest.mark.parametrize("configuration, code, path", [
    ({"product": "epx", "license": "subscription", "tier": "advanced"}, "unknown-ref", "configuration.product"),
    ({"product": "epo", "license": "subscription", "tier": "advnced"}, "unknown-ref", "configuration.tier"),
    ({"product": "epo", "license": "subscription", "tier": "advanced", "addons": [{"id": "energy-analysis"}]},
     "unknown-ref", "configuration.addons[0].id"),
    ({"product": "epo", "version": "2019", "license": "subscription", "tier": "advanced"}, "unknown-version",
     "configuration.version"),
    ({"product": "epo", "license": "subscription", "tier": "advanced", "devices": "many"}, "request-schema",
     "configuration.devices"),
    ({"product": "epo", "license": "lease", "tier": "advanced"}, "request-schema", "configuration.license"),
    ({"product": "epo", "license": "subscription"}, "missing", "configuration"),
    ({"product": "epo", "license": "subscription", "tier": "advanced",
      "addons": [{"id": "insulation-monitoring"}, {"id": "insulation-monitoring"}]}, "duplicate-addon",
     "configuration.addons[1].id"),
])
def test_request_errors_are_located_and_distinct_from_violations(compiled, configuration, code, path):
    with pytest.raises(CompanionError) as raised:
        request_from_data({"partner": {"badges": ["power-management"]}, "configuration": configuration},
                          compiled.catalog)
    assert [(problem.code, problem.path) for problem in raised.value.problems] == [(code, path)]


def test_request_errors_suggest_the_closest_id(compiled):
    with pytest.raises(CompanionError) as raised:
        request_from_data({"partner": {"badges": ["power-managment"]},
                           "configuration": {"product": "epo", "license": "subscription", "tier": "advnced"}},
                          compiled.catalog)
    hints = [problem.hint for problem in raised.value.problems]
    assert hints == ["did you mean 'power-management'?", "did you mean 'advanced'?"]


def test_addon_of_another_product_is_named(compiled):
    with pytest.raises(CompanionError) as raised:
        request_from_data({"partner": {"badges": ["power-management"]},
                           "configuration": epo(addons=[{"id": "energy-analysis"}])}, compiled.catalog)
    assert raised.value.problems[0].hint == "'energy-analysis' is an add-on of pme, not epo"


def test_options_offer_only_what_can_still_be_valid(compiled):
    request = request_from_data({"partner": {"badges": ["power-management"]},
                                 "configuration": {"product": "epo", "tier": "essential"}},
                                compiled.catalog, partial=True)
    result = options(compiled, request)
    products = {entry["value"]: entry for entry in result["product"]["options"]}
    assert products["epo"]["allowed"] and products["pme"]["allowed"] and not products["ebo"]["allowed"]
    assert products["ebo"]["reasons"][0]["code"] == "not-entitled"
    addons = {entry["value"]: entry for entry in result["addons"]["options"]}
    assert addons["powerscada-anywhere"]["allowed"]
    assert not addons["insulation-monitoring"]["allowed"]
    assert addons["insulation-monitoring"]["reasons"][0]["code"] == "requires-tier"
    assert [entry["value"] for entry in result["license"]["options"] if entry["allowed"]] == ["perpetual"]  # no country: EPO subscriptions are not known to be sold
    assert result["possible"] and "verdict" not in result


def test_options_with_advanced_open_the_dependent_addons(compiled):
    request = request_from_data({"partner": {"badges": ["power-management"]},
                                 "configuration": {"product": "epo", "tier": "advanced"}},
                                compiled.catalog, partial=True)
    addons = {entry["value"]: entry["allowed"] for entry in options(compiled, request)["addons"]["options"]}
    # backup-power-testing is possible: the completion adds the insulation-monitoring it requires.
    assert addons == {"powerscada-anywhere": True, "insulation-monitoring": True, "backup-power-testing": True}


def test_each_product_compiles_to_its_own_ruleset(compiled):
    assert set(compiled.shards) == {"ebo", "pme", "epo"}
    for product, names in compiled.shards.items():
        assert all(name.startswith(f"{product}@{compiled.rules_version}.") for name in names)
    # Every compiled rule is tagged with a catalogue rule id and a location in the rule files.
    for rule in compiled.rules.values():
        assert rule.rule.split(".")[0] in {"badge", "product", "license", "tier", "devices", "addon", "upgrade",
                                           "upgrades", "availability", "constraint", "notice"}
        assert rule.where.file.startswith("rules/") and rule.where.line >= 1


def test_compiling_twice_registers_fresh_rulesets(compiled):
    again = compile_catalog(compiled.catalog)
    try:
        assert set(again.shards["epo"]).isdisjoint(compiled.shards["epo"])
        assert verdict_of(again, epo()).to_json() == verdict_of(compiled, epo()).to_json()
    finally:
        again.close()


def test_a_product_too_large_for_one_ruleset_is_sharded(tmp_path):
    catalog = load_catalog(None)
    epo_rules = product_rules(catalog, catalog.products["epo"])
    import engine.inference.compile as compile_module

    saved = compile_module.SHARD_RULES
    compile_module.SHARD_RULES = 5  # force several shards on the sample catalogue
    try:
        sharded = compile_catalog(catalog)
    finally:
        compile_module.SHARD_RULES = saved
    try:
        assert len(sharded.shards["epo"]) == -(-sum(rule.stage == 2 for rule in epo_rules) // 5)
        reference = load(None)
        for configuration in (epo(devices=150, addons=[{"id": "insulation-monitoring"}]),
                              epo(tier="essential", devices=101, addons=[{"id": "backup-power-testing"}])):
            assert verdict_of(sharded, configuration).to_json() == verdict_of(reference, configuration).to_json()
    finally:
        sharded.close()


def test_a_catalogue_beyond_the_engine_limits_is_refused_with_a_location(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    tiers = [{"id": f"t{i}", "name": f"T{i}", "devices": {"included": 0, "max": 0},
              "references": {"perpetual": f"BIG-T{i}"}} for i in range(520)]
    (rules / "tiers.yaml").write_text(yaml.safe_dump({"products": [{
        "id": "big", "name": "Big", "versions": ["1"], "licenses": {"perpetual": {}}, "tiers": tiers,
        "upgrades": [{"from": f"t{i}", "to": f"t{i + 1}"} for i in range(519)]}]}))
    (rules / "badges.yaml").write_text(yaml.safe_dump({"badges": [{"id": "b", "name": "B",
                                                                   "unlocks": [{"product": "big"}]}]}))
    (rules / "addons.yaml").write_text(yaml.safe_dump({"addons": []}))
    catalog = load_catalog(rules)
    with pytest.raises(CompanionError) as raised:
        compile_catalog(catalog)
    [problem] = raised.value.problems
    assert problem.code == "engine-limit" and problem.rule == "product.big"
    # safe_dump sorts keys: line 2 is `- id: big`, and `big` starts at column 7.
    assert (problem.where.line, problem.where.column) == (2, 7)


def test_a_condition_too_intricate_for_the_engine_is_refused_at_its_rule(tmp_path):
    """A requirement whose pattern has 16 and / or groups failed registration (error 113) as an internal error."""
    rules = tmp_path / "rules"
    shutil.copytree(BUNDLED_RULES, rules)
    pairs = "".join(f"        - any: [{{partner.country: [FR, {country}]}}, {{partner.company: C{index}}}]\n"
                    for index, country in enumerate(("DE", "US", "GB", "IT", "ES")))  # all hold in FR
    (rules / "constraints.yaml").write_text("constraints:\n  - id: many-choices\n    product: epo\n"
                                            "    message: too many choices\n    require:\n      all:\n" + pairs)
    with pytest.raises(CompanionError) as raised:
        compile_catalog(load_catalog(rules))
    [problem] = raised.value.problems
    assert (problem.code, problem.rule) == ("engine-limit", "constraint.many-choices")
    assert (problem.where.file.endswith("constraints.yaml"), problem.where.line, problem.where.column) == (True, 2, 9)
    assert "22 and / or groups, more than 15 (error 113" in problem.message and "fewer nested all / any" in problem.hint


def test_the_quantity_of_an_add_on_not_chosen_is_0_in_the_explanation_as_in_the_engine(tmp_path):
    """The engine compared 0 and fired while the explanation said the quantity was unknown (not given)."""
    rules = tmp_path / "rules"
    shutil.copytree(BUNDLED_RULES, rules)
    (rules / "constraints.yaml").write_text("notices:\n  - id: few-clients\n    product: epo\n"
                                            "    message: few web clients\n"
                                            "    when: {addon.powerscada-anywhere.quantity: {at_most: 5}}\n")
    verdict = verdict_of(compile_catalog(load_catalog(rules)), epo())
    [item] = [item for item in verdict.trace if item["rule"] == "notice.few-clients"]
    [condition] = item["conditions"]
    assert (condition["saw"], condition["held"]) == (0, True)


def test_the_date_is_always_known_even_where_no_rule_reads_it(compiled):
    # A request without a date is dated by the server: `date: absent` never holds, whatever the product's rules
    # read (found by the property test: skipping the date where no rule compared it made the two disagree).
    request = request_from_data({"partner": {"badges": ["power-management"]},
                                 "configuration": {"product": "pme", "license": "perpetual", "tier": "essential"}},
                                compiled.catalog)
    verdict = evaluate(compiled, request)
    assert verdict.facts["date"] == server_clock().today().toordinal()
