"""RuleSession against the real durable_rules: lifecycle, faults, sessions, threads, and check_limits."""

from __future__ import annotations

import threading

import pytest

from engine.inference.session import EngineFault, RuleSession, check_limits


def _collect(tag):
    """Return an action that appends tag to the state's 'fired' list."""

    def action(c):
        c.s["fired"] = (c.s["fired"] or []) + [tag]

    return action


def _pricing_rules():
    """Return a small ruleset with equality, a threshold, a join and forward chaining."""
    return {
        "tier.epo.advanced": {"all": [{"m": {"$and": [{"kind": "config"}, {"tier": "advanced"}]}}], "run": _collect("tier")},
        "volume.epo.large": {
            "pri": 1,
            "all": [{"m": {"$and": [{"kind": "config"}, {"$gte": {"devices": 100}}]}}],
            "run": lambda c: c.assert_fact({"kind": "discount", "devices": c.m.devices}),
        },
        "discount.epo": {"all": [{"m": {"kind": "discount"}}], "run": _collect("discount")},
        "badge.power-management": {
            "all": [
                {"cfg": {"kind": "config"}},
                {"ent": {"$and": [{"kind": "entitled"}, {"product": {"cfg": "product"}}]}},
            ],
            "run": _collect("entitled"),
        },
    }


@pytest.fixture
def engine():
    """Return an engine with the pricing ruleset registered as 'epo'."""
    engine = RuleSession()
    engine.register("epo", _pricing_rules())
    return engine


CONFIG = {"kind": "config", "product": "epo", "tier": "advanced", "devices": 150}


def test_register_run_unregister(engine):
    result = engine.run("epo", [CONFIG, {"kind": "entitled", "product": "epo"}])
    assert sorted(result["fired"]) == ["discount", "entitled", "tier"]
    assert engine.names == ["epo"]
    engine.unregister("epo")
    assert engine.names == []
    with pytest.raises(KeyError):
        engine.run("epo", [CONFIG])


def test_unregistered_name_can_be_registered_again(engine):
    engine.unregister("epo")
    engine.register("epo", _pricing_rules())
    assert engine.run("epo", [CONFIG])["fired"]


def test_register_does_not_consume_callers_dict(engine):
    rules = _pricing_rules()
    engine.register("epo@2", rules)
    assert all("run" in rule for rule in rules.values())


def test_reregister_same_name_is_refused(engine):
    with pytest.raises(ValueError, match="already registered"):
        engine.register("epo", _pricing_rules())


def test_no_match_is_an_empty_result(engine):
    assert engine.run("epo", [{"kind": "nothing"}]) == {}
    assert engine.run("epo", []) == {}


@pytest.mark.parametrize(
    "facts",
    [
        [{"kind": "nothing"}],
        [{"kind": "entitled", "product": "epo"}],
        [{"kind": "config", "product": "epo"}, {"kind": "entitled", "product": "other"}],
    ],
    ids=["unmatched", "half-join", "join-mismatch"],
)
def test_sessions_with_unconsumed_facts_are_deleted_safely(facts):
    # Regression: deleting a session holding a fact no action consumed crashed the process (at random).
    engine = RuleSession()
    engine.register("join", _pricing_rules())
    for _ in range(1100):
        engine.run("join", facts)


def test_identical_facts_are_asserted_once(engine):
    # Regression: an identical fact twice crashes the process when its session is deleted.
    assert sorted(engine.run("epo", [CONFIG, dict(CONFIG)])["fired"]) == ["discount", "tier"]


def test_sessions_are_deleted_after_each_run(engine):
    # The engine fails at the 1,025th live session of a ruleset.
    for _ in range(1100):
        assert engine.run("epo", [CONFIG])


def test_action_exception_is_an_engine_fault():
    engine = RuleSession()
    engine.register("boom", {"fails": {"all": [{"m": {"k": 1}}], "run": lambda c: 1 / 0}})
    with pytest.raises(EngineFault, match="'boom'.*division by zero"):
        engine.run("boom", [{"k": 1}])
    with pytest.raises(EngineFault):  # and again: the session was cleaned up, the ruleset still works
        engine.run("boom", [{"k": 1}])


def test_actions_cannot_delete_their_session():
    # Regression: c.delete_state() in an action makes the engine fail with error 307.
    engine = RuleSession()
    engine.register("del", {"deletes": {"all": [{"m": {"k": 1}}], "run": lambda c: c.delete_state()}})
    with pytest.raises(EngineFault, match="delete_state"):
        engine.run("del", [{"k": 1}])


def test_engine_error_in_assert_is_a_fault_and_retires_the_ruleset():
    # 65 thresholds matching one fact: error 303 at assert (bypassing check_limits on purpose).
    engine = RuleSession()
    rules = {f"r{i}": {"all": [{"m": {"$gte": {"total": i}}}], "run": lambda c: None} for i in range(65)}
    engine._host.register_rulesets({"wide": rules})
    with pytest.raises(EngineFault, match="303"):
        engine.run("wide", [{"total": 99}])
    with pytest.raises(EngineFault, match="unusable"):
        engine.run("wide", [{"total": 1}])
    engine.unregister("wide")


def test_values_keep_their_python_types():
    engine = RuleSession()
    engine.register("types", {"copy": {"all": [{"m": {"k": 1}}], "run": lambda c: c.s.__setitem__("seen", c.m._d)}})
    fact = {"k": 1, "yes": True, "no": False, "nothing": None, "n": 7, "x": 1.5, "tags": ["a", 1]}
    seen = engine.run("types", [fact])["seen"]
    assert seen.pop("sid")  # the engine stamps each fact with its session id
    assert seen == fact


