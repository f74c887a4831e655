"""What users type and send, read strictly: ids, whole numbers, dates and JSON text, refused with located problems.

Python is generous where the documentation is not: str.isdigit() and int() take '²', Arabic-Indic '٣' and
'1_0', date.fromisoformat() takes week dates ('2025-W01-1'), and a JSON string may hold a lone surrogate
that no response can encode. These readers take only what the pages and the API document.
"""

from __future__ import annotations

import datetime as dt
import json
import re

from engine import FIRST_DAY, LAST_DAY, SURROGATE, json_path, no_json_constant
from engine.problem import CompanionError, Problem

MAX_ID = 2**31 - 1  # ids above this name nothing (and would overflow a database integer)
DIGITS = re.compile(r"[0-9]+")
NUMBER = re.compile(r"-?[0-9]+")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_DIGITS = 9  # every maximum of the request schema has fewer digits (devices: 10,000,000)
ECHO = 80  # characters of a user's value repeated in a message


def echo(value) -> str:
    """Return a user's value as a message repeats it: at most ECHO characters, lone surrogates replaced."""
    text = str(value)
    if len(text) > ECHO:
        text = text[:ECHO - 1] + "…"
    return text.encode("utf-8", "replace").decode("utf-8")


def record_id(text) -> int | None:
    """Return the id that ASCII digits spell, or None when they spell none (other characters, above MAX_ID)."""
    if not isinstance(text, str) or not DIGITS.fullmatch(text) or len(text.lstrip("0")) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if number <= MAX_ID else None


def project_id(text, path: str = "project_id") -> int:
    """Return the project id of a URL or a form field, or raise unknown-project (404) at PATH."""
    number = record_id(text)
    if number is None:
        raise CompanionError([Problem("unknown-project", f"no project {echo(text)}", path=path,
                                      hint="see your projects on the Projects page")])
    return number


def form_number(text: str, path: str, problems: list[Problem], minimum: int | None = None) -> int | None:
    """Read a whole number typed into a form field, or add a problem at PATH and return None."""
    text = text.strip()
    if not NUMBER.fullmatch(text):
        problems.append(Problem("not-a-number", f"'{echo(text)}' is not a whole number", path=path,
                                hint="write it with the digits 0-9, such as 150"))
        return None
    if len(text.lstrip("-0")) > MAX_DIGITS:
        problems.append(Problem("above-maximum", f"{echo(text)} is too large", path=path))
        return None
    number = int(text)
    if minimum is not None and number < minimum:
        problems.append(Problem("below-minimum", f"{number} is less than {minimum}", path=path,
                                hint=f"write {minimum} or more"))
        return None
    return number


def calendar_date(value, path: str = "date") -> dt.date:
    """Read a date written YYYY-MM-DD from FIRST_DAY to LAST_DAY (2000 to 2999), or raise bad-date at PATH."""
    hint = "write a date such as 2025-06-01"
    if not isinstance(value, str) or not DATE.fullmatch(value):
        message = f"'{echo(value)}' is not a date written YYYY-MM-DD" if isinstance(value, str) \
            else "a date is a string written YYYY-MM-DD"
        raise CompanionError([Problem("bad-date", message, path=path, hint=hint)])
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise CompanionError([Problem("bad-date", f"'{value}' is not a calendar date", path=path,
                                      hint=hint)]) from None
    if not FIRST_DAY <= day <= LAST_DAY:  # as the engine's subscriptions and activations
        raise CompanionError([Problem("bad-date", f"'{value}' is outside {FIRST_DAY} .. {LAST_DAY}", path=path,
                                      hint=hint)])
    return day


class DuplicateKey(ValueError):
    """A JSON object names the same key twice."""


def strict_json(text: str | bytes):
    """Parse a JSON body, refusing NaN and Infinity and duplicate keys; None when it is not JSON."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=no_json_constant)
    except DuplicateKey:
        raise
    except ValueError:  # not JSON, NaN or Infinity, or an integer of over 4,300 digits
        return None


def _unique_keys(pairs: list) -> dict:
    found: dict = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key)
        found[key] = value
    return found


def json_problem(data, max_depth: int, what: str = "the body", at: tuple = ()) -> Problem | None:
    """Return why parsed JSON (at path AT) cannot be taken: nested too deep, or holding a lone surrogate."""
    # One walk without recursion, in document order. A lone surrogate (U+D800..U+DFFF, "\\ud800" in JSON) is
    # no character: a response or a database that writes it out as UTF-8 fails, so it is refused here.
    deepest, bad = 0, None
    stack = [(data, 1, None)]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            if bad is None and SURROGATE.search(value):
                bad = path
        elif isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in reversed(list(items)):
                stack.append((item, depth + 1, (path, key)))
                if isinstance(key, str):
                    stack.append((key, depth, (path, key)))  # a key is text too, met just before its value
    if deepest > max_depth:
        return too_deep(max_depth, what, at)
    if bad is not None:
        where = echo_path(json_path(at + linked_keys(bad)))
        return Problem("bad-text", f"the text at {where} holds a lone surrogate (U+D800..U+DFFF), which is not a "
                       "character", path=where, hint="send UTF-8 text; \\ud800..\\udfff escapes come in pairs")
    return None


def too_deep(max_depth: int, what: str = "the body", at: tuple = ()) -> Problem:
    """Return the problem of JSON nested more than MAX_DEPTH levels deep."""
    return Problem("too-deep", f"{what} is nested more than {max_depth} levels deep", path=json_path(at),
                   hint="a request needs a few levels")


def linked_keys(linked) -> tuple:
    """Return the keys of a path linked as (parent, key) pairs, outermost first."""
    keys = []
    while linked is not None:
        linked, key = linked
        keys.append(key)
    return tuple(reversed(keys))


def echo_path(path: str) -> str:
    """Return a JSON path fit for a response: lone surrogates replaced, at most a few hundred characters."""
    text = SURROGATE.sub("\ufffd", path)
    return text if len(text) <= 4 * ECHO else text[:4 * ECHO - 1] + "…"
