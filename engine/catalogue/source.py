"""Read YAML strictly and keep a map from every node's path to its file:line:col."""

from __future__ import annotations

import datetime as dt

import os
import gc
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from engine.problem import CompanionError, Location, Problem

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 500_000
MAX_DEPTH = 100  # levels of nesting; rule files use about six

STRING_TAG = "tag:yaml.org,2002:str"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
MERGE_TAG = "tag:yaml.org,2002:merge"
# YAML 1.1 reads these plain words as booleans; product managers rarely mean that.
AMBIGUOUS_BOOLEANS = {"yes", "no", "on", "off", "y", "n"}
LEADING_ZERO_NUMBER = re.compile(r"^[-+]?0[0-9_]+$")
SURROGATE = re.compile("[\ud800-\udfff]")
UNSHOWABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")  # tab, LF and CR are fine
UNUSUAL_NUMBER = re.compile(r"[:_]|^\+|^-?0[xXbB]")  # base 60, digit groups, a plus sign, hex or binary
MAX_NUMBER_LENGTH = 20  # digits and signs; Python refuses to read integers of over 4,300 digits anyway
# libyaml's composer when PyYAML was built with it (about 20 times faster); nodes and marks are the same.
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def pyyaml_only(text: str) -> bool:
    """Tell whether libyaml would read text differently from PyYAML, which then reads it alone, as before."""
    # libyaml accepts tabs PyYAML refuses, and counts columns differently after a lone CR, a Unicode line
    # break or a byte order mark past the start. Plain substring tests: a regex took 35 ms on 1 MB.
    return (any(character in text for character in "\t\x85\u2028\u2029") or "\ufeff" in text[1:]
            or text.count("\r") != text.count("\r\n"))


@dataclass
class Source:
    """A parsed YAML document and where each of its nodes was written."""

    file: str
    data: Any
    locations: Mapping[tuple, Location] = field(default_factory=dict)
    key_locations: Mapping[tuple, Location] = field(default_factory=dict)
    text: str = ""
    problems: list[Problem] = field(default_factory=list)  # non-fatal: the data is still usable for schema checks

    def where(self, path: tuple) -> Location:
        """Return the location of the node at path, or of its nearest known ancestor."""
        path = tuple(path)
        while path:
            found = self.locations.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.locations.get((), Location(self.file, 1, 1))

    def where_key(self, path: tuple) -> Location:
        """Return the location of the key that names the node at path."""
        return self.key_locations.get(tuple(path)) or self.where(path)

    def within(self, path: tuple, data: Any) -> Source:
        """Return the source of the node at path, holding data, located as before (a request inside a fixture)."""
        return Source(self.file, data, _within(self.locations, path), _within(self.key_locations, path))


def _within(locations: Mapping[tuple, Location], path: tuple) -> Mapping[tuple, Location]:
    if isinstance(locations, Locations):
        return locations.within(path)
    return {inner[len(path):]: where for inner, where in locations.items() if inner[:len(path)] == path}


ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def dates_as_text(source: Source) -> Source:
    """Return source with YAML dates written as ISO text, so that YAML and JSON validate alike."""
    if source.text and not ISO_DAY.search(source.text):
        return source  # walking a large catalogue for nothing costs it tens of milliseconds
    return replace(source, data=_dates_as_text(source.data))


