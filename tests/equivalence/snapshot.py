"""Observing, recording and comparing the engine's behaviour on the equivalence corpus and the fixture cases.

An outcome keeps what a user of the verdict acts on, and nothing that may legitimately change with a rewrite
(messages, hints, locations, derivations, rules_version):

- a validate request: valid, the sorted (rule, code) violations and notices, the bill of materials lines
  (reference, quantity, months) in order;
- an amend or renew request: the same, with the lines (reference, quantity, months, units) in order (the
  amendment lines, or the renewal's bill of materials), the end-state subscription and the term;
- a fixture case: what it evaluates to (engine.fixtures' outcome of its kind), reduced the same way;
- a request error: the sorted (code, JSON path) of its problems.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from engine import (BUNDLED_RULES, CompanionError, CompiledCatalog, amend, amendment_from_data, evaluate, renew,
                    request_from_data)
from engine.fixtures import Case, find_fixture_files, load_fixture_file, run_case

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
RECORDING = HERE / "verdicts.json.gz"
EXPECTED_CHANGES = HERE / "expected_changes.yaml"
FORMAT = 1
CHANGE_KINDS = {"amend": "change", "renew": "renewal"}
SHOWN = 5  # differences printed in full


# --------------------------------------------------------------------------------------------- observing

def _pairs(items: Iterable[dict], first: str, second: str) -> list[list]:
    return sorted([item.get(first), item.get(second)] for item in items)


def _lines(items: Iterable[dict], fields: tuple[str, ...]) -> list[list]:
    return [[item.get(name) for name in fields] for item in items]


def _errors(error: CompanionError) -> dict:
    return {"errors": sorted([problem.code, problem.path or ""] for problem in error.problems)}


def observe(compiled: CompiledCatalog, kind: str, data: dict) -> dict:
    """Return the outcome of one corpus request (kind validate, amend or renew) through the public facade."""
    catalog = compiled.catalog
    try:
        if kind == "validate":
            verdict = evaluate(compiled, request_from_data(data, catalog)).to_json()
            return {"valid": verdict["valid"], "violations": _pairs(verdict["violations"], "rule", "code"),
                    "notices": _pairs(verdict["notices"], "rule", "code"),
                    "bom": _lines(verdict["bom"], ("reference", "quantity", "months"))}
        request = amendment_from_data(data, catalog, CHANGE_KINDS[kind])
    except CompanionError as error:
        return _errors(error)
    result = (amend if kind == "amend" else renew)(compiled, request).to_json()
    lines = result["lines"] if kind == "amend" else result["bom"]
    return {"valid": result["valid"], "violations": _pairs(result["violations"], "rule", "code"),
            "notices": _pairs(result["notices"], "rule", "code"),
            "lines": _lines(lines, ("reference", "quantity", "months", "units")),
            "subscription": result["subscription"], "term": result["term"]}


def observe_all(compiled: CompiledCatalog, requests: list[list]) -> dict[str, dict]:
    """Return {request id: outcome} for [id, kind, data] requests."""
    return {request_id: observe(compiled, kind, data) for request_id, kind, data in requests}


def fixture_outcome(outcome: dict) -> dict:
    """Reduce an engine.fixtures outcome to what is compared (no messages, descriptions nor derivations)."""
    if "errors" in outcome:
        return {"errors": sorted([item.get("code"), item.get("path") or ""] for item in outcome["errors"])}
    return {"valid": outcome.get("valid"), "violations": _pairs(outcome.get("violations", ()), "rule", "code"),
            "notices": _pairs(outcome.get("notices", ()), "rule", "code"),
            "bom": _lines(outcome.get("bom", ()), ("reference", "quantity", "months", "units"))}


def case_id(file: Path, name: str) -> str:
    """Return a fixture case's id: its file relative to the repository, `::`, its name (pytest's spelling)."""
    return f"{Path(file).resolve().relative_to(ROOT).as_posix()}::{name}"


def fixture_cases(rules: Path | str | None = None, fixtures: Path = FIXTURES) -> dict[str, Case]:
    """Return {case id: case} for every case of every fixture file, to run under `rules` when given."""
    return {case_id(path, case.name): case for path in find_fixture_files([fixtures])
            for case in load_fixture_file(path, rules)}


def fixture_requests(cases: dict[str, Case]) -> dict[str, tuple[str, Any]]:
    """Return {case id: (kind, request data)}, for predicates and reports."""
    return {key: (case.kind, case.request.data) for key, case in cases.items()}


def observe_fixtures(rules: Path | str | None = None, fixtures: Path = FIXTURES) -> dict[str, dict]:
    """Return {case id: outcome} for every case of every fixture file, under `rules` when given."""
    return {key: fixture_outcome(run_case(case).outcome) for key, case in fixture_cases(rules, fixtures).items()}


def rules_digest(rules: Path | str = BUNDLED_RULES) -> str:
    """Return a digest of every file of a rules directory (names and bytes), to tell whether it changed."""
    digest = hashlib.sha256()
    for path in sorted(Path(rules).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(rules).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------- recording

def write_recording(path: Path, requests: list, outcomes: dict, fixtures: dict, seed: int, digest: str) -> None:
    """Write the recording as gzipped JSON, byte for byte the same for the same content."""
    document = {"format": FORMAT, "seed": seed, "rules_digest": digest, "requests": requests,
                "outcomes": outcomes, "fixtures": fixtures}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as out:
        out.write(text.encode())


def read_recording(path: Path = RECORDING) -> dict:
    """Read a recording written by write_recording."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        document = json.load(handle)
    if document.get("format") != FORMAT:
        raise ValueError(f"{path}: format {document.get('format')!r}, expected {FORMAT}")
    return document


