"""Voucher coverage: bill-of-materials lines checked against voucher balances, without touching any database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from engine.inference.matching import Matching, Purchase, VoucherUnit, as_voucher_unit
from engine.problem import refusal

__all__ = ["Debit", "LineCoverage", "MatchUsed", "Matching", "Requirement", "Short", "VoucherCoverage", "VoucherUnit",
           "as_requirement", "cover"]


@dataclass(frozen=True)
class Requirement:
    """A bill-of-materials line: UNITS of REFERENCE (already multiplied out by the caller)."""

    reference: str
    units: int
    description: str = ""


@dataclass(frozen=True)
class Debit:
    """VOUCHERS of VOUCHER_REFERENCE spent on a line, covering UNITS units."""

    voucher_reference: str
    vouchers: int
    units: int


# What a line lacks is what the engine says to buy: QUANTITY more vouchers of VOUCHER_REFERENCE, closing UNITS.
Short = Purchase


@dataclass(frozen=True)
class MatchUsed:
    """The matching rule by which vouchers of VOUCHER_REFERENCE cover the line, and where it is declared."""

    rule: str
    where: str
    voucher_reference: str
    units_per_voucher: int


@dataclass(frozen=True)
class LineCoverage:
    """How one bill-of-materials line is covered, or by how much it is short, and what to do.

    SHORT is the first voucher to buy (None when covered); PURCHASE all of them, the smallest purchase that
    closes the gap of UNCOVERED units; MATCHES the rules of the vouchers debited.
    """

    reference: str
    description: str
    units: int
    debits: tuple[Debit, ...]
    short: Short | None
    advice: str
    purchase: tuple[Short, ...] = ()
    matches: tuple[MatchUsed, ...] = ()
    uncovered: int = 0

    @property
    def covered(self) -> bool:
        """Return whether the locker covers this line."""
        return self.short is None

    def to_json(self) -> dict:
        """Return the line as a JSON-ready dict."""
        return {"reference": self.reference, "description": self.description, "units": self.units,
                "covered": self.covered, "debits": [asdict(debit) for debit in self.debits],
                "rules": [asdict(match) for match in self.matches], "uncovered": self.uncovered,
                "short": asdict(self.short) if self.short else None,
                "purchase": [asdict(item) for item in self.purchase], "advice": self.advice}


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
            for item in line.purchase:
                total[item.voucher_reference] = total.get(item.voucher_reference, 0) + item.quantity
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


def cover(requirements, balances: Mapping[str, int], matching: Mapping[str, Sequence] | Matching | None = None
          ) -> VoucherCoverage:
    """Check bill-of-materials lines against voucher balances, without touching any database.

    MATCHING says, per bill-of-materials reference, which vouchers cover it and in what units, in order of
    preference: a compiled Matching (engine.activation.matching builds the catalogue's), or a plain mapping,
    compiled here. A line whose reference has no entry is covered by vouchers of its own reference, one unit
    each. The engine's matching rules decide the allocation, the optimum of engine.inference.matching; a
    voucher is counted for one line only.
    """
    lines = [as_requirement(item) for item in requirements]
    if not isinstance(matching, Matching):
        matching = Matching({reference: [as_voucher_unit(item) for item in declared]
                             for reference, declared in (matching or {}).items()})
    pool = {str(reference): int(quantity) for reference, quantity in balances.items() if int(quantity) > 0}
    found = matching.allocate([(line.reference, line.units) for line in lines], pool)
    return VoucherCoverage(lines=tuple(_line_coverage(line, match) for line, match in zip(lines, found)))


def _line_coverage(line: Requirement, match) -> LineCoverage:
    """Word what the engine matched for one line."""
    used = [(option, count) for option, count in zip(match.options, match.taken) if count]
    debits = tuple(Debit(option.voucher_reference, count, count * option.units_per_voucher) for option, count in used)
    matches = tuple(MatchUsed(option.rule, str(option.where) if option.where else "", option.voucher_reference,
                              option.units_per_voucher) for option, _ in used)
    purchase = match.purchase
    advice = "covered"
    if purchase:
        name = f"{line.reference} ({line.description})" if line.description else line.reference
        advice = (f"buy {_words(match.purchase)}, or change the configuration to need {match.uncovered} fewer "
                  f"units of {name}")
    return LineCoverage(reference=line.reference, description=line.description, units=line.units, debits=debits,
                        short=purchase[0] if purchase else None, advice=advice, purchase=purchase, matches=matches,
                        uncovered=match.uncovered)


def _words(purchase: tuple[Purchase, ...]) -> str:
    """Say a purchase: `5 more vouchers of X`, `1 more voucher of P and 3 more vouchers of X`."""
    return " and ".join(f"{item.quantity} more {'voucher' if item.quantity == 1 else 'vouchers'} of "
                        f"{item.voucher_reference}" for item in purchase)
