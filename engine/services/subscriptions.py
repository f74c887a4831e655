"""Mid-term amendments and renewals of a subscription, worked out over a compiled catalogue.

Amendment lines carry a commercial reference priced per month: a tier change along a declared upgrade path
(rule `upgrade.<product>.<from>.<to>`), device licences (`amendment.<product>.devices`) and add-ons
(`amendment.<product>.addon.<id>`); quantity x months = units. Device licences already paid for stay for the
term: after a tier upgrade that includes more devices, the subscription covers the new tier's included
devices plus the licences paid, and only licences beyond those are charged.

Downgrades, fewer devices and removed add-ons are refused mid-term unless the policy allows them
(`mid_term.tier-downgrade`, `fewer-devices`, `addon-removal`: allowed); an allowed one changes the state at once
and is never credited.

A renewal starts a new term at the old end date (`renewal.start: old-end`, the default) or, with `renewal.start:
renewal-date`, on the renewal's date even before the end (the rest of the old term is lost, and a notice says
so), for the current or a changed configuration (downgrades and removals allowed); a renewal asked for after
the end date is back-dated to the old end date (`late:
backdate`, the default: no unlicensed gap, and the lapsed days are not free) or starts on the renewal date
(`late: restart`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from engine.catalogue.model import PERPETUAL
from engine.catalogue.policies.subscriptions import AmendmentRef, SubscriptionPolicy, policy_of
from engine.catalogue.conditions import text
from engine.inference import explain
from engine.inference.evaluate import change_facts, evaluate, request_facts, run_change, shown_facts
from engine.inference.request import AddonChoice, Configuration, Request
from engine.problem import Location
from engine.services.changes import AmendmentRequest
from engine.services.months import Proration, add_months


# ---------------------------------------------------------------------------------------------------------
# Amending and renewing


@dataclass
class Amendment:
    """What a mid-term change costs, what the subscription becomes, and why."""

    valid: bool
    violations: list[dict]
    notices: list[dict]
    lines: list[dict]
    subscription: dict  # the end state: the unchanged term and the changed configuration
    term: dict  # start, end, date, month and months charged
    rules_version: str
    steps: list[str] = field(default_factory=list)  # the month derivation, for people
    fired: list[dict] = field(default_factory=list)  # the rules that fired, in order
    configuration: Configuration | None = field(default=None, repr=False)
    facts: dict | None = field(default=None, repr=False)  # the facts the amended configuration's rules saw
    change: dict | None = field(default=None, repr=False)  # those facts and the tier change's, if the tier changes

    def to_json(self, explain_rules: bool = False) -> dict:
        """Return the amendment as a JSON-ready document."""
        data = {"kind": "amendment", "valid": self.valid, "violations": self.violations, "notices": self.notices,
                "lines": self.lines, "subscription": self.subscription, "term": self.term,
                "rules_version": self.rules_version}
        if explain_rules:
            data["explanation"] = {"months": self.steps, "rules": self.fired}
        return data


@dataclass
class Renewal:
    """The new term, its configuration and bill of materials, and why."""

    valid: bool
    violations: list[dict]
    notices: list[dict]
    bom: list[dict]
    subscription: dict  # the renewed subscription: new start, term and end, and its configuration
    term: dict
    rules_version: str
    steps: list[str] = field(default_factory=list)
    fired: list[dict] = field(default_factory=list)
    configuration: Configuration | None = field(default=None, repr=False)
    facts: dict | None = field(default=None, repr=False)  # the facts the renewed configuration's rules saw
    change: dict | None = field(default=None, repr=False)  # a renewal decides no upgrade path: always None

    def to_json(self, explain_rules: bool = False) -> dict:
        """Return the renewal as a JSON-ready document."""
        data = {"kind": "renewal", "valid": self.valid, "violations": self.violations, "notices": self.notices,
                "bom": self.bom, "subscription": self.subscription, "term": self.term,
                "rules_version": self.rules_version}
        if explain_rules:
            data["explanation"] = {"steps": self.steps, "rules": self.fired}
        return data


class _Outcome:
    """Collects violations, notices and fired rules while an amendment or renewal is worked out."""

    def __init__(self, request: AmendmentRequest, end: dt.date | None = None):
        self.request = request
        self.end = end  # the end of the running term, for hints
        self.violations: list[dict] = []
        self.notices: list[dict] = []
        self.fired: list[dict] = []
        self.moved: dict | None = None  # the facts of a tier move, once the engine has decided it

    def fire(self, rule: str, where: Location | str, what: str) -> None:
        self.fired.append({"rule": rule, "where": str(where), "what": what})

    def refuse(self, rule: str, where: Location | str, code: str, message: str, hint: str, *path) -> None:
        at, shown = self.request.at(*path)
        self.fire(rule, where, f"refused: {message}")
        self.violations.append({"rule": rule, "code": code, "message": message, "where": str(where), "hint": hint,
                                "at": at, "path": shown})

    def notice(self, rule: str, where: Location | str, code: str, message: str) -> None:
        self.notices.append({"rule": rule, "code": code, "message": message, "where": str(where)})


def amend(compiled, request: AmendmentRequest) -> Amendment:
    """Work out a mid-term amendment: the lines charged for the remaining months, the new state, and why."""
    catalog = compiled.catalog
    policy = policy_of(catalog)
    product = catalog.products[request.subscription.product]
    sub, change = request.subscription, request.change
    out = _Outcome(request)
    if sub.license == PERPETUAL:
        out.refuse(policy.perpetual.rule, policy.perpetual.where, "no-term",
                   "a perpetual licence has no term: there are no remaining months to amend",
                   "buy the added items as perpetual licences (companion validate), or move to a subscription",
                   "subscription", "license")
        return Amendment(False, out.violations, out.notices, [], _state(sub, request.start, None), {},
                         catalog.rules_version, [], out.fired, sub)
    proration = Proration(request.start, sub.term_months, change.date, policy.partial_month.value,
                          policy.last_month.value)
    end = out.end = proration.end
    term = {"start": str(request.start), "term_months": sub.term_months, "end": str(end),
            "last_day": str(end - dt.timedelta(days=1)), "date": str(change.date)}
    steps: list[str] = []
    if change.date < request.start:
        out.refuse(policy.unit.rule, policy.unit.where, "before-start",
                   f"the amendment date {change.date} is before the subscription starts ({request.start})",
                   f"date it on or after {request.start}", "@", "date")
    elif change.date >= end:
        out.refuse(policy.unit.rule, policy.unit.where, "after-end",
                   f"the amendment date {change.date} is on or after the end of the term ({end}; last day covered "
                   f"{end - dt.timedelta(days=1)})", "renew the subscription instead: companion renew", "@", "date")
    else:
        steps = proration.steps(policy)
        term.update(month=proration.index + 1, month_start=str(proration.month_start),
                    month_last_day=str(proration.month_next - dt.timedelta(days=1)), started=proration.started,
                    partial_month=policy.partial_month.value, last_month=policy.last_month.value,
                    months=proration.months)
        out.fire(policy.unit.rule, policy.unit.where,
                 f"{sub.term_months} calendar months from {request.start}: ends {end}; {change.date} is in month "
                 f"{proration.index + 1}")
        if proration.in_last_month:
            _last_month(out, policy, proration)
        else:
            out.fire(policy.partial_month.rule, policy.partial_month.where,
                     (f"{change.date} is inside month {proration.index + 1}, begun on {proration.month_start}: "
                      if proration.started else f"{change.date} is the first day of month {proration.index + 1}: ")
                     + f"partial_month {policy.partial_month.value}, {proration.months} months charged")
    months = proration.months if not out.violations else 0
    amendments = policy.products.get(product.id)
    lines: list[dict] = []
    month = proration.index + 1 if not out.violations else None
    tier = _tier_change(out, compiled, request, policy, product, sub, change, amendments, (months, month), lines)
    devices = _device_change(out, policy, catalog, product, sub, tier, change, amendments, months, lines)
    addons = _addon_change(out, policy, catalog, product, sub, change, amendments, months, lines)
    written = change.tier_written if change.tier and tier == change.tier else sub.tier_written
    configuration = replace(sub, tier=tier, tier_written=written, devices=devices, addons=addons)
    if not lines and not out.violations and (tier, devices, addons) == (sub.tier, sub.devices, sub.addons):
        out.notice(policy.unit.rule, policy.unit.where, "no-change", "the change leaves the subscription as it is; "
                   "nothing is charged")
    verdict = evaluate(compiled, Request(request.partner, configuration, request.file))
    out.violations.extend(verdict.violations)
    out.notices.extend(verdict.notices)
    for item in verdict.trace:
        out.fire(item["rule"], item["where"], f"amended configuration: {item['condition']}")
    valid = not out.violations
    return Amendment(valid, out.violations, out.notices, lines if valid else [],
                     _state(configuration, request.start, end), term, catalog.rules_version, steps, out.fired,
                     configuration, verdict.facts, out.moved)


def _last_month(out: _Outcome, policy: SubscriptionPolicy, proration: Proration) -> None:
    """Apply policy.last-month to a change dated inside the last month of the term, after its first day."""
    rule, value = policy.last_month, policy.last_month.value
    month = (f"{proration.date} is inside the last month of the term (month {proration.term} of {proration.term}, "
             f"{proration.month_start} .. {proration.end - dt.timedelta(days=1)})")
    if value == "refuse":
        out.refuse(rule.rule, rule.where, "last-month", f"{month}; the policy accepts no change once the last month "
                   "has begun (last_month: refuse)",
                   f"renew instead: companion renew with the change; the new term starts on {proration.end}",
                   "@", "date")
        return
    out.fire(rule.rule, rule.where, f"{month}: last_month {value}, "
             f"{proration.months} month{'' if proration.months == 1 else 's'} charged")
    if value == "free":
        out.notice(rule.rule, rule.where, "last-month-free",
                   f"{month}: last_month free, nothing is charged for this change")


def _line(ref: AmendmentRef, policy: SubscriptionPolicy, quantity: int, months: int) -> dict:
    sellable = policy.sellables[ref.reference]
    units = quantity * months
    derivation = f"{months} month{'' if months == 1 else 's'} x " \
        + (f"{quantity} x " if quantity != 1 or ref.kind == "devices" else "") + ref.label
    if quantity != 1:
        derivation += f" = {units}"
    return {"reference": ref.reference, "description": sellable.description, "quantity": quantity,
            "months": months, "units": units, "derivation": derivation, "rule": ref.rule, "where": str(ref.where)}


def _missing_reference(out: _Outcome, policy: SubscriptionPolicy, rule: str, what: str, *path) -> None:
    out.refuse(rule, policy.where, "no-amendment-reference", f"no amendment reference is declared for {what}",
               "add it to subscriptions.yaml (companion check lists what is missing)", *path)


def _upgrade_path(out, compiled, request, product, old, new, months, month) -> tuple:
    """Ask the engine whether OLD -> NEW is a declared upgrade path open for this subscription.

    Return the path (None when closed) and, when closed, each condition of the deciding rule with its value.
    """
    sub, change = request.subscription, request.change
    running = Request(request.partner, sub, request.file, date=change.date)  # the subscription, on the change's day
    facts = request_facts(product, running,
                          change_facts(product, "amendment", old.id, new.id, month, months),
                          addons=tuple(compiled.catalog.addons.get(product.id, {})))
    out.moved = facts  # what the upgrade-path rules decided on, for condition coverage
    fired = run_change(compiled, product.id, facts)
    shown = shown_facts(product, running, facts)
    for rule in fired:
        conditions = explain.conditions(rule, facts, shown)
        out.fire(rule.rule, rule.where, f"{rule.condition}: " + "; ".join(
            f"{item['condition']} {HELD_WORDS[item['held']]} (saw {_seen(item['saw'])}, at {item['where']})"
            for item in conditions))
        if rule.kind == "path":
            return next(item for item in product.upgrades if item.rule == rule.rule), []
        if rule.code == "not-an-upgrade-path":
            return None, conditions
    raise RuntimeError(f"compiler bug: no change rule decided {product.id} {old.id} -> {new.id}")


HELD_WORDS = {True: "holds", False: "fails", "unknown": "is unknown"}


def _seen(value) -> str:
    """Show a fact's value as the explanation lists it: a list by its items, a missing fact as not given."""
    if value is None:
        return "not given"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _tier_change(out, compiled, request, policy, product, sub, change, amendments, when, lines) -> str:
    """Check and charge a tier change along a path the engine opens; return the tier of the end state."""
    months, month = when
    if change.tier is None or change.tier == sub.tier:
        return sub.tier
    old, new = product.tier(sub.tier), product.tier(change.tier)
    if new.rank < old.rank:
        rule = policy.mid_term["tier-downgrade"]
        if policy.allows("tier-downgrade"):
            out.fire(rule.rule, rule.where, f"tier downgrade {old.id} -> {new.id} allowed mid-term, not credited")
            out.notice(rule.rule, rule.where, "not-credited", f"tier {old.id} goes down to {new.id} on {change.date}; "
                       f"nothing is credited for the rest of the term (ends {out.end})")
            return new.id
        out.refuse(rule.rule, rule.where, "mid-term-downgrade",
                   f"tier {old.id} cannot go down to {new.id} during the term; downgrades are not credited",
                   f"downgrade at the renewal on {out.end}: companion renew with tier: {new.id}", "@", "tier")
        return sub.tier
    upgrade, refusal = _upgrade_path(out, compiled, request, product, old, new, months, month)
    if upgrade is None:
        paths = [f"{item.source}->{item.target} ({item.where})" for item in product.upgrades if item.source == old.id]
        rule = policy.mid_term["tier-upgrade"]
        closed = [item for item in product.upgrades if (item.source, item.target) == (old.id, new.id)]
        if closed:  # declared, but its condition does not hold: the path's own rule refuses
            out.refuse(closed[0].rule, closed[0].where, "not-an-upgrade-path",
                       f"the upgrade path {old.id} -> {new.id} is open only when {text(closed[0].when)}",
                       "upgrade by another declared path, or at the renewal on " + str(out.end), "@", "tier")
        else:
            out.refuse(rule.rule, rule.where, "not-an-upgrade-path",
                       f"{product.id} declares no upgrade path {old.id} -> {new.id}",
                       ("upgrade paths from " + old.id + ": " + ", ".join(paths)) if paths
                       else f"no upgrade path leaves {old.id}", "@", "tier")
        out.violations[-1]["conditions"] = refusal
        return sub.tier
    rule = policy.mid_term["tier-upgrade"]
    if not policy.allows("tier-upgrade"):
        out.refuse(rule.rule, rule.where, "not-allowed-mid-term", "the policy allows no tier upgrade mid-term",
                   f"upgrade at the renewal on {out.end}: companion renew with tier: {new.id}", "@", "tier")
        return sub.tier
    ref = amendments.tiers.get((old.id, new.id)) if amendments else None
    if ref is None:
        _missing_reference(out, policy, upgrade.rule, f"{product.id} {old.id} -> {new.id}", "@", "tier")
        return sub.tier
    out.fire(rule.rule, rule.where, f"tier upgrade {old.id} -> {new.id} allowed mid-term")
    out.fire(upgrade.rule, upgrade.where, f"declared upgrade path {old.id} -> {new.id}: {months} months x "
             f"{ref.reference}")
    lines.append(_line(ref, policy, 1, months))
    return new.id


