"""One error type for every stage: a problem with a location, a code, a rule id and a hint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple


class Location(NamedTuple):
    """A 1-based position in a source file (a named tuple: loading a catalogue makes hundreds of thousands)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """Something wrong, where it is, and what to do about it."""

    code: str
    message: str
    where: Location = field(default_factory=lambda: Location(""))
    rule: str = ""
    hint: str = ""
    severity: str = "error"
    path: str = ""  # JSON path into a request, e.g. configuration.addons[1].id

    def sort_key(self) -> tuple:
        """Order problems by file, line and column; a stable sort keeps discovery order within one spot."""
        return (self.where.file, self.where.line, self.where.column)

    def render(self) -> str:
        """Format as `file:line:col: severity[code] rule: message; hint`."""
        text = f"{self.where}: {self.severity}[{self.code}]"
        if self.rule:
            text += f" {self.rule}"
        if self.path:
            text += f" at {self.path}"
        text += f": {self.message}"
        if self.hint:
            text += f"; {self.hint}"
        return text

    def to_json(self) -> dict:
        """Return the problem as a JSON-ready dict."""
        data = asdict(self)
        data["where"] = str(self.where)
        data.update(file=self.where.file, line=self.where.line, column=self.where.column)
        return data


class CompanionError(Exception):
    """Raised at a stage boundary with every problem found, sorted by location."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=Problem.sort_key)
        super().__init__("\n".join(problem.render() for problem in self.problems))

    @property
    def errors(self) -> list[Problem]:
        """Return the problems of severity error."""
        return [problem for problem in self.problems if problem.severity == "error"]


def did_you_mean(word: str, choices) -> str:
    """Return a `did you mean 'x'?` suggestion, or an empty string."""
    import difflib

    matches = difflib.get_close_matches(str(word), [str(choice) for choice in choices], n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else ""
