"""The pytest plugin: fixture cases as pytest items, one per case, at the case's file and line, named after it.

pytest loads it through the `pytest11` entry point of the installed package. It does nothing in a project whose
pyproject.toml has no `[tool.companion] fixtures` list, so that other YAML files are never taken for fixtures:

    [tool.companion]
    fixtures = ["tests/fixtures", "examples/fixtures"]   # folders, relative to pyproject.toml
    rules = "rules"                                      # optional: for fixtures that name none

Run with no arguments, pytest collects these folders as well as its `testpaths`; `-k`, `-x` and `--lf` then
work on cases as on any test.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine import fixtures
from engine.cli.render import difference_lines
from engine.problem import CompanionError

SETTINGS = pytest.StashKey["Settings | None"]()


@dataclass(frozen=True)
class Settings:
    """The `[tool.companion]` table: the fixture folders (resolved) and the default rules directory."""

    folders: tuple[Path, ...]
    rules: Path | None


def read_settings(root: Path) -> Settings | None:
    """Return the settings of the project at ROOT, or None when its pyproject.toml names no fixture folders."""
    try:
        table = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("tool", {}).get("companion")
    except (OSError, tomllib.TOMLDecodeError):  # no pyproject.toml, or pytest will report its own reading of it
        return None
    if not isinstance(table, dict) or "fixtures" not in table:
        return None
    folders = table["fixtures"]
    if not isinstance(folders, list) or not all(isinstance(folder, str) for folder in folders):
        raise pytest.UsageError("pyproject.toml: [tool.companion] fixtures must be a list of folder paths")
    rules = table.get("rules")
    if rules is not None and not isinstance(rules, str):
        raise pytest.UsageError("pyproject.toml: [tool.companion] rules must be a folder path")
    return Settings(tuple((root / folder).resolve() for folder in folders),
                    None if rules is None else (root / rules).resolve())


def pytest_configure(config: pytest.Config) -> None:
    """Read the settings; when pytest runs its testpaths, add the fixture folders they do not hold."""
    settings = config.stash[SETTINGS] = read_settings(config.rootpath)
    if settings is None or config.args_source != pytest.Config.ArgsSource.TESTPATHS:
        return  # paths given on the command line, or a run from a subfolder: collect what was asked for only
    given = [(config.rootpath / arg).resolve() for arg in config.args]
    for folder in settings.folders:
        if folder.is_dir() and not any(folder == path or path in folder.parents for path in given):
            config.args.append(str(folder))


def pytest_collect_file(parent, file_path: Path):
    """Turn a YAML file below a fixture folder (outside `_`- or `.`-named folders) into a fixture file."""
    settings = parent.config.stash.get(SETTINGS, None)
    if settings is None or file_path.suffix not in fixtures.SUFFIXES:
        return None
    resolved = file_path.resolve()
    for folder in settings.folders:
        if folder in resolved.parents:
            inside = resolved.relative_to(folder).parts[:-1]
            if any(part.startswith(("_", ".")) for part in inside):
                return None
            return FixtureFile.from_parent(parent, path=file_path, rules=settings.rules)
    return None


class FixtureFile(pytest.File):
    """A fixture file: its cases, or every one of its located problems as one collection error."""

    def __init__(self, *, rules: Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rules = rules

    def collect(self):
        try:
            cases = fixtures.load_fixture_file(self.path, self.rules)
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
            result = excinfo.value.args[0]
            return "\n".join([f"{result.where}: {result.name}: expected versus got"]
                             + difference_lines(result.differences))
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.case.line - 1, f"fixture {self.case.where}: {self.case.name}"
