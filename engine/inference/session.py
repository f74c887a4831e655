"""Evaluate facts against durable_rules rulesets in throwaway sessions: the only module that imports the engine.

durable_rules 2.0.28 has traps that crash or hang the whole process (docs/engine-notes.md). This
module walls them off so that the rest of Companion sees plain dicts in, plain dicts out, and
`EngineFault` or `ValueError` instead of silent partial results or a segmentation fault:

- One process-wide lock around every call into the C extension, and a host whose background timer and
  dispatch threads do nothing (the default ones segfault when the engine is driven from threads).
- One live session at a time: a fresh sid per evaluation, always deleted afterwards (the engine fails at
  1,025 live sessions, and keys sessions by a 32-bit hash of the sid, so two live sessions could collide).
- Errors the engine hides are surfaced. They come in three forms, all measured:
  * the C extension raises `durable_rules_engine.error` ("... error code: N"), sometimes after
    `durable.engine` has logged it (e.g. 307 when a session is deleted under a running action);
  * exceptions raised in actions are swallowed into `state['exception']` and later rules still run;
  * an action running longer than 10 s makes durable drop the rest of the evaluation silently;
  * after a failed assert (303, a fact seen twice) deleting the session segfaults: it is leaked instead
    and the ruleset refused from then on.
  The C code itself prints nothing; what durable logs goes through the `durable` logger, which this
  module captures during each run. Crashes cannot be caught, so the constructs known to cause them are
  refused up front (`$not` patterns, identical facts in one request) and `check_limits` refuses
  rulesets that would hang or fail at registration.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import durable_rules_engine  # the C extension: its error type, and delete_ruleset (durable.engine has no wrapper)
from durable import engine as _durable

# The C engine is one global table of rulesets and sessions, shared by every host in the process.
_LOCK = threading.Lock()
# Unique for the life of the process, so no sid is ever reused, even across RuleSession instances.
_SIDS = itertools.count(1)
# Keys durable adds to every session state; they are bookkeeping, not results.
_ENGINE_KEYS = ("sid", "id", "$s")
# durable treats pri as an unsigned 16-bit number: larger or negative values wrap around.
_MAX_PRI = 65535

# Limits measured on durable_rules 2.0.28 (bench/engine_costs.py --limits), with a margin below each.
MAX_RULES = 4000  # 4,097 rules: error 106 at registration
MAX_SIBLING_TESTS = 500  # 513 tests on one field: registration hangs; 512: error 303 at first assert
MAX_THRESHOLD_MATCHES = 60  # 65 rules `total >= k` all matching one fact: error 303
MAX_SHARED_PATTERN = 250  # 257 rules with one identical pattern: error 108
MAX_GROUPS = 15  # 16 `$and` / `$or` groups in one pattern, nested or not: error 113 at registration

# Measured: deleting a session that holds a fact no action consumed (an unmatched fact, half of a join)
# segfaults or aborts, at random. A last-priority rule matching every fact (each has a sid; the state,
# also re-asserted as a fact, is the one with "$s") makes every fact fire once: 20,000 such deletions
# then ran clean. It costs one no-op firing per fact.
_SINK = "$fact-sink"
_EVERY_FACT = {"$and": [{"$ex": {"sid": 1}}, {"$nex": {"$s": 1}}]}


def _consume(c: _durable.Closure) -> None:
    """Do nothing: the firing itself is what keeps delete_state safe."""


_ORDER_OPS = {"$lt": "upper", "$lte": "upper", "$gt": "lower", "$gte": "lower"}
_FAMILIES = {"$lt": "ordering", "$lte": "ordering", "$gt": "ordering", "$gte": "ordering", "$neq": "inequality"}


class EngineFault(Exception):
    """The engine misbehaved: an internal error code, an exception swallowed in an action, or a partial result."""


class _QuietHost(_durable.Host):
    """A durable host without background threads."""

    def _run(self) -> None:
        # The default starts timers that walk engine state every 0.2 s from other threads; driven from
        # several threads that segfaults. Companion uses neither timers nor queued dispatch.
        pass


class _Capture(logging.Handler):
    """Keep what durable logs during one evaluation."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage().splitlines()[0][:300])


