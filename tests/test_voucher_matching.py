"""Voucher matching by the engine's rules: the allocation and the shortfall are the optimum a brute force finds."""

from __future__ import annotations

import itertools
import math
import time
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine import load
from engine.activation import matching as catalogue_matching
from engine.inference.matching import Matching, cheapest_purchase, compile_rules
from engine.problem import CompanionError
from engine.services.coverage import Debit, Requirement, Short, VoucherUnit, cover

RULES = Path(__file__).resolve().parent.parent / "rules"


# --- the brute force -------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def brute_purchase(gap: int, units: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, ...]]:
    """Return ((surplus, vouchers), counts) of the cheapest purchase closing GAP, trying every purchase."""
    if gap <= 0:
        return (0, 0), (0,) * len(units)
    best = None
    # More than ceil(gap / u) vouchers of one kind always overshoots by a whole voucher: never the cheapest.
    for counts in itertools.product(*[range(math.ceil(gap / size) + 1) for size in units]):
        bought = sum(count * size for count, size in zip(counts, units))
        if bought < gap:
            continue
        key = (bought - gap, sum(counts), tuple(-count for count in counts))
        if best is None or key < best[0]:
            best = (key, counts)
    (surplus, vouchers, _), counts = best
    return (surplus, vouchers), counts


def brute_force(lines: list[tuple[str, int]], table: dict[str, list[tuple[str, int]]], balances: dict[str, int]):
    """Return, per line, (vouchers taken per option, purchase per option) of the optimum, trying every allocation."""
    options = [table.get(reference) or [(reference, 1)] for reference, _ in lines]
    variables = [(index, voucher, size) for index, choice in enumerate(options) for voucher, size in choice]
    # Taking more than ceil(need / u) vouchers of one option wastes a whole voucher more than taking one fewer.
    ranges = [range(min(balances.get(voucher, 0), math.ceil(lines[index][1] / size)) + 1)
              for index, voucher, size in variables]
    best = None
    for counts in itertools.product(*ranges):
        spent: dict[str, int] = {}
        for (_, voucher, _), count in zip(variables, counts):
            spent[voucher] = spent.get(voucher, 0) + count
        if any(count > balances.get(voucher, 0) for voucher, count in spent.items()):
            continue
        uncovered = wasted = surplus = bought = 0
        purchases = []
        for index, (_, need) in enumerate(lines):
            covered = sum(count * size for (line, _, size), count in zip(variables, counts) if line == index)
            uncovered += max(need - covered, 0)
            wasted += max(covered - need, 0)
            (line_surplus, line_bought), purchase = brute_purchase(max(need - covered, 0),
                                                                   tuple(size for _, size in options[index]))
            surplus, bought = surplus + line_surplus, bought + line_bought
            purchases.append(purchase)
        key = (uncovered, wasted, surplus, bought, tuple(-count for count in counts))
        if best is None or key < best[0]:
            best = (key, counts, purchases)
    _, counts, purchases = best
    taken, position = [], 0
    for choice in options:
        taken.append(tuple(counts[position:position + len(choice)]))
        position += len(choice)
    return list(zip(taken, purchases))


def engine_answer(lines, table, balances):
    """Return the engine's (vouchers taken per option, purchase per option) per line."""
    matching = Matching({reference: [VoucherUnit(voucher, size) for voucher, size in choice]
                         for reference, choice in table.items()})
    coverage = cover([Requirement(reference, need) for reference, need in lines], balances, matching)
    answer = []
    for (reference, _), line in zip(lines, coverage.lines):
        choice = matching.options_of(reference)
        debited = {debit.voucher_reference: debit.vouchers for debit in line.debits}
        bought = {item.voucher_reference: item.quantity for item in line.purchase}
        answer.append((tuple(debited.get(option.voucher_reference, 0) for option in choice),
                       tuple(bought.get(option.voucher_reference, 0) for option in choice)))
    return answer


VOUCHERS = ["V0", "V1", "V2", "V3"]
LINES = ["L0", "L1", "L2", "L3"]


