"""Voucher coverage: bill-of-materials lines checked against voucher balances, without touching any database."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from engine.problem import refusal


@dataclass(frozen=True)
class Requirement:
    """A bill-of-materials line: UNITS of REFERENCE (already multiplied out by the caller)."""

    reference: str
    units: int
    description: str = ""


@dataclass(frozen=True)
class VoucherUnit:
    """Vouchers of VOUCHER_REFERENCE each cover UNITS_PER_VOUCHER units of a bill-of-materials line."""

    voucher_reference: str
    units_per_voucher: int = 1


@dataclass(frozen=True)
class Debit:
    """VOUCHERS of VOUCHER_REFERENCE spent on a line, covering UNITS units."""

    voucher_reference: str
    vouchers: int
    units: int


@dataclass(frozen=True)
class Short:
    """QUANTITY more vouchers of VOUCHER_REFERENCE are needed to cover the UNITS still missing."""

    voucher_reference: str
    quantity: int
    units: int


@dataclass(frozen=True)
class LineCoverage:
    """How one bill-of-materials line is covered, or by how much it is short, and what to do."""

    reference: str
    description: str
    units: int
    debits: tuple[Debit, ...]
    short: Short | None
    advice: str

    @property
    def covered(self) -> bool:
        """Return whether the locker covers this line."""
        return self.short is None

    def to_json(self) -> dict:
        """Return the line as a JSON-ready dict."""
        return {"reference": self.reference, "description": self.description, "units": self.units,
                "covered": self.covered, "debits": [asdict(debit) for debit in self.debits],
                "short": asdict(self.short) if self.short else None, "advice": self.advice}


@dataclass(frozen=True)
class VoucherCoverage:
    """Every line of a bill of materials checked against a locker's balances."""

    lines: tuple[LineCoverage, ...]

    @property
    def covered(self) -> bool:
        """Return whether every line is covered."""
        return all(line.covered for line in self.lines)

    @property
    def debits(self) -> dict[str, int]:
        """Return the vouchers to spend per voucher reference (meaningful when covered)."""
        total: dict[str, int] = {}
        for line in self.lines:
            for debit in line.debits:
                total[debit.voucher_reference] = total.get(debit.voucher_reference, 0) + debit.vouchers
        return dict(sorted(total.items()))

    @property
    def missing(self) -> dict[str, int]:
        """Return how many more vouchers are needed per voucher reference."""
        total: dict[str, int] = {}
        for line in self.lines:
            if line.short:
                reference = line.short.voucher_reference
                total[reference] = total.get(reference, 0) + line.short.quantity
        return dict(sorted(total.items()))

    def to_json(self) -> dict:
        """Return the coverage as a JSON-ready dict."""
        return {"covered": self.covered, "debits": self.debits, "missing": self.missing,
                "lines": [line.to_json() for line in self.lines]}


def as_requirement(item) -> Requirement:
    """Return ITEM (a Requirement, or a mapping of reference, units or quantity, description) as a checked Requirement."""
    if isinstance(item, Requirement):
        requirement = item
    elif isinstance(item, Mapping):
        requirement = Requirement(reference=str(item["reference"]),
                                  units=item.get("units", item.get("quantity")),
                                  description=str(item.get("description", "")))
    else:
        raise refusal("bad-requirement", f"{item!r} is not a bill-of-materials line")
    if isinstance(requirement.units, bool) or not isinstance(requirement.units, int) or requirement.units < 0:
        raise refusal("bad-requirement",
                      f"line {requirement.reference}: units must be a whole number >= 0, got {requirement.units!r}")
    return requirement


def _voucher_unit(item) -> VoucherUnit:
    if isinstance(item, VoucherUnit):
        unit = item
    elif isinstance(item, Mapping):
        unit = VoucherUnit(str(item.get("voucher_reference", item.get("reference"))),
                           item.get("units_per_voucher", item.get("units", 1)))
    else:
        reference, units = item
        unit = VoucherUnit(str(reference), units)
    if (isinstance(unit.units_per_voucher, bool) or not isinstance(unit.units_per_voucher, int)
            or unit.units_per_voucher < 1):
        raise refusal("bad-matching", f"voucher {unit.voucher_reference}: units per voucher must be >= 1, "
                                      f"got {unit.units_per_voucher!r}")
    return unit


def _allocate(units: int, options: Sequence[VoucherUnit], pool: dict[str, int]) -> tuple[list[Debit], int]:
    """Take vouchers from POOL for UNITS; return the debits and the units still uncovered."""
    taken: dict[str, int] = {}
    remaining = units
    # Whole vouchers that do not overshoot, in the declared order of preference.
    for option in options:
        if remaining <= 0:
            break
        count = min(pool.get(option.voucher_reference, 0), remaining // option.units_per_voucher)
        if count:
            pool[option.voucher_reference] -= count
            taken[option.voucher_reference] = taken.get(option.voucher_reference, 0) + count
            remaining -= count * option.units_per_voucher
    # The rest: the smallest voucher that covers it all, else the biggest available, until done or empty.
    while remaining > 0:
        available = [(index, option) for index, option in enumerate(options)
                     if pool.get(option.voucher_reference, 0) > 0]
        if not available:
            break
        enough = [(option.units_per_voucher, index, option) for index, option in available
                  if option.units_per_voucher >= remaining]
        if enough:
            option = min(enough)[2]
        else:
            option = min((-option.units_per_voucher, index, option) for index, option in available)[2]
        count = min(pool[option.voucher_reference], math.ceil(remaining / option.units_per_voucher))
        pool[option.voucher_reference] -= count
        taken[option.voucher_reference] = taken.get(option.voucher_reference, 0) + count
        remaining -= count * option.units_per_voucher
    units_of = {option.voucher_reference: option.units_per_voucher for option in options}
    debits = [Debit(reference, count, count * units_of[reference]) for reference, count in taken.items()]
    return debits, max(remaining, 0)


def cover(requirements, balances: Mapping[str, int], matching: Mapping[str, Sequence] | None = None) -> VoucherCoverage:
    """Check bill-of-materials lines against voucher balances, without touching any database.

    A line whose reference has no entry in MATCHING is covered by vouchers of the same reference, one unit
    each. Lines with a single way to be covered take their vouchers first, then the others, each in the
    order given; a voucher is counted for one line only.
    """
    lines = [as_requirement(item) for item in requirements]
    matching = matching or {}
    options = []
    for line in lines:
        declared = matching.get(line.reference)
        units = [_voucher_unit(item) for item in declared] if declared else [VoucherUnit(line.reference, 1)]
        options.append(units)
    pool = {str(reference): int(quantity) for reference, quantity in balances.items() if int(quantity) > 0}
    results: list[LineCoverage | None] = [None] * len(lines)
    for index in sorted(range(len(lines)), key=lambda index: (len(options[index]), index)):
        line, choices = lines[index], options[index]
        debits, missing_units = _allocate(line.units, choices, pool)
        short, advice = None, "covered"
        if missing_units:
            preferred = choices[0]
            quantity = math.ceil(missing_units / preferred.units_per_voucher)
            short = Short(preferred.voucher_reference, quantity, missing_units)
            name = f"{line.reference} ({line.description})" if line.description else line.reference
            plural = "voucher" if quantity == 1 else "vouchers"
            advice = (f"buy {quantity} more {plural} of {preferred.voucher_reference}, or change the "
                      f"configuration to need {missing_units} fewer units of {name}")
        results[index] = LineCoverage(reference=line.reference, description=line.description, units=line.units,
                                      debits=tuple(debits), short=short, advice=advice)
    return VoucherCoverage(lines=tuple(results))