# durable logs an engine error (with a traceback) before raising or dropping it; while a handler is
# attached, logging no longer prints it to stderr itself, and run() turns it into an EngineFault.
_CAPTURE = _Capture()
logging.getLogger("durable").addHandler(_CAPTURE)
# Engine errors raised by asserts inside actions during the current run (durable swallows them).
_FAILED_ASSERTS: list[str] = []


class _Context:
    """What an action sees: the matched facts (c.m, or c.<alias>), the state c.s, the run's scratch, assert_fact."""

    __slots__ = ("_closure", "scratch")

    def __init__(self, closure: _durable.Closure, scratch: Any) -> None:
        self._closure = closure
        self.scratch = scratch  # what the caller of run() handed over for this evaluation

    @property
    def s(self) -> _durable.Content:
        """Return the session state; it is this evaluation's result."""
        return self._closure.s

    def __getattr__(self, name: str) -> Any:
        # Only matched patterns are exposed: durable's closure also offers delete_state, post and timers,
        # which crash (error 307) or leak sessions when called from an action.
        matched = self._closure._m
        if isinstance(matched, dict) and name in matched:
            return getattr(self._closure, name)
        raise AttributeError(f"no pattern named {name!r} in this rule")

    def assert_fact(self, fact: dict) -> None:
        """Assert a derived fact into the running evaluation (forward chaining)."""
        try:
            self._closure.assert_fact(dict(fact))
        except _durable.MessageNotHandledException:
            pass  # no rule consumes this derived fact: a normal outcome, not an error of the action
        except _durable.MessageObservedException:
            pass  # derived twice (e.g. by two rules): the fact is already known
        except durable_rules_engine.error as error:
            _FAILED_ASSERTS.append(str(error))  # run() must not delete this session: see _AssertFailed
            raise


def _bind(action: Callable[[Any], object], session: RuleSession) -> Callable[[_durable.Closure], None]:
    """Wrap an action so durable calls it synchronously with a _Context holding the session's current scratch."""

    # Exactly one positional parameter: durable inspects the signature and treats two-parameter
    # callables as asynchronous actions; callable objects and partials have no __code__ at all.
    def fire(c: _durable.Closure) -> None:
        action(_Context(c, session.scratch))

    return fire


