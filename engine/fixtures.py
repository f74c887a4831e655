"""Regression fixtures: load YAML cases, run them, compare partial expectations, count rule coverage.

A fixture file holds one or more cases (schema: rules/schemas/fixture.schema.json; docs/fixtures.md):

    rules: ../my-rules                 # optional: the rules directory, relative to this file
    cases:
      - name: EPO Advanced with insulation monitoring
        request: {partner: ..., configuration: ...}
        expect:                        # partial: keys not given are not compared
          valid: true
          bom:
            - {reference: EPO-ADV-SUB-3Y, quantity: 1}
      - name: an unknown tier is a request error
        request: ...
        expect_error: {code: unknown-ref, path: configuration.tier}

Stages, as elsewhere: load (strict YAML, schema, checks; every problem located) -> run (a small explicit
table from request kind to evaluator) -> compare (a list of differences, no prose) -> report (cli_fixtures).
A file is the unit of work, so that `-j N` parses and runs files in N worker processes, each compiling
a catalogue once.
"""

from __future__ import annotations

import codecs
import functools
import io
import json
import multiprocessing
import os
import stat
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from engine.catalog import display_path, load_catalog, rules_of
from engine.compile import CompiledCatalog
from engine.compile import load as load_compiled
from engine.model import whole
from engine.problem import CompanionError, Location, Problem, did_you_mean
from engine.schema import BUNDLED_RULES, SCHEMA_DIR, describe, unknown_keys
from engine.source import Source, parse_yaml, read_text

FIXTURE_SCHEMA = "fixture.schema.json"
SUFFIXES = (".yaml", ".yml")
DEFAULT_KIND = "validate"
SUBSTRING_KEYS = ("message", "description", "derivation")  # compared as substrings; every other key exactly
# What an item of each list shows in a diff, and what --update writes when the old expectation gave no keys.
SHOWN = {"violations": ("rule", "code", "message"), "notices": ("rule", "code", "message"),
         "bom": ("reference", "quantity", "months", "derivation"), "errors": ("code", "path", "message")}
WRITTEN = {"violations": ("rule", "code"), "notices": ("rule", "code"), "bom": ("reference", "quantity", "months"),
           "errors": ("code", "path")}


# ---------------------------------------------------------------------------------------------- evaluators

Outcome = dict  # {"valid", "violations", "notices", "bom"} for a verdict, or {"errors": [...]} for a request error


def _validate(compiled: CompiledCatalog, request: Source) -> tuple[Outcome, tuple[str, ...]]:
    """Evaluate a configuration request as `companion validate` does."""
    from engine.evaluate import evaluate
    from engine.request import check_request, request_from_data

    if isinstance(request.data, dict):
        checked = check_request(request, compiled.catalog)
    else:
        checked = request_from_data(request.data, compiled.catalog, file=request.file)
    verdict = evaluate(compiled, checked)
    exercised = list(verdict.exercised)
    return verdict_outcome(verdict.to_json()), tuple(dict.fromkeys(exercised))


def verdict_outcome(verdict: dict) -> Outcome:
    """Keep what fixtures compare of a verdict document."""
    def items(key: str, fields: tuple[str, ...]) -> list[dict]:
        return [{name: item[name] for name in fields if name in item} for item in verdict.get(key, [])]

    return {"valid": verdict["valid"],
            "violations": items("violations", ("rule", "code", "message")),
            "notices": items("notices", ("rule", "code", "message")),
            "bom": items("bom", ("reference", "description", "quantity", "months", "rule"))}


def _amend(compiled: CompiledCatalog, request: Source) -> tuple[Outcome, tuple[str, ...]]:
    """Work out an amendment request as `companion amend` does (its lines are the outcome's bom)."""
    from engine.subscription import fixture_amend

    return fixture_amend(compiled, request)


def _renew(compiled: CompiledCatalog, request: Source) -> tuple[Outcome, tuple[str, ...]]:
    """Work out a renewal request as `companion renew` does."""
    from engine.subscription import fixture_renew

    return fixture_renew(compiled, request)


def _export(compiled: CompiledCatalog, request: Source) -> tuple[Outcome, tuple[str, ...]]:
    """Evaluate what a partner is offered for a saved project (templates, checkout), as engine.exports does."""
    from engine.exports import fixture_export

    return fixture_export(compiled, request)


def _guide(compiled: CompiledCatalog, request: Source) -> tuple[Outcome, tuple[str, ...]]:
    """Find the licence-update guide for {product, version, mode, event}, as engine.guidance does."""
    from engine.guidance import fixture_guide

    return fixture_guide(compiled, request)


