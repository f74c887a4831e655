"""Read YAML strictly and keep a map from every node's path to its file:line:col."""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.problem import CompanionError, Location, Problem

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 500_000

STRING_TAG = "tag:yaml.org,2002:str"
# YAML 1.1 reads these plain words as booleans; product managers rarely mean that.
AMBIGUOUS_BOOLEANS = {"yes", "no", "on", "off", "y", "n"}
LEADING_ZERO_NUMBER = re.compile(r"^[-+]?0[0-9_]+$")
# libyaml's composer when PyYAML was built with it (about 20 times faster); nodes and marks are the same.
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Text libyaml reads differently from PyYAML (it accepts tabs PyYAML refuses, and counts columns differently
# after a lone CR, a Unicode line break or a BOM past the start): PyYAML alone reads it, as before.
PYYAML_ONLY = re.compile(r"[\t\x85\u2028\u2029]|\r(?!\n)|(?<=.)\ufeff", re.S)

Path_ = tuple  # a path into the document: keys and list indexes


@dataclass
class Source:
    """A parsed YAML document and where each of its nodes was written."""

    file: str
    data: Any
    locations: dict[tuple, Location] = field(default_factory=dict)
    key_locations: dict[tuple, Location] = field(default_factory=dict)
    text: str = ""
    problems: list[Problem] = field(default_factory=list)  # non-fatal: the data is still usable for schema checks

    def where(self, path: tuple) -> Location:
        """Return the location of the node at path, or of its nearest known ancestor."""
        path = tuple(path)
        while path:
            if path in self.locations:
                return self.locations[path]
            path = path[:-1]
        return self.locations.get((), Location(self.file, 1, 1))

    def where_key(self, path: tuple) -> Location:
        """Return the location of the key that names the node at path."""
        return self.key_locations.get(tuple(path)) or self.where(path)


def location_of(file: str, mark) -> Location:
    """Convert a PyYAML 0-based mark into a 1-based location (the one place this happens)."""
    return Location(file, mark.line + 1, mark.column + 1)


def read_text(path: Path, display: str) -> str:
    """Read a file as UTF-8, refusing huge or undecodable files."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise CompanionError([Problem("file", f"cannot read file: {error.strerror}", Location(display))]) from None
    if size > MAX_FILE_BYTES:
        raise CompanionError([Problem(
            "file-too-large",
            f"file is {size:,} bytes, more than the limit of {MAX_FILE_BYTES:,}",
            Location(display, 1, 1),
            hint="split the catalogue or remove generated content",
        )])
    try:
        raw = path.read_bytes()
    except OSError as error:  # e.g. a directory named like a rule file, or no permission to read it
        raise CompanionError([Problem("file", f"cannot read file: {error.strerror}", Location(display))]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise CompanionError([Problem(
            "encoding", "file is not valid UTF-8", Location(display, line, column), hint="save the file as UTF-8"
        )]) from None


def compose(text: str):
    """Compose the single YAML document in text into nodes (None when it is empty)."""
    # A big catalogue allocates millions of small objects; pausing the cycle collector meanwhile makes
    # composing several times faster (nodes hold no garbage cycles; the loader breaks its own in dispose).
    collecting = gc.isenabled()
    gc.disable()
    try:
        if FAST_LOADER is not yaml.SafeLoader and not PYYAML_ONLY.search(text):
            try:
                return _compose(FAST_LOADER, text)
            except yaml.YAMLError:
                pass  # PyYAML's own wording and marks for the error, the ones we document
        return _compose(yaml.SafeLoader, text)
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
    try:
        root = compose(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = location_of(display, mark) if mark else Location(display, 1, 1)
        message = error.problem or str(error)
        hint = "indent with spaces, not tabs" if "\t" in message or "'\\t'" in message else ""
        raise CompanionError([Problem("yaml-syntax", _clean(message, error), where, hint=hint)]) from None
    except yaml.reader.ReaderError as error:  # a control character; PyYAML gives its offset, not a mark
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        raise CompanionError([Problem("yaml-syntax", f"unacceptable character #x{error.character:04x}: {error.reason}",
                                      Location(display, line, column), hint="remove it")]) from None
    except yaml.YAMLError as error:
        raise CompanionError([Problem("yaml-syntax", str(error), Location(display, 1, 1))]) from None
    builder = _Builder(display)
    collecting = gc.isenabled()
    gc.disable()  # as in compose: building allocates a value and a location per node
    try:
        data = builder.build(root, ()) if root is not None else None
    finally:
        if collecting:
            gc.enable()
    return Source(display, data, builder.locations, builder.key_locations, text, builder.problems)


def load_yaml(path: Path, display: str | None = None) -> Source:
    """Read and parse one YAML file."""
    display = display or str(path)
    return parse_yaml(read_text(path, display), display)


def _clean(message: str, error: yaml.MarkedYAMLError) -> str:
    """Make PyYAML's messages read as one sentence."""
    if error.context and error.context not in message:
        message = f"{error.context}: {message}"
    return message.replace("\n", " ")


class _Builder:
    """Turn composed YAML nodes into plain Python values, recording locations and problems."""

    def __init__(self, file: str):
        self.file = file
        self.locations: dict[tuple, Location] = {}
        self.key_locations: dict[tuple, Location] = {}
        self.problems: list[Problem] = []
        self.constructor = yaml.SafeLoader("")
        self.seen: set[int] = set()
        self.count = 0

    def build(self, node: yaml.Node, path: tuple) -> Any:
        """Build the value of node at path."""
        self.count += 1
        if self.count > MAX_NODES:
            if self.count == MAX_NODES + 1:
                self.problems.append(Problem("too-large", f"more than {MAX_NODES:,} YAML nodes", self._at(node)))
            return None
        at = self.locations[path] = location_of(self.file, node.start_mark)
        if id(node) in self.seen:
            # An alias re-uses a node; expanding aliases invites exponential blow-ups.
            self.problems.append(Problem(
                "yaml-alias", "anchors and aliases are not supported", at, hint="write the values out"
            ))
            return None
        self.seen.add(id(node))  # scalars too: an alias to `&name Foo` is as unsupported as one to a mapping
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (index,)) for index, item in enumerate(node.value)]
        if node.tag == STRING_TAG:
            return node.value  # most scalars are text: no need for the general constructor
        return self._scalar(node)

    def _at(self, node: yaml.Node) -> Location:
        return location_of(self.file, node.start_mark)

    def _mapping(self, node: yaml.MappingNode, path: tuple) -> dict:
        result: dict = {}
        key_locations = self.key_locations
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(Problem(
                    "yaml-alias", "merge keys (<<) are not supported", self._at(key_node), hint="write the values out"
                ))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem("yaml-key", "mapping keys must be plain words", self._at(key_node)))
                continue
            key = key_node.value
            key_path = path + (key,)
            if key_path in key_locations:
                self.problems.append(Problem(
                    "duplicate-key",
                    f"key '{key}' appears twice in this mapping (first at line {key_locations[key_path].line})",
                    location_of(self.file, key_node.start_mark),
                    hint="remove one of them; YAML would silently keep only the last",
                ))
                continue
            key_locations[key_path] = location_of(self.file, key_node.start_mark)
            result[key] = self.build(value_node, key_path)
        return result

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
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as error:
            self.problems.append(Problem("yaml-syntax", error.problem or str(error), self._at(node)))
            return None
        except ValueError as error:  # e.g. an impossible date such as 2025-02-30
            self.problems.append(Problem("yaml-value", f"'{node.value}' is not a valid value: {error}", self._at(node)))
            return None
