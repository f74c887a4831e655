"""What users type and send, read strictly: ids, whole numbers, dates and JSON text, refused with located problems.

Python is generous where the documentation is not: str.isdigit() and int() take '²', Arabic-Indic '٣' and
'1_0', date.fromisoformat() takes week dates ('2025-W01-1'), and a JSON string may hold a lone surrogate
that no response can encode. These readers take only what the pages and the API document.
"""

from __future__ import annotations

import re

from engine.problem import CompanionError, Problem

MAX_ID = 2**31 - 1  # ids above this name nothing (and would overflow a database integer)
DIGITS = re.compile(r"[0-9]+")
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

