"""Strict YAML reading: 1-based positions, duplicate keys, ambiguous scalars, aliases, files that cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine import source as source_module
from engine.problem import CompanionError, Location
from engine.source import MAX_FILE_BYTES, load_yaml, parse_yaml, read_text

RULES = Path(__file__).resolve().parent.parent / "rules"
CORPUS = Path(__file__).resolve().parent / "bad_rules"


def raised(text: str):
    """Return the problems parse_yaml raises for text."""
    with pytest.raises(CompanionError) as error:
        parse_yaml(text, "f.yaml")
    return error.value.problems


def codes_at(problems) -> list[tuple]:
    """Return (line, column, code) of each problem."""
    return [(problem.where.line, problem.where.column, problem.code) for problem in problems]


def test_positions_are_one_based():
    parsed = parse_yaml("a: 1\nlist:\n  - x\n  - {k: v}\n", "f.yaml")
    assert parsed.where(()) == Location("f.yaml", 1, 1)
    assert parsed.where(("a",)) == Location("f.yaml", 1, 4)
    assert parsed.where_key(("list",)) == Location("f.yaml", 2, 1)
    assert parsed.where(("list", 0)) == Location("f.yaml", 3, 5)
    assert parsed.where(("list", 1, "k")) == Location("f.yaml", 4, 9)
    assert parsed.where(("list", 1, "missing")) == Location("f.yaml", 4, 5)  # the nearest known ancestor


def test_duplicate_key_is_reported_at_the_second_key():
    parsed = parse_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert codes_at(parsed.problems) == [(3, 1, "duplicate-key")]
    assert "first at line 1" in parsed.problems[0].message
    assert parsed.data == {"a": 1, "b": 2}


def test_every_duplicate_key_is_reported():
    parsed = parse_yaml("a: 1\nm:\n  x: 1\n  x: 2\na: 3\n", "f.yaml")
    assert codes_at(parsed.problems) == [(4, 3, "duplicate-key"), (5, 1, "duplicate-key")]


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Yes", "NO"])
def test_yaml11_boolean_words_are_ambiguous(word):
    parsed = parse_yaml(f"name: {word}\n", "f.yaml")
    assert codes_at(parsed.problems) == [(1, 7, "ambiguous-value")]
    assert f'"{word}"' in parsed.problems[0].hint


@pytest.mark.parametrize("text", ['name: "yes"\n', "name: 'on'\n", "flag: true\n", "flag: false\n", "n: 10\n", "n: '010'\n"])
def test_quoted_words_and_plain_booleans_are_fine(text):
    assert parse_yaml(text, "f.yaml").problems == []


def test_leading_zero_number_is_ambiguous():
    parsed = parse_yaml("devices: {included: 010, max: 100}\n", "f.yaml")
    assert codes_at(parsed.problems) == [(1, 21, "ambiguous-value")]
    assert parsed.data["devices"]["included"] == 8  # what YAML 1.1 reads, hence the problem


def test_versions_stay_strings_only_when_quoted():
    parsed = parse_yaml('versions: ["7.0", 7.0, 1.10, "1.10"]\n', "f.yaml")
    assert parsed.data["versions"] == ["7.0", 7.0, 1.1, "1.10"]  # the schema refuses the two numbers


def test_all_source_problems_are_collected():
    parsed = parse_yaml("a: yes\nb: 010\na: 2\nc: &x [1]\nd: *x\n", "f.yaml")
    assert codes_at(parsed.problems) == [
        (1, 4, "ambiguous-value"), (2, 4, "ambiguous-value"), (3, 1, "duplicate-key"), (4, 4, "yaml-alias")]


def test_aliases_of_mappings_lists_and_scalars_are_refused():
    """Regression: an alias to a scalar (`&n Foo` ... `*n`) used to pass silently."""
    for text in ("a: &x {k: 1}\nb: *x\n", "a: &x [1]\nb: *x\n", "a: &x Foo\nb: *x\n"):
        parsed = parse_yaml(text, "f.yaml")
        assert codes_at(parsed.problems) == [(1, 4, "yaml-alias")], text  # located at the anchor


def test_merge_keys_are_refused():
    parsed = parse_yaml("base: &b {k: 1}\nother:\n  <<: *b\n", "f.yaml")
    assert (3, 3, "yaml-alias") in codes_at(parsed.problems)


def test_syntax_error_is_located():
    assert codes_at(raised("a: 1\nb: c: d\n")) == [(2, 5, "yaml-syntax")]


def test_tab_indentation_gets_a_hint():
    [problem] = raised("a:\n\tb: 1\n")
    assert (problem.where.line, problem.where.column, problem.code) == (2, 1, "yaml-syntax")
    assert problem.hint == "indent with spaces, not tabs"


def test_a_tab_after_a_colon_is_refused_as_before():
    """PyYAML refuses a tab before a value (libyaml would accept it); the loader keeps PyYAML's strictness."""
    [problem] = raised("a:\tb\n")
    assert (problem.where.line, problem.code) == (1, "yaml-syntax")