def _device_change(out, policy, catalog, product, sub, tier_id, change, amendments, months, lines) -> int:
    """Check and charge more devices; return the device total of the end state.

    Device licences paid for stay for the term: paid = devices beyond what the old tier includes. The end
    state covers the new tier's included devices plus the licences paid; only licences beyond those are
    charged.
    """
    old_tier, new_tier = product.tier(sub.tier), product.tier(tier_id)
    wanted = sub.devices if change.devices is None else change.devices
    paid = max(0, sub.devices - old_tier.devices_included)
    fewer = wanted < sub.devices
    if fewer and policy.allows("fewer-devices"):
        # The partner gives the licences up: the end state is what was asked for, not what was paid for.
        rule = policy.mid_term["fewer-devices"]
        out.fire(rule.rule, rule.where, f"fewer devices allowed mid-term, not credited: {sub.devices} -> {wanted}")
        out.notice(rule.rule, rule.where, "not-credited", f"devices go down from {sub.devices} to {wanted} on "
                   f"{change.date}; nothing is credited for the rest of the term (ends {out.end})")
        needed = max(0, wanted - new_tier.devices_included)
        quantity, total = max(0, needed - paid), wanted
    else:
        if fewer:
            rule = policy.mid_term["fewer-devices"]
            out.refuse(rule.rule, rule.where, "mid-term-removal",
                       f"devices cannot go down from {sub.devices} to {wanted} during the term; licences are not "
                       "credited", f"reduce them at the renewal on {out.end}: companion renew with devices: {wanted}",
                       "@", "devices")
            wanted = sub.devices
        needed = max(paid, wanted - new_tier.devices_included)
        quantity = needed - paid
        total = wanted if needed == 0 else new_tier.devices_included + needed
    if total > wanted and tier_id != sub.tier:
        ref = amendments.devices if amendments and amendments.devices else policy.mid_term["more-devices"]
        out.notice(ref.rule, ref.where, "devices-kept",
                   f"the {paid} device licences paid for stay until the end of the term; {new_tier.name} includes "
                   f"{new_tier.devices_included} devices, so the subscription now covers {total} devices")
    if quantity <= 0:
        return total
    rule = policy.mid_term["more-devices"]
    if new_tier.devices_included < old_tier.devices_included:
        out.notice(rule.rule, rule.where, "devices-after-downgrade",
                   f"{new_tier.name} includes {new_tier.devices_included} devices ({old_tier.name} "
                   f"{old_tier.devices_included}): {total} devices need {quantity} more device licences")
    if not policy.allows("more-devices"):
        out.refuse(rule.rule, rule.where, "not-allowed-mid-term", "the policy allows no more devices mid-term",
                   f"add them at the renewal on {out.end}: companion renew", "@", "devices")
        return sub.devices  # the amendment is refused; the state is not used
    ref = amendments.devices if amendments else None
    if ref is None:
        _missing_reference(out, policy, f"amendment.{product.id}.devices", f"{product.id} devices", "@", "devices")
        return sub.devices
    out.fire(rule.rule, rule.where, f"more devices allowed mid-term: {sub.devices} -> {total}")
    out.fire(ref.rule, ref.where, f"device licences {paid} -> {needed} (tier {new_tier.id} includes "
             f"{new_tier.devices_included}): {quantity} x {months} months")
    lines.append(_line(ref, policy, quantity, months))
    return total


