"""Months of a subscription term: anniversaries, the month a date falls in, and what an amendment is charged.

Months are calendar months counted from the start date (its activation date):

- Month k of a term (k = 0, 1, ...) begins on the k-th *anniversary* of the start: the same day of the month
  k calendar months later, or the last day of that month when it is shorter. Anniversaries are always
  counted from the original start, never from the previous anniversary, so a start on 2025-01-31 gives
  2025-02-28, 2025-03-31, 2025-04-30, ... (the 31st comes back), and a start on the leap day 2024-02-29
  gives 2024-03-29, ..., 2025-02-28, 2025-03-29, ...
- The term of N months ends on the N-th anniversary. The end date is the first day no longer covered:
  36 months from 2025-06-01 end on 2028-06-01, the last covered day is 2028-05-31. 12 months from
  2024-02-29 end on 2025-02-28; 36 months from 2025-01-31 end on 2028-01-31.
- An amendment dated D (start <= D < end) falls in month k, the one with anniversary(k) <= D <
  anniversary(k + 1). The months 0..k-1 are used up. With the default partial-month policy (`charge`, a
  started month counts) the amendment is charged N - k months: month k in full, and every later one.
  With `free`, month k is charged only when D is its first day (anniversary(k) == D): N - k months if so,
  else N - k - 1.
- The last month (k = N - 1) once begun (D after its first day) has its own policy key, `last_month`,
  because `free` would leave nothing to charge there: `charge` (the default) charges it, 1 month, whatever
  partial_month says; `free` charges 0 months and the answer says so in a notice; `refuse` refuses the
  amendment (renew instead). A change is never silently free.
- So, with `charge`: on the start date N months; on the day before the end 1 month; on or after the end
  date, or before the start, the amendment is refused. The vendor's example: 36 months from 2025-06-01,
  amended on 2025-09-01 = anniversary 3, so 36 - 3 = 33 months.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from engine.catalogue.policies.subscriptions import SubscriptionPolicy


# ---------------------------------------------------------------------------------------------------------
# Calendar months


def add_months(day: dt.date, months: int) -> dt.date:
    """Return the same day of the month `months` later, or that month's last day when it is shorter."""
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def month_index(start: dt.date, day: dt.date) -> int:
    """Return k such that anniversary k <= day < anniversary k + 1 (day on or after start)."""
    k = (day.year - start.year) * 12 + day.month - start.month
    return k - 1 if add_months(start, k) > day else k


@dataclass(frozen=True)
class Proration:
    """Where a date falls in a term, and how many months an amendment dated then is charged."""

    start: dt.date
    term: int
    date: dt.date
    partial_month: str  # charge | free
    last_month: str = "charge"  # charge | free | refuse: a change inside the last month, after its first day

    @property
    def end(self) -> dt.date:
        """Return the first day after the term."""
        return add_months(self.start, self.term)

    @property
    def index(self) -> int:
        """Return the 0-based term month the date falls in."""
        return month_index(self.start, self.date)

    @property
    def month_start(self) -> dt.date:
        """Return the first day of the month the date falls in."""
        return add_months(self.start, self.index)

    @property
    def month_next(self) -> dt.date:
        """Return the first day of the following month."""
        return add_months(self.start, self.index + 1)

    @property
    def started(self) -> bool:
        """Tell whether the month had already begun before the date (the date is not its first day)."""
        return self.date > self.month_start

    @property
    def in_last_month(self) -> bool:
        """Tell whether the date is inside the last month of the term, after its first day."""
        return self.started and self.index == self.term - 1

    @property
    def months(self) -> int:
        """Return the months charged: the current month (per policy) and every later one."""
        if self.in_last_month and self.last_month != "refuse":
            return 0 if self.last_month == "free" else 1  # the last month's own key decides, not partial_month
        free = self.partial_month == "free" and self.started
        return self.term - self.index - (1 if free else 0)

    def steps(self, policy: "SubscriptionPolicy") -> list[str]:
        """Explain the count step by step, for people."""
        end, index = self.end, self.index
        lines = [f"term: {self.term} calendar months from {self.start} -> ends {end} "
                 f"(last day covered {end - dt.timedelta(days=1)}) [{policy.unit.rule}]"]
        if index:
            lines.append(f"used up: month{'s 1-' if index > 1 else ' '}{index} of {self.term}, "
                         f"{self.start} .. {self.month_start - dt.timedelta(days=1)}: not charged")
        last = self.month_next - dt.timedelta(days=1)
        days = (self.month_next - self.month_start).days
        clamp = ""
        if self.month_start.day != self.start.day:
            clamp = f"; month {index + 1} begins on {self.month_start} because " \
                    f"{calendar.month_name[self.month_start.month]} {self.month_start.year} has no day {self.start.day}"
        if not self.started:
            lines.append(f"amendment date {self.date}: the first day of month {index + 1} ({self.month_start} .. "
                         f"{last}, {days} days): charged in full{clamp}")
        else:
            left = (self.month_next - self.date).days
            if self.in_last_month:
                treatment = {"charge": "the last month, begun: charged in full",
                             "free": "the last month, begun: free, not charged",
                             "refuse": "the last month, begun: no change is accepted"}[self.last_month]
                decided = f"{policy.last_month.rule}: {self.last_month}"
            else:
                treatment = ("a started month counts: charged in full" if self.partial_month == "charge"
                             else "a started month is free: not charged")
                decided = f"{policy.partial_month.rule}: {self.partial_month}"
            lines.append(f"amendment date {self.date}: inside month {index + 1} ({self.month_start} .. {last}, "
                         f"{days} days), {left} day{'s' if left != 1 else ''} of it left; {treatment} "
                         f"[{decided}]{clamp}")
        later = self.term - index - 1
        if later:
            lines.append(f"still to come: month{'s ' + str(index + 2) + '-' if later > 1 else ' '}{self.term}, "
                         f"{self.month_next} .. {end - dt.timedelta(days=1)}: {later} whole month"
                         f"{'s' if later > 1 else ''}, charged")
        counted = f"{self.term} - {index}" + (" - 1" if self.months != self.term - index else "")
        lines.append(f"months charged: {counted} = {self.months}")
        return lines