class RuleSession:
    """Holds registered rulesets and runs one evaluation at a time, safely from any thread."""

    def __init__(self) -> None:
        with _LOCK:
            self._host = _QuietHost()
        self._poisoned: set[str] = set()  # rulesets whose sessions the engine corrupted
        self.scratch: Any = None  # the running evaluation's scratch; runs hold _LOCK, so one at a time

    @property
    def names(self) -> list[str]:
        """Return the registered ruleset names, sorted."""
        with _LOCK:
            return sorted(self._host._ruleset_directory)

    def register(self, name: str, rules: dict[str, dict], limits_checked: bool = False) -> None:
        """Register a ruleset under a new name; refuse what the engine would crash, hang or fail on.

        LIMITS_CHECKED says the caller has just run check_limits on these very rules (the compiler does, to
        locate its refusals), so that a large catalogue does not pay for it twice.
        """
        if not isinstance(name, str) or not name:
            raise ValueError("a ruleset name must be a non-empty string")
        problems = _shape_problems(rules) or ([] if limits_checked else check_limits(rules))
        if problems:
            raise ValueError(f"ruleset {name!r} refused: " + "; ".join(problems))
        # register_rulesets deletes "run" from each rule dict it is given: hand it new dicts (shallow copies
        # suffice, since durable serialises the rules to JSON for the C engine at registration, so later
        # changes to nested parts cannot reach the engine), with each action wrapped.
        definition = {_SINK: {"pri": _MAX_PRI, "all": [{"m": _EVERY_FACT}], "run": _consume}}
        for rule_name, rule in rules.items():
            definition[rule_name] = {key: value for key, value in rule.items() if key != "run"}
            definition[rule_name]["run"] = _bind(rule["run"], self)
        with _LOCK:
            if name in self._host._ruleset_directory:
                # durable cannot redefine a ruleset (#157): register new versions under new names.
                raise ValueError(f"ruleset {name!r} is already registered")
            try:
                self._host.register_rulesets({name: definition})
            except durable_rules_engine.error as error:
                raise EngineFault(f"ruleset {name!r}: registration failed: {error}") from error

    def unregister(self, name: str) -> None:
        """Forget a ruleset and free its memory in the C engine."""
        # Measured: delete_ruleset frees it (300 rulesets of 100 rules: +240 MB RSS when kept, +1.5 MB
        # when each is deleted after registration) and the name can be registered again afterwards.
        # durable.engine.Host has no public way to do this, hence the private attributes.
        with _LOCK:
            ruleset = self._host._ruleset_directory.pop(name, None)
            if ruleset is None:
                raise KeyError(f"no ruleset named {name!r}")
            self._host._ruleset_list.remove(ruleset)
            if name in self._poisoned:
                self._poisoned.discard(name)
                return  # its C state is corrupt: freeing it could crash, so it is only forgotten
            try:
                durable_rules_engine.delete_ruleset(ruleset._handle)
            except durable_rules_engine.error as error:
                raise EngineFault(f"ruleset {name!r}: delete failed: {error}") from error

    def run(self, name: str, facts: list[dict], scratch: Any = None) -> dict:
        """Assert facts in a fresh session and return the state the actions left (empty if none fired).

        SCRATCH is what every action of this run sees as `c.scratch`: the caller's own record of the run,
        cheaper than the session state, which durable serialises to JSON at every write.
        """
        unique = _unique_facts(facts)
        if not unique:
            return {}
        with _LOCK:
            ruleset = self._host._ruleset_directory.get(name)
            if ruleset is None:
                raise KeyError(f"no ruleset named {name!r}")
            if name in self._poisoned:
                raise EngineFault(f"ruleset {name!r} failed earlier and is unusable; register it under a new name")
            sid = str(next(_SIDS))
            _CAPTURE.messages.clear()
            _FAILED_ASSERTS.clear()
            delete = True
            self.scratch = scratch
            try:
                state = self._evaluate(ruleset, [{**fact, "sid": sid} for fact in unique])
            except _AssertFailed as failure:
                # Measured: after an assert fails inside the engine (303, or a fact seen twice), deleting
                # that session segfaults or aborts, and later runs on the ruleset may too. Leak the one
                # session and refuse the ruleset from now on.
                delete = False
                self._poisoned.add(name)
                raise EngineFault(f"ruleset {name!r}: {failure}; session {sid} abandoned") from failure.__cause__
            finally:
                self.scratch = None
                if delete and _FAILED_ASSERTS:
                    delete = False  # the same failure, from an assert inside an action
                    self._poisoned.add(name)
                if delete:
                    self._delete(name, sid)
            if _FAILED_ASSERTS:
                raise EngineFault(f"ruleset {name!r}: an action's assert failed: {_FAILED_ASSERTS[0]}")
            if _CAPTURE.messages:
                # Something durable only logged: the state may lack the work of later actions.
                raise EngineFault(f"ruleset {name!r}: engine error: {_CAPTURE.messages[0]}")
            if "exception" in state:
                raise EngineFault(f"ruleset {name!r}: an action raised: {_first_line(state['exception'])}")
        return {key: value for key, value in state.items() if key not in _ENGINE_KEYS}

    @staticmethod
    def _evaluate(ruleset: _durable.Ruleset, facts: list[dict]) -> dict:
        """Assert facts in one call, run the actions they trigger, and return the final state."""
        # What Host.assert_facts does, split in two so that a failure of the assert itself (which
        # leaves the session unsafe to delete) is told apart from a failure while running actions.
        try:
            handle = ruleset.assert_facts(facts)
        except _durable.MessageNotHandledException:
            return {}  # no rule matched: a normal outcome
        except (durable_rules_engine.error, _durable.MessageObservedException) as error:
            raise _AssertFailed(getattr(error, "message", str(error))) from error
        outcome: dict[str, Any] = {}

        def complete(error: BaseException | None, state: dict | None) -> None:
            outcome["error"], outcome["state"] = error, state

        ruleset.do_actions(handle, complete)
        if not outcome:
            # durable never completes when an action ran longer than 10 s: it drops the remaining actions.
            raise EngineFault(f"ruleset {ruleset._name!r}: an action ran longer than 10 s; the evaluation was abandoned")
        if outcome["error"] is not None:
            raise EngineFault(f"ruleset {ruleset._name!r}: engine error while running actions: {outcome['error']}")
        return outcome["state"] or {}  # None: facts were stored (e.g. half of a join) but no rule fired

    def _delete(self, name: str, sid: str) -> None:
        """Delete a session; an engine error here is a fault of its own."""
        try:
            self._host.delete_state(name, sid)
        except durable_rules_engine.error as error:
            raise EngineFault(f"ruleset {name!r}: could not delete session {sid}: {error}") from error