@pytest.mark.parametrize(
    "rule, why",
    [
        ({"all": [{"m": {"k": 1}}]}, "'run' must be a callable"),
        ({"all": [{"m": {"k": 1}}], "any": [], "run": print}, "exactly one of"),
        ({"all": [{"m": {"k": 1}}], "pri": -1, "run": print}, "'pri'"),
        ({"all": [{"m": {"k": 1}}], "count": 2, "run": print}, "unsupported keys"),
        ({"all": [{"m": {"k": 1}}, {"m_1$not": {"k": 2}}], "run": print}, "'\\$not'"),
    ],
    ids=["no-run", "all-and-any", "negative-pri", "count", "not-pattern"],
)
def test_register_refuses_bad_shapes(rule, why):
    with pytest.raises(ValueError, match=why):
        RuleSession().register("bad", {"rule.bad": rule})


def test_threads_get_single_threaded_results():
    engine = RuleSession()
    engine.register("epo", _pricing_rules())
    engine.register("flags", {f"flag.{i}": {"all": [{"m": {f"f{i}": True}}], "run": _collect(i)} for i in range(5)})
    requests = [
        ("epo", [CONFIG, {"kind": "entitled", "product": "epo"}]),
        ("epo", [dict(CONFIG, devices=10)]),
        ("epo", [{"kind": "nothing"}]),
        ("flags", [{"f0": True, "f3": True}]),
        ("flags", [{"f1": True, "f2": False}]),
    ]
    expected = [engine.run(name, facts) for name, facts in requests]
    mismatches, errors = [], []

    def worker(offset):
        for index in range(500):
            which = (index + offset) % len(requests)
            name, facts = requests[which]
            try:
                if engine.run(name, facts) != expected[which]:
                    mismatches.append(which)
            except EngineFault as fault:
                errors.append(fault)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (mismatches, errors) == ([], [])


def _rules(count, pattern):
    """Return count rules whose single pattern is pattern(i)."""
    return {f"r{i}": {"all": [{"m": pattern(i)}], "run": print} for i in range(count)}


def test_check_limits_accepts_a_normal_ruleset():
    assert check_limits(_pricing_rules()) == []
    assert check_limits(_rules(500, lambda i: {"code": i})) == []
    assert check_limits(_rules(60, lambda i: {"$gte": {"total": i}})) == []
    assert check_limits(_rules(250, lambda i: {"k": 1})) == []


@pytest.mark.parametrize(
    "rules, reason",
    [
        (_rules(4001, lambda i: {f"f{i}": 1}), "4001 rules"),
        (_rules(501, lambda i: {"code": i}), "field 'code': 501 different equality tests"),
        (_rules(501, lambda i: {"$and": [{"kind": "x"}, {"$lt": {"n": i}}]}), "field 'n': 501 different ordering"),
        (_rules(61, lambda i: {"$gte": {"total": i}}), "field 'total': 61 rules with a numeric lower bound"),
        (_rules(61, lambda i: {"$lt": {"total": i}}), "field 'total': 61 rules with a numeric upper bound"),
        (_rules(251, lambda i: {"k": 1}), "251 rules share the pattern"),
    ],
    ids=["too-many-rules", "sibling-equality", "sibling-ordering", "thresholds-lower", "thresholds-upper", "shared-pattern"],
)
def test_check_limits_refuses(rules, reason):
    assert any(reason in message for message in check_limits(rules)), check_limits(rules)


def _grouped(count):
    """A pattern of COUNT and / or groups: one $and around COUNT - 1 two-way $or."""
    return {"$and": [{"kind": "config"}] + [{"$or": [{f"a{i}": 1}, {f"b{i}": 1}]} for i in range(count - 1)]}


def test_sixteen_and_or_groups_in_one_pattern_fail_registration_and_check_limits_says_so(engine):
    """Measured: error 113 (the engine's 32 expressions per node) from 16 groups; 15 register and run."""
    assert check_limits(_rules(1, lambda i: _grouped(15))) == []
    engine.register("groups-15", {"r0": {"all": [{"m": _grouped(15)}], "run": lambda c: c.scratch.append("r0")}})
    fired = []
    engine.run("groups-15", [{"kind": "config", **{f"a{i}": 1 for i in range(14)}}], fired)
    assert fired == ["r0"]
    engine.unregister("groups-15")
    [reason] = check_limits(_rules(1, lambda i: _grouped(16)))
    assert "rule 'r0': a pattern of 16 and / or groups, more than 15 (error 113" in reason
    nested = {"$or": [{"x": 1}, {"$and": [{"y": 1}, {"$or": [{"z": 1}, {"$and": [{"w": 1}]}]}]}]}
    assert "4 and / or groups" not in " ".join(check_limits(_rules(1, lambda i: nested)))  # nesting counts, 4 fit
    with pytest.raises(EngineFault, match="error code: 113"):
        engine.register("groups-16", _rules(1, lambda i: _grouped(16)), limits_checked=True)  # past the guard


def test_register_refuses_what_check_limits_refuses():
    with pytest.raises(ValueError, match="registration hangs"):
        RuleSession().register("huge", _rules(513, lambda i: {"code": i}))


def test_an_action_records_into_the_scratch_of_its_own_run_only():
    """What fired is handed back through run()'s scratch, never through state shared between runs or threads."""
    engine = RuleSession()
    engine.register("scratch", {"seen": {"all": [{"m": {"kind": "config"}}],
                                         "run": lambda c: c.scratch.append(c.m.tier)}})
    first, second = [], []
    engine.run("scratch", [CONFIG], first)
    engine.run("scratch", [{**CONFIG, "tier": "expert"}], second)
    assert (first, second) == (["advanced"], ["expert"])
    assert engine.scratch is None  # nothing of a run outlives it