def _addon_change(out, policy, catalog, product, sub, change, amendments, months, lines) -> tuple[AddonChoice, ...]:
    """Check and charge added add-ons, refuse removals; return the add-ons of the end state."""
    held = {addon.id: addon.quantity for addon in sub.addons}
    for index, removal in enumerate(change.removals):
        rule = policy.mid_term["addon-removal"]
        if policy.allows("addon-removal"):
            before = held[removal.id]
            held[removal.id] -= removal.quantity or before
            left = f"goes down from {before} to {held[removal.id]}" if held[removal.id] else "is removed"
            out.fire(rule.rule, rule.where, f"add-on {removal.id} {left} mid-term, not credited")
            out.notice(rule.rule, rule.where, "not-credited", f"add-on {removal.id} {left} on {change.date}; nothing "
                       f"is credited for the rest of the term (ends {out.end})")
            continue
        out.refuse(rule.rule, rule.where, "mid-term-removal",
                   f"add-on {removal.id} cannot be removed during the term; add-ons are not credited",
                   f"remove it at the renewal on {out.end}: companion renew with remove_addons", "@", "remove_addons",
                   index, "id")
    for index, addon in enumerate(change.addons):
        rule = policy.mid_term["more-addons"]
        if not policy.allows("more-addons"):
            out.refuse(rule.rule, rule.where, "not-allowed-mid-term", "the policy allows no added add-ons mid-term",
                       f"add them at the renewal on {out.end}: companion renew", "@", "addons", index, "id")
            continue
        ref = amendments.addons.get(addon.id) if amendments else None
        if ref is None:
            _missing_reference(out, policy, f"amendment.{product.id}.addon.{addon.id}", f"{product.id} {addon.id}",
                               "@", "addons", index, "id")
            continue
        out.fire(rule.rule, rule.where, f"add-on {addon.id} added mid-term: {held.get(addon.id, 0)} -> "
                 f"{held.get(addon.id, 0) + addon.quantity}")
        out.fire(ref.rule, ref.where, f"{addon.quantity} x {months} months")
        lines.append(_line(ref, policy, addon.quantity, months))
        held[addon.id] = held.get(addon.id, 0) + addon.quantity
    order = [addon.id for addon in sub.addons] + [addon.id for addon in change.addons if addon.id not in
                                                   {held_addon.id for held_addon in sub.addons}]
    return tuple(AddonChoice(addon_id, held[addon_id]) for addon_id in order if held.get(addon_id, 0) > 0)


