"""Every rule file Companion reads, in one explicit table: its schema, and how an optional file's model is built."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from engine.catalogue.model import Catalog, Sellable
from engine.catalogue.policies import constraints, exports, guidance, subscriptions, vouchers
from engine.catalogue.source import Source
from engine.problem import Location, Problem


@dataclass(frozen=True)
class RuleFile:
    """A rule file: its schema, whether it is required, and for an optional file its model and checks."""

    schema: str
    required: bool = False
    build: Callable[[Source, Catalog], object] | None = None
    check: Callable[[Catalog], Iterator[Problem]] | None = None
    rules: Callable[[object], dict[str, Location]] | None = None
    references: Callable[[object], dict[str, Sellable]] | None = None  # further commercial references it sells


# File name -> what it is. The three required files build the core catalogue (catalogue.model); each optional
# one is a policy of catalogue.policies. The order is the order files are read and hashed in.
RULE_FILES: dict[str, RuleFile] = {
    "badges.yaml": RuleFile("badges.schema.json", required=True),
    "tiers.yaml": RuleFile("tiers.schema.json", required=True),
    "addons.yaml": RuleFile("addons.schema.json", required=True),
    vouchers.FILE: RuleFile(vouchers.SCHEMA, build=vouchers.build_packs, check=vouchers.check_packs,
                            rules=vouchers.pack_rules, references=vouchers.pack_references),
    subscriptions.POLICY_FILE: RuleFile(subscriptions.POLICY_SCHEMA, build=subscriptions.build_policy,
                                        check=subscriptions.check_policy, rules=subscriptions.SubscriptionPolicy.rules,
                                        references=subscriptions.policy_references),
    constraints.FILE: RuleFile(constraints.SCHEMA, build=constraints.build, check=constraints.check,
                               rules=constraints.rules),
    exports.FILE: RuleFile(exports.SCHEMA, build=exports.build, check=exports.check, rules=exports.rules),
    guidance.FILE: RuleFile(guidance.SCHEMA, build=guidance.build, check=guidance.check, rules=guidance.rules),
}
# The optional rule files, each with its own model in Catalog.extras.
POLICIES: dict[str, RuleFile] = {name: rule_file for name, rule_file in RULE_FILES.items() if rule_file.build}


def rules_version(files: Mapping[str, bytes]) -> str:
    """Return the rules version: the first 16 hex digits of the SHA-256 of the rule files, by sorted name."""
    # The one definition every command, page, API answer, report and record shows. Names and bytes only, with
    # each length, so that no two directories share a version by moving bytes from one file into the next; the
    # bundled schemas are code, not the directory's rules, and count through the program's version instead.
    digest = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        digest.update(f"{name}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()[:16]
