"""Collect tests/fixtures/**/*.yaml as pytest items: one per case, at the case's file and line, named after it.

Only fixtures live here; other fixtures of pytest's kind belong in the test files that use them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import fixtures
from engine.problem import CompanionError

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_collect_file(parent, file_path: Path):
    """Turn a YAML file below tests/fixtures/ (outside `_`- or `.`-named folders) into a fixture file."""
    if file_path.suffix not in fixtures.SUFFIXES or FIXTURES not in file_path.resolve().parents:
        return None
    inside = file_path.resolve().relative_to(FIXTURES).parts[:-1]
    if any(part.startswith(("_", ".")) for part in inside):
        return None
    return FixtureFile.from_parent(parent, path=file_path)


class FixtureFile(pytest.File):
    """A fixture file: its cases, or its located problems as a collection error."""

    def collect(self):
        try:
            cases = fixtures.load_fixture_file(self.path)
        except CompanionError as error:
            raise FixtureFileError(str(error)) from None
        for case in cases:
            yield FixtureCase.from_parent(self, name=case.name, case=case)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, FixtureFileError):
            return f"malformed fixture file:\n{excinfo.value}"
        return super().repr_failure(excinfo)


class FixtureFileError(Exception):
    """A fixture file that cannot be loaded."""


class CaseFailed(Exception):
    """A case whose outcome differs from its expectation."""


class FixtureCase(pytest.Item):
    """One fixture case."""

    def __init__(self, *, case: fixtures.Case, **kwargs):
        super().__init__(**kwargs)
        self.case = case

    def runtest(self):
        result = fixtures.run_case(self.case)
        if not result.passed:
            raise CaseFailed(result)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CaseFailed):
            from engine.cli.render import difference_lines

            result = excinfo.value.args[0]
            return "\n".join([f"{result.where}: {result.name}: expected versus got"]
                             + difference_lines(result.differences))
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.case.line - 1, f"fixture {self.case.where}: {self.case.name}"
