"""Properties of amendment charges (Hypothesis): bounded by the term, never rising with a later date, and the
same whether two changes are made at once or as two amendments on the same date."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.inference.compile import load as load_compiled
from engine.catalogue.policies.subscriptions import CHANGE
from engine.services.changes import amendment_from_data
from engine.services.months import Proration, add_months
from engine.services.subscriptions import amend

starts = st.dates(min_value=dt.date(2023, 1, 1), max_value=dt.date(2030, 12, 31))
terms = st.sampled_from([1, 12, 36])
policies = st.sampled_from(["charge", "free"])


@given(starts, terms, st.integers(min_value=0, max_value=1200), policies)
def test_months_charged_never_exceed_the_term(start, term, offset, policy):
    end = add_months(start, term)
    date = start + dt.timedelta(days=offset % (end - start).days)  # any day of the term
    months = Proration(start, term, date, policy).months
    assert 0 <= months <= term
    if policy == "charge":
        assert months >= 1  # a started month counts: something is always charged inside the term


@given(starts, terms, st.integers(min_value=0, max_value=1200), policies, st.sampled_from(["charge", "refuse"]))
def test_only_a_free_last_month_charges_nothing(start, term, offset, policy, last_month):
    """No day of the term is charged 0 months unless last_month is free (refuse refuses those days instead)."""
    date = start + dt.timedelta(days=offset % (add_months(start, term) - start).days)
    proration = Proration(start, term, date, policy, last_month)
    assert proration.months >= 1 or (last_month == "refuse" and proration.in_last_month)
    assert Proration(start, term, date, policy, "free").months == (0 if proration.in_last_month else proration.months)


@given(starts, terms, st.integers(min_value=0, max_value=1200), st.integers(min_value=0, max_value=1200), policies)
def test_months_charged_never_increase_as_the_date_moves_later(start, term, first, second, policy):
    days = (add_months(start, term) - start).days
    early, late = sorted((first % days, second % days))
    charged = [Proration(start, term, start + dt.timedelta(days=offset), policy).months for offset in (early, late)]
    assert charged[0] >= charged[1]


@given(starts, terms)
def test_the_start_date_is_charged_the_full_term_and_the_last_day_one_month(start, term):
    end = add_months(start, term)
    assert Proration(start, term, start, "charge").months == term
    assert Proration(start, term, end - dt.timedelta(days=1), "charge").months == 1


@pytest.fixture(scope="module")
def compiled():
    return load_compiled()


def _request(state: dict, change: dict) -> dict:
    return {"partner": {"badges": ["power-management"]}, "subscription": state, "change": change}


def _units(result) -> dict[str, int]:
    total: dict[str, int] = {}
    for line in result.lines:
        total[line["reference"]] = total.get(line["reference"], 0) + line["units"]
    return total


changes = st.fixed_dictionaries({
    "tier": st.sampled_from([None, "advanced", "expert"]),
    "more_devices": st.integers(min_value=0, max_value=200),
    "anywhere": st.integers(min_value=0, max_value=3),
    "insulation": st.booleans(),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=starts, term=st.sampled_from([12, 36]), offset=st.integers(min_value=0, max_value=1200),
       devices=st.integers(min_value=0, max_value=100), wanted=changes)
def test_two_changes_at_once_cost_the_same_as_two_amendments_on_the_same_date(compiled, start, term, offset,
                                                                            devices, wanted):
    """Tier first, then devices and add-ons: at once or one after the other, the same units and end state."""
    date = start + dt.timedelta(days=offset % (add_months(start, term) - start).days)
    state = {"product": "epo", "version": "2024", "license": "subscription", "term_months": term,
             "start": str(start), "tier": "essential", "devices": devices, "addons": []}
    tier_change = {"tier": wanted["tier"]} if wanted["tier"] else {}
    rest: dict = {}
    if wanted["more_devices"]:
        rest["devices"] = devices + wanted["more_devices"]
    addons = ([{"id": "powerscada-anywhere", "quantity": wanted["anywhere"]}] if wanted["anywhere"] else []) + \
        ([{"id": "insulation-monitoring"}] if wanted["insulation"] else [])
    if addons:
        rest["addons"] = addons
    at_once = amend(compiled, amendment_from_data(_request(state, {"date": str(date), **tier_change, **rest}),
                                                  compiled.catalog, CHANGE))
    first = amend(compiled, amendment_from_data(_request(state, {"date": str(date), **tier_change}),
                                                compiled.catalog, CHANGE))
    if not first.valid:
        assert not at_once.valid  # the tier step alone is refused only if the whole change is
        return
    middle = {key: value for key, value in first.subscription.items() if key not in ("end", "last_day")}
    if "devices" in rest:
        # a new total: after the tier step the subscription may cover more devices than before (licences
        # paid stay), and asking for fewer would be a removal; the charge is the same either way
        rest["devices"] = max(rest["devices"], middle["devices"])
    second = amend(compiled, amendment_from_data(_request(middle, {"date": str(date), **rest}), compiled.catalog,
                                                 CHANGE))
    assert at_once.valid == second.valid
    if at_once.valid:
        together = _units(first)
        for reference, units in _units(second).items():
            together[reference] = together.get(reference, 0) + units
        assert _units(at_once) == together
        assert at_once.subscription == second.subscription
