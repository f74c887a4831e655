"""The broken rule sets beside this file: each must produce exactly the problems its expect.yaml lists.

A case folder holds only the rule files it breaks; the runner copies `_base/` (a tiny valid rule set), overlays
the case's files and, when expect.yaml says so, removes a file (`remove: [addons.yaml]`) or pads one past the
size limit (`pad: {file: addons.yaml, bytes: 5000000}`). expect.yaml is either a list of problems or a mapping
with `problems:` and those steps. A problem names file, line, column and code (line and column 0 for a problem
about a whole file), and optionally rule, severity, and text the message or hint must contain.
"""

from __future__ import annotations

import collections
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from engine.catalogue.load import load_catalog, warnings_of
from engine.cli import cli
from engine.problem import CompanionError, Problem

CORPUS = Path(__file__).resolve().parent
BASE = CORPUS / "_base"
CASES = sorted(path.name for path in CORPUS.iterdir() if (path / "expect.yaml").is_file())
# `path:line:col: severity[code]`, or `path: severity[code]` for a whole file.
RENDERED = re.compile(r"^(?P<file>.+?)(?::(?P<line>\d+):(?P<column>\d+))?: (?P<severity>error|warning)\[(?P<code>[\w-]+)\]")


def materialise(case: str, directory: Path) -> list[dict]:
    """Build the case's rule set in directory and return the problems it must produce."""
    for path in BASE.glob("*.yaml"):
        shutil.copy(path, directory / path.name)
    for path in (CORPUS / case).iterdir():
        if path.name != "expect.yaml" and path.is_file():
            shutil.copy(path, directory / path.name)
    expect = yaml.safe_load((CORPUS / case / "expect.yaml").read_text(encoding="utf-8"))
    if isinstance(expect, list):
        return expect
    for name in expect.get("remove", ()):
        (directory / name).unlink()
    if "pad" in expect:
        target = directory / expect["pad"]["file"]
        filler = "# padding " + "x" * 69 + "\n"  # 80 bytes a line
        missing = expect["pad"]["bytes"] - target.stat().st_size
        with target.open("a", encoding="utf-8") as stream:
            stream.write(filler * (missing // len(filler) + 1))
    return expect["problems"]


def spot(file: str, line, column, code: str) -> tuple:
    """Identify a problem by file name, position and code."""
    return (Path(file).name, int(line or 0), int(column or 0), code)


def problems_of(directory: Path) -> list[Problem]:
    """Load a rules directory and return every problem it reports (warnings included)."""
    try:
        return list(warnings_of(load_catalog(directory)))
    except CompanionError as error:
        return error.problems


def test_corpus_is_big_enough():
    assert len(CASES) >= 30


def test_base_is_clean(tmp_path):
    for path in BASE.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    assert problems_of(tmp_path) == []


@pytest.mark.parametrize("case", CASES)
def test_case_reports_exactly_its_problems(case, tmp_path):
    expected = materialise(case, tmp_path)
    got = problems_of(tmp_path)
    want = collections.Counter(spot(item["file"], item["line"], item["column"], item["code"]) for item in expected)
    have = collections.Counter(spot(problem.where.file, problem.where.line, problem.where.column, problem.code)
                               for problem in got)
    assert have == want, "got:\n" + "\n".join(problem.render() for problem in got)
    for item in expected:
        match = next(problem for problem in got if spot(problem.where.file, problem.where.line,
                                                         problem.where.column, problem.code) == spot(
            item["file"], item["line"], item["column"], item["code"]))
        assert match.rule == item.get("rule", match.rule), match.render()
        assert match.severity == item.get("severity", "error"), match.render()
        assert item.get("message", "") in match.message, match.render()
        assert item.get("hint", "") in match.hint, match.render()
    assert got == sorted(got, key=Problem.sort_key)


@pytest.mark.parametrize("case", CASES)
def test_companion_check_prints_them(case, tmp_path):
    expected = materialise(case, tmp_path)
    result = CliRunner().invoke(cli, ["check", "--rules", str(tmp_path)])
    errors = any(item.get("severity", "error") == "error" for item in expected)
    assert result.exit_code == (1 if errors else 0), result.output
    assert "Traceback" not in result.output
    printed = [RENDERED.match(line) for line in result.output.splitlines()]
    have = collections.Counter(spot(m["file"], m["line"], m["column"], m["code"]) for m in printed if m)
    want = collections.Counter(spot(item["file"], item["line"], item["column"], item["code"]) for item in expected)
    assert have == want, result.output
