"""companion test: passing and failing suites, malformed fixtures, coverage, --update, -j, junit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from engine.cli import cli

ROOT = Path(__file__).resolve().parent.parent

# A tiny catalogue: one badge, one product with two tiers, one add-on that needs the higher tier.
TINY_RULES = {
    "badges.yaml": """\
        badges:
          - id: gold
            name: Gold
            unlocks:
              - product: widget
        """,
    "tiers.yaml": """\
        products:
          - id: widget
            name: Widget
            versions: ["1.0"]
            licenses:
              subscription:
                terms: [12]
            tiers:
              - id: basic
                name: Basic
                devices: {included: 5, max: 10}
                references:
                  subscription-12: W-BAS-1Y
              - id: pro
                name: Pro
                devices: {included: 10, max: 100}
                references:
                  subscription-12: W-PRO-1Y
            upgrades:
              - {from: basic, to: pro}
        """,
    "addons.yaml": """\
        addons:
          - id: turbo
            product: widget
            name: Turbo
            requires:
              tier: pro
            references:
              subscription-12: W-TUR-1Y
        devices:
          - product: widget
            name: Widget device licence
            references:
              subscription-12: W-DEV-1Y
        """,
}


def request(tier: str = "basic", devices: int = 0, addons: str = "[]", badges: str = "[gold]") -> str:
    """Return a flow-style request for the tiny catalogue."""
    return (f"{{partner: {{badges: {badges}}}, configuration: {{product: widget, version: \"1.0\", "
            f"license: subscription, term_months: 12, tier: {tier}, devices: {devices}, addons: {addons}}}}}")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """Write the tiny catalogue."""
    directory = tmp_path / "rules"
    for name, text in TINY_RULES.items():
        write(directory / name, text)
    return directory


@pytest.fixture
def suite(tmp_path: Path, rules: Path) -> Path:
    """Write a passing suite of four cases in two files."""
    write(tmp_path / "suite" / "tiers.yaml", f"""\
        # Widget tiers.
        cases:
          - name: basic is valid
            request: {request()}
            expect:
              valid: true   # the cheapest tier
              bom:
                - {{reference: W-BAS-1Y, quantity: 1, months: 12}}
          - name: basic over its maximum
            request: {request(devices=11)}
            expect:
              valid: false
              violations:
                - {{rule: tier.widget.basic, code: over-limit}}
        """)
    write(tmp_path / "suite" / "addons.yaml", f"""\
        cases:
          - name: turbo needs pro
            request: {request(addons="[{id: turbo}]")}
            expect:
              violations:
                - {{rule: addon.widget.turbo, code: requires-tier, message: "needs tier pro"}}
          - name: an unknown tier
            request: {request(tier="platinum")}
            expect_error: {{code: unknown-ref, path: configuration.tier}}
        """)
    return tmp_path / "suite"


def run(*args: str):
    """Run companion in-process; return (exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_passing_suite_exits_0_and_ends_with_the_counts(suite, rules):
    code, out, _ = run("test", str(suite), "--rules", str(rules))
    assert code == 0, out
    assert out.splitlines()[-1] == "4 passed, 0 failed"


def test_a_failing_case_exits_1_with_its_file_line_and_expected_versus_got(suite, rules, tmp_path):
    write(suite / "wrong.yaml", f"""\
        cases:
          - name: still fine
            request: {request()}
            expect: {{valid: true}}

          - name: pro thought to include 20 devices
            request: {request(tier="pro", devices=15)}
            expect:
              valid: true
              bom:
                - {{reference: W-PRO-1Y, quantity: 1}}
        """)
    code, out, _ = run("test", str(suite), "--rules", str(rules))
    assert code == 1
    lines = out.splitlines()
    assert lines[-1] == "5 passed, 1 failed"
    header = next(line for line in lines if "FAILED" in line)
    assert header == f"{suite / 'wrong.yaml'}:6: FAILED pro thought to include 20 devices"
    assert "    bom:\n      + got:      {reference: W-DEV-1Y, quantity: 5, months: 12}   (unexpected)" in out


def test_a_changed_verdict_shows_expected_and_got_values(suite, rules):
    write(suite / "flip.yaml", f"""\
        cases:
          - name: turbo on basic thought valid
            request: {request(addons="[{id: turbo}]")}
            expect:
              valid: true
              violations: []
        """)
    code, out, _ = run("test", str(suite / "flip.yaml"), "--rules", str(rules))
    assert code == 1
    assert "flip.yaml:2: FAILED turbo on basic thought valid" in out
    assert "      - expected: true\n      + got:      false" in out
    assert "+ got:      {rule: addon.widget.turbo, code: requires-tier, message: " in out
    assert out.splitlines()[-1] == "0 passed, 1 failed"


@pytest.mark.parametrize("text, code, line, column", [
    ("cases:\n  - name: x\n    request: {}\n    expect: {valid: maybe}\n", "schema", 4, 21),
    ("cases:\n  - name: x\n    request: {}\n    expect: {valid: true}\n    expect: {valid: false}\n", "duplicate-key", 5, 5),
    ("cases:\n  - name: x\n    request: {}\n", "fixture-expect", 2, 5),
    ("cases:\n  - name: x\n    kind: amned\n    request: {}\n    expect: {}\n", "unknown-kind", 3, 11),
    ("cases:\n  - name: x\n    request: {}\n    expect: {}\n  - name: x\n    request: {}\n    expect: {}\n",
     "duplicate-case", 5, 11),
    ("cases:\n  - name: x\n    rules: nowhere\n    request: {}\n    expect: {}\n", "no-rules", 3, 12),
    ("cases:\n  - name: x\n    request: {a: [}\n", "yaml-syntax", 3, 19),
])
def test_a_malformed_fixture_exits_2_with_a_located_error(tmp_path, rules, text, code, line, column):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    status, out, err = run("test", str(path), "--rules", str(rules))
    assert status == 2, out + err
    assert f"bad.yaml:{line}:{column}: error[{code}]" in err, err


def test_coverage_counts_cases_per_rule_on_a_known_catalogue(suite, rules):
    code, out, _ = run("test", str(suite), "--rules", str(rules), "--coverage", "--format", "json")
    assert code == 0
    catalogue = json.loads(out)["coverage"]["catalogues"][0]
    # Cases: basic valid, basic over-limit, turbo on basic (refused), unknown tier (request error: no rule).
    # A rule counts when it fired, refused the request, or yielded a line of the bill of materials; a refused
    # configuration has no bill of materials, so its tier and device licence decide nothing.
    assert catalogue["counts"] == {
        "addon.widget.turbo": 1,  # refused in one case
        "badge.gold": 3,
        "devices.widget": 0,  # the only case above the included devices (11 on basic) is refused
        "license.widget": 3,
        "product.widget": 0,  # only a partner without the badge exercises it
        "tier.widget.basic": 2,  # the valid case's BOM line and the over-limit refusal
        "tier.widget.pro": 0,
        "upgrade.widget.basic.pro": 0,  # only amendments exercise upgrade paths
    }
    assert [item["rule"] for item in catalogue["untouched"]] == [
        "devices.widget", "product.widget", "tier.widget.pro", "upgrade.widget.basic.pro"]
    assert catalogue["untouched"][0]["where"].endswith("addons.yaml:10:14")  # `  - product: widget` of devices:
    assert catalogue["untouched"][1]["where"].endswith("tiers.yaml:2:9")
    assert json.loads(out)["coverage"]["percent"] == 50.0  # 4 of 8 rules


def test_coverage_text_lists_untouched_rules_with_file_line_and_fails_below_the_minimum(suite, rules):
    code, out, _ = run("test", str(suite), "--rules", str(rules), "--coverage", "--min-coverage", "90")
    assert code == 1
    assert any(line.strip().endswith(": tier.widget.pro") and "tiers.yaml:" in line for line in out.splitlines())
    assert "is below the minimum 90%" in out
    assert out.splitlines()[-1] == "4 passed, 0 failed"
    code, _, _ = run("test", str(suite), "--rules", str(rules), "--min-coverage", "10")
    assert code == 0


def test_update_rewrites_failing_expectations_and_keeps_comments(suite, rules):
    path = write(suite / "golden.yaml", f"""\
        # Golden cases: keep this comment.
        cases:
          - name: basic over its maximum
            request: {request(devices=11)}
            expect:
              valid: true      # was right once
              bom:
                - {{reference: W-BAS-1Y, quantity: 1}}

          - name: untouched case
            request: {request()}
            expect: {{valid: true}}   # stays as written
        """)
    code, out, _ = run("test", str(path), "--rules", str(rules), "--update")
    assert code == 0, out
    assert "golden.yaml:3: UPDATED basic over its maximum" in out
    assert "updated the expectations of 1 case(s) in 1 file(s)" in out
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Golden cases: keep this comment.\ncases:\n  - name: basic over its maximum\n")
    assert "      valid: false     # was right once\n      bom: []\n\n  - name: untouched case\n" in text
    assert "violations" not in text  # the expectation did not ask about them
    assert "expect: {valid: true}   # stays as written" in text
    assert run("test", str(path), "--rules", str(rules))[0] == 0


def test_update_keeps_the_blank_lines_and_comments_that_follow_each_case(suite, rules):
    """Regression: --update dropped the blank lines and comments that follow a case along with its last item."""
    path = write(suite / "layouts.yaml", f"""\
        cases:
          - name: last value is a block list of flow items
            request: {request(devices=11)}
            expect:
              valid: true
              bom:
                - {{reference: W-BAS-1Y, quantity: 1}}

          # Second: the last value is a scalar.
          - name: last value is a scalar
            request: {request(devices=11)}
            expect:
              valid: true

          # Third: an end-of-line comment, then the heading of the next case.
          - name: an end-of-line comment
            request: {request(devices=11)}
            expect:
              bom: []
              valid: true  # my note

          # Fourth: an expected error that is now a verdict.
          - name: an expected error
            request: {request(tier="pro")}
            expect_error:
              code: unknown-ref
              path: configuration.tier

        # The end of the file.
        """)
    before = path.read_text(encoding="utf-8")
    code, out, _ = run("test", str(path), "--rules", str(rules), "--update")
    assert code == 0 and "updated the expectations of 4 case(s) in 1 file(s)" in out, out
    after = path.read_text(encoding="utf-8")

    def comments_and_blanks(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.strip() or line.lstrip().startswith("#")]

    assert comments_and_blanks(after) == comments_and_blanks(before)
    assert after.endswith("\n\n# The end of the file.\n")
    assert "valid: false # my note" in after  # a key that stays keeps its own comment
    assert run("test", str(path), "--rules", str(rules))[0] == 0


def test_update_turns_an_expected_error_into_an_expectation(suite, rules):
    path = write(suite / "error.yaml", f"""\
        cases:
          - name: thought unknown
            request: {request(tier="pro")}
            expect_error: {{code: unknown-ref, path: configuration.tier}}
        """)
    assert run("test", str(path), "--rules", str(rules), "--update")[0] == 0
    text = path.read_text(encoding="utf-8")
    assert "expect_error" not in text and "valid: true" in text and "W-PRO-1Y" in text


def test_junit_output_parses_as_xml(suite, rules):
    write(suite / "flip.yaml", f"""\
        cases:
          - name: turbo on basic thought valid
            request: {request(addons="[{id: turbo}]")}
            expect: {{valid: true}}
        """)
    code, out, err = run("test", str(suite), "--rules", str(rules), "--format", "junit")
    assert code == 1
    root = ElementTree.fromstring(out.encode())
    assert root.get("tests") == "5" and root.get("failures") == "1"
    failure = root.find(".//testcase[@name='turbo on basic thought valid']/failure")
    assert failure is not None and "expected: true" in failure.text
    assert err.splitlines()[-1] == "4 passed, 1 failed"


def companion(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the companion command in a child process (worker processes are forked from it)."""
    return subprocess.run([str(Path(sys.executable).parent / "companion"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_two_workers_give_the_same_result_as_one(suite, rules, tmp_path):
    for number in range(4):  # more files than workers
        write(suite / f"more-{number}.yaml", f"""\
            cases:
              - name: pro with {number} devices
                request: {request(tier="pro", devices=number)}
                expect: {{valid: true}}
              - name: wrong on purpose {number}
                request: {request(devices=number + 20)}
                expect: {{valid: true}}
            """)
    one = companion("test", str(suite), "--rules", str(rules), "-j", "1", "--format", "json", "--coverage",
                    cwd=tmp_path)
    two = companion("test", str(suite), "--rules", str(rules), "-j", "2", "--format", "json", "--coverage",
                    cwd=tmp_path)
    assert one.returncode == two.returncode == 1, one.stderr + two.stderr
    assert json.loads(one.stdout) == json.loads(two.stdout)
    assert one.stderr.splitlines()[-1] == two.stderr.splitlines()[-1] == "8 passed, 4 failed"


def test_the_project_suite_covers_every_rule_it_can_reach():
    """Every rule of the shipped catalogue is exercised by tests/fixtures."""
    code, out, _ = run("test", str(ROOT / "tests" / "fixtures"), "--coverage", "--format", "json")
    assert code == 0
    catalogue = json.loads(out)["coverage"]["catalogues"][0]
    assert catalogue["untouched"] == []


@pytest.mark.parametrize("rules_path", ["a\\0b", "a\\ud800b", "a" * 5000], ids=["nul", "surrogate", "too-long"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_rules_path_the_file_system_refuses_is_a_located_error(tmp_path, rules_path, jobs):
    """Regression: a NUL byte, a lone surrogate or a 5000-character name crashed with error[internal]."""
    bad = write(tmp_path / "suite" / "bad.yaml", f"""\
        rules: "{rules_path}"
        cases:
          - {{name: x, request: {{}}, expect: {{valid: true}}}}
        """)
    write(tmp_path / "suite" / "also.yaml", bad.read_text(encoding="utf-8"))  # two files, so that -j 2 forks
    found = companion("test", "suite", "-j", jobs, cwd=tmp_path)
    assert found.returncode == 2, found.stderr
    assert "error[internal]" not in found.stderr and "Traceback" not in found.stderr
    codes = ("no-rules",) if len(rules_path) > 100 else ("no-rules", "bad-text")  # the YAML reader may refuse it
    for name in ("also.yaml", "bad.yaml"):
        assert any(f"suite/{name}:1:8: error[{code}]" in found.stderr for code in codes), found.stderr
    assert all(len(line) < 400 for line in found.stderr.splitlines())  # a long name is cut short


def test_junit_output_parses_whatever_characters_names_and_messages_hold(suite, rules):
    """Regression: characters XML 1.0 cannot hold (U+FFFE here) in a name or expected message made invalid XML."""
    write(suite / "odd.yaml", f"""\
        cases:
          - name: "turbo \\ufffe on \\uffff basic"
            request: {request(addons="[{id: turbo}]")}
            expect:
              violations:
                - {{rule: addon.widget.turbo, message: "needs \\ufffe tier pro"}}
        """)
    code, out, _ = run("test", str(suite / "odd.yaml"), "--rules", str(rules), "--format", "junit")
    assert code == 1
    case = ElementTree.fromstring(out.encode()).find(".//testcase")
    assert case.get("name") == "turbo \\ufffe on \\uffff basic"
    assert 'message: "needs \\ufffe tier pro"' in case.find("failure").text
    code, out, _ = run("test", str(suite / "odd.yaml"), "--rules", str(rules))
    assert code == 1  # the text report shows them escaped too
    assert '- expected: {rule: addon.widget.turbo, message: "needs \\ufffe tier pro"}   (missing)' in out


def test_junit_report_escapes_control_characters(tmp_path):
    """Regression: \\x01, \\x02, \\x0b and ESC in a case name or a difference were written raw into the XML."""
    from engine.cli.render import junit_report
    from engine.fixtures import CaseResult, Difference

    odd = "a\x01b\x02c\x0bd\x1be"
    result = CaseResult(f"{odd}.yaml", 3, 0, odd, "validate", str(tmp_path), [Difference("violations", odd, None)],
                        {}, ())
    path = tmp_path / "report.xml"
    path.write_text(junit_report([result]), encoding="utf-8")
    case = ElementTree.parse(path).find(".//testcase")
    assert case.get("name") == "a\\x01b\\x02c\\x0bd\\x1be" and case.get("file") == "a\\x01b\\x02c\\x0bd\\x1be.yaml"
    assert "- expected: a\\x01b\\x02c\\x0bd\\x1be   (missing)" in case.find("failure").text


def test_whole_numbers_written_with_a_decimal_point_match(suite, rules):
    """Regression: `quantity: 1.0, months: 12.0` passed the schema, then never matched the BOM's 1 and 12."""
    path = write(suite / "floats.yaml", f"""\
        cases:
          - name: basic, its numbers written as floats
            request: {request()}
            expect:
              bom: [{{reference: W-BAS-1Y, quantity: 1.0, months: 12.0}}]
          - name: a wrong violation beside a right BOM
            request: {request()}
            expect:
              violations: [{{rule: tier.widget.basic}}]
              bom: [{{reference: W-BAS-1Y, quantity: 1.0, months: 12.0}}]
        """)
    code, out, _ = run("test", str(path), "--rules", str(rules))
    assert code == 1 and "floats.yaml:6: FAILED a wrong violation beside a right BOM" in out, out
    assert "basic, its numbers written as floats" not in out and "bom:" not in out
    assert run("test", str(path), "--rules", str(rules), "--update")[0] == 0
    assert path.read_text(encoding="utf-8").count("quantity: 1.0, months: 12.0") == 2  # --update leaves them as written


@pytest.mark.parametrize("request_text, column, message", [
    ('{product: widget, version: 2024, mode: online}', 41,
     'at cases[0].request.version: expected text (a string), got a number (2024); quote it, e.g. "2024"'),
    ('{product: widget, version: 1.10, mode: online}', 41, 'got a number (1.1); quote it, e.g. "1.10"'),
    ("[1, 2]", 14, "at cases[0].request: expected a mapping, got a list"),
    ("{product: widget, mode: online, activation_id: [1, 2]}", 61,
     "at cases[0].request.activation_id: expected text (a string), got a list"),
    ('{product: widget, verison: "1.0", mode: online}', 32, "unknown key 'verison'; did you mean 'version'?"),
])
def test_a_malformed_guide_request_is_a_located_schema_error(tmp_path, rules, request_text, column, message):
    """Regression: `version: 2024` said `unknown-version`, `request: [1, 2]` said `unknown product ''`."""
    path = write(tmp_path / "guide.yaml", f"""\
        cases:
          - name: a guide
            kind: guide
            request: {request_text}
            expect: {{notices: [{{code: update-online}}]}}
        """)
    code, out, err = run("test", str(path), "--rules", str(rules))
    assert code == 2, out + err
    assert f"guide.yaml:4:{column}: error[schema]: " in err and message in err, err


def failing_fixture_bytes(newline: str = "\n", bom: bool = False) -> bytes:
    """Return a one-case fixture whose expectation is wrong, as bytes with the given layout."""
    text = textwrap.dedent(f"""\
        # Keep this heading.
        cases:
          - name: basic thought invalid
            request: {request()}
            expect:
              valid: false   # wrong on purpose
        """)
    return ("\ufeff" if bom else "").encode() + text.replace("\n", newline).encode()


def test_update_keeps_crlf_line_endings_the_byte_order_mark_and_the_file_mode(tmp_path, rules):
    """Regression: --update rewrote a CRLF fixture with LF line endings and dropped its byte order mark."""
    path = tmp_path / "windows.yaml"
    path.write_bytes(failing_fixture_bytes("\r\n", bom=True))
    path.chmod(0o640)
    code, out, _ = run("test", str(path), "--rules", str(rules), "--update")
    assert code == 0 and "UPDATED basic thought invalid" in out, out
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf# Keep this heading.\r\ncases:\r\n")
    assert b"valid: true    # wrong on purpose\r\n" in data
    assert data.count(b"\n") == data.count(b"\r\n") == 6
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(item.name for item in tmp_path.iterdir()) == ["rules", "windows.yaml"]  # no temporary file left
    assert run("test", str(path), "--rules", str(rules))[0] == 0


def test_update_that_cannot_finish_leaves_the_fixture_as_it_was(tmp_path, rules, monkeypatch):
    """The new text goes to a temporary file renamed over the fixture: a failed rename changes nothing."""
    path = tmp_path / "golden.yaml"
    path.write_bytes(failing_fixture_bytes())

    def refuse(source, target):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("engine.fixtures.update.os.replace", refuse)
    code, _, err = run("test", str(path), "--rules", str(rules), "--update")
    assert code == 2 and "golden.yaml: error[not-written]: cannot rewrite the fixture: Permission denied" in err, err
    assert path.read_bytes() == failing_fixture_bytes()
    assert sorted(item.name for item in tmp_path.iterdir()) == ["golden.yaml", "rules"]


# --- condition coverage ----------------------------------------------------------------------------------------

def basic_limit_suite(tmp_path: Path, *extra: str) -> Path:
    """Write a suite whose only Basic case stays under Basic's device maximum, plus EXTRA cases."""
    cases = "".join(f"\n  - {case}" for case in extra)
    return write(tmp_path / "limits" / "cases.yaml", f"""\
cases:
  - name: basic is valid
    request: {request()}
    expect: {{valid: true}}
  - name: pro over its maximum says nothing of basic's
    request: {request(tier="pro", devices=150)}
    expect: {{valid: false}}
  - name: without the badge no device maximum is tested
    request: {request(devices=11, badges="[]")}
    expect: {{valid: false}}{cases}
""").parent


def test_a_condition_seen_only_true_is_a_gap_at_its_file_line_and_column(tmp_path, rules):
    suite = basic_limit_suite(tmp_path)
    code, out, _ = run("test", str(suite), "--rules", str(rules), "--coverage")
    assert code == 0, out
    gap = next(line for line in out.splitlines() if "configuration.devices is at most 10" in line)
    # `        devices: {included: 5, max: 10}` is line 11 of tiers.yaml; the 10 is in column 37
    assert gap.split() == [f"{rules / 'tiers.yaml'}:11:37", "tier.widget.basic", "configuration.devices", "is", "at",
                           "most", "10", "(seen", "only", "true)"]
    assert "  tier.widget.basic" in out and any(line.split()[:4] == ["tier.widget.basic", "1", "of", "2"]
                                                 for line in out.splitlines())
    suite = basic_limit_suite(tmp_path, f"{{name: basic over its maximum, request: {request(devices=11)}, "
                                        "expect: {valid: false}}")
    code, out, _ = run("test", str(suite), "--rules", str(rules), "--coverage")
    assert code == 0, out
    assert "configuration.devices is at most 10 " not in out


def test_conditions_never_evaluated_are_listed_as_never_seen(tmp_path, rules):
    code, out, _ = run("test", str(basic_limit_suite(tmp_path)), "--rules", str(rules), "--coverage")
    assert code == 0, out
    never = [(line.split()[1], " ".join(line.split()[2:-2])) for line in out.splitlines()
             if line.endswith("(never seen)")]
    assert never == [
        # turbo's requirement is tested only by configurations that choose turbo
        ("addon.widget.turbo", "configuration.tier is at least pro"),
        # only amendments change tiers
        ("upgrade.widget.basic.pro", "change.from_tier is basic"), ("upgrade.widget.basic.pro", "change.to_tier is pro")]


def tiny_condition_percent(suite: Path, rules: Path) -> float:
    code, out, _ = run("test", str(suite), "--rules", str(rules), "--coverage", "--format", "json")
    assert code == 0, out
    return json.loads(out)["coverage"]["condition_percent"]


def test_the_condition_gate_fails_under_its_minimum_and_passes_at_it(tmp_path, rules):
    suite = basic_limit_suite(tmp_path)
    percent = tiny_condition_percent(suite, rules)
    assert 0 < percent < 100
    whole = int(percent)  # the JSON figure is rounded to 2 decimals: gate on whole percents either side of it
    code, out, _ = run("test", str(suite), "--rules", str(rules), "--min-condition-coverage", f"{whole}")
    assert code == 0, out
    code, out, _ = run("test", str(suite), "--rules", str(rules), "--min-condition-coverage", f"{whole + 1}")
    assert code == 1
    lines = out.splitlines()
    assert lines[-2].startswith(f"condition coverage {percent:.1f}% is below the minimum {whole + 1:g}% (")
    assert lines[-2].endswith("conditions not seen both true and false; --coverage lists them)")
    assert lines[-1] == "3 passed, 0 failed"
    # The rule coverage gate is a separate option: it passes while the condition gate fails.
    code, _, _ = run("test", str(suite), "--rules", str(rules), "--min-coverage", "10",
                     "--min-condition-coverage", "100")
    assert code == 1
    code, _, _ = run("test", str(suite), "--rules", str(rules), "--min-coverage", "10")
    assert code == 0


def test_condition_coverage_in_json(tmp_path, rules):
    code, out, _ = run("test", str(basic_limit_suite(tmp_path)), "--rules", str(rules), "--coverage",
                       "--format", "json")
    assert code == 0, out
    document = json.loads(out)["coverage"]
    conditions = document["catalogues"][0]["conditions"]
    assert set(conditions) == {"percent", "covered", "counted", "rules", "gaps", "not_counted"}
    assert document["condition_percent"] == conditions["percent"] == round(
        100 * conditions["covered"] / conditions["counted"], 2)
    assert conditions["rules"]["tier.widget.basic"] == {"both": 1, "conditions": 2}
    gap = next(item for item in conditions["gaps"] if item["rule"] == "tier.widget.basic")
    assert gap == {"where": f"{rules / 'tiers.yaml'}:11:37", "rule": "tier.widget.basic",
                   "condition": "configuration.devices is at most 10", "seen": "only true",
                   "cases": {"true": 1, "false": 0, "unknown": 0}}
    assert conditions["not_counted"] == []  # widget sells subscriptions only: a perpetual request is refused


def test_amendments_that_change_the_tier_see_the_upgrade_path_conditions():
    """The change facts of an amendment reach the upgrade-path rules; configurations alone never do."""
    def upgrade_rules(*paths: Path) -> dict:
        code, out, _ = run("test", *map(str, paths), "--coverage", "--format", "json")
        assert code == 0, out
        rules = json.loads(out)["coverage"]["catalogues"][0]["conditions"]["rules"]
        return {rule: counts["both"] for rule, counts in rules.items() if rule.startswith("upgrade")}

    amended = upgrade_rules(ROOT / "tests" / "fixtures" / "amendments" / "upgrades.yaml")
    # EPO's essential -> expert path needs 12 months left: the rule that refuses that move without them
    # (from essential, to expert, unless months_left >= 12) is seen both ways on each of its 3 conditions
    assert amended["upgrade.epo.essential.advanced"] == 2 and amended["upgrades.epo"] == 3
    assert set(upgrade_rules(ROOT / "tests" / "fixtures" / "tiers").values()) == {0}


def test_the_project_suite_sees_every_condition_both_ways():
    """Every condition of the shipped catalogue that can go both ways is seen true and false by tests/fixtures."""
    code, out, _ = run("test", str(ROOT / "tests" / "fixtures"), "--min-condition-coverage", "100",
                       "--format", "json", "--coverage")
    assert code == 0
    conditions = json.loads(out)["coverage"]["catalogues"][0]["conditions"]
    assert conditions["gaps"] == []
    # A licence model is always given and always one of the two: offering both can never be refused.
    assert [(item["rule"], item["condition"], item["always"]) for item in conditions["not_counted"]] == [
        ("license.ebo", "configuration.license is one of [subscription, perpetual]", "true"),
        ("license.pme", "configuration.license is one of [subscription, perpetual]", "true"),
        ("license.epo", "configuration.license is one of [subscription, perpetual]", "true")]


# --- --update edits only what changed ----------------------------------------------------------------------------

PASSING_FLOW_CASE = f"""\
  # A passing case in flow style, wrapped by hand.
  - name: basic is valid
    request: {request()}
    expect: {{valid: true,
             bom: [{{reference: W-BAS-1Y, quantity: 1}}]}}   # one line each


"""
PASSING_SUBSTRING_CASE = f"""\
  - name: turbo needs pro   # a substring message
    request: {request(addons="[{id: turbo}]")}
    expect:
      violations:
        - rule: addon.widget.turbo
          code: requires-tier
          message: "needs tier pro"   # the words that matter

"""
ONLY_VALID_CASE = f"""\
  # The new limit breaks this one.
  - name: nine devices on basic
    request: {request(devices=9)}
    expect:
      # Nine fit under the old maximum.
      valid: true    # until the limit moved
"""
KEPT_ITEM_CASE = f"""\

  - name: turbo and nine devices on basic
    request: {request(devices=9, addons="[{id: turbo}]")}
    expect:
      violations:
        - {{rule: addon.widget.turbo, code: requires-tier, message: "needs tier pro"}}   # stays first
"""


def limit_rules(tmp_path: Path, maximum: int) -> Path:
    """Write the tiny catalogue with Basic's device maximum set to MAXIMUM."""
    directory = tmp_path / f"rules-{maximum}"
    for name, text in TINY_RULES.items():
        write(directory / name, text.replace("devices: {included: 5, max: 10}",
                                             f"devices: {{included: 5, max: {maximum}}}"))
    return directory


def test_update_edits_only_the_values_that_changed(tmp_path):
    """Regression: --update reflowed passing cases, moved blank lines, dropped comments, added keys the
    expectation never had and replaced a substring message that still matched with the whole message."""
    path = tmp_path / "widget.yaml"
    before = ("# Widget cases: keep this heading.\ncases:\n" + PASSING_FLOW_CASE + PASSING_SUBSTRING_CASE
              + ONLY_VALID_CASE + KEPT_ITEM_CASE + "\n# The end.\n")
    path.write_text(before, encoding="utf-8")
    assert run("test", str(path), "--rules", str(limit_rules(tmp_path, 10)))[0] == 0
    stricter = limit_rules(tmp_path, 8)
    code, out, _ = run("test", str(path), "--rules", str(stricter), "--update")
    assert code == 0 and "updated the expectations of 2 case(s) in 1 file(s)" in out, out
    after = path.read_text(encoding="utf-8")
    head, rest = after.split("  # The new limit breaks this one.\n", 1)
    assert head == "# Widget cases: keep this heading.\ncases:\n" + PASSING_FLOW_CASE + PASSING_SUBSTRING_CASE
    assert rest.endswith("\n# The end.\n")
    only_valid, kept_item = rest.split("\n\n  - name: turbo and nine devices on basic\n", 1)
    assert only_valid == (f"  - name: nine devices on basic\n    request: {request(devices=9)}\n    expect:\n"
                          "      # Nine fit under the old maximum.\n      valid: false   # until the limit moved")
    assert "violations" not in only_valid and "bom" not in only_valid  # no key the expectation did not have
    lines = kept_item.splitlines()
    assert "valid" not in kept_item and "bom" not in kept_item
    assert lines[3] == ('        - {rule: addon.widget.turbo, code: requires-tier, message: "needs tier pro"}'
                        "   # stays first")
    assert lines[4].startswith("        - ") and "over-limit" in lines[4] and "tier.widget.basic" in lines[4]
    assert run("test", str(path), "--rules", str(stricter))[0] == 0
    assert run("test", str(path), "--rules", str(stricter), "--update")[0] == 0
    assert path.read_text(encoding="utf-8") == after  # a second run has nothing to change


def test_update_does_not_rewrite_a_file_whose_cases_all_pass(tmp_path):
    path = tmp_path / "widget.yaml"
    path.write_text("cases:\n" + PASSING_FLOW_CASE + PASSING_SUBSTRING_CASE, encoding="utf-8")
    inode = path.stat().st_ino
    code, out, _ = run("test", str(path), "--rules", str(limit_rules(tmp_path, 8)), "--update")
    assert code == 0 and "UPDATED" not in out, out
    assert path.read_text(encoding="utf-8") == "cases:\n" + PASSING_FLOW_CASE + PASSING_SUBSTRING_CASE
    assert path.stat().st_ino == inode


def test_update_edits_an_item_about_the_same_rule_where_it_stands(tmp_path):
    """An item whose rule and code still come keeps its place, comments and quoting; only the field that no
    longer matches is rewritten. Items that no longer come go; their neighbours stay as written."""
    path = write(tmp_path / "items.yaml", f"""\
        cases:
          - name: over the maximum
            request: {request(devices=11)}
            expect:
              violations:
                - rule: tier.widget.basic   # the limit
                  code: over-limit
                  message: "at most 10"     # was ten
                - {{rule: addon.widget.turbo, code: requires-tier}}
              valid: false
          - name: flow style
            request: {request(devices=11)}
            expect: {{violations: [{{rule: gone}}, {{rule: tier.widget.basic, message: "basic"}}], valid: true}}
          - name: a wrong path
            request: {request(tier="nope")}
            expect_error: [{{code: unknown-ref, path: configuration.tiers}}]
        """)
    code, out, _ = run("test", str(path), "--rules", str(limit_rules(tmp_path, 8)), "--update")
    assert code == 0 and "updated the expectations of 3 case(s) in 1 file(s)" in out, out
    assert path.read_text(encoding="utf-8") == textwrap.dedent(f"""\
        cases:
          - name: over the maximum
            request: {request(devices=11)}
            expect:
              violations:
                - rule: tier.widget.basic   # the limit
                  code: over-limit
                  message: "tier basic allows at most 8 devices; the configuration has 11" # was ten
              valid: false
          - name: flow style
            request: {request(devices=11)}
            expect: {{violations: [{{rule: tier.widget.basic, message: "basic"}}], valid: false}}
          - name: a wrong path
            request: {request(tier="nope")}
            expect_error: [{{code: unknown-ref, path: configuration.tier}}]
        """)


def test_update_appends_to_a_block_list_at_the_end_of_a_file_without_a_final_line_break(tmp_path):
    path = tmp_path / "last.yaml"
    path.write_text(f"cases:\n  - name: nine devices and turbo\n    request: {request(devices=9, addons='[{id: turbo}]')}"
                    "\n    expect:\n      violations:\n        - {rule: addon.widget.turbo}", encoding="utf-8")
    assert run("test", str(path), "--rules", str(limit_rules(tmp_path, 8)), "--update")[0] == 0
    assert path.read_text(encoding="utf-8").endswith(
        "      violations:\n        - {rule: addon.widget.turbo}\n        - {rule: tier.widget.basic}")
    assert run("test", str(path), "--rules", str(limit_rules(tmp_path, 8)))[0] == 0


def test_every_problem_of_every_file_comes_out_at_once_and_the_good_files_still_run(tmp_path, rules):
    """Regression: a schema error hid a duplicate-case, and one malformed file kept every other file from running."""
    suite = tmp_path / "suite"
    write(suite / "bad.yaml", f"""\
        cases:
          - name: twice
            request: {request()}
            expect: {{valid: maybe}}
          - name: twice
            request: {request()}
            expect: {{valid: true}}
          - name: no expectation
            request: {request()}
        """)
    write(suite / "worse.yaml", "cases:\n  - name: x\n    kind: amned\n    request: {}\n    expect: {}\n")
    write(suite / "good.yaml", f"""\
        cases:
          - name: basic is valid
            request: {request()}
            expect: {{valid: true}}
          - name: basic thought invalid
            request: {request()}
            expect: {{valid: false}}
        """)
    for jobs in ("1", "2"):
        found = companion("test", "suite", "--rules", str(rules), "-j", jobs, cwd=tmp_path)
        assert found.returncode == 2, found.stdout + found.stderr
        assert "suite/bad.yaml:4:21: error[schema]" in found.stderr, found.stderr
        assert "suite/bad.yaml:5:11: error[duplicate-case]" in found.stderr, found.stderr
        assert "suite/bad.yaml:8:5: error[fixture-expect]" in found.stderr, found.stderr
        assert "suite/worse.yaml:3:11: error[unknown-kind]" in found.stderr, found.stderr
        assert "suite/good.yaml:5: FAILED basic thought invalid" in found.stdout, found.stdout
        assert found.stdout.splitlines()[-1] == "1 passed, 1 failed, 2 files malformed"


@pytest.fixture
def named(tmp_path: Path, rules: Path) -> Path:
    """Write two files of named cases, one of each file failing; return the project directory."""
    write(tmp_path / "suite" / "basic.yaml", f"""\
        cases:
          - name: basic is valid
            request: {request()}
            expect: {{valid: true}}
          - name: basic over its maximum
            request: {request(devices=11)}
            expect: {{valid: false}}
          - name: basic wrongly refused
            request: {request()}
            expect: {{valid: false}}
        """)
    write(tmp_path / "suite" / "pro.yaml", f"""\
        cases:
          - name: pro is valid
            request: {request(tier="pro")}
            expect: {{valid: true}}
          - name: pro wrongly refused
            request: {request(tier="pro")}
            expect: {{valid: false}}
        """)
    return tmp_path


def ran(found: subprocess.CompletedProcess) -> list[str]:
    """Return the names of the cases a JSON run reported."""
    return [case["name"] for case in json.loads(found.stdout)["cases"]]


@pytest.mark.parametrize("expression, names", [
    ("valid", ["basic is valid", "pro is valid"]),
    ("VALID and not pro", ["basic is valid"]),
    ("pro.yaml", ["pro is valid", "pro wrongly refused"]),
    ("maximum or (wrongly and not basic)", ["basic over its maximum", "pro wrongly refused"]),
    ("maximum or wrongly and not basic", ["basic over its maximum", "pro wrongly refused"]),  # and binds tighter
    ("(maximum or wrongly) and not pro", ["basic over its maximum", "basic wrongly refused"]),
    ("not not 'is valid' and basic", ["basic is valid"]),
    ("suite/basic", ["basic is valid", "basic over its maximum", "basic wrongly refused"]),
])
def test_k_selects_cases_by_name_and_file_with_and_or_not(named, rules, expression, names):
    found = companion("test", "suite", "--rules", str(rules), "-k", expression, "--format", "json", cwd=named)
    assert ran(found) == names, found.stderr
    assert json.loads(found.stdout)["deselected"] == 5 - len(names)
    assert found.stderr.splitlines()[-1].endswith(f", {5 - len(names)} deselected")


@pytest.mark.parametrize("expression, column", [("basic and", 10), ("(basic", 7), ("basic pro", 7), ("", 1),
                                                ("__import__('os').system('true')", 11), ("a & b", 3)])
def test_a_malformed_k_expression_is_a_located_error_and_is_never_evaluated(named, rules, expression, column):
    found = companion("test", "suite", "--rules", str(rules), "-k", expression, cwd=named)
    assert found.returncode == 2, found.stdout + found.stderr
    assert f"-k:1:{column}: error[bad-expression]" in found.stderr, found.stderr


def test_k_that_selects_nothing_exits_2(named, rules):
    found = companion("test", "suite", "--rules", str(rules), "-k", "platinum", cwd=named)
    assert found.returncode == 2
    assert "error[no-cases]: -k platinum selects none of the 5 cases" in found.stderr


def test_exitfirst_stops_at_the_first_failing_case(named, rules):
    for flag in ("-x", "--exitfirst"):
        found = companion("test", "suite", "--rules", str(rules), "-j", "2", flag, "--format", "json", cwd=named)
        assert found.returncode == 1
        assert ran(found) == ["basic is valid", "basic over its maximum", "basic wrongly refused"]
        assert found.stderr.splitlines()[-1] == "2 passed, 1 failed; stopped at the first failure (-x)"


def test_last_failed_reruns_only_the_failures_and_all_when_none_failed(named, rules):
    first = companion("test", "suite", "--rules", str(rules), cwd=named)
    assert first.returncode == 1
    recorded = json.loads((named / ".companion-cache" / "lastfailed.json").read_text(encoding="utf-8"))
    assert recorded == {"suite/basic.yaml::basic wrongly refused": True, "suite/pro.yaml::pro wrongly refused": True}
    again = companion("test", "suite", "--rules", str(rules), "--lf", "--format", "json", cwd=named)
    assert ran(again) == ["basic wrongly refused", "pro wrongly refused"]
    assert "rerunning the 2 failures of the last run" in again.stderr
    # Fix one: --last-failed now runs that one (it passes) and the other; then only the other is left.
    path = named / "suite" / "pro.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("{valid: false}", "{valid: true}"), encoding="utf-8")
    fixed = companion("test", "suite", "--rules", str(rules), "--last-failed", cwd=named)
    assert fixed.stdout.splitlines()[-1] == "1 passed, 1 failed, 3 deselected"
    path = named / "suite" / "basic.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:text.rindex("{valid: false}")] + "{valid: true}\n", encoding="utf-8")
    assert companion("test", "suite", "--rules", str(rules), "--lf", cwd=named).returncode == 0
    everything = companion("test", "suite", "--rules", str(rules), "--lf", cwd=named)
    assert everything.returncode == 0
    assert everything.stdout.splitlines()[0] == "no case failed last time: running all"
    assert everything.stdout.splitlines()[-1] == "5 passed, 0 failed"


def test_last_failed_reruns_every_case_of_a_file_that_was_malformed(named, rules):
    path = named / "suite" / "pro.yaml"
    good = path.read_text(encoding="utf-8")
    path.write_text(good.replace("name: pro is valid", "name: pro wrongly refused"), encoding="utf-8")
    assert companion("test", "suite", "--rules", str(rules), cwd=named).returncode == 2
    path.write_text(good, encoding="utf-8")
    found = companion("test", "suite", "--rules", str(rules), "--lf", "--format", "json", cwd=named)
    assert ran(found) == ["basic wrongly refused", "pro is valid", "pro wrongly refused"]


def test_pytest_collects_the_fixture_paths_pyproject_names(tmp_path, rules):
    """A project lists its fixture folders under [tool.companion]; pytest, run with no arguments, collects them."""
    write(tmp_path / "pyproject.toml", f"""\
        [tool.pytest.ini_options]
        testpaths = ["tests"]

        [tool.companion]
        fixtures = ["checks/licences", "more"]
        rules = "{rules.name}"
        """)
    write(tmp_path / "tests" / "test_plain.py", "def test_plain():\n    assert True\n")
    write(tmp_path / "checks" / "licences" / "basic.yaml", f"""\
        cases:
          - name: basic is valid
            request: {request()}
            expect: {{valid: true}}
          - name: basic wrongly refused
            request: {request()}
            expect: {{valid: false}}
        """)
    write(tmp_path / "checks" / "licences" / "_rules" / "ignored.yaml", "not: a fixture\n")
    write(tmp_path / "checks" / "elsewhere.yaml", "not: a fixture either\n")
    write(tmp_path / "more" / "pro.yaml", f"""\
        cases:
          - name: pro is valid
            request: {request(tier="pro")}
            expect: {{valid: true}}
        """)
    found = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "1 failed, 3 passed" in found.stdout.splitlines()[-1], found.stdout
    assert "PASSED checks/licences/basic.yaml::basic is valid" in found.stdout
    assert "FAILED checks/licences/basic.yaml::basic wrongly refused" in found.stdout
    assert "PASSED more/pro.yaml::pro is valid" in found.stdout
    assert "checks/licences/basic.yaml:5: basic wrongly refused: expected versus got" in found.stdout
    selected = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-k", "pro"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert selected.returncode == 0 and "1 passed, 3 deselected" in selected.stdout, selected.stdout


def test_pytest_leaves_yaml_alone_in_a_project_without_the_setting(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.pytest.ini_options]\n")
    write(tmp_path / "tests" / "fixtures" / "data.yaml", "cases: [not, a, fixture]\n")
    write(tmp_path / "tests" / "test_plain.py", "def test_plain():\n    assert True\n")
    found = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert found.returncode == 0 and "1 passed" in found.stdout, found.stdout


def test_junit_output_holds_a_malformed_file_as_an_error_beside_the_cases(suite, rules):
    write(suite / "bad.yaml", "cases:\n  - name: x\n    kind: amned\n    request: {}\n    expect: {}\n")
    code, out, err = run("test", str(suite), "--rules", str(rules), "--format", "junit")
    assert code == 2, err
    root = ElementTree.fromstring(out)
    assert root.get("tests") == "5" and root.get("errors") == "1"
    error = root.find(".//testcase[@name='malformed fixture file']/error")
    assert error is not None and "bad.yaml:3:11: error[unknown-kind]" in error.text
    assert err.splitlines()[-1] == "4 passed, 0 failed, 1 file malformed"


def test_exitfirst_says_it_stopped_inside_the_last_file_too(named, rules):
    path = named / "suite" / "pro.yaml"
    path.write_text(path.read_text(encoding="utf-8") + f"  - name: pro after the failure\n    request: {request(tier='pro')}"
                    "\n    expect: {valid: true}\n", encoding="utf-8")
    found = companion("test", "suite/pro.yaml", "--rules", str(rules), "-x", cwd=named)
    assert found.stdout.splitlines()[-1] == "1 passed, 1 failed; stopped at the first failure (-x)", found.stdout
    found = companion("test", "suite/basic.yaml", "--rules", str(rules), "-x", cwd=named)
    assert found.stdout.splitlines()[-1] == "2 passed, 1 failed", found.stdout
