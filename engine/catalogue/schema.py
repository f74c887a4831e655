"""Validate each rule file against its JSON Schema, every problem located by the source map."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from engine.catalogue.conditions import COMBINATORS, FACTS, OPERATORS, operator_hint
from engine.catalogue.source import Source
from engine.problem import Location, Problem, did_you_mean

BUNDLED_RULES = Path(__file__).resolve().parents[2] / "rules"
SCHEMA_DIR = BUNDLED_RULES / "schemas"

SHARED_SCHEMA = "condition.schema.json"  # the condition language, which several rule files use
FACT_NAME = "fact name"  # the title of condition.schema.json's pattern for the keys of a condition


def fact_hint(name: str) -> str:
    """Return the did-you-mean for a key of a condition that names no fact."""
    # `tier` for configuration.tier: the suffix is what people forget the prefix of.
    by_suffix = [fact for fact in FACTS if fact.rsplit(".", 1)[-1] == name]
    if by_suffix:
        return f"did you mean '{by_suffix[0]}'?"
    return did_you_mean(name, list(FACTS) + list(COMBINATORS)) or "facts: " + ", ".join(FACTS)


@functools.cache
def bundled_schema(schema_file: str) -> dict:
    """Return a bundled schema with the shared condition definitions merged in.

    On disk a rule schema points at `condition.schema.json#/$defs/...`, which editors resolve beside it;
    the validators get one self-contained document instead.
    """
    schema = json.loads((SCHEMA_DIR / schema_file).read_text(encoding="utf-8"))
    text = json.dumps(schema)
    prefix = f'"{SHARED_SCHEMA}#/$defs/'
    if prefix not in text:
        return schema
    shared = json.loads((SCHEMA_DIR / SHARED_SCHEMA).read_text(encoding="utf-8"))["$defs"]
    merged = json.loads(text.replace(prefix, '"#/$defs/'))
    merged["$defs"] = {**merged.get("$defs", {}), **shared}
    return merged


@functools.cache
def schema_validator(schema_file: str) -> Draft202012Validator:
    """Return a validator for one of the bundled schemas."""
    schema = bundled_schema(schema_file)
    Draft202012Validator.check_schema(schema)
    # jsonschema looks a `$ref` up again at every node it checks: a third of the time on a big catalogue.
    return Draft202012Validator(inline_refs(schema, schema.get("$defs", {})))


class FastValidator:
    """jsonschema-rs (compiled) for the common case, a valid file; jsonschema describes what is wrong."""

    def __init__(self, schema: dict):
        self.validator = jsonschema_rs.validator_for(schema)

    def is_valid_data(self, data) -> bool:
        """Return True only when the compiled validator accepts data; False sends it to jsonschema."""
        try:
            return self.validator.is_valid(data)
        except (ValueError, TypeError, OverflowError):
            return False  # e.g. a YAML date or a huge integer it cannot convert: let jsonschema judge


@functools.cache
def fast_validator(schema_file: str) -> FastValidator:
    """Return the compiled validator of one of the bundled schemas."""
    # About 20 times faster than jsonschema on a large valid catalogue. Both follow draft 2020-12; the
    # tests check that they agree on the shipped rules and on every broken rule set of tests/bad_rules.
    return FastValidator(bundled_schema(schema_file))


def inline_refs(node, definitions: dict, seen: tuple = ()):
    """Return node with each plain `{"$ref": "#/$defs/x"}` replaced by definition x (recursive ones kept)."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        name = ref[len("#/$defs/"):]
        if len(node) == 1 and ref.startswith("#/$defs/") and name in definitions and name not in seen:
            return inline_refs(definitions[name], definitions, seen + (name,))
        return {key: inline_refs(value, definitions, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [inline_refs(item, definitions, seen) for item in node]
    return node


def validate_source(source: Source, schema_file: str) -> list[Problem]:
    """Return every schema problem in source, located."""
    if source.data is None:
        return [Problem("empty-file", "file is empty", Location(source.file, 1, 1),
                        hint=f"a rule file needs content; see rules/schemas/{schema_file}")]
    if fast_validator(schema_file).is_valid_data(source.data):
        return []
    validator = schema_validator(schema_file)
    problems: list[Problem] = []
    for error in validator.iter_errors(source.data):
        keys = unknown_keys(error)
        if keys:  # one error can name several unknown keys of a mapping; report each, not only the first
            problems.extend(describe(error, source, key) for key in keys)
        else:
            problems.append(describe(error, source))
    return problems


def unknown_keys(error: ValidationError) -> list[str]:
    """Return the keys an additionalProperties error complains about (empty for other errors)."""
    if error.context or error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return []
    allowed = set(error.schema.get("properties", {}))
    return [key for key in error.instance if key not in allowed]


def describe(error: ValidationError, source: Source, key: str | None = None) -> Problem:
    """Turn one ValidationError into a located problem (about one unknown key, when given)."""
    if error.context:
        # oneOf/anyOf: show the alternative that came closest, not a wall of text; an alternative of the
        # instance's own type (a mapping of comparisons for a mapping) is closer than "expected a list".
        error = best_match(_of_its_type(error.context) or error.context)
    path = tuple(error.absolute_path)
    at = "at " + json_path(path) + ": " if path else ""
    hint = ""
    where = source.where(path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extras = [name for name in error.instance if name not in allowed]
        if extras:
            key = key if key in extras else extras[0]
            where = source.where_key(path + (key,))
            if allowed == set(OPERATORS):  # a comparison of the condition language
                return Problem("unknown-operator", f"{at}'{key}' is not a comparison", where, hint=operator_hint(key))
            hint = did_you_mean(key, allowed) or ("allowed keys: " + ", ".join(sorted(allowed)) if allowed else "")
            return Problem("schema", f"{at}unknown key '{key}'", where, hint=hint)
    if error.validator == "type":
        expected = error.validator_value
        got = type_name(error.instance)
        message = f"{at}expected {expected_text(expected)}, got {got} {short(error.instance)}".rstrip()
        if error.instance is None:
            hint = "fill in a value"
        elif expected == "string" and not isinstance(error.instance, (dict, list)):
            hint = "quote it, e.g. \"%s\"" % raw_scalar(source, path, error.instance)
        return Problem("schema", message, where, hint=hint)
    if error.validator == "required":
        return Problem("schema", f"{at}{error.message}", where)
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        # jsonschema locates a bad key name at its mapping (i.e. the first key); point at the key itself.
        description = error.schema.get("description", f"text matching {error.validator_value}")
        if error.schema.get("title") == FACT_NAME:
            return Problem("unknown-fact", f"{at}no fact is called '{error.instance}'",
                           source.where_key(path + (error.instance,)), hint=fact_hint(error.instance))
        return Problem("schema", f"{at}key '{error.instance}' is not {description}",
                       source.where_key(path + (error.instance,)))
    if error.validator == "pattern":
        description = error.schema.get("description", f"text matching {error.validator_value}")
        return Problem("schema", f"{at}{short(error.instance)} is not {description}", where)
    if error.validator == "propertyNames":
        return Problem("schema", f"{at}{error.message}", where,
                       hint=error.parent.schema.get("description", "") if error.parent else "")
    if error.validator == "uniqueItems" and isinstance(error.instance, list):
        # Point at the second copy, as for a duplicate key.
        second = next(index for index, item in enumerate(error.instance) if item in error.instance[:index])
        return Problem("schema", f"{at}{error.instance[second]!r} is listed twice",
                       source.where(path + (second,)), hint="list each once")
    return Problem("schema", f"{at}{error.message}", where)


def _of_its_type(errors) -> list[ValidationError]:
    """Return the errors of the alternatives that accept the instance's type (each error says more than a type)."""
    def type_only(error: ValidationError) -> bool:
        if error.validator == "type":
            return True
        return bool(error.context) and error.validator in ("anyOf", "oneOf") and all(
            type_only(inner) for inner in error.context)
    return [error for error in errors if not type_only(error)]


def json_path(path: tuple) -> str:
    """Render a path as `tiers[0].id`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "$"


def type_name(value) -> str:
    """Name a Python value's YAML type as a product manager would say it."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a " + type(value).__name__


def expected_text(expected) -> str:
    """Render the expected JSON type(s)."""
    names = {"string": "text (a string)", "integer": "a whole number", "number": "a number", "object": "a mapping",
             "array": "a list", "boolean": "true or false", "null": "null"}
    if isinstance(expected, list):
        return " or ".join(names.get(item, item) for item in expected)
    return names.get(expected, expected)


def short(value) -> str:
    """Show a value briefly."""
    if isinstance(value, (dict, list)) or value is None:
        return ""  # the type name says it all
    text = repr(value)
    return f"({text[:60]}...)" if len(text) > 60 else f"({text})"


def raw_scalar(source: Source, path: tuple, value) -> str:
    """Return the scalar as it was typed in the file (so `1.10` stays `1.10` in the hint)."""
    where = source.locations.get(path)
    if where and source.text:
        lines = source.text.splitlines()
        if 0 < where.line <= len(lines):
            rest = lines[where.line - 1][where.column - 1:]
            # A number, boolean or date never holds these, so they end the token (e.g. inside `[7.0, "7.1"]`).
            token = re.split(r"[,\]}#]", rest, maxsplit=1)[0].strip()
            if token:
                return token
    return str(value).lower() if isinstance(value, bool) else str(value)