def _state(configuration: Configuration, start: dt.date, end: dt.date | None) -> dict:
    data = configuration.to_json()
    data["start"] = str(start)
    if end is not None:
        data["end"] = str(end)
        data["last_day"] = str(end - dt.timedelta(days=1))
    return data


def renew(compiled, request: AmendmentRequest) -> Renewal:
    """Work out a renewal: the new term (from the old end or as the policy says), its bill of materials, and why."""
    catalog = compiled.catalog
    policy = policy_of(catalog)
    product = catalog.products[request.subscription.product]
    sub, change = request.subscription, request.change
    out = _Outcome(request)
    if sub.license == PERPETUAL:
        out.refuse(policy.perpetual.rule, policy.perpetual.where, "no-term",
                   "a perpetual licence has no term: there is nothing to renew",
                   "perpetual licences need no renewal", "subscription", "license")
        return Renewal(False, out.violations, out.notices, [], _state(sub, request.start, None), {},
                       catalog.rules_version, [], out.fired, sub)
    end = add_months(request.start, sub.term_months)
    new_term = change.term_months or sub.term_months
    steps = [f"current term: {sub.term_months} calendar months from {request.start} -> ends {end} "
             f"(last day covered {end - dt.timedelta(days=1)}) [{policy.unit.rule}]"]
    new_start = end
    if change.date < request.start:
        out.refuse(policy.unit.rule, policy.unit.where, "before-start",
                   f"the renewal date {change.date} is before the subscription starts ({request.start})",
                   f"date it on or after {request.start}", "@", "date")
    elif change.date < end and policy.renewal.value == "renewal-date":
        lost = (end - change.date).days
        new_start = change.date
        steps.append(f"renewal asked for on {change.date}, before the end: the new term starts on the renewal date; "
                     f"the {lost} days left of the current term are lost [{policy.renewal.rule}: renewal-date]")
        out.fire(policy.renewal.rule, policy.renewal.where, f"new term starts on the renewal date {change.date}")
        out.notice(policy.renewal.rule, policy.renewal.where, "early-renewal",
                   f"renewed {lost} days before the end ({end}); the new term starts on {change.date}, and the rest of "
                   f"the current term, {change.date} .. {end - dt.timedelta(days=1)}, is not credited")
    elif change.date < end:
        steps.append(f"renewal asked for on {change.date}, before the end: the current term runs to its end; the "
                     f"new term starts on {end} [{policy.renewal.rule}]")
        out.fire(policy.renewal.rule, policy.renewal.where, f"new term starts at the old end date {end}")
    elif policy.late.value == "backdate":
        lapsed = (change.date - end).days
        new_end = add_months(end, new_term)
        if change.date >= new_end:
            out.refuse(policy.late.rule, policy.late.where, "renewal-lapsed",
                       f"the renewal date {change.date} is after the whole back-dated term ({end} .. {new_end})",
                       "order a new subscription instead (companion validate)", "@", "date")
        else:
            steps.append(f"renewal asked for on {change.date}, {lapsed} days after the end: back-dated, the new term "
                         f"starts on the old end date {end} [{policy.late.rule}: backdate]")
            out.fire(policy.late.rule, policy.late.where, f"late by {lapsed} days: back-dated to {end}")
            out.notice(policy.late.rule, policy.late.where, "late-renewal",
                       f"renewed {lapsed} days after the end ({end}); the new term is back-dated to start on {end} so "
                       "that the licence has no gap; the lapsed days are part of the new term")
    else:
        lapsed = (change.date - end).days
        new_start = change.date
        steps.append(f"renewal asked for on {change.date}, {lapsed} days after the end: the new term starts on the "
                     f"renewal date [{policy.late.rule}: restart]")
        out.fire(policy.late.rule, policy.late.where, f"late by {lapsed} days: restarts on {change.date}")
        out.notice(policy.late.rule, policy.late.where, "late-renewal",
                   f"renewed {lapsed} days after the end ({end}); the new term starts on {change.date}; the system "
                   f"was unlicensed from {end} to {change.date - dt.timedelta(days=1)}")
    new_end = add_months(new_start, new_term)
    steps.append(f"new term: {new_term} calendar months from {new_start} -> ends {new_end} "
                 f"(last day covered {new_end - dt.timedelta(days=1)})")
    configuration = _renewed_configuration(out, policy, product, sub, change, new_term)
    verdict = evaluate(compiled, Request(request.partner, configuration, request.file))
    out.violations.extend(verdict.violations)
    out.notices.extend(verdict.notices)
    for item in verdict.trace:
        out.fire(item["rule"], item["where"], f"renewed configuration: {item['condition']}")
    term = {"start": str(request.start), "term_months": sub.term_months, "end": str(end), "date": str(change.date),
            "new_start": str(new_start), "new_term_months": new_term, "new_end": str(new_end),
            "new_last_day": str(new_end - dt.timedelta(days=1))}
    valid = not out.violations
    return Renewal(valid, out.violations, out.notices, verdict.bom if valid else [],
                   _state(configuration, new_start, new_end), term, catalog.rules_version, steps, out.fired,
                   configuration, verdict.facts)