def _dates_as_text(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _dates_as_text(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_dates_as_text(value) for value in data]
    if isinstance(data, (dt.date, dt.datetime)):
        return data.isoformat()
    return data


def location_of(file: str, mark) -> Location:
    """Convert a PyYAML 0-based mark into a 1-based location (the one place this happens)."""
    return Location(file, mark.line + 1, mark.column + 1)


def read_text(path: Path, display: str) -> str:
    """Read a file as UTF-8, refusing huge or undecodable files."""
    try:
        status = path.stat()
    except OSError as error:
        raise CompanionError([Problem("file", f"cannot read file: {error.strerror}", Location(display))]) from None
    if not (stat.S_ISREG(status.st_mode) or stat.S_ISDIR(status.st_mode)):
        # /dev/zero never ends and a pipe may never answer: only files are read (a directory fails below).
        raise CompanionError([Problem("file", "cannot read file: not a regular file (a device, pipe or socket)",
                                      Location(display), hint="give the path of a YAML file")])
    if status.st_size > MAX_FILE_BYTES:
        raise _too_large(status.st_size, display)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)  # the file may have grown since stat
    except OSError as error:  # e.g. a directory named like a rule file, or no permission to read it
        raise CompanionError([Problem("file", f"cannot read file: {error.strerror}", Location(display))]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise _too_large(len(raw), display)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise CompanionError([Problem(
            "encoding", "file is not valid UTF-8", Location(display, line, column), hint="save the file as UTF-8"
        )]) from None


def _too_large(size: int, display: str) -> CompanionError:
    return CompanionError([Problem(
        "file-too-large",
        f"file is {size:,} bytes, more than the limit of {MAX_FILE_BYTES:,}",
        Location(display, 1, 1),
        hint="split the catalogue or remove generated content",
    )])


def compose(text: str):
    """Compose the single YAML document in text into nodes (None when it is empty)."""
    # A big catalogue allocates millions of small objects; pausing the cycle collector meanwhile makes
    # composing several times faster (nodes hold no garbage cycles; the loader breaks its own in dispose).
    collecting = gc.isenabled()
    gc.disable()
    try:
        if FAST_LOADER is not yaml.SafeLoader and not pyyaml_only(text):
            try:
                return _compose(FAST_LOADER, text)
            except yaml.YAMLError:
                pass  # PyYAML's own wording and marks for the error, the ones we document
        try:
            return _compose(yaml.SafeLoader, text)
        except RecursionError:
            # PyYAML's composer recurses once per level of nesting; libyaml stops at 1,000 levels with a mark.
            if FAST_LOADER is yaml.SafeLoader:
                raise yaml.YAMLError(f"nesting deeper than {MAX_DEPTH} levels") from None
            return _compose(FAST_LOADER, text)  # a root for the builder to report the depth at its line
    finally:
        if collecting:
            gc.enable()


def _compose(loader_class, text: str):
    loader = loader_class(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def parse_yaml(text: str, display: str) -> Source:
    """Parse one YAML document strictly; raise CompanionError on a syntax error, keep other problems."""
    pasted = None if text.isascii() else SURROGATE.search(text)  # text read from a file never holds one
    if pasted:
        raise CompanionError([_unshowable(pasted.group(), _location_at(text, pasted.start(), display))])
    try:
        root = compose(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = location_of(display, mark) if mark else Location(display, 1, 1)
        message = error.problem or str(error)
        hint = "indent with spaces, not tabs" if "\t" in message or "'\\t'" in message else ""
        raise CompanionError([Problem("yaml-syntax", _clean(message, error), where, hint=hint)]) from None
    except yaml.reader.ReaderError as error:  # a control character; PyYAML gives its offset, not a mark
        raise CompanionError([Problem("yaml-syntax", f"unacceptable character #x{error.character:04x}: {error.reason}",
                                      _location_at(text, error.position, display), hint="remove it")]) from None
    except yaml.YAMLError as error:
        raise CompanionError([Problem("yaml-syntax", str(error), Location(display, 1, 1))]) from None
    if root is None:
        return Source(display, None, {}, {}, text, [])
    builder = _Builder(display, anchors="&" in text)
    collecting = gc.isenabled()
    gc.disable()  # as in compose: building allocates a value and a position per node
    try:
        data, inner = builder.build(root)
    finally:
        if collecting:
            gc.enable()
    table = PositionTable(display, (None, None, root.start_mark.line, root.start_mark.column, inner))
    source = Source(display, data, table.values, table.keys, text, builder.problems)
    if "\\" in text:  # only an escape in a quoted string ("\\ud800", "\\e") can make one now
        source.problems.extend(_unshowable_text(source))
    return source


def _unshowable_text(source: Source) -> list[Problem]:
    """Find text holding a control character or half a UTF-16 pair: it garbles terminals, CSV files and pages."""
    problems = []
    stack: list[tuple[tuple, Any]] = [((), source.data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if found := UNSHOWABLE.search(key):
                    problems.append(_unshowable(found.group(), source.where_key(path + (key,))))
                stack.append((path + (key,), item))
        elif isinstance(value, list):
            stack.extend((path + (index,), item) for index, item in enumerate(value))
        elif isinstance(value, str) and (found := UNSHOWABLE.search(value)):
            problems.append(_unshowable(found.group(), source.where(path)))
    return sorted(problems, key=lambda problem: (problem.where.line, problem.where.column))


def _unshowable(character: str, where: Location) -> Problem:
    if SURROGATE.match(character):
        return Problem("bad-text", "text holds half of a UTF-16 surrogate pair, which cannot be shown or saved",
                       where, hint="write the character itself (an escape beyond U+FFFF is \\U and 8 digits)")
    return Problem("bad-text", f"text holds the control character U+{ord(character):04X}", where,
                   hint="remove it; line breaks and tabs are the only control characters text may hold")


def _location_at(text: str, offset: int, display: str) -> Location:
    """Return the 1-based line and column of a character offset in text."""
    line = text.count("\n", 0, offset) + 1
    return Location(display, line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


def nesting_depth(data: Any) -> int:
    """Return how many levels of mappings and lists data nests (0 for a scalar), walked without recursion."""
    deepest = 0
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest


def no_json_constant(name: str):
    """Refuse NaN and Infinity, which json.loads reads by default and JSON does not have (parse_constant)."""
    raise ValueError(f"{name} is not a JSON number")


def load_yaml(path: Path, display: str | None = None) -> Source:
    """Read and parse one YAML file."""
    display = display or str(path)
    return parse_yaml(read_text(path, display), display)


def _clean(message: str, error: yaml.MarkedYAMLError) -> str:
    """Make PyYAML's messages read as one sentence."""
    if error.context and error.context not in message:
        message = f"{error.context}: {message}"
    return message.replace("\n", " ")


# What the builder records of each node instead of keeping the node: (key line, key column, line, column,
# inner), 0-based as PyYAML's marks; inner is a dict of such entries by key, a list by index, or None. Small
# tuples of numbers cost little memory and no garbage-collector time, where a node tree costs both.
UNRECORDED = (None, None, None, None, None)  # a node past the node limit: no value, no location


class _Builder:
    """Turn composed YAML nodes into plain Python values, the position of each node, and problems."""

    def __init__(self, file: str, anchors: bool = True):
        self.file = file
        self.problems: list[Problem] = []
        self.constructor = yaml.SafeLoader("")
        self.count = 0
        self.depth = 0
        # An alias re-uses a node, and only a text with an anchor (`&`) can hold one; expanding aliases invites
        # exponential blow-ups, so they are refused.
        self.seen: set[int] | None = set() if anchors else None

    def build(self, node: yaml.Node) -> tuple[Any, Any]:
        """Return the value of node and the entries inside it (None for a scalar, UNRECORDED past the limit)."""
        self.count += 1
        if self.count > MAX_NODES:
            if self.count == MAX_NODES + 1:
                self.problems.append(Problem("too-large", f"more than {MAX_NODES:,} YAML nodes", self._at(node)))
            return None, UNRECORDED
        if self.seen is not None:
            if id(node) in self.seen:
                self.problems.append(Problem(
                    "yaml-alias", "anchors and aliases are not supported", self._at(node), hint="write the values out"
                ))
                return None, None
            self.seen.add(id(node))  # scalars too: an alias to `&name Foo` is as unsupported as one to a mapping
        if isinstance(node, yaml.MappingNode):
            return self._nested(self._mapping, node)
        if isinstance(node, yaml.SequenceNode):
            return self._nested(self._sequence, node)
        value = node.value
        if node.tag == STRING_TAG:
            return value, None  # most scalars are text: no need for the general constructor
        if node.tag == INT_TAG and value.isdigit() and (value[0] != "0" or value == "0") \
                and len(value) <= MAX_NUMBER_LENGTH:
            return int(value), None  # a plain decimal count or term, as the constructor reads it, only faster
        return self._scalar(node), None

    def _nested(self, build, node: yaml.Node) -> tuple[Any, Any]:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                self.problems.append(Problem("too-deep", f"nested more than {MAX_DEPTH} levels deep", self._at(node),
                                             hint="rule files and requests need a few levels"))
                return None, None
            return build(node)
        finally:
            self.depth -= 1

    def _mapping(self, node: yaml.MappingNode) -> tuple[dict, dict]:
        result: dict = {}
        entries: dict = {}
        for key_node, value_node in node.value:
            if not self._usable_key(key_node):
                continue
            key = key_node.value
            if key in result:
                self._duplicate(node, key_node)
                continue
            key_mark, mark = key_node.start_mark, value_node.start_mark
            if value_node.tag == STRING_TAG and isinstance(value_node, yaml.ScalarNode) and self.seen is None \
                    and self.count < MAX_NODES:
                self.count += 1  # text, the commonest value, taken here without a call
                result[key] = value_node.value
                entries[key] = (key_mark.line, key_mark.column, mark.line, mark.column, None)
                continue
            result[key], inner = self.build(value_node)
            entries[key] = (key_mark.line, key_mark.column) + (
                UNRECORDED[2:] if inner is UNRECORDED else (mark.line, mark.column, inner))
        return result, entries

    def _sequence(self, node: yaml.SequenceNode) -> tuple[list, list]:
        result: list = []
        entries: list = []
        for item in node.value:
            value, inner = self.build(item)
            result.append(value)
            mark = item.start_mark
            entries.append(UNRECORDED if inner is UNRECORDED else (None, None, mark.line, mark.column, inner))
        return result, entries

    def _at(self, node: yaml.Node) -> Location:
        return location_of(self.file, node.start_mark)

    def _usable_key(self, key_node: yaml.Node) -> bool:
        """Tell whether a mapping key is a plain scalar; record a problem when it is not."""
        if key_node.tag == MERGE_TAG:
            self.problems.append(Problem(
                "yaml-alias", "merge keys (<<) are not supported", self._at(key_node), hint="write the values out"
            ))
            return False
        if not isinstance(key_node, yaml.ScalarNode):
            self.problems.append(Problem("yaml-key", "mapping keys must be plain words", self._at(key_node)))
            return False
        return True

    def _duplicate(self, node: yaml.MappingNode, key_node: yaml.ScalarNode) -> None:
        key = key_node.value
        first = next(other for other, _ in node.value if isinstance(other, yaml.ScalarNode)
                     and other.tag != MERGE_TAG and other.value == key)
        self.problems.append(Problem(
            "duplicate-key",
            f"key '{key}' appears twice in this mapping (first at line {first.start_mark.line + 1})",
            self._at(key_node),
            hint="remove one of them; YAML would silently keep only the last",
        ))

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        plain = not node.style  # None from PyYAML's composer, '' from libyaml's
        if plain and node.tag == "tag:yaml.org,2002:bool" and node.value.lower() in AMBIGUOUS_BOOLEANS:
            self.problems.append(Problem(
                "ambiguous-value",
                f"'{node.value}' is read as a boolean",
                self._at(node),
                hint=f"write true or false, or quote it (\"{node.value}\") if you mean text",
            ))
        if plain and node.tag == "tag:yaml.org,2002:int" and LEADING_ZERO_NUMBER.match(node.value):
            self.problems.append(Problem(
                "ambiguous-value",
                f"'{node.value}' has a leading zero and is read as an octal number",
                self._at(node),
                hint=f"quote it (\"{node.value}\") if it is an id or a version, or drop the zero",
            ))
        elif plain and node.tag in (INT_TAG, FLOAT_TAG):
            if len(node.value) > MAX_NUMBER_LENGTH:
                self.problems.append(Problem("yaml-value", f"number too long ({len(node.value):,} characters)",
                                             self._at(node), hint=f"numbers here need at most {MAX_NUMBER_LENGTH}"))
                return None
            if UNUSUAL_NUMBER.search(node.value):
                # YAML 1.1 reads 2:30 as 150 (base 60), 0x96 and 0b10010110 as 150, 1_50 as 150.
                value = self.constructor.construct_object(node, deep=True)
                self.problems.append(Problem(
                    "ambiguous-value", f"'{node.value}' is read as the number {value}", self._at(node),
                    hint=f"write {value}, or quote it (\"{node.value}\") if you mean text"))
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as error:
            self.problems.append(Problem("yaml-syntax", error.problem or str(error), self._at(node)))
            return None
        except ValueError as error:  # e.g. an impossible date such as 2025-02-30
            self.problems.append(Problem("yaml-value", f"'{node.value}' is not a valid value: {error}", self._at(node)))
            return None


class PositionTable:
    """Where each node of a document, and each key, is written: found along a path through the entries."""

    def __init__(self, file: str, root: tuple):
        self.file = file
        self.root = root
        self.tables: tuple[dict, dict] | None = None
        self.keys = Locations(self, 0)
        self.values = Locations(self, 2)

    def entry(self, path: tuple) -> tuple | None:
        """Return the entry at path, or None when no node is there."""
        entry = self.root
        for step in path:
            inner = entry[4]
            if type(inner) is dict:
                entry = inner.get(step)
                if entry is None:
                    return None
            elif type(inner) is list and type(step) is int and 0 <= step < len(inner):
                entry = inner[step]
            else:
                return None
        return entry

    def within(self, path: tuple) -> PositionTable:
        """Return the table of the node at path, its paths relative to it."""
        return PositionTable(self.file, self.entry(path) or UNRECORDED)

    def table(self, part: int) -> dict[tuple, Location]:
        """Return every location by path, in document order (for the rare reader that lists them all)."""
        if self.tables is None:
            keys: dict[tuple, Location] = {}
            values: dict[tuple, Location] = {}
            stack = [((), self.root)]
            while stack:
                path, (key_line, key_column, line, column, inner) = stack.pop()
                if key_line is not None:
                    keys[path] = Location(self.file, key_line + 1, key_column + 1)
                if line is not None:
                    values[path] = Location(self.file, line + 1, column + 1)
                children = inner.items() if type(inner) is dict else enumerate(inner or ())
                stack.extend(reversed([(path + (step,), child) for step, child in children]))
            self.tables = (keys, values)
        return self.tables[part // 2]


class Locations(Mapping):
    """The locations of a document's nodes (part 2) or of their keys (part 0), by path."""

    __slots__ = ("positions", "part")

    def __init__(self, positions: PositionTable, part: int):
        self.positions = positions
        self.part = part

    def __getitem__(self, path: tuple) -> Location:
        entry = self.positions.entry(path)
        if entry is None or entry[self.part] is None:
            raise KeyError(path)
        return Location(self.positions.file, entry[self.part] + 1, entry[self.part + 1] + 1)

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.positions.table(self.part))

    def items(self):
        """Every (path, location), from the full table rather than path by path."""
        return self.positions.table(self.part).items()

    def within(self, path: tuple) -> Locations:
        """Return the locations inside the node at path, by paths relative to it."""
        return Locations(self.positions.within(path), self.part)

    def __len__(self) -> int:
        return len(self.positions.table(self.part))


def display_path(path: Path) -> str:
    """Show a path relative to the working directory when it is below it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)
