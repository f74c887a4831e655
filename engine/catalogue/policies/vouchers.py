"""rules/vouchers.yaml: voucher packs, and which vouchers match which bill-of-materials lines, in what units.

Only the rule file lives here (model, checks, rule ids, references), so that loading a catalogue needs no
database; engine.inference.matching compiles the matches into rules and engine.activation runs them against a
locker. Two forms, which may be mixed:
- `packs:` sells vouchers that cover several units of one line (`voucher.<pack>`); a line that no match
  names is covered by its packs, biggest first, then by its own reference, one unit each.
- `matches:` lists, per bill-of-materials reference, the vouchers that cover it, most preferred first, each a
  rule `match.<line>.<voucher>`; the line's own reference, one unit a voucher, comes last unless listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from engine.catalogue.conditions import Node, parse
from engine.catalogue.model import Catalog, Sellable
from engine.catalogue.source import Source
from engine.problem import Location, Problem, did_you_mean

FILE = "vouchers.yaml"
SCHEMA = "vouchers.schema.json"


@dataclass(frozen=True)
class Pack:
    """A voucher that covers UNITS units of the bill-of-materials line COVERS."""

    reference: str
    name: str
    covers: str
    units: int
    rule: str
    where: Location
    where_covers: Location


@dataclass(frozen=True)
class Match:
    """Vouchers of VOUCHER cover UNITS units each of the bill-of-materials line LINE, at RANK of its preferences.

    UNITS is None when not written (the pack's units for the line it covers, else 1: see units_of). WHEN is
    the condition written under `when:`: the match applies only to activations it is known to hold for.
    """

    line: str
    voucher: str
    units: int | None
    rank: int
    rule: str
    where: Location  # the `voucher:` value
    where_line: Location  # the line's key under `matches:`
    where_units: Location | None
    when: Node | None = None
    where_when: Location | None = None


@dataclass(frozen=True)
class VoucherRules:
    """What vouchers.yaml says: its packs and its declared matches (in file order)."""

    packs: tuple[Pack, ...] = ()
    matches: tuple[Match, ...] = ()

    def units_of(self, match: Match) -> int:
        """Return the units one voucher of a match covers: as written, else its pack's for its line, else 1."""
        if match.units is not None:
            return match.units
        pack = next((pack for pack in self.packs if pack.reference == match.voucher and pack.covers == match.line), None)
        return pack.units if pack else 1


def build_packs(source: Source, catalog: Catalog) -> VoucherRules:
    """Build the packs and matches from a schema-valid vouchers.yaml."""
    packs = tuple(
        Pack(item["reference"], item["name"], item["covers"], int(item["units"]), f"voucher.{item['reference'].lower()}",
             source.where(("packs", index, "reference")), source.where(("packs", index, "covers")))
        for index, item in enumerate(source.data.get("packs", ()))
    )
    matches = []
    for line, declared in (source.data.get("matches") or {}).items():
        for rank, item in enumerate(declared):
            path = ("matches", line, rank)
            matches.append(Match(
                line, item["voucher"], int(item["units"]) if "units" in item else None, rank,
                f"match.{line.lower()}.{item['voucher'].lower()}", source.where(path + ("voucher",)),
                source.where_key(("matches", line)), source.where(path + ("units",)) if "units" in item else None,
                parse(source, path + ("when",)) if "when" in item else None,
                source.where_key(path + ("when",)) if "when" in item else None))
    return VoucherRules(packs, tuple(matches))


def check_packs(catalog: Catalog) -> Iterator[Problem]:
    """unknown-ref: a pack covers, or a match names, a reference nothing sells; duplicate-match; pack-units; pack-unmatched.

    Failing: `covers: EPO-DEV-SUB-3X` -> did you mean 'EPO-DEV-SUB-3Y'?; a voucher listed twice for one line;
    `units: 10` for a pack of 25 matched to the line it covers; a pack its line's matches leave out.
    """
    rules = catalog.extras.get(FILE, VoucherRules())
    sold = {reference for reference, item in catalog.references.items() if item.kind != "voucher-pack"}
    vouchers = set(sold) | {pack.reference for pack in rules.packs}
    for pack in rules.packs:
        if pack.covers not in sold:
            yield Problem("unknown-ref", f"pack covers commercial reference '{pack.covers}', which nothing sells",
                          pack.where_covers, rule=pack.rule,
                          hint=did_you_mean(pack.covers, sold) or "name a reference from tiers.yaml or addons.yaml")
    seen: dict[tuple[str, str], Match] = {}
    for match in rules.matches:
        if match.rank == 0 and match.line not in sold:
            yield Problem("unknown-ref", f"matches name bill-of-materials reference '{match.line}', which nothing sells",
                          match.where_line, rule=match.rule,
                          hint=did_you_mean(match.line, sold) or "name a reference from tiers.yaml or addons.yaml")
        if match.voucher not in vouchers:
            yield Problem("unknown-ref", f"match names voucher '{match.voucher}', which is neither a pack nor sold",
                          match.where, rule=match.rule,
                          hint=did_you_mean(match.voucher, vouchers) or "name a pack of this file or a sold reference")
        first = seen.setdefault((match.line, match.voucher), match)
        if first is not match:
            yield Problem("duplicate-match", f"voucher '{match.voucher}' is listed twice for line '{match.line}'",
                          match.where, rule=match.rule,
                          hint=f"keep one, at the rank you prefer (the first is at {first.where})")
        pack = next((pack for pack in rules.packs if pack.reference == match.voucher), None)
        if pack and pack.covers == match.line and match.units not in (None, pack.units):
            yield Problem("pack-units", f"pack '{pack.reference}' covers {pack.units} units of '{match.line}', "
                                        f"but this match says {match.units}",
                          match.where_units or match.where, rule=match.rule,
                          hint=f"leave units out (it is the pack's: {pack.units}) or write units: {pack.units}")
    yield from check_unmatched_packs(rules)


def check_unmatched_packs(rules: VoucherRules) -> Iterator[Problem]:
    """pack-unmatched (warning): a pack covers a line that `matches:` names without it, so it is never used."""
    listed = {(match.line, match.voucher) for match in rules.matches}
    lines = {match.line for match in rules.matches}
    for pack in rules.packs:
        if pack.covers in lines and (pack.covers, pack.reference) not in listed:
            yield Problem("pack-unmatched", f"pack '{pack.reference}' covers '{pack.covers}', whose matches do not list it: "
                                            "it is never used", pack.where, rule=pack.rule, severity="warning",
                          hint=f"add '- voucher: {pack.reference}' under matches: {pack.covers}")


def pack_rules(rules: VoucherRules) -> dict[str, Location]:
    """Return the rule id of every pack and every declared match."""
    found = {pack.rule: pack.where for pack in rules.packs}
    found.update({match.rule: match.where for match in rules.matches})
    return found


def pack_references(rules: VoucherRules) -> dict[str, Sellable]:
    """Return the commercial references the packs sell."""
    return {pack.reference: Sellable(pack.reference, pack.name, "voucher-pack", "", "", pack.rule, pack.where)
            for pack in rules.packs}