def _renewed_configuration(out, policy, product, sub, change, new_term) -> Configuration:
    tier = change.tier or sub.tier
    if tier != sub.tier:
        old, new = product.tier(sub.tier), product.tier(tier)
        direction = "downgrade" if new.rank < old.rank else "change"
        out.fire(policy.renewal.rule, policy.renewal.where, f"tier {direction} {old.id} -> {new.id} at renewal")
        if new.rank < old.rank:
            out.notice(policy.renewal.rule, policy.renewal.where, "renewal-downgrade",
                       f"tier {old.id} goes down to {new.id} with the new term (allowed at renewal)")
    devices = sub.devices if change.devices is None else change.devices
    if devices < sub.devices:
        out.notice(policy.renewal.rule, policy.renewal.where, "renewal-removal",
                   f"devices go down from {sub.devices} to {devices} with the new term (allowed at renewal)")
    held = {addon.id: addon.quantity for addon in sub.addons}
    order = [addon.id for addon in sub.addons]
    for removal in change.removals:
        held[removal.id] -= removal.quantity or held[removal.id]
        left = f"goes down to {held[removal.id]}" if held[removal.id] else "is removed"
        out.notice(policy.renewal.rule, policy.renewal.where, "renewal-removal",
                   f"add-on {removal.id} {left} with the new term (allowed at renewal)")
    for addon in change.addons:
        if addon.id not in held:
            order.append(addon.id)
        held[addon.id] = held.get(addon.id, 0) + addon.quantity
    addons = tuple(AddonChoice(addon_id, held[addon_id]) for addon_id in order if held.get(addon_id, 0) > 0)
    written = change.tier_written if change.tier else sub.tier_written
    return replace(sub, term_months=new_term, tier=tier, tier_written=written, devices=devices, addons=addons)
