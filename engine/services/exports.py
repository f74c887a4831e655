"""Bill-of-materials exports: the templates a partner is offered, and the CSV file of a bill of materials.

Public API (for the CLI and the web app):
- `exports_of(catalog)` -> the Exports model of rules/exports.yaml (CompanionError if the file is absent)
- `channels(catalog, partner, product=None)` -> the templates this partner is offered (one recommended), the
  templates hidden from them and why, and whether they may proceed to checkout
- `export_csv(compiled, request, template)` -> the CSV file as bytes (UTF-8, CRLF, RFC 4180 quoting,
  formula cells neutralised)
- `export_file_name(template, project=None)` and `CSV_MEDIA_TYPE` for a download response
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata

from engine.catalogue.model import Catalog
from engine.problem import CompanionError, Location, Problem, did_you_mean
from engine.inference.evaluate import evaluate

from engine.catalogue.policies.exports import (ACCOUNT_FORMAT, ACCOUNT_REQUIRED, MAX_ACCOUNT_LENGTH, Channel, Column,
                                               Exports, Template, exports_of)

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection"); full-width
# forms are included because some spreadsheet programs normalise them.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


# --- who sees what ------------------------------------------------------------------------------------------


def channels(catalog: Catalog, partner, product: str | None = None) -> dict:
    """Return the templates and actions a partner is offered.

    `partner` is anything with `badges`, `country` and `purchasing_account` (a request's Partner, a user row).
    `product`, when the project's product is known, prefers the channel whose badge unlocks it.
    Returns {"templates": [{id, name, description, recommended, rule, channel}], "recommended": id,
             "hidden": [{id, name, rule, reason}], "checkout": {allowed, rule, message}}.
    """
    exports = exports_of(catalog)
    badges = tuple(getattr(partner, "badges", ()) or ())
    country = getattr(partner, "country", None)
    applying = [channel for channel in exports.channels if channel.applies(badges, country)]
    offered: dict[str, Channel] = {}
    for channel in applying:
        for template_id in channel.templates:
            if template_id in exports.templates:
                offered.setdefault(template_id, channel)
    recommended = _recommended(catalog, applying, exports, product)
    order = sorted(offered, key=lambda template_id: template_id != recommended)  # stable: priority order kept
    templates = [{"id": template_id, "name": exports.templates[template_id].name,
                  "description": exports.templates[template_id].description,
                  "recommended": template_id == recommended, "rule": exports.templates[template_id].rule,
                  "channel": offered[template_id].rule} for template_id in order]
    hidden = [{"id": template.id, "name": template.name, "rule": template.rule,
               "reason": _why_hidden(exports, template.id, badges, country)}
              for template in exports.templates.values() if template.id not in offered]
    return {"templates": templates, "recommended": recommended, "hidden": hidden,
            "checkout": checkout_decision(exports, getattr(partner, "purchasing_account", None))}


def _recommended(catalog: Catalog, applying: list[Channel], exports: Exports, product: str | None) -> str | None:
    def first_template(channel: Channel) -> str | None:
        return next((template_id for template_id in channel.templates if template_id in exports.templates), None)

    if product:
        for channel in applying:
            unlocks = {unlock.product for badge in channel.badges if badge in catalog.badges
                       for unlock in catalog.badges[badge].unlocks}
            if product in unlocks and first_template(channel):
                return first_template(channel)
        applying = [channel for channel in applying if not channel.badges] or applying
    return next((first_template(channel) for channel in applying if first_template(channel)), None)


def _why_hidden(exports: Exports, template_id: str, badges, country: str | None) -> str:
    audiences = [channel.audience() for channel in exports.channels if template_id in channel.templates]
    you = ("badges " + ", ".join(badges) if badges else "no badges") + (f", country {country}" if country else
                                                                        ", no country")
    return f"offered to {' and to '.join(audiences) or 'nobody'}; you have {you}"


def checkout_decision(exports: Exports, account: str | None) -> dict:
    """Return whether a partner with this purchasing account may proceed to checkout, and if not why."""
    if exports.checkout is None:
        return {"allowed": False, "rule": "", "message": "Checkout is not offered; contact your sales representative."}
    rule = exports.checkout
    if not account or not str(account).strip():
        return {"allowed": False, "rule": ACCOUNT_REQUIRED, "message": rule.without_account}
    account = str(account).strip()
    if len(account) > MAX_ACCOUNT_LENGTH:
        return {"allowed": False, "rule": ACCOUNT_FORMAT, "message": f"{rule.invalid_account} (expected "
                f"{rule.description}; an account number has at most {MAX_ACCOUNT_LENGTH} characters)"}
    if not re.fullmatch(rule.pattern, account):
        return {"allowed": False, "rule": ACCOUNT_FORMAT,
                "message": f"{rule.invalid_account} (expected {rule.description})"}
    return {"allowed": True, "rule": ACCOUNT_REQUIRED, "message": ""}


# --- CSV ----------------------------------------------------------------------------------------------------

class ExportRefused(CompanionError):
    """The configuration is not valid, so it has no bill of materials to export."""

    def __init__(self, verdict):
        self.verdict = verdict
        problems = [Problem(item.get("code", "violation"), item.get("message", ""), Location(item.get("where", "")),
                            rule=item.get("rule", "")) for item in verdict.violations]
        super().__init__(problems or [Problem("refused", "the configuration is not valid")])


class TemplateNotAvailable(CompanionError):
    """The template does not exist, or this partner is not offered it."""


def template_for(catalog: Catalog, partner, template_id: str) -> Template:
    """Return the template if this partner is offered it; raise TemplateNotAvailable saying why not."""
    exports = exports_of(catalog)
    offer = channels(catalog, partner)
    available = [item["id"] for item in offer["templates"]]
    if template_id not in exports.templates:
        hint = did_you_mean(template_id, exports.templates) or ""
        hint = (hint + " " if hint else "") + "your templates: " + ", ".join(available)
        raise TemplateNotAvailable([Problem("unknown-template", f"no export template {template_id!r}",
                                            Location(exports.file), hint=hint)])
    if template_id not in available:
        template = exports.templates[template_id]
        reason = next(item["reason"] for item in offer["hidden"] if item["id"] == template_id)
        raise TemplateNotAvailable([Problem("template-not-offered", f"the {template.name} template is {reason}",
                                            template.where, rule=template.rule,
                                            hint="your templates: " + ", ".join(available))])
    return exports.templates[template_id]


def export_csv(compiled, request, template: str) -> bytes:
    """Return the bill of materials of a valid request as a CSV file in the named template.

    Raises TemplateNotAvailable (unknown template, or not offered to this partner) and ExportRefused (the
    configuration is refused, so it has no bill of materials), both CompanionErrors.
    """
    catalog = compiled.catalog
    chosen = template_for(catalog, request.partner, template)
    verdict = evaluate(compiled, request)
    if not verdict.valid:
        raise ExportRefused(verdict)
    return render_csv(catalog, chosen, request, verdict.bom)


def render_csv(catalog: Catalog, template: Template, request, bom: list[dict]) -> bytes:
    """Write BOM lines as CSV: a header row, then one row per line; RFC 4180, CRLF, UTF-8 (with a BOM if set)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, dialect="excel", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([neutralise(column.header) for column in template.columns])
    for number, line in enumerate(bom, start=1):
        writer.writerow([cell(column, field_value(catalog, request, line, number, column.field))
                         for column in template.columns])
    text = buffer.getvalue()
    return ("\ufeff" + text if template.byte_order_mark else text).encode("utf-8")


def field_value(catalog: Catalog, request, line: dict, number: int, field: str | None):
    """Return the value of a column field for one BOM line."""
    configuration, partner = request.configuration, request.partner
    product = catalog.products.get(configuration.product)
    if field == "line":
        return number
    if field in ("reference", "description", "quantity", "months", "rule"):
        return line.get(field)
    if field == "product":
        return configuration.product
    if field == "product_name":
        return product.name if product else configuration.product
    if field == "version":
        return configuration.version or (product.latest_version if product else None)
    if field == "tier":
        tier = product.tier(configuration.tier) if product and configuration.tier else None
        return tier.name if tier else configuration.tier
    if field == "license":
        return configuration.license
    if field in ("country", "company", "purchasing_account"):
        return getattr(partner, field, None)
    return None


def cell(column: Column, value) -> str:
    """Format one cell: a fixed value, a whole number, or neutralised text; `empty` when there is no value."""
    if column.value is not None:
        return neutralise(column.value)
    if value is None or value == "":
        return neutralise(column.empty)
    if column.format == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # digits, perhaps after a minus sign: a number to a spreadsheet, never a formula
    return neutralise(str(value))


def neutralise(text: str) -> str:
    """Prefix a single quote to text a spreadsheet would run as a formula (=, +, -, @, tab, CR first)."""
    return "'" + text if text.lstrip(" \n").startswith(FORMULA_STARTS) else text


def export_file_name(template: str, project: str | None = None) -> str:
    """Return a safe download file name such as `my-project-iportal.csv`."""
    base = unicodedata.normalize("NFKD", project or "bom").encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^A-Za-z0-9]+", "-", base).strip("-").lower()[:80] or "bom"
    return f"{base}-{template}.csv"