def _cover(compiled: CompiledCatalog, request: Source) -> tuple[Outcome, tuple[str, ...]]:
    """Match a valid configuration's bill of materials against given voucher balances (packs included)."""
    from engine.activation import fixture_cover

    return fixture_cover(compiled, request)


# Request kind -> evaluator: (compiled catalogue, request source) -> (outcome, rule ids exercised).
# An evaluator raises CompanionError for a malformed request. Explicit, not discovered.
EVALUATORS: dict[str, Callable[[CompiledCatalog, Source], tuple[Outcome, tuple[str, ...]]]] = {
    "validate": _validate,
    "amend": _amend,
    "renew": _renew,
    "export": _export,
    "guide": _guide,
    "cover": _cover,
}


# ---------------------------------------------------------------------------------------------- loading

@dataclass(frozen=True)
class Case:
    """One fixture case: a request, what is expected of it, and where it is written."""

    file: str
    line: int
    index: int
    name: str
    kind: str
    rules: str  # resolved rules directory
    request: Source = field(compare=False, repr=False)
    expect: dict | None = None
    expect_error: tuple[dict, ...] | None = None

    @property
    def where(self) -> str:
        """Return `file:line` of the case."""
        return f"{self.file}:{self.line}"


def rules_key(directory: Path | str | None) -> str:
    """Return the resolved rules directory (the bundled rules/ when none is given)."""
    return str(Path(directory if directory is not None else BUNDLED_RULES).resolve())


def load_fixture_file(path: Path, rules_dir: Path | str | None = None) -> list[Case]:
    """Load and check one fixture file; raise CompanionError holding every problem, located."""
    display = display_path(path)
    source = parse_yaml(read_text(path, display), display)
    problems = list(source.problems)
    if source.data is None:
        raise CompanionError(problems + [Problem("empty-file", "fixture file is empty", Location(display, 1, 1),
                                                 hint="a fixture holds `cases:`; see docs/fixtures.md")])
    spotted = {problem.where for problem in problems}
    problems.extend(problem for problem in schema_problems(source) if problem.where not in spotted)
    if problems:
        raise CompanionError(problems)
    base = path.parent
    file_rules = _rules_dir(source, ("rules",), base, rules_dir, problems)
    requests = _request_sources(source)
    cases: list[Case] = []
    first_line: dict[str, int] = {}
    for index, data in enumerate(source.data["cases"]):
        at = ("cases", index)
        where = source.where(at)
        name = data["name"]
        if name in first_line:
            problems.append(Problem("duplicate-case", f"case name '{name}' is used twice (first at line "
                                    f"{first_line[name]})", source.where(at + ("name",)),
                                    hint="names are test ids: make each unique in its file"))
        first_line.setdefault(name, where.line)
        if ("expect" in data) == ("expect_error" in data):
            problems.append(Problem("fixture-expect", "a case needs exactly one of expect and expect_error", where,
                                    hint="expect: a partial verdict; expect_error: {code, path} of a request error"))
        kind = data.get("kind", DEFAULT_KIND)
        if kind not in EVALUATORS:
            problems.append(Problem("unknown-kind", f"unknown request kind '{kind}'", source.where(at + ("kind",)),
                                    hint=did_you_mean(kind, EVALUATORS) or "kinds: " + ", ".join(EVALUATORS)))
        case_rules = _rules_dir(source, at + ("rules",), base, None, problems) if "rules" in data else file_rules
        errors = data.get("expect_error")
        cases.append(Case(display, where.line, index, name, kind, case_rules, requests.get(index) or
                          Source(display, data["request"]), whole_numbers(data.get("expect")),
                          None if errors is None else tuple(errors if isinstance(errors, list) else [errors])))
    if problems:
        raise CompanionError(problems)
    return cases