# ------------------------------------------------------------------------------------- expected changes

PREDICATE_FIELDS = ("kind", "product", "version", "license", "term_months", "tier", "country", "addon")


@dataclass(frozen=True)
class ExpectedChange:
    """One entry of expected_changes.yaml: a request id, a fixture case id or a predicate, and why it changes."""

    reason: str
    id: str | None = None
    fixture: str | None = None
    match: tuple[tuple[str, Any], ...] = ()

    def covers(self, request_id: str, kind: str | None, data: dict | None) -> bool:
        """Return whether this entry allows the outcome of a request (or fixture case) to change."""
        if self.id is not None or self.fixture is not None:
            return request_id in (self.id, self.fixture)
        if not isinstance(data, dict):
            return False
        configuration = data.get("configuration") or data.get("subscription") or data
        fields = dict(configuration, kind=kind, country=(data.get("partner") or {}).get("country"))
        chosen = {item.get("id") for part in (configuration, data.get("change") or {}, data.get("renewal") or {})
                  if isinstance(part, dict) for item in part.get("addons") or ()}
        # addon: the configuration (or subscription) has it, or the change or renewal adds it
        return all(value in chosen if name == "addon" else fields.get(name) == value for name, value in self.match)

    def __str__(self) -> str:
        what = self.id or self.fixture or ", ".join(f"{name} {value}" for name, value in self.match)
        return f"{what}: {self.reason}"


def read_expected_changes(path: Path = EXPECTED_CHANGES) -> list[ExpectedChange]:
    """Read expected_changes.yaml; raise ValueError naming a malformed entry."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = data.get("changes") or []
    if not isinstance(entries, list):
        raise ValueError(f"{path}: 'changes' is a list")
    changes = []
    for index, entry in enumerate(entries):
        where = f"{path.name}: changes[{index}]"
        if not isinstance(entry, dict) or not str(entry.get("reason") or "").strip():
            raise ValueError(f"{where}: each entry needs a reason")
        keys = [key for key in ("id", "fixture", "match") if key in entry]
        unknown = set(entry) - {"id", "fixture", "match", "reason"}
        if len(keys) != 1 or unknown:
            raise ValueError(f"{where}: give exactly one of id, fixture, match (and reason); got {sorted(entry)}")
        match = entry.get("match") or {}
        if "match" in entry and (not isinstance(match, dict) or not match or set(match) - set(PREDICATE_FIELDS)):
            raise ValueError(f"{where}: match takes some of {', '.join(PREDICATE_FIELDS)}")
        changes.append(ExpectedChange(str(entry["reason"]), entry.get("id"), entry.get("fixture"),
                                      tuple(sorted(match.items()))))
    return changes


# -------------------------------------------------------------------------------------------- comparing

@dataclass(frozen=True)
class Difference:
    """A request (or fixture case) whose outcome is not the recorded one; `allowed` is the entry that permits it."""

    id: str
    kind: str
    request: Any
    before: Any
    after: Any
    allowed: ExpectedChange | None = None


def compare(before: dict[str, dict], after: dict[str, dict], requests: dict[str, tuple[str, dict]] | None = None,
            expected: list[ExpectedChange] = ()) -> list[Difference]:
    """Return the differences between recorded and current outcomes, in corpus order; missing ones included."""
    requests = requests or {}
    position = {key: index for index, key in enumerate(requests)}
    differences = []
    for key in sorted(set(before) | set(after), key=lambda key: (position.get(key, len(position)), key)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        kind, data = requests.get(key, ("fixture", None))
        allowed = next((entry for entry in expected if entry.covers(key, kind, data)), None)
        differences.append(Difference(key, kind, data, old, new, allowed))
    return differences


def _show(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(value, sort_keys=True, default=str)  # YAML dates


def report(differences: list[Difference], total: int, what: str, shown: int = SHOWN) -> str:
    """Word the unexpected differences: their count, and the first few in full (request, before, after)."""
    unexpected = [item for item in differences if item.allowed is None]
    allowed = len(differences) - len(unexpected)
    lines = [f"{len(unexpected)} of {total} {what} changed outcome unexpectedly"
             + (f" ({allowed} more changed as expected_changes.yaml allows)" if allowed else "")]
    by_kind: dict[str, int] = {}
    for item in unexpected:
        by_kind[item.kind] = by_kind.get(item.kind, 0) + 1
    if by_kind:
        lines.append("by kind: " + ", ".join(f"{kind} {count}" for kind, count in sorted(by_kind.items())))
    for item in unexpected[:shown]:
        lines += [f"--- {item.id} ({item.kind})",
                  f"  request: {_show(item.request)}",
                  f"  before:  {_show(item.before)}",
                  f"  after:   {_show(item.after)}"]
    if len(unexpected) > shown:
        lines.append(f"... and {len(unexpected) - shown} more")
    return "\n".join(lines)


def unused(expected: list[ExpectedChange], differences: list[Difference]) -> list[ExpectedChange]:
    """Return the expected changes that allowed no difference (stale entries, or a change that did not happen)."""
    used = {item.allowed for item in differences if item.allowed is not None}
    return [entry for entry in expected if entry not in used]
