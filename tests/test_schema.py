"""Schema validation: every problem located where it was typed, with a hint, never a raw ValidationError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from engine.catalogue.files import RULE_FILES
from engine.catalogue.schema import SCHEMA_DIR, json_path, validate_source
from engine.catalogue.source import load_yaml, parse_yaml

RULES = Path(__file__).resolve().parent.parent / "rules"

BADGES = """\
badges:
  - id: power
    name: Power
    unlocks:
      - product: epo
        min_version: "2024"
"""


def problems(text: str, schema: str = "badges.schema.json"):
    """Validate text against a bundled schema and return its problems."""
    return validate_source(parse_yaml(text, "f.yaml"), schema)


def codes_at(found) -> list[tuple]:
    """Return (line, column, code) of each problem, sorted."""
    return sorted((problem.where.line, problem.where.column, problem.code) for problem in found)


def test_bundled_schemas_are_valid_draft_2020_12():
    for schema_file in (rule_file.schema for rule_file in RULE_FILES.values()):
        Draft202012Validator.check_schema(json.loads((SCHEMA_DIR / schema_file).read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", ["badges.yaml", "tiers.yaml", "addons.yaml"])
def test_shipped_rules_pass_their_schema(name):
    assert validate_source(load_yaml(RULES / name, name), RULE_FILES[name].schema) == []


def test_small_example_passes():
    assert problems(BADGES) == []


def test_unknown_key_is_located_at_the_key_with_a_did_you_mean():
    [problem] = problems(BADGES.replace("    name: Power", "    name: Power\n    nmae: Power"))
    assert (problem.where.line, problem.where.column, problem.code) == (4, 5, "schema")
    assert "unknown key 'nmae'" in problem.message and problem.hint == "did you mean 'name'?"


def test_every_unknown_key_of_a_mapping_is_reported():
    """Regression: only the first unknown key of a mapping was reported."""
    found = problems(BADGES.replace("    name: Power", "    name: Power\n    colour: red\n    size: 3"))
    assert codes_at(found) == [(4, 5, "schema"), (5, 5, "schema")]


def test_missing_required_key_is_located_at_its_mapping():
    [problem] = problems(BADGES.replace("    name: Power\n", ""))
    assert (problem.where.line, problem.where.column) == (2, 5)
    assert "'name' is a required property" in problem.message


def test_unquoted_version_hint_keeps_what_was_typed():
    [problem] = problems(BADGES.replace('min_version: "2024"', "min_version: 1.10"))
    assert (problem.where.line, problem.where.column) == (6, 22)
    assert problem.hint == 'quote it, e.g. "1.10"'


def test_hint_quotes_only_the_value_inside_a_flow_list():
    """Regression: `[7.0, "7.1"]` hinted `quote it, e.g. "7.0, "7.1""`."""
    text = (RULES / "tiers.yaml").read_text(encoding="utf-8").replace('["6.0", "7.0", "7.1", "7.2"]', '[6.0, 7.0, "7.1"]')
    found = validate_source(parse_yaml(text, "tiers.yaml"), "tiers.schema.json")
    assert sorted(problem.hint for problem in found) == ['quote it, e.g. "6.0"', 'quote it, e.g. "7.0"']


def test_empty_value_gets_no_quote_hint():
    [problem] = problems(BADGES.replace("    name: Power", "    name:"))
    assert (problem.where.line, problem.where.column) == (3, 10)
    assert "None" not in problem.message + problem.hint and problem.hint == "fill in a value"


def test_wrong_types_are_all_reported():
    found = problems(BADGES.replace("  - id: power", "  - id: 7").replace("unlocks:\n      - product: epo\n        min_version: \"2024\"", "unlocks: epo"))
    # line 2 `  - id: 7`: 7 at column 9; line 4 `    unlocks: epo`: epo at column 14
    assert codes_at(found) == [(2, 9, "schema"), (4, 14, "schema")]


def test_bad_id_pattern():
    [problem] = problems(BADGES.replace("id: power", "id: Power_Users"))
    assert (problem.where.line, problem.where.column) == (2, 9)
    assert "kebab-case" in problem.message


def test_bad_offer_key_is_located_at_the_key():
    """Regression: a bad key under references was reported at the first key of the mapping."""
    text = (RULES / "addons.yaml").read_text(encoding="utf-8").replace(
        "      subscription-36: EPO-ANY-SUB-3Y", "      subscription-3y: EPO-ANY-SUB-3Y")
    line = text.splitlines().index("      subscription-3y: EPO-ANY-SUB-3Y") + 1
    [problem] = validate_source(parse_yaml(text, "addons.yaml"), "addons.schema.json")
    assert (problem.where.line, problem.where.column) == (line, 7)
    assert "'subscription-3y'" in problem.message


def test_top_level_must_be_a_mapping():
    [problem] = problems("- id: power\n")
    assert (problem.where.line, problem.where.column, problem.code) == (1, 1, "schema")


def test_empty_file():
    [problem] = validate_source(parse_yaml("# just a comment\n", "f.yaml"), "badges.schema.json")
    assert (problem.where.line, problem.where.column, problem.code) == (1, 1, "empty-file")


def test_json_path():
    assert json_path(("products", 0, "tiers", 2, "id")) == "products[0].tiers[2].id"
    assert json_path(()) == "$"


def _rule_sources():
    """Yield (schema file, parsed source) for the shipped rules and every file of the broken-rules corpus."""
    from engine.problem import CompanionError
    from engine.catalogue.files import RULE_FILES
    from engine.catalogue.source import load_yaml

    root = Path(__file__).resolve().parent
    files = sorted((root.parent / "rules").glob("*.yaml")) + sorted((root / "bad_rules").glob("*/*.yaml"))
    for path in files:
        if path.name not in RULE_FILES:
            continue  # expect.yaml of the corpus, unknown-file cases
        try:
            source = load_yaml(path)
        except CompanionError:
            continue  # a syntax error never reaches the schema stage
        if source.data is not None and not source.problems:
            yield RULE_FILES[path.name].schema, source


def test_the_compiled_validator_agrees_with_jsonschema_on_every_rule_file():
    """The fast path (jsonschema-rs) accepts exactly what jsonschema accepts, so no problem is ever missed."""
    from engine.catalogue.schema import fast_validator, schema_validator

    checked = 0
    for schema_file, source in _rule_sources():
        slow = not list(schema_validator(schema_file).iter_errors(source.data))
        assert fast_validator(schema_file).is_valid_data(source.data) == slow, source.file
        checked += 1
    assert checked >= 40


@pytest.mark.parametrize("value", ["advanced\n", "7.0\n", "a b", "", "x" * 65])
def test_the_compiled_validator_refuses_what_jsonschema_refuses(value):
    from engine.catalogue.schema import fast_validator, schema_validator

    data = {"badges": [{"id": value, "name": "N", "unlocks": []}]}
    assert not fast_validator("badges.schema.json").is_valid_data(data)
    assert list(schema_validator("badges.schema.json").iter_errors(data))