class _AssertFailed(Exception):
    """The engine failed while asserting facts; the session must not be deleted."""


def _first_line(text: str) -> str:
    """Cut durable's 'exception caught X, traceback [...]' down to X."""
    return str(text).split(", traceback [", 1)[0].removeprefix("exception caught ")


def _unique_facts(facts: list[dict]) -> list[dict]:
    """Drop repeated facts and refuse what the engine reserves."""
    # An identical fact twice in one assert raises MessageObservedException, and deleting that session
    # afterwards segfaults: identical facts must never reach the engine.
    seen: set[str] = set()
    unique = []
    for index, fact in enumerate(facts):
        if not isinstance(fact, dict):
            raise ValueError(f"fact {index} is not a dict")
        if "sid" in fact:
            raise ValueError(f"fact {index}: 'sid' is reserved for the engine")
        if len(facts) == 1:
            return [fact]  # a single fact cannot repeat; encoding it to compare would cost for nothing
        key = json.dumps(fact, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            unique.append(fact)
    ids = [fact["id"] for fact in unique if "id" in fact]
    if len(ids) != len(set(map(str, ids))):
        raise ValueError("two different facts share one 'id'; the engine would treat them as one")
    return unique


def _shape_problems(rules: dict[str, dict]) -> list[str]:
    """Say what in the ruleset's shape durable would reject, misread or crash on."""
    if not isinstance(rules, dict) or not rules:
        return ["a ruleset needs at least one rule"]
    problems = []
    for rule_name, rule in rules.items():
        if not isinstance(rule, dict):
            problems.append(f"rule {rule_name!r} is not a dict")
            continue
        extra = set(rule) - {"all", "any", "pri", "run"}
        if extra:
            problems.append(f"rule {rule_name!r}: unsupported keys {sorted(extra)}")
        if ("all" in rule) == ("any" in rule) or not isinstance(rule.get("all", rule.get("any")), list):
            problems.append(f"rule {rule_name!r}: needs exactly one of 'all' or 'any', a list of patterns")
        if not callable(rule.get("run")):
            problems.append(f"rule {rule_name!r}: 'run' must be a callable taking one argument")
        pri = rule.get("pri", 0)
        if isinstance(pri, bool) or not isinstance(pri, int) or not 0 <= pri <= _MAX_PRI:
            problems.append(f"rule {rule_name!r}: 'pri' must be an int from 0 to {_MAX_PRI}")
        if any(alias.endswith("$not") for alias, _ in _patterns(rule)):
            # Measured: with the negated fact present the process segfaults when the session is deleted,
            # and a negated fact asserted after the positive one does not stop the rule.
            problems.append(f"rule {rule_name!r}: '$not' patterns crash the engine; assert the absence as a field")
        if isinstance(rule_name, str) and rule_name.startswith("$"):
            problems.append(f"rule {rule_name!r}: names starting with '$' are reserved")
    return problems


def check_limits(rules: dict[str, dict]) -> list[str]:
    """Return why the engine would fail or hang on this ruleset (empty if it fits the measured limits)."""
    # Counts are deliberately simple and conservative: each counts tests across the whole ruleset,
    # whether or not the engine would share or separate them in its network.
    reasons = []
    if len(rules) > MAX_RULES:
        reasons.append(f"{len(rules)} rules, more than {MAX_RULES} (error 106)")
    siblings: dict[tuple[str, str], set[str]] = defaultdict(set)  # (field, family) -> distinct tests
    bounded: dict[tuple[str, str], set[str]] = defaultdict(set)  # (field, direction) -> rules
    shared: Counter[str] = Counter()  # identical pattern -> rules using it
    # Fewer rules than the limit cannot share one pattern more often than it: skip encoding every pattern.
    count_patterns = len(rules) > MAX_SHARED_PATTERN
    for rule_name, rule in rules.items():
        if not isinstance(rule, dict):
            continue
        reasons.extend(f"rule {rule_name!r}: {reason}" for reason in rule_limits(rule))
        patterns = set()
        for _, expression in _patterns(rule):
            if count_patterns:
                patterns.add(json.dumps(expression, sort_keys=True, default=str))
            for operator, field, value in _tests(expression):
                family = _FAMILIES.get(operator, "equality")
                # Tests compare with literals: the type keeps True and 1 apart, as the engine does.
                siblings[(field, family)].add((operator, type(value).__name__, repr(value)))
                if operator in _ORDER_OPS and isinstance(value, (int, float)) and not isinstance(value, bool):
                    bounded[(field, _ORDER_OPS[operator])].add(rule_name)
        shared.update(patterns)
    for (field, family), tests in sorted(siblings.items()):
        if len(tests) > MAX_SIBLING_TESTS:
            reasons.append(
                f"field {field!r}: {len(tests)} different {family} tests, more than {MAX_SIBLING_TESTS} "
                "(registration hangs); move the table into facts or Python data"
            )
    for (field, direction), names in sorted(bounded.items()):
        if len(names) > MAX_THRESHOLD_MATCHES:
            reasons.append(
                f"field {field!r}: {len(names)} rules with a numeric {direction} bound could all match one fact, "
                f"more than {MAX_THRESHOLD_MATCHES} (error 303)"
            )
    for pattern, count in shared.most_common():
        if count <= MAX_SHARED_PATTERN:
            break
        reasons.append(f"{count} rules share the pattern {pattern[:80]}, more than {MAX_SHARED_PATTERN} (error 108)")
    return reasons


def rule_limits(rule: dict) -> list[str]:
    """Return why the engine would refuse this one rule, whatever the rest of its ruleset."""
    reasons = []
    for _, expression in _patterns(rule):
        groups = _groups(expression)
        if groups > MAX_GROUPS:
            reasons.append(f"a pattern of {groups} and / or groups, more than {MAX_GROUPS} (error 113 at registration)")
    return reasons


def _patterns(rule: dict) -> Iterator[tuple[str, Any]]:
    """Yield (alias, expression) for every pattern of a rule, nested $all/$any groups included."""
    stack = list(rule.get("all") or rule.get("any") or [])
    while stack:
        pattern = stack.pop()
        if not isinstance(pattern, dict):
            continue
        for alias, expression in pattern.items():
            if isinstance(expression, list):  # "m_0$all": [...] or "m_0$any": [...]
                stack.extend(expression)
            else:
                yield alias, expression


def _groups(expression: Any) -> int:
    """Count the `$and` / `$or` groups of an expression, nested ones included (the engine's expression sequence)."""
    if not isinstance(expression, dict):
        return 0
    count = 0
    for key, value in expression.items():
        if key in ("$and", "$or") and isinstance(value, list):
            count += 1 + sum(_groups(part) for part in value)
    return count


def _tests(expression: Any) -> Iterator[tuple[str, str, Any]]:
    """Yield (operator, field, value) for each comparison with a literal in an expression."""
    if not isinstance(expression, dict):
        return
    for key, value in expression.items():
        if key in ("$and", "$or") and isinstance(value, list):
            for part in value:
                yield from _tests(part)
        elif key in _FAMILIES and isinstance(value, dict):
            for field, operand in value.items():
                if not isinstance(operand, dict):  # a dict operand refers to another fact: a join
                    yield key, field, operand
        elif not key.startswith("$") and not isinstance(value, dict):
            yield "=", key, value