@st.composite
def problems(draw):
    """A small bill of materials, declared matches (some vouchers shared between lines) and a locker."""
    references = draw(st.lists(st.sampled_from(LINES), min_size=1, max_size=4))
    table = {}
    for reference in sorted(set(references)):
        if draw(st.booleans()) or len(set(references)) == 1:
            pool = VOUCHERS + [reference]
            chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
            table[reference] = [(voucher, draw(st.integers(1, 30))) for voucher in chosen]
    lines = [(reference, draw(st.integers(0, 40))) for reference in references]
    balances = {voucher: draw(st.integers(0, 4)) for voucher in VOUCHERS + LINES}
    return lines, table, balances


def search_size(lines, table, balances) -> int:
    """Return how many allocations the brute force tries."""
    size = 1
    for reference, need in lines:
        for voucher, units in table.get(reference) or [(reference, 1)]:
            size *= min(balances.get(voucher, 0), math.ceil(need / units)) + 1
    return size


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(problems())
def test_the_engine_finds_the_brute_force_optimum(problem):
    lines, table, balances = problem
    assume(search_size(lines, table, balances) <= 5000)
    assert engine_answer(lines, table, balances) == brute_force(lines, table, balances)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 60), st.lists(st.integers(1, 30), min_size=1, max_size=3))
def test_the_cheapest_purchase_is_the_brute_force_one(gap, units):
    assert cheapest_purchase(gap, tuple(units)) == brute_purchase(gap, tuple(units))[1]


# --- what a partner sees -----------------------------------------------------------------------------------

SINGLES_AND_PACKS = {"DEV": [VoucherUnit("DEV-P25", 25), VoucherUnit("DEV", 1)]}


def test_five_missing_units_are_five_singles_not_a_pack():
    line, = cover([Requirement("DEV", 30, "devices")], {"DEV-P25": 1}, SINGLES_AND_PACKS).lines
    assert line.debits == (Debit("DEV-P25", 1, 25),)
    assert line.purchase == (Short("DEV", 5, 5),) and line.short == Short("DEV", 5, 5)
    assert line.advice.startswith("buy 5 more vouchers of DEV, or change the configuration to need 5 fewer units")


def test_a_gap_of_28_is_one_pack_and_three_singles():
    line, = cover([Requirement("DEV", 28)], {}, SINGLES_AND_PACKS).lines
    assert line.purchase == (Short("DEV-P25", 1, 25), Short("DEV", 3, 3))
    assert line.advice.startswith("buy 1 more voucher of DEV-P25 and 3 more vouchers of DEV,")
    assert cover([Requirement("DEV", 28)], {}, SINGLES_AND_PACKS).missing == {"DEV": 3, "DEV-P25": 1}


def test_a_line_is_covered_by_a_pack_and_singles_without_waste():
    coverage = cover([Requirement("DEV", 30)], {"DEV-P25": 2, "DEV": 10}, SINGLES_AND_PACKS)
    assert coverage.covered and coverage.debits == {"DEV": 5, "DEV-P25": 1}


def test_a_pack_is_spent_rather_than_leave_the_line_uncovered():
    coverage = cover([Requirement("DEV", 30)], {"DEV-P25": 2}, SINGLES_AND_PACKS)
    assert coverage.covered and coverage.debits == {"DEV-P25": 2}  # 20 units wasted, but activated


def test_the_declared_order_decides_between_equally_good_allocations():
    balances = {"DEV-P25": 2, "DEV": 50}
    assert cover([Requirement("DEV", 50)], balances, SINGLES_AND_PACKS).debits == {"DEV-P25": 2}
    singles_first = {"DEV": [VoucherUnit("DEV", 1), VoucherUnit("DEV-P25", 25)]}
    assert cover([Requirement("DEV", 50)], balances, singles_first).debits == {"DEV": 50}
    assert cover([Requirement("DEV", 60)], {"DEV-P25": 2, "DEV": 40}, singles_first).debits == {"DEV": 35, "DEV-P25": 1}


