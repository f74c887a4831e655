"""Activation: a configuration's bill of materials, matched against the Digital Locker, debited or refused.

The packs and matches of rules/vouchers.yaml (engine.catalogue.policies.vouchers) say which vouchers cover a
bill-of-materials line, in what units and order of preference; a line is always covered by vouchers of its own
reference too, one unit each. engine.inference.matching compiles them into the rules that match a locker.
Activation always uses the badges stored for the user, never badges claimed in a request.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import date

from engine import locker
from engine.clock import debit_date
from engine.inference.compile import CompiledCatalog, resolved, scope_of
from engine.inference.evaluate import evaluate
from engine.catalogue.model import Catalog
from engine.problem import CompanionError, Problem
from engine.inference.request import request_from_data
from engine.locker.db import Store
from engine.services.coverage import Matching, Requirement, VoucherUnit
from engine.catalogue.policies.vouchers import FILE as VOUCHERS_FILE, VoucherRules
from engine.catalogue.policies.subscriptions import CHANGE, RENEWAL
from engine.services.changes import amendment_from_data
from engine.services.subscriptions import amend, renew


# id(catalog) -> (a weak reference to it, its compiled matching): an activation must not rebuild the table.
_MATCHINGS: dict[int, tuple[weakref.ref, Matching]] = {}
_MATCHINGS_LOCK = threading.Lock()


def matching(catalog: Catalog) -> Matching:
    """Return the catalogue's voucher matching: per bill-of-materials reference, the vouchers that cover it.

    A line named under `matches:` has its matches in the order written, then its own reference (one unit a
    voucher) unless listed; any other line its packs, biggest first (whole packs that fit are worth taking
    before single vouchers), then its own reference. Each option carries its rule and where it is declared.
    """
    with _MATCHINGS_LOCK:
        cached = _MATCHINGS.get(id(catalog))
        if cached is not None and cached[0]() is catalog:
            return cached[1]
    built = _build_matching(catalog)
    with _MATCHINGS_LOCK:
        for key in [key for key, (ref, _) in _MATCHINGS.items() if ref() is None]:
            del _MATCHINGS[key]
        _MATCHINGS[id(catalog)] = (weakref.ref(catalog), built)
    return built


def _build_matching(catalog: Catalog) -> Matching:
    rules = catalog.extras.get(VOUCHERS_FILE) or VoucherRules()
    own = {reference: (item.rule, item.where) for reference, item in catalog.references.items()}

    def own_unit(reference: str) -> VoucherUnit:
        rule, where = own.get(reference, ("", None))
        return VoucherUnit(reference, 1, rule, where)

    table: dict[str, list[VoucherUnit]] = {}
    for match in rules.matches:
        when = None
        if match.when is not None:  # checked at load (catalogue.check_conditions) against the line's product
            product = catalog.products[catalog.references[match.line].product]
            when = resolved(match.when, scope_of(catalog, product))
        table.setdefault(match.line, []).append(VoucherUnit(match.voucher, rules.units_of(match), match.rule,
                                                            match.where, when))
    for line, options in table.items():
        if all(option.voucher_reference != line for option in options):
            options.append(own_unit(line))
    packs: dict[str, list] = {}
    for pack in rules.packs:
        if pack.covers not in table:
            packs.setdefault(pack.covers, []).append(pack)
    for covers, group in packs.items():
        table[covers] = [VoucherUnit(pack.reference, pack.units, pack.rule, pack.where)
                         for pack in sorted(group, key=lambda pack: -pack.units)] + [own_unit(covers)]
    return Matching(table, own)


# The notice codes of a change the subscription policy grants without a debit.
FREE_BY_POLICY = ("last-month-free", "not-credited")


def requirements_of(lines: list[dict]) -> list[Requirement]:
    """Turn bill-of-materials lines into locker requirements (units given, or the quantity)."""
    return [Requirement(line["reference"], int(line.get("units", line["quantity"])), line["description"])
            for line in lines]


@dataclass(frozen=True)
class ActivationOutcome:
    """What an activation attempt did: refused by the rules, short of vouchers, or activated."""

    verdict: dict
    activation: locker.Activation | None = None
    shortfall: locker.Shortfall | None = None
    notices: tuple[str, ...] = ()

    @property
    def activated(self) -> bool:
        """Return whether an Activation ID was issued."""
        return self.activation is not None

    def to_json(self) -> dict:
        """Return the outcome as a JSON-ready dict."""
        data: dict = {"activated": self.activated, "verdict": self.verdict, "notices": list(self.notices)}
        if self.activation:
            data["activation"] = self.activation.to_json()
        if self.shortfall:
            data["shortfall"] = self.shortfall.to_json()
        return data


def stored_partner(store: Store, catalog: Catalog, user_email: str) -> tuple[dict, tuple[str, ...]]:
    """Return the user's stored partner data, keeping only badges the catalogue knows, and notices."""
    user = locker.get_user(store, user_email)
    known = [badge for badge in user.badges if badge in catalog.badges]
    notices = tuple(f"badge '{badge}' of {user.email} is not in the catalogue and was ignored"
                    for badge in user.badges if badge not in catalog.badges)
    partner = {"badges": known, "country": user.country}
    if user.purchasing_account:
        partner["purchasing_account"] = user.purchasing_account
    return partner, notices