def test_multi_document_file_is_refused_at_the_second_document():
    assert codes_at(raised("a: 1\n---\nb: 2\n")) == [(2, 1, "yaml-syntax")]


def test_control_character_is_located():
    """Regression: PyYAML reports it with an offset, and it used to land on 1:1."""
    assert codes_at(raised("a: 1\nb: x\x07y\n")) == [(2, 5, "yaml-syntax")]


def test_empty_and_comment_only_texts_have_no_data():
    assert parse_yaml("", "f.yaml").data is None
    assert parse_yaml("# nothing yet\n", "f.yaml").data is None


def test_impossible_date_is_a_located_problem():
    parsed = parse_yaml("start: 2025-02-30\n", "f.yaml")
    assert codes_at(parsed.problems) == [(1, 8, "yaml-value")]


def test_invalid_utf8_is_located(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_bytes(b"a: 1\nname: Pow\xe9r\n")
    with pytest.raises(CompanionError) as error:
        read_text(path, "f.yaml")
    assert codes_at(error.value.problems) == [(2, 10, "encoding")]


def test_too_large_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_bytes(b"# x\n" * (MAX_FILE_BYTES // 4 + 1))
    with pytest.raises(CompanionError) as error:
        load_yaml(path, "f.yaml")
    assert codes_at(error.value.problems) == [(1, 1, "file-too-large")]


def test_a_directory_named_like_a_rule_file_is_a_problem_not_a_crash(tmp_path):
    """Regression: reading it raised IsADirectoryError out of the loader."""
    (tmp_path / "tiers.yaml").mkdir()
    with pytest.raises(CompanionError) as error:
        load_yaml(tmp_path / "tiers.yaml", "tiers.yaml")
    assert [(p.where.file, p.code) for p in error.value.problems] == [("tiers.yaml", "file")]


def realistic_texts() -> list[str]:
    """Return rule files as people write them: the shipped ones, the corpus, CRLF, a BOM, accents."""
    texts = [path.read_text(encoding="utf-8") for path in sorted(RULES.glob("*.yaml"))]
    texts += [path.read_text(encoding="utf-8") for path in sorted(CORPUS.glob("*/*.yaml"))
              if path.parent.name != "invalid-utf8"]
    shipped = (RULES / "tiers.yaml").read_text(encoding="utf-8")
    texts += [shipped.replace("\n", "\r\n"), "\ufeff" + shipped, shipped.replace("Essential", "Essentiél ü ✓")]
    return texts


def test_libyaml_and_pyyaml_read_rule_files_alike(monkeypatch):
    """The fast composer (libyaml) must give the same values, positions and problems as PyYAML's own."""
    fast = []
    for text in realistic_texts():
        try:
            parsed = parse_yaml(text, "f.yaml")
            fast.append((parsed.data, parsed.locations, parsed.key_locations, parsed.problems))
        except CompanionError as error:
            fast.append(error.problems)
    monkeypatch.setattr(source_module, "FAST_LOADER", yaml.SafeLoader)
    for text, expected in zip(realistic_texts(), fast):
        try:
            parsed = parse_yaml(text, "f.yaml")
            assert (parsed.data, parsed.locations, parsed.key_locations, parsed.problems) == expected
        except CompanionError as error:
            assert error.problems == expected
