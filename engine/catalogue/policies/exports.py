"""The export templates, channels and checkout rules of rules/exports.yaml: model, build, checks, rule ids."""

from __future__ import annotations

import re
from dataclasses import dataclass
from re import _constants, _parser  # re's own parser: exact about escapes and classes (Python 3.11+)
from typing import Iterator, Mapping

from engine.catalogue.model import Catalog, extra_of, frozen
from engine.problem import Location, Problem, did_you_mean
from engine.catalogue.source import Source


FILE = "exports.yaml"
SCHEMA = "exports.schema.json"
INTEGER_FIELDS = frozenset({"quantity", "months", "line"})  # template fields that hold whole numbers
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


def exports_of(catalog: Catalog) -> Exports:
    """Return the exports model, or raise CompanionError when the rules have no exports.yaml."""
    return extra_of(catalog, FILE, SCHEMA, "no-exports", "export templates")