def activate_configuration(store: Store, compiled: CompiledCatalog, user_email: str, configuration: dict, *,
                           today: date, on: date | None = None, operator: str | None = None) -> ActivationOutcome:
    """Validate a configuration for the user's stored badges and, if valid, activate it from their locker.

    The activation is dated TODAY, the server's date; ON, another day, is refused unless an OPERATOR (the
    command line's administrator) backdates it, which the journal records.
    """
    on, backdated = dated(on, today, operator, "date")
    partner, notices = stored_partner(store, compiled.catalog, user_email)
    request = request_from_data({"partner": partner, "configuration": configuration}, compiled.catalog)
    verdict = evaluate(compiled, request)
    return activate_lines(store, compiled, user_email, request.configuration.to_json(), verdict.to_json(),
                          verdict.bom, on=on, notices=notices, backdated=backdated, facts=verdict.facts)


def dated(requested: date | None, today: date, operator: str | None, path: str) -> tuple[date, tuple | None]:
    """Return the date of a debit and, when an operator backdates it, what the journal records of that."""
    if operator is None or requested is None or requested == today:
        return debit_date(requested, today, path), None
    return requested, (operator, {"date": requested.isoformat(), "server_date": today.isoformat()})


def activate_lines(store: Store, compiled: CompiledCatalog, user_email: str, configuration: dict,
                   verdict: dict, lines: list[dict], on: date | None = None, kind: str = "activation",
                   parent: str | None = None, notices: tuple[str, ...] = (),
                   backdated: tuple[str, dict] | None = None, facts: dict | None = None) -> ActivationOutcome:
    """Activate already-evaluated lines unless their JSON VERDICT (of a configuration or a change) refuses them.

    FACTS (what the rules saw) decide which conditional voucher matches apply; without them none does.
    """
    if not verdict["valid"]:
        return ActivationOutcome(verdict, notices=notices)  # refused by the rules: nothing is debited
    # A new Activation ID that debits nothing is a free change: only the subscription policy may grant one, by a
    # free last month or by a reduction it allows mid-term (which changes the state and charges no line).
    debits = any(int(line.get("units", line["quantity"])) for line in lines)
    free = () if debits else tuple(f"no voucher is debited: {item['message']} ({item['rule']} at {item['where']})"
                                   for item in verdict.get("notices", ()) if item.get("code") in FREE_BY_POLICY)
    if lines and not debits and not free:
        raise CompanionError([Problem("nothing-to-activate", f"every line of this {kind} is 0 units: it would "
                                      "issue an Activation ID that debits nothing",
                                      hint="only a change the subscription policy makes free (last_month: free, or "
                                           "a reduction mid_term allows, in subscriptions.yaml) is activated "
                                           "without a debit")])
    notices = notices + free
    if not lines and not free:
        raise CompanionError([Problem("nothing-to-activate", "the configuration has no bill-of-materials lines")])
    result = locker.activate(store, user_email, configuration, compiled.rules_version, requirements_of(lines),
                             matching(compiled.catalog).applying_to(facts), on=on, kind=kind, parent=parent,
                             backdated=backdated)
    if isinstance(result, locker.Shortfall):
        return ActivationOutcome(verdict, shortfall=result, notices=notices)
    return ActivationOutcome(verdict, activation=result, notices=notices)


CONFIGURATION_KEYS = ("product", "version", "license", "term_months", "tier", "devices", "addons")


def activate_change(store: Store, compiled: CompiledCatalog, user_email: str, activation_id: str, change: dict,
                    kind: str = "amendment", *, today: date, operator: str | None = None) -> ActivationOutcome:
    """Amend or renew an activation: work out the lines with the rules, then debit the locker for them.

    CHANGE is the `change` block of an amendment request or the `renewal` block of a renewal request; the
    running subscription is the parent activation's configuration and term, and the partner's stored badges
    decide, as for any activation. The change is dated TODAY, the server's date (its months are counted
    from it); a change block dated otherwise is refused unless an OPERATOR backdates it.
    """

    if kind not in ("amendment", "renewal"):
        raise CompanionError([Problem("bad-kind", f"'{kind}' is neither an amendment nor a renewal")])
    parent = locker.get_activation(store, user_email, activation_id)
    partner, notices = stored_partner(store, compiled.catalog, user_email)
    subscription = {key: parent.configuration[key] for key in CONFIGURATION_KEYS if key in parent.configuration}
    subscription["start"] = parent.term_start.isoformat()
    block = CHANGE if kind == "amendment" else RENEWAL
    if isinstance(change, dict) and change.get("date") is None:
        change = {**change, "date": today.isoformat()}
    request = amendment_from_data({"partner": partner, "subscription": subscription, block: change},
                                  compiled.catalog, kind=block)
    _, backdated = dated(request.change.date, today, operator, f"{block}.date")
    check_follows(parent, request.change.date, block)
    result = (amend if kind == "amendment" else renew)(compiled, request)
    document = result.to_json()
    configuration = {key: document["subscription"][key] for key in CONFIGURATION_KEYS
                     if key in document["subscription"]}
    lines = document["lines"] if kind == "amendment" else document["bom"]
    # An amendment is recorded on its date and keeps its parent's term; a renewal's term starts where it says.
    on = request.change.date if kind == "amendment" else date.fromisoformat(str(document["term"]["new_start"]))
    # The facts a match's `when` is decided on: the changed configuration's, and that it is a change.
    facts = {**(result.facts or {}), "change.kind": kind}
    return activate_lines(store, compiled, user_email, configuration, document, lines, on=on, kind=kind,
                          parent=parent.id, notices=notices, backdated=backdated, facts=facts)


def check_follows(parent: locker.Activation, day: date, block: str) -> None:
    """Refuse a change dated before the activation it changes: its months were priced from that date on."""
    if day < parent.activated_on:
        raise CompanionError([Problem(
            "before-parent", f"{day} is before {parent.id}, the {parent.kind} of {parent.activated_on} this changes",
            path=f"{block}.date", hint=f"date the change on or after {parent.activated_on}")])
