"""Compile condition trees into durable_rules patterns on one fact, with negation pushed down to the leaves.

The engine crashes on `$not` and on joins, so every rule is one pattern over the config fact, built of
`$and`, `$or` and comparisons. Negation is pushed to the leaves with the three-valued logic of
catalogue.conditions: each tree compiles in one of four senses,

- TRUE: the condition is known to hold;  FALSE: it is known not to hold;
- NOT_TRUE: false or unknown (what a requirement refuses on);  NOT_FALSE: true or unknown.

A fact the request leaves out is a field missing from the engine fact: every comparison on a missing
field is false in the engine (`$neq` included), and `$nex` says it is missing.
"""

from __future__ import annotations

from engine.catalogue.conditions import All, Node, Not, Test, fact_named

TRUE, FALSE, NOT_TRUE, NOT_FALSE = "true", "false", "not-true", "not-false"
_NEGATED_SENSE = {TRUE: FALSE, FALSE: TRUE, NOT_TRUE: NOT_FALSE, NOT_FALSE: NOT_TRUE}
_ORDER = {"at_least": "$gte", "at_most": "$lte", "before": "$lt", "after": "$gt"}
_OPPOSITE = {"is": "is_not", "is_not": "is", "one_of": "none_of", "none_of": "one_of",
             "at_least": "$lt", "at_most": "$gt", "before": "$gte", "after": "$lte",
             "$lt": "at_least", "$gt": "at_most", "$gte": "before", "$lte": "after"}


def member_field(prefix: str, item_id: str) -> str:
    """Name the boolean field of one member of a set fact: `has_power_management` (ids never contain '_')."""
    return f"{prefix}_{item_id.replace('-', '_')}"


def fact_field(test: Test) -> str:
    """Return the engine field a comparison reads (a tier compared by rank reads `<field>_rank`)."""
    fact = fact_named(test.fact)
    if fact.kind == "tier" and test.op in _ORDER:
        return fact.field + "_rank"
    return fact.field


def both(parts) -> dict | bool:
    """Return the conjunction of patterns, folding constants and nested conjunctions."""
    return _fold(parts, "$and", absorbing=False)


def either(parts) -> dict | bool:
    """Return the disjunction of patterns, folding constants and nested disjunctions."""
    return _fold(parts, "$or", absorbing=True)


def _fold(parts, operator: str, absorbing: bool) -> dict | bool:
    flat: list = []
    for part in parts:
        if part is absorbing:  # False in a conjunction, True in a disjunction: the whole is that constant
            return absorbing
        if part is (not absorbing):
            continue
        flat.extend(part[operator] if isinstance(part, dict) and list(part) == [operator] else [part])
    if not flat:
        return not absorbing
    return flat[0] if len(flat) == 1 else {operator: flat}


def pattern(node: Node, sense: str = TRUE) -> dict | bool:
    """Return the engine pattern that matches when NODE is in SENSE, or True / False when it is constant."""
    if isinstance(node, Test):
        return _leaf(node, sense)
    if isinstance(node, Not):
        return pattern(node.part, _NEGATED_SENSE[sense])
    parts = [pattern(part, sense) for part in node.parts]
    conjunctive = isinstance(node, All) == (sense in (TRUE, NOT_FALSE))
    return both(parts) if conjunctive else either(parts)


def _leaf(test: Test, sense: str) -> dict | bool:
    fact = fact_named(test.fact)
    if test.op == "present":  # never unknown
        wanted = test.engine if sense in (TRUE, NOT_FALSE) else not test.engine
        if not fact.optional:
            return wanted
        return {"$ex": {fact.field: 1}} if wanted else {"$nex": {fact.field: 1}}
    if sense == TRUE:
        return _compare(test, test.op)
    if sense == FALSE:
        return _compare(test, _OPPOSITE[test.op])
    known = _compare(test, _OPPOSITE[test.op] if sense == NOT_TRUE else test.op)
    return either([known, {"$nex": {fact_field(test): 1}}]) if fact.optional else known


def _compare(test: Test, op: str) -> dict | bool:
    fact = fact_named(test.fact)
    value = test.engine
    if fact.kind == "set":
        if op in ("is", "is_not"):
            return {member_field(fact.field, value): op == "is"}
        fields = [member_field(fact.field, item) for item in value]
        if op == "one_of":
            return either([{name: True} for name in fields])
        return both([{name: False} for name in fields])
    name = fact_field(test)
    if op == "is":
        return {name: value}
    if op == "is_not":
        return {"$neq": {name: value}}
    if op == "one_of":
        return either([{name: item} for item in value])
    if op == "none_of":
        return both([{"$neq": {name: item}} for item in value])
    return {_ORDER.get(op, op): {name: value}}


def pattern_fields(spec) -> set[str]:
    """Return the fact fields an engine pattern reads."""
    found: set[str] = set()
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key in ("$and", "$or"):
                for part in value:
                    found |= pattern_fields(part)
            elif key.startswith("$"):
                found |= set(value)
            else:
                found.add(key)
    return found