def test_a_voucher_shared_by_two_lines_goes_where_it_lets_both_be_covered():
    # ADDON prefers the bundle voucher, but only the bundle covers BUNDLE: the engine gives it to BUNDLE.
    table = {"ADDON": [VoucherUnit("BUNDLE", 1), VoucherUnit("ADDON", 1)], "BUNDLE": [VoucherUnit("BUNDLE", 1)]}
    coverage = cover([Requirement("ADDON", 1), Requirement("BUNDLE", 1)], {"BUNDLE": 1, "ADDON": 1}, table)
    assert coverage.covered
    assert [line.debits for line in coverage.lines] == [(Debit("ADDON", 1, 1),), (Debit("BUNDLE", 1, 1),)]
    # With a bundle voucher for each, ADDON gets its preferred one.
    coverage = cover([Requirement("ADDON", 1), Requirement("BUNDLE", 1)], {"BUNDLE": 2, "ADDON": 1}, table)
    assert coverage.debits == {"BUNDLE": 2}


def test_each_line_names_the_rules_of_the_vouchers_it_uses_and_where_they_are():
    compiled = load(RULES)
    table = catalogue_matching(compiled.catalog)
    devices, tier = cover([Requirement("EPO-DEV-SUB-1Y", 30), Requirement("EPO-ESS-SUB-1Y", 1)],
                          {"EPO-DEV-SUB-1Y-P25": 1, "EPO-DEV-SUB-1Y": 5, "EPO-ESS-SUB-1Y": 1}, table).lines
    assert [(use.rule, use.voucher_reference) for use in devices.matches] == [
        ("match.epo-dev-sub-1y.epo-dev-sub-1y-p25", "EPO-DEV-SUB-1Y-P25"),
        ("match.epo-dev-sub-1y.epo-dev-sub-1y", "EPO-DEV-SUB-1Y")]
    text = (RULES / "vouchers.yaml").read_text(encoding="utf-8").splitlines()
    file, line, column = devices.matches[0].where.rsplit(":", 2)
    assert file.endswith("vouchers.yaml") and text[int(line) - 1][int(column) - 1:] == "EPO-DEV-SUB-1Y-P25"
    # A line's own reference is matched by the rule that sells it.
    assert tier.matches[0].rule == compiled.catalog.references["EPO-ESS-SUB-1Y"].rule
    assert tier.to_json()["rules"][0]["where"].startswith(str(compiled.catalog.references["EPO-ESS-SUB-1Y"].where))


def test_the_catalogue_advice_for_five_devices_is_five_singles():
    table = catalogue_matching(load(RULES).catalog)
    line, = cover([Requirement("EPO-DEV-SUB-1Y", 30, "devices")], {"EPO-DEV-SUB-1Y-P25": 1}, table).lines
    assert line.advice.startswith("buy 5 more vouchers of EPO-DEV-SUB-1Y,")


def test_the_matches_are_compiled_one_rule_each_ranked_by_preference():
    table = catalogue_matching(load(RULES).catalog)
    rules = compile_rules(table)
    declared = sum(len(options) for options in table.values())
    assert len(rules) == declared + 3  # one per match, lines without matches (alone or sharing), the pass
    ranks = sorted(rule["pri"] for name, rule in rules.items() if name.startswith("match-"))
    assert ranks[0] == 1 and max(ranks) == max(len(options) for options in table.values())


def test_lines_sharing_too_much_are_refused_quickly_not_searched_for_ever():
    shared = {f"L{index}": [VoucherUnit("X", 1), VoucherUnit("Y", 1), VoucherUnit("Z", 1)] for index in range(10)}
    started = time.perf_counter()
    with pytest.raises(CompanionError) as caught:
        cover([Requirement(f"L{index}", 40) for index in range(10)], {"X": 100, "Y": 100, "Z": 200}, shared)
    assert caught.value.problems[0].code == "matching-too-large"
    assert time.perf_counter() - started < 60  # about 0.3 s on an idle machine


def test_a_bill_of_materials_with_nothing_to_cover_runs_nothing():
    coverage = cover([Requirement("A", 0)], {}, {})
    assert coverage.covered and coverage.lines[0].purchase == () and coverage.lines[0].uncovered == 0
