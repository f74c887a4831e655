"""One error type for every stage: a problem with a location, a code, a rule id and a hint.

And the one table of what a refusal means to whoever asked (`outcome`): the command line's exit status and
the web's HTTP status are both read from it (`exit_status`, `http_status`).
"""

from __future__ import annotations

import difflib
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


def refusal(code: str, message: str, hint: str = "", path: str = "") -> CompanionError:
    """Return the error of one refusal without a place in a file (the locker, an account, a licence file)."""
    return CompanionError([Problem(code=code, message=message, hint=hint, path=path)])


# A command's exit status: done (or every case passed), refused (or a case failed), bad input.
EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT = 0, 1, 2
# outcome -> (exit status of a command, HTTP status of the web app and the API)
OUTCOMES = {
    "bad-request": (EXIT_BAD_INPUT, 400),  # the request itself is unreadable (a malformed header)
    "bad-input": (EXIT_BAD_INPUT, 422),  # something given is wrong: fix it and send it again
    "refused": (EXIT_REFUSED, 422),  # well formed, but the rules or the locker say no
    "not-found": (EXIT_REFUSED, 404),  # it names nothing the user has
    "forbidden": (EXIT_REFUSED, 403),  # it is someone else's, or not for this user
    "conflict": (EXIT_REFUSED, 409),  # already done, or changed meanwhile
    "unavailable": (EXIT_REFUSED, 503),  # this server is not set up for it
}
# Codes whose outcome is not `refused`, the default. When problems differ, the first outcome listed wins.
OUTCOME_OF = {
    **dict.fromkeys(("forbidden", "not-owner", "template-not-offered", "no-account", "bad-account"), "forbidden"),
    **dict.fromkeys(("no-cart-url", "bad-cart-url"), "unavailable"),
    **dict.fromkeys(("unknown-code", "unknown-activation", "unknown-invitation", "unknown-project",
                     "no-invitation"), "not-found"),
    **dict.fromkeys(("already-redeemed", "already-member", "already-accepted", "already-shared",
                     "ambiguous-invitation", "invitation-expired", "busy", "already-changed", "locker-merged"),
                    "conflict"),
    "bad-idempotency-key": "bad-request",
    **dict.fromkeys((
        "malformed-email", "bad-country", "bad-badge", "bad-company", "bad-purchasing-account", "malformed-code",
        "malformed-activation-id", "malformed-invitation-id", "bad-reference", "bad-quantity", "bad-count",
        "unknown-reference", "unknown-badge", "self-invitation", "missing-key", "bad-key", "no-rules",
        "no-catalogue", "nothing-to-change", "weak-password", "bad-role", "bad-time-zone", "bad-date",
        "date-not-today", "date-conflict", "idempotency-key-reused"), "bad-input"),
}
PRECEDENCE = ("forbidden", "unavailable", "not-found", "conflict", "bad-request", "bad-input", "refused")


def outcome(problems: list[Problem]) -> str:
    """Return what PROBLEMS mean to whoever asked: the first of PRECEDENCE that one of them has."""
    found = {OUTCOME_OF.get(problem.code, "refused") for problem in problems} or {"refused"}
    return next(name for name in PRECEDENCE if name in found)


def exit_status(problems: list[Problem]) -> int:
    """Return the command line's exit status for a refusal with PROBLEMS."""
    return OUTCOMES[outcome(problems)][0]


def http_status(problems: list[Problem]) -> int:
    """Return the HTTP status of a refusal with PROBLEMS."""
    return OUTCOMES[outcome(problems)][1]


def did_you_mean(word: str, choices) -> str:
    """Return a `did you mean 'x'?` suggestion, or an empty string."""
    matches = difflib.get_close_matches(str(word), [str(choice) for choice in choices], n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else ""
