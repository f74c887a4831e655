"""The voucher packs of rules/vouchers.yaml: which further vouchers cover a bill-of-materials line, in what units.

Only the rule file lives here (model, checks, rule ids, references), so that loading a catalogue needs no
database; engine.activation matches packs against a locker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from engine.catalogue.model import Catalog, Sellable
from engine.problem import Location, Problem, did_you_mean
from engine.catalogue.source import Source

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


def build_packs(source: Source, catalog: Catalog) -> tuple[Pack, ...]:
    """Build the voucher packs from a schema-valid vouchers.yaml."""
    return tuple(
        Pack(item["reference"], item["name"], item["covers"], int(item["units"]), f"voucher.{item['reference'].lower()}",
             source.where(("packs", index, "reference")), source.where(("packs", index, "covers")))
        for index, item in enumerate(source.data["packs"])
    )


def check_packs(catalog: Catalog) -> Iterator[Problem]:
    """unknown-ref: a pack covers a commercial reference nothing sells.

    Failing: `covers: EPO-DEV-SUB-3X` -> did you mean 'EPO-DEV-SUB-3Y'?
    """
    packs = catalog.extras.get(FILE, ())
    sold = {reference for reference, item in catalog.references.items() if item.kind != "voucher-pack"}
    for pack in packs:
        if pack.covers not in sold:
            yield Problem("unknown-ref", f"pack covers commercial reference '{pack.covers}', which nothing sells",
                          pack.where_covers, rule=pack.rule,
                          hint=did_you_mean(pack.covers, sold) or "name a reference from tiers.yaml or addons.yaml")


def pack_rules(packs: tuple[Pack, ...]) -> dict[str, Location]:
    """Return the rule id of every pack."""
    return {pack.rule: pack.where for pack in packs}


def pack_references(packs: tuple[Pack, ...]) -> dict[str, Sellable]:
    """Return the commercial references the packs sell."""
    return {pack.reference: Sellable(pack.reference, pack.name, "voucher-pack", "", "", pack.rule, pack.where)
            for pack in packs}
