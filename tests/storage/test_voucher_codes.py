"""Voucher codes and Activation IDs: random, grouped, typo-resistant, with a check character."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.locker import voucher_codes
from engine.problem import CompanionError

CONFUSABLE = "01ILO"


def error_code(call, *args) -> str:
    with pytest.raises(CompanionError) as caught:
        call(*args)
    return caught.value.problems[0].code


def test_voucher_code_is_grouped_from_the_alphabet_and_checks_itself():
    code = voucher_codes.new_voucher_code()
    assert re.fullmatch(r"[2-9A-Z]{5}(-[2-9A-Z]{5}){3}", code)
    assert not set(code) & set(CONFUSABLE)
    assert voucher_codes.normalize_voucher_code(code) == code.replace("-", "")


def test_voucher_code_carries_at_least_80_random_bits():
    random_symbols = voucher_codes.VOUCHER_LENGTH - 1
    assert random_symbols * math.log2(len(voucher_codes.ALPHABET)) >= 80


def test_voucher_codes_do_not_repeat():
    assert len({voucher_codes.new_voucher_code() for _ in range(5000)}) == 5000


def test_case_spaces_and_dashes_are_forgiven():
    code = voucher_codes.new_voucher_code()
    typed = " " + code.lower().replace("-", " ") + "\n"
    assert voucher_codes.normalize_voucher_code(typed) == code.replace("-", "")
    assert voucher_codes.normalize_voucher_code(code.replace("-", "")) == code.replace("-", "")


@pytest.mark.parametrize("typed", ["", "ABC", "22222-22222-22222-2222", "22222-22222-22222-22222-2"])
def test_wrong_length_is_malformed(typed):
    assert error_code(voucher_codes.normalize_voucher_code, typed) == "malformed-code"


def test_confusable_characters_are_malformed():
    code = voucher_codes.new_voucher_code().replace("-", "")
    for char in CONFUSABLE:
        assert error_code(voucher_codes.normalize_voucher_code, char + code[1:]) == "malformed-code"


@settings(max_examples=300, deadline=None)
@given(body=st.text(alphabet=voucher_codes.ALPHABET, min_size=voucher_codes.VOUCHER_LENGTH - 1,
                    max_size=voucher_codes.VOUCHER_LENGTH - 1),
       position=st.integers(min_value=0, max_value=voucher_codes.VOUCHER_LENGTH - 1),
       replacement=st.characters(codec="ascii"))
def test_any_single_substitution_is_malformed(body, position, replacement):
    code = body + voucher_codes.check_symbol(body)
    assert voucher_codes.normalize_voucher_code(code) == code
    if replacement.upper() == code[position] or replacement in "- \t\r\n":
        return  # the same symbol, or a separator that is forgiven: not a substitution
    typo = code[:position] + replacement + code[position + 1:]
    assert error_code(voucher_codes.normalize_voucher_code, typo) == "malformed-code"


@settings(max_examples=200, deadline=None)
@given(body=st.text(alphabet=voucher_codes.ALPHABET, min_size=voucher_codes.VOUCHER_LENGTH - 1,
                    max_size=voucher_codes.VOUCHER_LENGTH - 1),
       position=st.integers(min_value=0, max_value=voucher_codes.VOUCHER_LENGTH - 2))
def test_any_swap_of_neighbours_is_malformed(body, position):
    code = body + voucher_codes.check_symbol(body)
    if code[position] == code[position + 1]:
        return
    swapped = code[:position] + code[position + 1] + code[position] + code[position + 2:]
    assert error_code(voucher_codes.normalize_voucher_code, swapped) == "malformed-code"


def test_activation_id_shape_and_normalisation():
    activation_id = voucher_codes.new_activation_id()
    assert re.fullmatch(r"ACT(-[2-9A-Z]{4}){4}", activation_id)
    assert voucher_codes.normalize_activation_id(activation_id.lower()) == activation_id
    assert voucher_codes.normalize_activation_id(activation_id[4:].replace("-", "")) == activation_id
    typo = activation_id[:-1] + ("2" if activation_id[-1] != "2" else "3")
    assert error_code(voucher_codes.normalize_activation_id, typo) == "malformed-activation-id"


def test_invitation_id_round_trip():
    invitation_id = voucher_codes.new_invitation_id()
    assert voucher_codes.normalize_invitation_id(invitation_id.lower()) == invitation_id
    assert error_code(voucher_codes.normalize_invitation_id, invitation_id[:-1]) == "malformed-invitation-id"
