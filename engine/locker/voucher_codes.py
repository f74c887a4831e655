"""Voucher codes and Activation IDs: random, typo-resistant, with a check character.

Both kinds of code use one alphabet of 31 symbols: the digits 2-9 and the capital letters without
I, L and O, so that 0/O, 1/I/L cannot be confused when a code is read aloud or typed. 31 is prime, so a
check character computed as a position-weighted sum modulo 31 detects every single-character substitution
and every swap of two neighbours (positions are weighted 1, 2, 3, ... up to 30).

A voucher code is 19 random symbols and a check symbol (19 x log2(31) = 94 bits), printed in four groups
of five: `7KQ2M-XH4PA-9WZRT-CD3NE`. An Activation ID is `ACT-` and 15 random symbols and a check symbol in
four groups of four: `ACT-4J7Q-MX2C-9HTR-K6W5` (74 bits). On input, case, spaces and dashes are forgiven.
"""

from __future__ import annotations

import secrets

from engine.problem import CompanionError, Problem

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_VALUE = {symbol: index for index, symbol in enumerate(ALPHABET)}
_BASE = len(ALPHABET)  # 31, a prime

VOUCHER_LENGTH = 20  # symbols, the last one is the check symbol
VOUCHER_GROUP = 5
ACTIVATION_PREFIX = "ACT"
ACTIVATION_LENGTH = 16
ACTIVATION_GROUP = 4

assert _BASE == 31 and VOUCHER_LENGTH < _BASE and ACTIVATION_LENGTH < _BASE


def check_symbol(body: str) -> str:
    """Return the check symbol for a string of alphabet symbols."""
    total = sum((position + 1) * _VALUE[symbol] for position, symbol in enumerate(body))
    return ALPHABET[total % _BASE]


def _random_body(length: int) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(length - 1))
    return body + check_symbol(body)


def _group(symbols: str, size: int) -> str:
    return "-".join(symbols[start:start + size] for start in range(0, len(symbols), size))


def _squash(text: str) -> str:
    """Upper-case and drop dashes and whitespace."""
    return "".join(char for char in str(text).upper() if char not in "- \t\r\n")


def _well_formed(symbols: str, length: int) -> bool:
    if len(symbols) != length or any(char not in _VALUE for char in symbols):
        return False
    return check_symbol(symbols[:-1]) == symbols[-1]


def new_voucher_code() -> str:
    """Return a new random voucher code, grouped for reading."""
    return _group(_random_body(VOUCHER_LENGTH), VOUCHER_GROUP)


def format_voucher_code(symbols: str) -> str:
    """Return a normalised voucher code grouped for reading."""
    return _group(symbols, VOUCHER_GROUP)


def normalize_voucher_code(text: str) -> str:
    """Return the 20 symbols of a voucher code typed by a person, or raise `malformed-code`."""
    symbols = _squash(text)
    if not _well_formed(symbols, VOUCHER_LENGTH):
        raise CompanionError([Problem(
            code="malformed-code",
            message=f"'{text}' is not a valid voucher code (a character is mistyped or missing)",
            hint=f"a voucher code has {VOUCHER_LENGTH} characters like 7KQ2M-XH4PA-9WZRT-CD3NE and never "
                 "contains 0, 1, I, L or O; check it against your order confirmation",
        )])
    return symbols


def new_activation_id() -> str:
    """Return a new random Activation ID `ACT-XXXX-XXXX-XXXX-XXXX`."""
    return f"{ACTIVATION_PREFIX}-" + _group(_random_body(ACTIVATION_LENGTH), ACTIVATION_GROUP)


def normalize_activation_id(text: str) -> str:
    """Return the canonical form of an Activation ID typed by a person, or raise `malformed-activation-id`."""
    symbols = _squash(text)
    if symbols.startswith(ACTIVATION_PREFIX) and len(symbols) == len(ACTIVATION_PREFIX) + ACTIVATION_LENGTH:
        symbols = symbols[len(ACTIVATION_PREFIX):]
    if not _well_formed(symbols, ACTIVATION_LENGTH):
        raise CompanionError([Problem(
            code="malformed-activation-id",
            message=f"'{text}' is not a valid Activation ID (a character is mistyped or missing)",
            hint="an Activation ID looks like ACT-4J7Q-MX2C-9HTR-K6W5 and never contains 0, 1, I, L or O",
        )])
    return f"{ACTIVATION_PREFIX}-" + _group(symbols, ACTIVATION_GROUP)


def new_invitation_id() -> str:
    """Return a new random invitation id `INV-XXXX-XXXX-XXXX`."""
    return "INV-" + _group(_random_body(12), 4)


def normalize_invitation_id(text: str) -> str:
    """Return the canonical form of an invitation id, or raise `malformed-invitation-id`."""
    symbols = _squash(text)
    if symbols.startswith("INV") and len(symbols) == 15:
        symbols = symbols[3:]
    if not _well_formed(symbols, 12):
        raise CompanionError([Problem(
            code="malformed-invitation-id",
            message=f"'{text}' is not a valid invitation id",
            hint="an invitation id looks like INV-4J7Q-MX2C-9HTM; `companion locker accept` without an id "
                 "accepts your only pending invitation",
        )])
    return "INV-" + _group(symbols, 4)
