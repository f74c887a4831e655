"""Strict YAML reading: 1-based positions, duplicate keys, ambiguous scalars, aliases, files that cannot be read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from engine.catalogue import source as source_module
from engine.problem import CompanionError, Location
from engine.catalogue.source import MAX_FILE_BYTES, Source, load_yaml, parse_yaml, read_text

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


def reference_tables(text: str) -> tuple[dict, dict]:
    """Record every node's and key's location by path, the plain way: walk the composed nodes, first key wins."""
    values: dict = {}
    keys: dict = {}

    def walk(node, path):
        values[path] = Location("f.yaml", node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                usable = isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge"
                if usable and path + (key_node.value,) not in keys:
                    keys[path + (key_node.value,)] = Location(
                        "f.yaml", key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                    walk(value_node, path + (key_node.value,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, path + (index,))

    walk(yaml.compose(text, Loader=yaml.SafeLoader), ())
    return values, keys


def test_locations_by_path_match_a_plain_walk_of_the_nodes():
    """The compact position table answers every path as a plain walk of the node tree does, hits and misses."""
    odd = "a: 1\n? [x]\n: 2\n<<: {k: 1}\nb: {c: [1, {d: e}]}\na: 3\n'0': zero\nl: [p, q]\n"
    checked = 0
    for text in realistic_texts() + [odd]:
        if "&" in text:
            continue  # aliases are refused and not walked into; the plain walk would expand them
        try:
            parsed = parse_yaml(text, "f.yaml")
        except CompanionError:
            continue
        if parsed.data is None:
            continue
        values, keys = reference_tables(text)
        assert dict(parsed.locations) == values and dict(parsed.key_locations) == keys
        for table, found in ((values, parsed.locations), (keys, parsed.key_locations)):
            for path, where in table.items():
                assert found[path] == where, path
                for other in (path + ("no-such-key",), path + (10 ** 6,), path + ("0",), path + (0,), path + (-1,)):
                    assert (other in found) == (other in table), other
        checked += 1
    assert checked > 50


def test_locations_on_demand_follow_the_first_of_duplicate_keys():
    parsed = parse_yaml("a: 1\nb:\n  - x\n  - {c: 2}\na: 3\n", "f.yaml")
    assert codes_at(parsed.problems) == [(5, 1, "duplicate-key")]
    assert parsed.where(("a",)) == Location("f.yaml", 1, 4)  # the value kept, not the refused one on line 5
    assert parsed.where_key(("a",)) == Location("f.yaml", 1, 1)
    assert parsed.where(("b", 1, "c")) == Location("f.yaml", 4, 9)
    assert parsed.where_key(("b", 1, "c")) == Location("f.yaml", 4, 6)
    assert parsed.where(("b", 5)) == Location("f.yaml", 3, 3)  # no sixth item: the list itself
    assert parsed.where(("b", "c")) == Location("f.yaml", 3, 3)  # a list has no keys
    assert ("b", 1) in parsed.locations and ("b", 2) not in parsed.locations


def test_merge_and_list_keys_are_refused_without_anchors_too():
    parsed = parse_yaml("a: 1\n? [x]\n: 2\n<<: {k: 1}\n", "f.yaml")
    assert codes_at(parsed.problems) == [(2, 3, "yaml-key"), (4, 1, "yaml-alias")]
    assert parsed.data == {"a": 1}


def test_a_document_of_more_than_the_node_limit_is_cut_there():
    """Root plus 499,999 items is exactly the limit; one item more is refused at that item (line 500,000)."""
    at_limit = parse_yaml("- a\n" * (source_module.MAX_NODES - 1), "f.yaml")
    assert at_limit.problems == [] and len(at_limit.data) == source_module.MAX_NODES - 1
    over = parse_yaml("- a\n" * source_module.MAX_NODES, "f.yaml")
    assert codes_at(over.problems) == [(source_module.MAX_NODES, 3, "too-large")]
    assert over.data[-2] == "a" and over.data[-1] is None


@pytest.mark.parametrize("depth", [101, 5000])
def test_deep_nesting_is_a_located_problem_not_a_crash(depth):
    """Regression: 5,000 nested lists raised RecursionError out of the loader (a traceback in the CLI)."""
    text = "[" * depth + "]" * depth
    try:
        problems = parse_yaml(text, "f.yaml").problems
    except CompanionError as error:
        problems = error.problems
    assert [problem.code for problem in problems] in (["too-deep"], ["yaml-syntax"])
    if depth == 101:
        assert codes_at(problems) == [(1, 101, "too-deep")]  # the 101st bracket opens the 101st level
    else:
        assert codes_at(problems) == [(1, 1001, "yaml-syntax")]  # libyaml stops at 1,000 levels: bracket 1,001
        assert "nesting depth" in problems[0].message


def test_deep_block_nesting_is_located_too():
    text = "".join("  " * level + "k:\n" for level in range(150)) + "  " * 150 + "k: v\n"
    parsed = parse_yaml(text, "f.yaml")
    assert codes_at(parsed.problems) == [(101, 201, "too-deep")]  # the mapping of level 101 opens on line 101


def test_deep_nesting_in_a_file_pyyaml_alone_reads_is_located():
    """A tab sends the text to PyYAML's own composer, which recurses per level; libyaml then locates the depth."""
    text = "a: 'x\ty'\nb: " + "[" * 2000 + "]" * 2000 + "\n"
    # libyaml counts the block mapping as a level too: its 1,001st level is the 1,000th bracket, column 3 + 1,000.
    assert codes_at(raised(text)) == [(2, 1003, "yaml-syntax")]


