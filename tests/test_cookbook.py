"""docs/rules.md's cookbook says what each edit really does: every recipe, applied to a copy of rules/, prints
what the doc shows.

A recipe is a fenced yaml block whose first line names it and the edit:

    # recipe 3: rules/constraints.yaml, insert after "constraints:"
    # recipe 5: rules/tiers.yaml, replace "      - {from: essential, to: advanced-plus}"
    # recipe 6: rules/vouchers.yaml, append

(the anchor line, compared without its surrounding spaces, must occur once in the file), optionally followed by a
yaml block starting `# request.yaml` (written next to the copied rules), then a console block of `$ companion ...`
commands and their output. Each command runs in that directory with `--rules rules` added; the rules version
hash is the only part not compared. `python tests/test_cookbook.py --write` rewrites the console blocks from
real runs (review the diff).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.catalogue.conditions import FACTS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "rules.md"
RULES = ROOT / "rules"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
RECIPE = re.compile(r'^# recipe (\d+): rules/(\S+), (?:(insert after|replace) "(.*)"|(append))$')
HASH = re.compile(r"rules version [0-9a-f]{16}")
COMPANION = Path(sys.executable).with_name("companion")


@dataclass
class Recipe:
    """One cookbook entry: the edits to rules/, the request, and each command with the output shown."""

    number: int
    edits: list[tuple[str, str, str, str]] = field(default_factory=list)  # file, how, anchor, text
    request: str | None = None
    console: str = ""
    console_span: tuple[int, int] = (0, 0)  # where the console block's body is in the doc


def recipes(doc: str) -> list[Recipe]:
    """Read every recipe of the doc, in order."""
    found: dict[int, Recipe] = {}
    current = None
    for match in FENCE.finditer(doc):
        language, body = match.group(1), match.group(2)
        first = body.split("\n", 1)[0]
        head = RECIPE.match(first)
        if language == "yaml" and head:
            number = int(head.group(1))
            current = found.setdefault(number, Recipe(number))
            how = head.group(3) or head.group(5)
            current.edits.append((head.group(2), how, head.group(4) or "", body.split("\n", 1)[1]))
        elif language == "yaml" and first == "# request.yaml" and current:
            current.request = body.split("\n", 1)[1]
        elif language == "console" and current and not current.console:
            current.console = body
            current.console_span = match.span(2)
    return list(found.values())


def apply(rules: Path, file: str, how: str, anchor: str, text: str) -> None:
    """Edit one rule file of a copied rules directory as a recipe says."""
    path = rules / file
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    if how == "append":
        lines.append(text)
    else:
        spots = [index for index, line in enumerate(lines) if line.strip() == anchor.strip()]
        assert len(spots) == 1, f"{file}: the anchor {anchor!r} occurs {len(spots)} times"
        spot = spots[0]
        lines[spot:spot + 1] = [lines[spot], text] if how == "insert after" else [text]
    path.write_text("".join(lines), encoding="utf-8")


def run(recipe: Recipe, directory: Path) -> str:
    """Apply a recipe to a fresh copy of rules/ in DIRECTORY, run its commands there, return the console text."""
    rules = directory / "rules"
    shutil.copytree(RULES, rules)
    for edit in recipe.edits:
        apply(rules, *edit)
    if recipe.request is not None:
        (directory / "request.yaml").write_text(recipe.request, encoding="utf-8")
    out = []
    for command in [line[2:] for line in recipe.console.splitlines() if line.startswith("$ ")]:
        words = shlex.split(command)
        assert words[0] == "companion", command
        result = subprocess.run([str(COMPANION), *words[1:], "--rules", "rules"], cwd=directory, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "120"})
        out.append(f"$ {command}\n{result.stdout}")
    return "".join(out)


def normal(text: str) -> str:
    return HASH.sub("rules version <hash>", text)


DOC_TEXT = DOC.read_text(encoding="utf-8")
RECIPES = recipes(DOC_TEXT)


def test_the_cookbook_has_at_least_ten_recipes_each_with_its_output():
    assert len(RECIPES) >= 10
    assert [recipe.number for recipe in RECIPES] == list(range(1, len(RECIPES) + 1))
    for recipe in RECIPES:
        assert recipe.edits and recipe.console.startswith("$ companion "), recipe.number


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda recipe: f"recipe-{recipe.number}")
def test_each_recipe_prints_what_the_doc_shows(recipe, tmp_path):
    assert normal(run(recipe, tmp_path)) == normal(recipe.console)


def test_the_facts_table_names_every_fact():
    table = DOC_TEXT.split("### Facts", 1)[1].split("\n\n", 2)[1]
    named = re.findall(r"^\| `([^`]+)` \|", table, re.M)
    assert set(FACTS) | {"addon.<id>.quantity"} == set(named)


def test_a_wrong_output_is_noticed(tmp_path):
    recipe = RECIPES[0]
    shown = recipe.console.replace("INVALID", "VALID", 1) if "INVALID" in recipe.console else recipe.console + "x"
    assert normal(run(recipe, tmp_path)) != normal(shown)


def write(doc: Path = DOC) -> None:
    """Rewrite each recipe's console block from a real run."""
    text = doc.read_text(encoding="utf-8")
    for recipe in sorted(recipes(text), key=lambda item: item.console_span, reverse=True):
        with tempfile.TemporaryDirectory() as directory:
            start, end = recipe.console_span
            text = text[:start] + run(recipe, Path(directory)) + text[end:]
    doc.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        sys.exit("usage: python tests/test_cookbook.py --write")
