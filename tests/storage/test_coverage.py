"""Coverage of bill-of-materials lines by voucher balances (pure: no database)."""

from __future__ import annotations

import pytest

from engine.services.coverage import Debit, Requirement, Short, VoucherUnit, cover
from engine.problem import CompanionError


def test_same_reference_one_unit_each_by_default():
    result = cover([Requirement("EPO-ADV-SUB-3Y", 1, "EPO Advanced")], {"EPO-ADV-SUB-3Y": 3}, {})
    assert result.covered
    assert result.lines[0].debits == (Debit("EPO-ADV-SUB-3Y", 1, 1),)
    assert result.debits == {"EPO-ADV-SUB-3Y": 1}


def test_short_line_names_reference_quantity_and_advice():
    result = cover([Requirement("EPO-ADV-SUB-3Y", 3, "EPO Advanced")], {"EPO-ADV-SUB-3Y": 1}, {})
    line = result.lines[0]
    assert not result.covered
    assert line.short == Short("EPO-ADV-SUB-3Y", 2, 2)
    assert result.missing == {"EPO-ADV-SUB-3Y": 2}
    assert line.advice.startswith("buy 2 more vouchers of EPO-ADV-SUB-3Y, or change the configuration")


def test_device_packs_round_up_and_report_missing_packs():
    matching = {"EPO-DEV": [VoucherUnit("EPO-DEV-100", 100)]}
    covered = cover([Requirement("EPO-DEV", 150, "devices")], {"EPO-DEV-100": 2}, matching)
    assert covered.covered and covered.debits == {"EPO-DEV-100": 2}
    short = cover([Requirement("EPO-DEV", 350, "devices")], {"EPO-DEV-100": 2}, matching)
    assert short.lines[0].short == Short("EPO-DEV-100", 2, 150)


def test_mixed_packs_prefer_declared_order_then_least_overshoot():
    matching = {"EPO-DEV": [VoucherUnit("EPO-DEV-100", 100), VoucherUnit("EPO-DEV-10", 10)]}
    result = cover([Requirement("EPO-DEV", 150)], {"EPO-DEV-100": 5, "EPO-DEV-10": 20}, matching)
    assert result.debits == {"EPO-DEV-10": 5, "EPO-DEV-100": 1}
    result = cover([Requirement("EPO-DEV", 150)], {"EPO-DEV-100": 5, "EPO-DEV-10": 2}, matching)
    # 100 + 20 leaves 30 uncovered: a second 100 is needed, and then the two 10s would only be wasted
    # (the greedy allocator before the engine spent them anyway).
    assert result.debits == {"EPO-DEV-100": 2}


def test_vouchers_serving_several_lines_are_counted_once():
    lines = [Requirement("EPO-ADDON-A", 2), Requirement("EPO-ADDON-B", 2)]
    matching = {"EPO-ADDON-A": [VoucherUnit("EPO-ADDON", 1)], "EPO-ADDON-B": [VoucherUnit("EPO-ADDON", 1)]}
    result = cover(lines, {"EPO-ADDON": 3}, matching)
    assert [line.covered for line in result.lines] == [True, False]
    assert result.lines[1].short == Short("EPO-ADDON", 1, 1)
    assert result.missing == {"EPO-ADDON": 1}
    assert cover(lines, {"EPO-ADDON": 4}, matching).debits == {"EPO-ADDON": 4}


def test_lines_with_one_way_to_be_covered_are_served_first():
    lines = [Requirement("FLEX", 1), Requirement("RIGID", 1)]
    matching = {"FLEX": [VoucherUnit("X", 1), VoucherUnit("Y", 1)], "RIGID": [VoucherUnit("X", 1)]}
    result = cover(lines, {"X": 1, "Y": 1}, matching)
    assert result.covered
    assert result.lines[0].debits == (Debit("Y", 1, 1),)
    assert result.lines[1].debits == (Debit("X", 1, 1),)


def test_allocation_is_deterministic():
    lines = [Requirement(f"L{index}", index % 3 + 1) for index in range(8)]
    matching = {f"L{index}": [VoucherUnit("P", 1), VoucherUnit("Q", 2)] for index in range(8)}
    first = cover(lines, {"P": 5, "Q": 3}, matching)
    assert all(cover(lines, {"Q": 3, "P": 5}, matching) == first for _ in range(5))


def test_zero_units_and_unrelated_balances():
    result = cover([Requirement("A", 0)], {"B": 4}, {})
    assert result.covered and result.debits == {}


def test_negative_or_bad_units_are_refused():
    with pytest.raises(CompanionError) as caught:
        cover([Requirement("A", -1)], {}, {})
    assert caught.value.problems[0].code == "bad-requirement"
    with pytest.raises(CompanionError) as caught:
        cover([Requirement("A", 1)], {}, {"A": [VoucherUnit("A", 0)]})
    assert caught.value.problems[0].code == "bad-matching"


def test_dict_lines_and_tuple_matching_are_understood():
    result = cover([{"reference": "EPO-DEV", "quantity": 30, "description": "devices"}], {"EPO-DEV-25": 2},
                   {"EPO-DEV": [("EPO-DEV-25", 25)]})
    assert result.covered and result.debits == {"EPO-DEV-25": 2}