@pytest.mark.parametrize("text", [
    "a: 1\n", "a: 1\r\nb: 2\r\n", "a:\tb\n", "a: 1\rb: 2\n", "a: 1\r\n\r", "\ufeffa: 1\n", "a: 1\n\ufeff",
    "a: x\x85y\n", "a: x\u2028y\n", "a: x\u2029y\n", "", "\r", "\r\n", "\n\r\n",
])
def test_texts_libyaml_reads_differently_are_left_to_pyyaml(text):
    """The substring tests agree with the pattern they replaced (tabs, lone CRs, Unicode breaks, a late BOM)."""
    import re

    pattern = re.compile(r"[\t\x85\u2028\u2029]|\r(?!\n)|(?<=.)\ufeff", re.S)
    assert source_module.pyyaml_only(text) == bool(pattern.search(text))


def test_a_parsed_source_keeps_no_yaml_nodes():
    """Positions are kept as small tuples: a kept node tree made each full garbage collection take ~1 s."""
    import gc

    def nodes_alive() -> int:
        gc.collect()
        return sum(isinstance(thing, yaml.Node) for thing in gc.get_objects())

    before = nodes_alive()
    parsed = parse_yaml((RULES / "tiers.yaml").read_text(encoding="utf-8"), "tiers.yaml")
    assert nodes_alive() == before
    assert parsed.where(("products", 0, "id")).line > 1  # and the positions are still there


def test_a_node_within_a_document_keeps_its_locations():
    """A request inside a fixture case is read as its own source, still located in the fixture file."""
    text = "cases:\n  - name: one\n    request:\n      badges: [x]\n      product: ebo\n"
    parsed = parse_yaml(text, "f.yaml")
    inner = parsed.within(("cases", 0, "request"), parsed.data["cases"][0]["request"])
    assert inner.where(("product",)) == Location("f.yaml", 5, 16)
    assert inner.where_key(("product",)) == Location("f.yaml", 5, 7)
    assert inner.where(("badges", 0)) == Location("f.yaml", 4, 16)
    assert inner.where_key(()) == Location("f.yaml", 3, 5)  # the `request:` key
    assert dict(inner.locations) == {(): Location("f.yaml", 4, 7), ("badges",): Location("f.yaml", 4, 15),
                                     ("badges", 0): Location("f.yaml", 4, 16), ("product",): Location("f.yaml", 5, 16)}
    missing = parsed.within(("cases", 3, "request"), None)
    assert dict(missing.locations) == {} and missing.where(("product",)) == Location("f.yaml", 1, 1)
    as_dicts = Source("f.yaml", None, dict(parsed.locations), dict(parsed.key_locations))
    same = as_dicts.within(("cases", 0, "request"), None)
    assert dict(same.locations) == dict(inner.locations) and dict(same.key_locations) == dict(inner.key_locations)


