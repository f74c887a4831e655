"""Bill-of-materials exports: CSV templates and the channel rules that decide who sees which (rules/exports.yaml).

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
from dataclasses import dataclass
from typing import Iterator, Mapping

from engine.catalogue.load import EXTENSIONS, RuleFile, extra_of
from engine.catalogue.model import Catalog, frozen
from engine.problem import CompanionError, Location, Problem, did_you_mean
from engine.catalogue.schema import register_rule_file
from engine.catalogue.source import Source

FILE = "exports.yaml"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
INTEGER_FIELDS = frozenset({"quantity", "months", "line"})
# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection"); full-width
# forms are included because some spreadsheet programs normalise them.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
ACCOUNT_REQUIRED = "checkout.account-required"
ACCOUNT_FORMAT = "checkout.account-format"
# An account longer than this is refused before the rules' pattern runs, so matching stays quick whatever
# the partner types (account numbers are short; the bundled format is 8 to 10 digits).
MAX_ACCOUNT_LENGTH = 64


@dataclass(frozen=True)
class Column:
    """One CSV column: its header and where its value comes from."""

    header: str
    field: str | None
    value: str | None
    format: str
    empty: str
    where: Location


@dataclass(frozen=True)
class Template:
    """A CSV template: columns in order."""

    id: str
    name: str
    description: str
    columns: tuple[Column, ...]
    byte_order_mark: bool
    rule: str
    where: Location


@dataclass(frozen=True)
class Channel:
    """Which partners (badges, countries) are offered which templates."""

    id: str
    badges: tuple[str, ...]
    countries: tuple[str, ...]
    templates: tuple[str, ...]
    rule: str
    where: Location
    template_spots: tuple[Location, ...]
    badge_spots: tuple[Location, ...]

    def applies(self, badges, country: str | None) -> bool:
        """Return whether a partner with these badges and country is in this channel."""
        if self.badges and not set(self.badges) & set(badges):
            return False
        return not self.countries or country in self.countries

    def audience(self) -> str:
        """Describe who the channel is for: `building-automation partners in US`."""
        who = " or ".join(self.badges) + " partners" if self.badges else "partners"
        return who + (" in " + ", ".join(self.countries) if self.countries else "")


@dataclass(frozen=True)
class Checkout:
    """Who may proceed to checkout: the declared account format and the messages for everyone else."""

    pattern: str
    description: str
    without_account: str
    invalid_account: str
    where: Location  # the without_account message: rule checkout.account-required
    where_pattern: Location  # rule checkout.account-format


@dataclass(frozen=True)
class Exports:
    """The model of rules/exports.yaml."""

    templates: Mapping[str, Template]
    channels: tuple[Channel, ...]
    checkout: Checkout | None
    file: str
    where_channels: Location
    duplicates: tuple[tuple[str, str, Location], ...]  # (kind, id, where) of ids defined twice


def build(source: Source, catalog: Catalog) -> Exports:
    """Build the exports model from a schema-valid exports.yaml; the first of duplicate ids wins."""
    data = source.data
    templates: dict[str, Template] = {}
    duplicates = []
    for index, item in enumerate(data["templates"]):
        path = ("templates", index)
        columns = tuple(
            Column(column["header"], column.get("field"), column.get("value"), column.get("format", "text"),
                   column.get("empty", ""), source.where(path + ("columns", position)))
            for position, column in enumerate(item["columns"]))
        template = Template(item["id"], item["name"], item.get("description", ""), columns,
                            item.get("byte_order_mark", True), f"export.{item['id']}", source.where(path + ("id",)))
        if template.id in templates:
            duplicates.append(("template", template.id, template.where))
        templates.setdefault(template.id, template)
    channels = []
    seen: set[str] = set()
    for index, item in enumerate(data["channels"]):
        path = ("channels", index)
        when = item.get("when", {})
        channel = Channel(
            item["id"], tuple(when.get("badges", ())), tuple(when.get("countries", ())), tuple(item["templates"]),
            f"channel.{item['id']}", source.where(path + ("id",)),
            tuple(source.where(path + ("templates", position)) for position in range(len(item["templates"]))),
            tuple(source.where(path + ("when", "badges", position)) for position in range(len(when.get("badges", ())))))
        if channel.id in seen:
            duplicates.append(("channel", channel.id, channel.where))
            continue
        seen.add(channel.id)
        channels.append(channel)
    checkout = None
    if "checkout" in data:
        block = data["checkout"]
        checkout = Checkout(block["account"]["pattern"], block["account"]["description"],
                            " ".join(block["without_account"].split()),
                            " ".join(block.get("invalid_account", block["without_account"]).split()),
                            source.where(("checkout", "without_account")),
                            source.where(("checkout", "account", "pattern")))
    return Exports(frozen(templates), tuple(channels), checkout, source.file, source.where_key(("channels",)),
                   tuple(duplicates))


def check(catalog: Catalog) -> Iterator[Problem]:
    """Check what the schema cannot: duplicate ids and headers, unknown templates and badges, formats, fallbacks.

    Passing: a channel `{id: everyone, templates: [generic]}` with a template `generic` defined.
    Failing: `templates: [genric]` -> error[unknown-ref] channel.everyone: ... did you mean 'generic'?
    """
    exports = catalog.extras.get(FILE)
    if exports is None:
        return
    for kind, item_id, where in exports.duplicates:
        yield Problem("duplicate-id", f"{kind} id '{item_id}' is defined twice", where,
                      rule=f"{'export' if kind == 'template' else 'channel'}.{item_id}", hint="rename or remove one")
    for template in exports.templates.values():
        headers: dict[str, Location] = {}
        for column in template.columns:
            if column.header in headers:
                yield Problem("duplicate-header", f"header '{column.header}' appears twice in template "
                              f"'{template.id}' (first at line {headers[column.header].line})", column.where,
                              rule=template.rule, hint="importers match columns by header; make each unique")
            headers.setdefault(column.header, column.where)
            if column.format == "integer" and column.field is not None and column.field not in INTEGER_FIELDS:
                yield Problem("bad-format", f"field '{column.field}' is not a whole number; it cannot be "
                              "formatted as integer", column.where, rule=template.rule,
                              hint="use format: text, or an integer field: " + ", ".join(sorted(INTEGER_FIELDS)))
            if column.value is not None and (column.empty or column.format != "text"):
                yield Problem("unused-setting", "a fixed value is written as it is; format and empty are ignored",
                              column.where, rule=template.rule, severity="warning", hint="remove them")
    offered: set[str] = set()
    fallback = False
    for channel in exports.channels:
        fallback = fallback or (not channel.badges and not channel.countries)
        for template_id, where in zip(channel.templates, channel.template_spots):
            offered.add(template_id)
            if template_id not in exports.templates:
                yield Problem("unknown-ref", f"channel offers template '{template_id}', which is not defined", where,
                              rule=channel.rule, hint=did_you_mean(template_id, exports.templates)
                              or "templates: " + ", ".join(exports.templates))
        for badge, where in zip(channel.badges, channel.badge_spots):
            if badge not in catalog.badges:
                yield Problem("unknown-ref", f"channel names badge '{badge}', which is not defined", where,
                              rule=channel.rule, hint=did_you_mean(badge, catalog.badges)
                              or "badges: " + ", ".join(catalog.badges))
    for template in exports.templates.values():
        if template.id not in offered:
            yield Problem("unreachable", f"no channel offers template '{template.id}'", template.where,
                          rule=template.rule, hint="add it to a channel's templates, or remove it")
    if not fallback:
        yield Problem("no-fallback", "no channel applies to every partner: some partners would get no template",
                      exports.where_channels, hint="add a channel without `when`, e.g. {id: everyone, templates: "
                      "[generic]}")
    if exports.checkout is not None:
        yield from _pattern_problems(exports.checkout)


def _pattern_problems(checkout: Checkout) -> Iterator[Problem]:
    """Yield a problem when the account pattern does not compile or could backtrack for ever.

    Passing: `pattern: "^[0-9]{8,10}$"`.
    Failing: `pattern: "^(a+)+$"` -> error[bad-pattern] checkout.account-format: ... exponential time
    """
    try:
        re.compile(checkout.pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as error:  # x{99999999999}: OverflowError
        yield Problem("bad-pattern", f"account pattern is not a valid regular expression: {error}",
                      checkout.where_pattern, rule=ACCOUNT_FORMAT)
        return
    if _nested_quantifier(checkout.pattern):
        yield Problem("bad-pattern", "account pattern repeats a group that holds + or * or alternatives (as in "
                      "(a+)+ or (a|aa)+): matching a wrong account can take exponential time",
                      checkout.where_pattern, rule=ACCOUNT_FORMAT, hint="repeat single characters or character "
                      "classes only, e.g. ^[0-9]{8,10}$ or ^[A-Z]{2}-[0-9]+$")


def _nested_quantifier(pattern: str) -> bool:
    """Return whether a part repeated more than once holds an unbounded repeat (+, *, {n,}) or a | of its own."""
    from re import _constants, _parser  # re's own parser: exact about escapes and classes (Python 3.11+)

    repeats = (_constants.MAX_REPEAT, _constants.MIN_REPEAT, _constants.POSSESSIVE_REPEAT)

    def nested(items, repeated: bool) -> bool:
        for op, value in items:
            if repeated and op == _constants.BRANCH:  # (a|b)+ is parsed as the class [ab]; (a|aa)+ stays
                return True
            if op in repeats:
                _, most, body = value
                if (repeated and most == _constants.MAXREPEAT) or nested(body, repeated or most > 1):
                    return True
            elif any(nested(part, repeated) for part in _subpatterns(value)):
                return True
        return False

    return nested(_parser.parse(pattern), False)


def _subpatterns(value) -> Iterator:
    """Yield the subpatterns inside a parsed node's value (a group, the branches of |, a lookaround)."""
    from re import _parser

    if isinstance(value, _parser.SubPattern):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _subpatterns(item)


def rules(exports: Exports) -> dict[str, Location]:
    """Return every rule id of exports.yaml with where it is written."""
    found = {template.rule: template.where for template in exports.templates.values()}
    found.update({channel.rule: channel.where for channel in exports.channels})
    if exports.checkout is not None:
        found[ACCOUNT_REQUIRED] = exports.checkout.where
        found[ACCOUNT_FORMAT] = exports.checkout.where_pattern
    return found


register_rule_file(FILE, "exports.schema.json", required=False)
EXTENSIONS[FILE] = RuleFile(build, check, rules)


# --- who sees what ------------------------------------------------------------------------------------------

def exports_of(catalog: Catalog) -> Exports:
    """Return the exports model, or raise CompanionError when the rules have no exports.yaml."""
    return extra_of(catalog, FILE, "no-exports", "export templates")


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
    from engine.inference.evaluate import evaluate

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
