"""Property: whatever is done to the shipped rules, load_catalog loads them or reports located problems.

Hypothesis mutates the shipped rule files at random (delete a key, change a value to another type or to a
hostile string, duplicate a list item, swap two ids, insert junk text at an offset, insert bytes that are not
UTF-8, truncate, remove the file). load_catalog must return a Catalog or raise CompanionError whose every
problem has a file, a code and, when it is about the file's content, a line and column inside the file.
Anything else (a KeyError, a TypeError, a RecursionError...) is a bug. With CI set, the examples are fixed.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.catalogue.load import load_catalog
from engine.catalogue.model import Catalog
from engine.problem import CompanionError

RULES = Path(__file__).resolve().parent.parent / "rules"
NAMES = sorted(path.name for path in RULES.glob("*.yaml"))
TEXTS = {name: (RULES / name).read_text(encoding="utf-8") for name in NAMES}
DATA = {name: yaml.safe_load(text) for name, text in TEXTS.items()}
# libyaml's dumper when present: the mutation machinery should not dominate the run time.
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Problems about a whole file (or directory) rather than a spot in it.
WHOLE_FILE = {"missing-file", "unknown-file", "file", "no-rules"}

settings.register_profile("companion-dev", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("companion-ci", settings.get_profile("companion-dev"), derandomize=True, database=None)
PROFILE = settings.get_profile("companion-ci" if os.environ.get("CI") else "companion-dev")

HOSTILE = [
    "", " ", "yes", "no", "on", "off", "010", "1.10", "7.0", "null", "~", "true", "&a", "*a", "<<",
    "!!python/object/apply:os.system ['true']", "!!binary aGk=", "{", "}", "[", "]", "- x", "a: b", "? x",
    "\t", "\x00", "\x07", "\ufeff", "\u2028", "\u202e", "'", '"', "#", "%YAML 1.1", "@", "`", "|", ">",
    "x" * 3000, "Ω≈ç√ 漢字", "../../etc/passwd", "${HOME}", "<script>", "\\", "\n", "---", "...",
    "advnced", "epo", "essential", "EPO-ESS-SUB-1Y", "subscription-12", "perpetual", "-1", "1e400", "2025-02-30",
]
JUNK = ["\t", ":", ": ", "- ", "-", "{", "}", "[", "]", ",", "&x ", "*x", "*x\n", "---\n", "...\n", "%TAG ! x\n",
        "!!str ", "!!python/name:os.system ", "? ", "<<: *x\n", "#", "'", '"', "|\n", ">-\n", "\r", "\r\n",
        "\x85", "\u2028", "\ufeff", "\x00", "\n  - ", "\n    ", "  ", "@", "`", "%", "!", "yes", "010", "1.10"]

values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(), st.sampled_from(HOSTILE),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.lists(st.sampled_from(HOSTILE), max_size=3),
    st.dictionaries(st.sampled_from(["id", "name", "x", "product", "from", "to"]), st.sampled_from(HOSTILE), max_size=3),
)


def paths_in(data, path=()) -> list[tuple]:
    """Return the path of every node below data (mapping keys and list indexes)."""
    found = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found.append(path + (key,))
        found += paths_in(value, path + (key,))
    return found


def parent_of(data, path: tuple):
    """Return the container that holds the node at path."""
    for key in path[:-1]:
        data = data[key]
    return data


def mutate_data(draw, data) -> None:
    """Apply one structural mutation to parsed YAML, in place."""
    paths = paths_in(data)
    if not paths:
        return
    kind = draw(st.sampled_from(["delete", "change", "duplicate", "swap"]))
    if kind == "swap":
        ids = [path for path in paths if path[-1] in ("id", "product", "from", "to")] or paths
        first, second = draw(st.sampled_from(ids)), draw(st.sampled_from(ids))
        one, other = parent_of(data, first), parent_of(data, second)
        try:
            one[first[-1]], other[second[-1]] = other[second[-1]], one[first[-1]]
        except (KeyError, IndexError):  # a node inside the other one's subtree moved; keep what happened
            pass
        return
    path = draw(st.sampled_from(paths))
    holder = parent_of(data, path)
    if kind == "delete":
        del holder[path[-1]]
    elif kind == "change":
        holder[path[-1]] = draw(values)
    elif kind == "duplicate":
        lists = [p for p in paths if isinstance(parent_of(data, p), list)]
        if lists:
            path = draw(st.sampled_from(lists))
            holder = parent_of(data, path)
            holder.insert(path[-1], copy.deepcopy(holder[path[-1]]))


@st.composite
def mutated_rules(draw) -> dict[str, bytes | None]:
    """Return the shipped rule files with one or two mutations: name -> content (None: removed)."""
    files: dict[str, bytes | None] = {name: text.encode("utf-8") for name, text in TEXTS.items()}
    name = draw(st.sampled_from(NAMES))
    text = TEXTS[name]
    if draw(st.booleans()):
        data = copy.deepcopy(DATA[name])
        mutate_data(draw, data)
        text = yaml.dump(data, Dumper=DUMPER, sort_keys=False, allow_unicode=True,
                         width=draw(st.sampled_from([80, 10**6])))
    raw = text.encode("utf-8")
    kind = draw(st.sampled_from(["none", "junk", "junk", "bytes", "truncate", "remove"]))
    offset = draw(st.integers(0, len(raw)))
    if kind == "junk":
        junk = draw(st.one_of(st.sampled_from(JUNK), st.text(max_size=8)))
        raw = raw[:offset] + junk.encode("utf-8", "surrogatepass") + raw[offset:]
    elif kind == "bytes":
        raw = raw[:offset] + draw(st.binary(min_size=1, max_size=4)) + raw[offset:]
    elif kind == "truncate":
        raw = raw[:offset]
    files[name] = None if kind == "remove" else raw
    return files


@PROFILE
@given(mutated_rules())
def test_loader_loads_or_reports_located_problems(files):
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        for name, content in files.items():
            if content is not None:
                (directory / name).write_bytes(content)
        try:
            catalog = load_catalog(directory)
        except CompanionError as error:
            assert error.problems
            for problem in error.problems:
                assert problem.code and problem.where.file, problem
                name = Path(problem.where.file).name
                assert name in files, problem
                if problem.code not in WHOLE_FILE:
                    # YAML breaks lines at CR, LF, CRLF and a few Unicode breaks; so does splitlines (and more).
                    lines = (files[name] or b"").decode("utf-8", "replace").splitlines(keepends=True)
                    assert 1 <= problem.where.line <= len(lines) + 1, problem.render()
                    assert problem.where.column >= 1, problem.render()
                json.dumps(problem.to_json())
                problem.render()
        else:
            assert isinstance(catalog, Catalog)