def whole_numbers(value: Any) -> Any:
    """Return an expectation with whole numbers written with a decimal point (36.0) as integers, as requests are read."""
    if isinstance(value, dict):
        return {key: whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    return whole(value) if isinstance(value, float) and value.is_integer() else value


@functools.cache
def fixture_validator():
    """Return the fixture schema's validator, its local $refs inlined (resolving them dominated large suites)."""
    from jsonschema import Draft202012Validator

    schema = json.loads((SCHEMA_DIR / FIXTURE_SCHEMA).read_text(encoding="utf-8"))
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"$ref"} and node["$ref"].startswith("#/$defs/"):
                return inline(definitions[node["$ref"][len("#/$defs/"):]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    schema = inline(schema)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_problems(source: Source) -> list[Problem]:
    """Return every fixture schema problem, located (as engine.schema.validate_source does for rule files)."""
    problems: list[Problem] = []
    for error in fixture_validator().iter_errors(source.data):
        keys = unknown_keys(error)
        if keys:  # one error can name several unknown keys of a mapping: report each
            problems.extend(describe(error, source, key) for key in keys)
        else:
            problems.append(describe(error, source))
    return problems


def _rules_dir(source: Source, at: tuple, base: Path, default, problems: list[Problem]) -> str:
    value = source.data.get(at[-1]) if len(at) == 1 else source.data["cases"][at[1]].get(at[-1])
    if value is None:
        return rules_key(default)
    directory = base / value
    try:
        directory = directory.resolve()
        found = directory.is_dir()
    except (OSError, ValueError):  # a NUL byte, an unencodable character, a name too long for the file system
        found = False
    if not found:
        problems.append(Problem("no-rules", f"no rules directory {_shown(value)} (looked in "
                                f"{_shown(display_path(directory), quote=False)})",
                                source.where(at), hint="a path relative to this fixture file"))
    return str(directory)


def _shown(text: str, quote: bool = True, limit: int = 120) -> str:
    """Show a path written in a fixture: control and unencodable characters escaped, a long one cut short."""
    if len(text) > limit:
        text = text[:limit] + "..."
    if not text.isprintable():
        return repr(text) if quote else repr(text)[1:-1]
    return f"'{text}'" if quote else text


def _request_sources(source: Source) -> dict[int, Source]:
    """Give each case's request its own source map, so request errors point into the fixture file."""
    return {index: source.within(("cases", index, "request"), case["request"])
            for index, case in enumerate(source.data["cases"])}


def find_fixture_files(paths: Iterable[Path]) -> list[Path]:
    """Return the fixture files named or found below the given paths, sorted.

    Directories are searched recursively; those whose names start with `_` or `.` are skipped (keep a
    fixture's own rules directory in `_rules/`, say).
    """
    found: dict[Path, None] = {}
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for root, directories, files in os.walk(path):
                directories[:] = sorted(name for name in directories if not name.startswith(("_", ".")))
                for name in sorted(files):
                    if name.endswith(SUFFIXES) and not name.startswith("."):
                        found.setdefault(Path(root) / name, None)
        else:
            found.setdefault(path, None)
    return sorted(found)


# ---------------------------------------------------------------------------------------------- running

@dataclass(frozen=True)
class Difference:
    """One way a result differs from its expectation: a key, what was expected, what came (None: nothing)."""

    key: str
    expected: str | None
    got: str | None


@dataclass
class CaseResult:
    """What running one case gave: pass or fail, the differences, the outcome and the rules it exercised."""

    file: str
    line: int
    index: int
    name: str
    kind: str
    rules: str
    differences: list[Difference]
    outcome: Outcome
    exercised: tuple[str, ...]
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Return whether the case met its expectation."""
        return not self.differences

    @property
    def where(self) -> str:
        """Return `file:line` of the case."""
        return f"{self.file}:{self.line}"


@dataclass
class FileResult:
    """The results of one fixture file, or the problems that kept it from running."""

    path: str
    results: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


_COMPILED: dict[str, CompiledCatalog] = {}  # per process: each worker compiles a catalogue once


def compiled_for(rules: str) -> CompiledCatalog:
    """Return the compiled catalogue of a rules directory, compiling it once per process."""
    if rules not in _COMPILED:
        _COMPILED[rules] = load_compiled(rules)
    return _COMPILED[rules]


def outcome_of(case: Case) -> tuple[Outcome, tuple[str, ...]]:
    """Evaluate a case's request; a request error is an outcome too. Catalogue errors propagate."""
    from engine.session import EngineFault

    compiled = compiled_for(case.rules)
    try:
        return EVALUATORS[case.kind](compiled, case.request)
    except CompanionError as error:
        return {"errors": [{"code": problem.code, "path": problem.path, "message": problem.message}
                           for problem in error.problems]}, ()
    except EngineFault as error:
        return {"errors": [{"code": "engine-fault", "path": "", "message": str(error)}]}, ()


def run_case(case: Case) -> CaseResult:
    """Run one case and compare its outcome with the expectation."""
    import time

    started = time.perf_counter()
    outcome, exercised = outcome_of(case)
    return CaseResult(case.file, case.line, case.index, case.name, case.kind, case.rules, compare(case, outcome),
                      outcome, exercised, time.perf_counter() - started)


def run_file(path: Path, rules_dir: Path | str | None = None) -> FileResult:
    """Load one fixture file and run its cases (the unit of work of a worker process)."""
    result = FileResult(display_path(Path(path)))
    try:
        cases = load_fixture_file(Path(path), rules_dir)
        for rules in dict.fromkeys(case.rules for case in cases):
            compiled_for(rules)
    except CompanionError as error:
        result.problems = error.problems
        return result
    result.results = [run_case(case) for case in cases]
    return result


def run_files(paths: list[Path], rules_dir: Path | str | None = None, jobs: int = 1,
              advance: Callable[[FileResult], None] | None = None) -> list[FileResult]:
    """Run fixture files, in `jobs` worker processes when more than one; results in the order of paths."""
    advance = advance or (lambda result: None)
    if jobs <= 1 or len(paths) <= 1:
        results = []
        for path in paths:
            results.append(run_file(path, rules_dir))
            advance(results[-1])
        return results
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    by_path: dict[Path, FileResult] = {}
    # Largest files first, so that the last worker to finish is not the one that drew the biggest file.
    order = sorted(paths, key=lambda path: -_size(path))
    with ProcessPoolExecutor(max_workers=min(jobs, len(paths)), mp_context=context) as pool:
        futures = {pool.submit(run_file, path, rules_dir): path for path in order}
        for future in as_completed(futures):
            by_path[futures[future]] = future.result()
            advance(by_path[futures[future]])
    return [by_path[path] for path in paths]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# ---------------------------------------------------------------------------------------------- comparing

def compare(case: Case, outcome: Outcome) -> list[Difference]:
    """Return how an outcome differs from the case's expectation (empty when it meets it)."""
    if case.expect_error is not None:
        if "errors" not in outcome:
            return [Difference("expect_error", flow(list(case.expect_error)), "no request error; " + summary(outcome))]
        return match_items("errors", list(case.expect_error), outcome["errors"])
    if "errors" in outcome:
        return [Difference("request", "a verdict", "request error " + flow(shown("errors", error)))
                for error in outcome["errors"]]
    differences: list[Difference] = []
    for key, expected in (case.expect or {}).items():
        if key == "valid":
            if expected != outcome["valid"]:
                differences.append(Difference("valid", flow(expected), flow(outcome["valid"])))
        else:
            differences.extend(match_items(key, expected, outcome[key]))
    return differences


def item_matches(expected: dict, actual: dict) -> bool:
    """Return whether an actual item has every value the expected item gives (texts: as substrings)."""
    for key, value in expected.items():
        if key in SUBSTRING_KEYS:
            if str(value) not in str(actual.get(key, "")):
                return False
        elif key not in actual or actual[key] != value or type(actual[key]) is not type(value):
            return False
    return True


def match_items(key: str, expected: list[dict], actual: list[dict]) -> list[Difference]:
    """Pair expected and actual items one to one, in any order; report the missing and the unexpected."""
    pairs = _matching(expected, actual)
    differences = [Difference(key, flow(item), None) for index, item in enumerate(expected) if index not in pairs]
    taken = set(pairs.values())
    differences += [Difference(key, None, flow(shown(key, item))) for index, item in enumerate(actual)
                    if index not in taken]
    return differences


def _matching(expected: list[dict], actual: list[dict]) -> dict[int, int]:
    """Return a maximum one-to-one matching expected index -> actual index (augmenting paths)."""
    fits = [[index for index, item in enumerate(actual) if item_matches(wanted, item)] for wanted in expected]
    owner: dict[int, int] = {}  # actual index -> expected index

    def assign(wanted: int, visited: set[int]) -> bool:
        for candidate in fits[wanted]:
            if candidate in visited:
                continue
            visited.add(candidate)
            if candidate not in owner or assign(owner[candidate], visited):
                owner[candidate] = wanted
                return True
        return False

    for wanted in range(len(expected)):
        assign(wanted, set())
    return {wanted: candidate for candidate, wanted in owner.items()}


def shown(key: str, item: dict) -> dict:
    """Keep the fields of an item that a diff shows."""
    return {name: item[name] for name in SHOWN.get(key, tuple(item)) if name in item and item[name] != ""}


def summary(outcome: Outcome) -> str:
    """Describe an outcome in one line."""
    if "errors" in outcome:
        return "request error " + ", ".join(flow(shown("errors", error)) for error in outcome["errors"])
    text = "valid" if outcome["valid"] else "invalid"
    if outcome["violations"]:
        text += " (" + ", ".join(f"{item['rule']} {item['code']}" for item in outcome["violations"]) + ")"
    return text


def flow(value: Any) -> str:
    """Render a value as one line of YAML flow style, as a fixture would write it."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {flow(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(item) for item in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    plain = (text and text[0].isalnum() and text.isprintable() and not any(mark in text for mark in ":#,[]{}'\"")
             and _reads_as(text) == text)
    return text if plain else '"' + "".join(_escaped(character) for character in text) + '"'


def _reads_as(text: str) -> Any:
    """Return what YAML reads a plain scalar as (None when it cannot be read)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _escaped(character: str) -> str:
    """Write one character as YAML's double-quoted style needs it: controls as escapes, so it stays one line."""
    if character in "\\\"":
        return "\\" + character
    return character if character.isprintable() else repr(character)[1:-1]  # \n, \x01, \u2028: YAML's escapes too


# ---------------------------------------------------------------------------------------------- coverage

@dataclass
class RuleCoverage:
    """How many cases exercised each rule of one catalogue."""

    rules_dir: str
    rules: dict[str, Location]
    counts: dict[str, int]

    @property
    def exercised(self) -> int:
        """Return how many rules at least one case exercised."""
        return sum(1 for rule in self.rules if self.counts.get(rule))

    @property
    def untouched(self) -> list[tuple[str, Location]]:
        """Return the rules no case exercised, with where they are written, in file order."""
        return sorted(((rule, where) for rule, where in self.rules.items() if not self.counts.get(rule)),
                      key=lambda pair: (pair[1], pair[0]))

    @property
    def percent(self) -> float:
        """Return the share of rules exercised, in percent."""
        return 100.0 * self.exercised / len(self.rules) if self.rules else 100.0


def coverage(results: Iterable[CaseResult], default_rules: Path | str | None = None) -> list[RuleCoverage]:
    """Count, per catalogue and rule id, the cases that exercised the rule (fired, or refused the request)."""
    counts: dict[str, dict[str, int]] = {}
    for result in results:
        per_rules = counts.setdefault(result.rules, {})
        for rule in set(result.exercised):
            per_rules[rule] = per_rules.get(rule, 0) + 1
    if not counts:
        counts[rules_key(default_rules)] = {}
    return [RuleCoverage(directory, rules_of(load_catalog(directory)), per_rules)
            for directory, per_rules in counts.items()]


def total_percent(coverages: list[RuleCoverage]) -> float:
    """Return the share of all rules exercised across catalogues, in percent."""
    rules = sum(len(item.rules) for item in coverages)
    return 100.0 * sum(item.exercised for item in coverages) / rules if rules else 100.0


# ---------------------------------------------------------------------------------------------- golden updates

def new_expectation(old_key: str, old: Any, outcome: Outcome) -> tuple[str, Any]:
    """Return (key, value) of an expectation the outcome meets, in the old one's shape where it had one."""
    if "errors" in outcome:
        old_items = (old if isinstance(old, list) else [old]) if old_key == "expect_error" else []
        items = _items_like("errors", old_items, outcome["errors"])
        return "expect_error", items[0] if len(items) == 1 and not isinstance(old, list) else items
    keys = list(old) if old_key == "expect" and isinstance(old, dict) else []
    if "valid" not in keys:
        keys.insert(0, "valid")
    if not outcome["valid"] and "violations" not in keys:
        keys.append("violations")
    if outcome["valid"] and old_key != "expect" and "bom" not in keys:
        keys.append("bom")
    value: dict[str, Any] = {}
    for key in keys:
        if key == "valid":
            value[key] = outcome["valid"]
        else:
            value[key] = _items_like(key, (old or {}).get(key, []) if old_key == "expect" else [], outcome[key])
    return "expect", value


def _items_like(key: str, old_items: list, items: list[dict]) -> list[dict]:
    """Write new items with the fields the old items used (or the usual ones)."""
    fields = list(dict.fromkeys(name for item in old_items if isinstance(item, dict) for name in item))
    fields = fields or list(WRITTEN[key])
    return [{name: item[name] for name in fields if name in item and item[name] != ""} for item in items]


def update_files(results: Iterable[CaseResult]) -> list[CaseResult]:
    """Rewrite the expectations of failing cases from their outcomes, keeping comments and layout.

    Returns the results whose fixtures were rewritten. Files are edited with ruamel.yaml's round trip;
    keys that stay keep their comments, and a file keeps its line endings and byte order mark.
    """
    failing: dict[str, list[CaseResult]] = {}
    for result in results:
        if not result.passed:
            failing.setdefault(result.file, []).append(result)
    updated: list[CaseResult] = []
    for file, cases in failing.items():
        path = Path(file)
        text, bom, newline = read_layout(path)
        round_trip = _round_trip(text)
        document = round_trip.load(text)
        for result in cases:
            _update_case(document["cases"][result.index], result)
            updated.append(result)
        written = io.StringIO()
        round_trip.dump(document, written)
        replace_file(path, (("\ufeff" if bom else "") + written.getvalue().replace("\n", newline)).encode("utf-8"))
    return updated


def read_layout(path: Path) -> tuple[str, bool, str]:
    """Return a file's text (LF line ends, no byte order mark), whether it had the mark, and its line ending."""
    raw = path.read_bytes()
    text = raw.decode("utf-8-sig")
    first = text.find("\n")
    newline = "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"
    return text.replace("\r\n", "\n"), raw.startswith(codecs.BOM_UTF8), newline


def _round_trip(text: str):
    """Return a ruamel.yaml round-trip reader and writer that indents as the text does."""
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    _, indent, block_indent = load_yaml_guess_indent(text)
    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 4096
    sequence, offset = indent or 2, block_indent or 0  # ruamel's guess: a sequence's indent and dash offset
    round_trip.indent(mapping=max(sequence - offset, 2), sequence=max(sequence, offset + 2), offset=offset)
    return round_trip


def _update_case(case, result: CaseResult) -> None:
    """Replace a round-trip case's expectation with one its outcome meets."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    old_key = "expect" if "expect" in case else "expect_error"
    key, value = new_expectation(old_key, case.get(old_key), result.outcome)
    # The blank lines and comments after a case (often the next case's heading) hang on its innermost
    # last item, which the edit may replace: they are moved to the end of the case itself first.
    trailing = _detach_trailing(case)
    _apply(case, old_key, key, value, CommentedMap, CommentedSeq)
    if trailing:
        if case.ca.comment is None:
            case.ca.comment = [None, None]
        case.ca.end = trailing


def replace_file(path: Path, data: bytes) -> None:
    """Replace a file's content at once (a temporary file beside it, renamed over it), or raise `not-written`."""
    target = path.resolve()  # a symbolic link stays one: the file it points to is replaced
    temporary = None
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except OSError as error:
        raise CompanionError([Problem("not-written", f"cannot rewrite the fixture: {error.strerror}",
                                      Location(display_path(path)), hint="check the permissions of the file "
                                      "and its folder")]) from None
    finally:
        if temporary is not None and os.path.exists(temporary):  # the rename did not happen
            os.unlink(temporary)


def _detach_trailing(node: Any) -> list | None:
    """Remove and return the comment tokens after node's last line, from wherever ruamel.yaml keeps them."""
    from ruamel.yaml.tokens import CommentToken

    comments = getattr(node, "ca", None)
    if comments is None or not node:
        return None
    if comments.end:
        tokens, comments.end = comments.end, []
        return tokens
    last = list(node)[-1] if isinstance(node, dict) else len(node) - 1
    found = _detach_trailing(node[last])
    if found:
        return found
    slot = 2 if isinstance(node, dict) else 0  # a mapping value's comment, a list item's comment
    entry = comments.items.get(last)
    token = entry[slot] if entry and len(entry) > slot else None
    if token is None or isinstance(token, list):
        return None
    own, _, rest = token.value.partition("\n")  # the item's own end-of-line comment, then the lines after it
    if not rest.strip():
        return None
    if own:
        token.value = own + "\n"
    else:
        entry[slot] = None
    return [CommentToken(rest, start_mark=token.start_mark)]


def _plain(value: Any) -> Any:
    """Return a round-trip value as plain dicts and lists."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _apply(case, old_key: str, key: str, value: Any, cmap, cseq) -> None:
    """Put a new expectation into a round-trip case mapping, editing in place where the shape allows."""
    def node(item: Any, flow_style: bool):
        if isinstance(item, dict):
            result = cmap(item)
            if flow_style:
                result.fa.set_flow_style()
            return result
        if isinstance(item, list):
            result = cseq(node(element, True) for element in item)
            if not item:
                result.fa.set_flow_style()
            return result
        return item

    if key == old_key and key == "expect" and isinstance(case[key], dict):
        block = case[key]
        for name in [name for name in block if name not in value]:
            del block[name]
        for name, item in value.items():
            if name not in block or _plain(block[name]) != item:  # an unchanged key keeps its comment as is
                block[name] = node(item, False)
        return
    new = node(value, key == "expect_error" and isinstance(value, dict))
    if key == old_key:
        case[key] = new
        return
    position = list(case).index(old_key)
    del case[old_key]
    case.insert(position, key, new)


# ---------------------------------------------------------------------------------------------- impact of a rule edit

@dataclass(frozen=True)
class RuleEdit:
    """A rule added, removed or changed between two catalogues."""

    rule: str
    change: str  # added | removed | changed
    where: str  # in the working tree, or at the base revision for a removed rule


@dataclass
class VerdictChange:
    """A fixture request whose verdict differs between the base revision and the working tree."""

    case: Case
    before: Outcome
    after: Outcome
    changes: list[str]
    causes: tuple[str, ...]  # the edited rules that fired in either run


def extract_rules(revision: str, rules_dir: Path | str, into: Path) -> Path:
    """Write the rules directory as of a git revision into `into`; no checkout of the working tree."""
    import io
    import subprocess
    import tarfile

    directory = Path(rules_dir).resolve()

    def git(*args: str, binary: bool = False):
        return subprocess.run(["git", *args], cwd=directory if directory.is_dir() else directory.parent,
                              capture_output=True, text=not binary)

    top = git("rev-parse", "--show-toplevel")
    if top.returncode:
        raise CompanionError([Problem("git", f"{display_path(directory)} is not in a git repository",
                                      Location(display_path(directory)))])
    relative = directory.relative_to(Path(top.stdout.strip()).resolve()).as_posix()
    if git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").returncode:
        raise CompanionError([Problem("git", f"unknown revision '{revision}'", Location(display_path(directory)),
                                      hint="name a commit, branch or tag, e.g. HEAD or main")])
    archive = subprocess.run(["git", "archive", "--format=tar", revision, "--", relative or "."],
                             cwd=top.stdout.strip(), capture_output=True)
    if archive.returncode:
        said = archive.stderr.decode(errors="replace").strip().splitlines()
        raise CompanionError([Problem("git", f"{relative} does not exist at {revision}",
                                      Location(display_path(directory)), hint=said[-1] if said else "")])
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        links = [member.name for member in tar.getmembers() if member.issym() or member.islnk()]
        if links:
            # A link committed in the rules points outside what is read at REVISION (or nowhere): its file would
            # be missing from the old rules, and diff would report edits nobody made.
            raise CompanionError([Problem("git", f"the rules at {revision} hold a link, {links[0]}, which diff "
                                          "cannot read as it was", Location(display_path(directory)),
                                          hint="commit the rule file itself instead of a link to it")])
        tar.extractall(into, filter="data")
    return into / relative


def rule_texts(catalog) -> dict[str, str]:
    """Return each rule's content as canonical text, without the rules nested in it (a tier in its product).

    A rule's node is found from where the rule is written; comments and layout do not count as edits.
    """
    rules = rules_of(catalog)
    by_file = {source.file: source for source in catalog.sources.values()}
    nodes: dict[str, tuple[Source, tuple]] = {}
    for rule, where in rules.items():
        source = by_file.get(where.file)
        path = _node_path(source, where) if source else None
        if path is not None:
            nodes[rule] = (source, path)
    owned = {(source.file, path) for source, path in nodes.values()}
    texts = {}
    for rule in rules:
        if rule not in nodes:
            texts[rule] = str(rules[rule].line)  # unknown shape: only a move shows
            continue
        source, path = nodes[rule]
        texts[rule] = json.dumps(_without(_at(source.data, path), source.file, path, owned, top=True),
                                 sort_keys=True, default=str)
    return texts


def _node_path(source: Source, where: Location) -> tuple | None:
    """Return the path of the node a rule location points into: a mapping or list, or the parent of a scalar."""
    candidates = [path for table in (source.locations, source.key_locations)
                  for path, spot in table.items() if spot == where]
    if not candidates:
        return None
    containers = [path for path in candidates if isinstance(_at(source.data, path), (dict, list))]
    if containers:
        return min(containers, key=len)
    return min(candidates, key=len)[:-1]


def _at(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def _without(value: Any, file: str, path: tuple, owned: set, top: bool = False) -> Any:
    if not top and (file, path) in owned:
        return None
    if isinstance(value, dict):
        kept = {key: _without(item, file, path + (key,), owned) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item is not None or value[key] is None}
    if isinstance(value, list):
        kept = [_without(item, file, path + (index,), owned) for index, item in enumerate(value)]
        return [item for index, item in enumerate(kept) if item is not None or value[index] is None]
    return value


def rule_edits(before, after, base_label: str = "", base_prefix: str = "") -> list[RuleEdit]:
    """Return the rules added, removed or changed from one catalogue to the other."""
    old, new = rule_texts(before), rule_texts(after)
    old_where, new_where = rules_of(before), rules_of(after)
    edits = []
    for rule in new:
        if rule not in old:
            edits.append(RuleEdit(rule, "added", str(new_where[rule])))
        elif old[rule] != new[rule]:
            edits.append(RuleEdit(rule, "changed", str(new_where[rule])))
    for rule in old:
        if rule not in new:
            where = str(old_where[rule])
            if base_prefix and where.startswith(base_prefix):
                where = base_label + where[len(base_prefix):].lstrip("/\\")
            edits.append(RuleEdit(rule, "removed", where))
    return edits


def verdict_changes(before: Outcome, after: Outcome) -> list[str]:
    """Describe how a verdict changed: validity, request errors, violations and BOM lines."""
    if "errors" in before or "errors" in after:
        if "errors" in before and "errors" in after:
            old = {(error["code"], error["path"]) for error in before["errors"]}
            new = {(error["code"], error["path"]) for error in after["errors"]}
            return [f"- request error {code} at {path}" for code, path in sorted(old - new)] + \
                   [f"+ request error {code} at {path}" for code, path in sorted(new - old)]
        return [f"{summary(before)} -> {summary(after)}"]
    changes = []
    if before["valid"] != after["valid"]:
        changes.append(f"{'valid' if before['valid'] else 'invalid'} -> {'valid' if after['valid'] else 'invalid'}")
    old = {(item["rule"], item["code"]) for item in before["violations"]}
    new = {(item["rule"], item["code"]) for item in after["violations"]}
    changes += [f"- violation {rule} {code}" for rule, code in sorted(old - new)]
    changes += [f"+ violation {rule} {code}" for rule, code in sorted(new - old)]

    def lines(outcome: Outcome) -> dict:
        return {(line["reference"], line["quantity"], line["months"]): line for line in outcome["bom"]}

    old_lines, new_lines = lines(before), lines(after)
    changes += [f"- bom {quantity} x {reference}" + (f" ({months} months)" if months else "")
                for reference, quantity, months in sorted(old_lines.keys() - new_lines.keys(), key=str)]
    changes += [f"+ bom {quantity} x {reference}" + (f" ({months} months)" if months else "")
                for reference, quantity, months in sorted(new_lines.keys() - old_lines.keys(), key=str)]
    return changes


@dataclass
class Impact:
    """Which fixture verdicts change between a revision's rules and the working tree's, and why."""

    revision: str
    edits: list[RuleEdit]
    changes: list[VerdictChange]
    cases: int

    def groups(self) -> list[tuple[tuple[str, ...], list[VerdictChange]]]:
        """Group the changed verdicts by the edited rules that caused them."""
        grouped: dict[tuple[str, ...], list[VerdictChange]] = {}
        for change in self.changes:
            grouped.setdefault(change.causes, []).append(change)
        return sorted(grouped.items(), key=lambda pair: (not pair[0], pair[0]))


def impact(revision: str, cases: list[Case]) -> Impact:
    """Evaluate every case under the rules at `revision` and under the working tree; keep what changed."""
    edits: dict[str, RuleEdit] = {}
    changes: list[VerdictChange] = []
    by_rules: dict[str, list[Case]] = {}
    for case in cases:
        by_rules.setdefault(case.rules, []).append(case)
    with tempfile.TemporaryDirectory(prefix="companion-diff-") as scratch:
        for number, (rules, group) in enumerate(by_rules.items()):
            into = Path(scratch) / str(number)
            base_dir = extract_rules(revision, rules, into)
            base = compiled_for(str(base_dir.resolve()))
            current = compiled_for(rules)
            prefix = display_path(into)
            found = rule_edits(base.catalog, current.catalog, f"{revision}:", prefix)
            edits.update((edit.rule, edit) for edit in found)
            edited = {edit.rule for edit in found}
            for case in group:
                before, fired_before = _outcome_under(base, case)
                after, fired_after = _outcome_under(current, case)
                described = verdict_changes(before, after)
                if described:
                    causes = tuple(sorted(edited & (set(fired_before) | set(fired_after))))
                    changes.append(VerdictChange(case, before, after, described, causes))
            _COMPILED.pop(str(base_dir.resolve()), None)
    return Impact(revision, sorted(edits.values(), key=lambda edit: edit.rule), changes, len(cases))


def _outcome_under(compiled: CompiledCatalog, case: Case) -> tuple[Outcome, tuple[str, ...]]:
    try:
        return EVALUATORS[case.kind](compiled, case.request)
    except CompanionError as error:
        return {"errors": [{"code": problem.code, "path": problem.path, "message": problem.message}
                           for problem in error.problems]}, ()