@pytest.mark.parametrize("written, number", [
    ("2:30", 150), ("0x96", 150), ("0b10010110", 150), ("1_50", 150), ("+150", 150), ("-0x1A", -26),
    ("1.5_0", 1.5), ("1:30.5", 90.5),
])
def test_numbers_yaml_reads_in_unusual_ways_are_ambiguous(written, number):
    """YAML 1.1 reads `devices: 2:30` as 150 (base 60): a product manager never means that."""
    parsed = parse_yaml(f"a: {written}\n", "f.yaml")
    assert codes_at(parsed.problems) == [(1, 4, "ambiguous-value")]
    assert parsed.problems[0].message == f"'{written}' is read as the number {number}"
    assert parse_yaml(f'a: "{written}"\n', "f.yaml").problems == []  # quoted, it is text


@pytest.mark.parametrize("text", ["a: 150\n", "a: -3\n", "a: 1.5\n", "a: 0\n", "a: 12345678901234567890\n"])
def test_plain_numbers_are_not_ambiguous(text):
    assert parse_yaml(text, "f.yaml").problems == []


@pytest.mark.parametrize("digits", [21, 5001])
def test_a_number_too_long_to_mean_anything_is_a_located_problem(digits):
    """Regression: 5,000 digits made int() raise out of the loader (Python refuses over 4,300 digits)."""
    parsed = parse_yaml("a: 1\nb: " + "9" * digits + "\n", "f.yaml")
    assert codes_at(parsed.problems) == [(2, 4, "yaml-value")]
    assert parsed.problems[0].message == f"number too long ({digits:,} characters)"
    assert parsed.data == {"a": 1, "b": None}


def test_half_a_surrogate_pair_is_refused_where_it_is_written():
    """`"\\ud800"` makes text no file, terminal or page can show; it crashed every output of it."""
    parsed = parse_yaml('a: "x\\ud800y"\n"k\\udc00": 1\nb: [ok, "\\U0001F600"]\n', "f.yaml")
    assert codes_at(parsed.problems) == [(1, 4, "bad-text"), (2, 1, "bad-text")]
    assert parsed.data["b"] == ["ok", "\U0001F600"]  # a whole character written with \U is fine
    assert codes_at(raised("a: 1\nb: x\ud800\n")) == [(2, 5, "bad-text")]  # pasted into the text itself


def test_devices_and_pipes_are_refused_without_reading_them(tmp_path):
    """Regression: /dev/zero was read until memory ran out, and a pipe blocked forever."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    for path in (Path("/dev/zero"), fifo, link):
        with pytest.raises(CompanionError) as error:
            read_text(path, "f.yaml")
        [problem] = error.value.problems
        assert problem.code == "file" and "not a regular file" in problem.message


@pytest.mark.parametrize("escape, code_point", [("\\e", "001B"), ("\\0", "0000"), ("\\x7f", "007F"), ("\\a", "0007")])
def test_control_characters_written_as_escapes_are_refused(escape, code_point):
    """`name: "Eco\\e[2J"` cleared the terminal of whoever printed the product's name."""
    parsed = parse_yaml(f'a: ok\nname: "Eco{escape}[2J"\n', "f.yaml")
    assert codes_at(parsed.problems) == [(2, 7, "bad-text")]
    assert parsed.problems[0].message == f"text holds the control character U+{code_point}"


def test_tabs_and_line_breaks_written_as_escapes_are_fine():
    parsed = parse_yaml('a: "one\\ttwo\\nthree\\r"\nb: "C:\\\\users"\n', "f.yaml")
    assert parsed.problems == [] and parsed.data == {"a": "one\ttwo\nthree\r", "b": "C:\\users"}
