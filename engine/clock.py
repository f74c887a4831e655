"""The server's date: the calendar day in the vendor's time zone, which dates every debit of a locker.

A partner never chooses the date of a debit: an activation, amendment or renewal that spends vouchers takes
effect today, and a request naming another day is refused (`date-not-today`). Quotes may use any date. Tests
pass a `Clock` with a fixed day instead of the system's.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from engine.problem import CompanionError, Problem, did_you_mean

DEFAULT_ZONE = "UTC"
TIME_ZONE_VARIABLE = "COMPANION_TIME_ZONE"


def zone(name: str | None) -> ZoneInfo:
    """Return the IANA time zone NAME (default UTC), or refuse it as `bad-time-zone`."""
    text = (name or "").strip() or DEFAULT_ZONE
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(text, sorted(available_timezones())) or \
            "name an IANA time zone such as Europe/Paris or America/New_York"
        raise CompanionError([Problem("bad-time-zone", f"'{text[:80]}' is not a time zone", hint=hint)]) from None


@dataclass(frozen=True)
class Clock:
    """Today in a time zone; FIXED pins the day (tests, replays)."""

    zone: ZoneInfo = ZoneInfo(DEFAULT_ZONE)
    fixed: date | None = None

    def today(self) -> date:
        """Return the server's date."""
        return self.fixed or datetime.now(self.zone).date()


def server_clock(name: str | None = None) -> Clock:
    """Return the clock of the time zone NAME, else of COMPANION_TIME_ZONE, else of UTC."""
    return _clock_of(name if name is not None else os.environ.get(TIME_ZONE_VARIABLE))


@functools.lru_cache(maxsize=64)
def _clock_of(name: str | None) -> Clock:
    # Every evaluation dates its request: looking the zone up each time cost about a microsecond.
    return Clock(zone(name))


def debit_date(requested: date | None, today: date, path: str = "date") -> date:
    """Return the date a debit takes effect: TODAY; a debit dated on any other day is refused."""
    if requested is None or requested == today:
        return today
    when = "in the future" if requested > today else "in the past"
    hint = "leave the date out: an activation that uses vouchers is dated by the server; quote other dates " \
           "without activating"
    raise CompanionError([Problem(
        "date-not-today", f"{requested} is {when}: vouchers are used on the server's date, today {today}",
        path=path, hint=hint)])
