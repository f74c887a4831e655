"""Voucher matching by forward chaining: declared matches compiled into a ruleset, run over a bill of materials.

Each declared match (this voucher covers that bill-of-materials line, so many units a voucher, at this rank of
preference) becomes one rule. A fact is one state of the search: a line, the rank of the match it is at, and
whether that line still needs units and that voucher still has balance (`open`). The rule of the match fires
on an open state and asserts the states that follow from taking 0, 1, ... vouchers of it (never more than
the line still needs); a closed state passes to the next rank; a line past its last rank is finished and the
next line starts. What is left uncovered on each line is the shortfall, closed by the cheapest purchase.

The optimum, exactly (README, "How vouchers are matched"); over lines that share no voucher it is taken line
by line, since they cannot affect each other:
1. the fewest units left uncovered, over all lines (every line covered whenever the locker can);
2. the fewest units wasted (pack capacity beyond a line's need);
3. the cheapest purchase closing each line's gap: fewest surplus units, then fewest vouchers;
4. the declared preference: the most vouchers of each line's first match, then of its second, ..., lines in
   bill-of-materials order.
Actions only do arithmetic and record into the run's scratch: which match applies to which state, and in
which order matches are tried, is the compiled rules'. States that can no longer beat the best allocation
found so far are not asserted (branch and bound), nor are states whose future equals that of a state better
so far (same line, rank, need and balances still usable); a match that is a line's last and shares its
voucher with no later line takes as many vouchers as help, since taking fewer can only leave more uncovered.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from engine.catalogue.conditions import Node, evaluate
from engine.inference.compile import default_engine
from engine.inference.session import RuleSession
from engine.problem import Location, refusal

# A search asserting more states than this is refused rather than left to run (about 50 us a state, under
# the locker's lock). Bills of materials whose lines share no voucher stay far below it; see the README.
MAX_STATES = 5_000
# Compiled rulesets kept registered; older ones are unregistered (a catalogue reload, or tests' own tables).
MAX_COMPILED = 32


@dataclass(frozen=True)
class VoucherUnit:
    """Vouchers of VOUCHER_REFERENCE each cover UNITS_PER_VOUCHER units of a line; RULE, declared at WHERE, says so."""

    voucher_reference: str
    units_per_voucher: int = 1
    rule: str = field(default="", compare=False)
    where: Location | None = field(default=None, compare=False)
    when: Node | None = field(default=None, compare=False)  # resolved: the match applies only where it holds


@dataclass(frozen=True)
class Purchase:
    """Buy QUANTITY vouchers of VOUCHER_REFERENCE; they close UNITS of the line's gap."""

    voucher_reference: str
    quantity: int
    units: int


@dataclass(frozen=True)
class LineMatch:
    """How the engine matched one line: vouchers taken per option (options in preference order) and the rest."""

    options: tuple[VoucherUnit, ...]
    taken: tuple[int, ...]
    uncovered: int
    wasted: int
    purchase: tuple[Purchase, ...]


class Matching(Mapping):
    """Per bill-of-materials reference, the vouchers that cover it in preference order, compiled into rules.

    A line whose reference has no entry is covered by vouchers of its own reference, one unit each; OWN
    names the rule and place that sell each such reference, when known (the catalogue's references).
    """

    def __init__(self, options: Mapping[str, Iterable], own: Mapping[str, tuple[str, Location | None]] | None = None):
        self._options = {str(reference): tuple(as_voucher_unit(item) for item in declared)
                         for reference, declared in options.items() if declared}
        self._own = own or {}
        self.key = tuple((reference, tuple((o.voucher_reference, o.units_per_voucher) for o in declared))
                         for reference, declared in sorted(self._options.items()))

    def __getitem__(self, reference: str) -> tuple[VoucherUnit, ...]:
        return self._options[reference]

    def __iter__(self):
        return iter(self._options)

    def __len__(self) -> int:
        return len(self._options)

    def applying_to(self, facts: dict | None) -> "Matching":
        """Return the matching with only the options whose `when` is known to hold on FACTS.

        Unknown is not enough: with no facts, or a fact the activation does not give, a conditional match
        (a promotional voucher, say) is left out rather than spent where it was not meant to be.
        """
        if not any(option.when is not None for declared in self._options.values() for option in declared):
            return self
        kept = {reference: [option for option in declared if option.when is None
                            or (facts is not None and evaluate(option.when, facts) is True)]
                for reference, declared in self._options.items()}
        return Matching(kept, self._own)

    def options_of(self, reference: str) -> tuple[VoucherUnit, ...]:
        """Return the options of a line: its declared matches, or its own reference at one unit."""
        declared = self._options.get(reference)
        if declared:
            return declared
        rule, where = self._own.get(reference, ("", None))
        return (VoucherUnit(reference, 1, rule, where),)

    def allocate(self, needs: Sequence[tuple[str, int]], balances: Mapping[str, int]) -> list[LineMatch]:
        """Return, per (reference, units) line, what the compiled rules take from BALANCES and what is left to buy."""
        search = _Search(self, needs, balances)
        facts = search.start()
        if facts:
            _run(self, facts, search)
        if search.overflow:
            raise refusal("matching-too-large",
                          f"matching these {len(needs)} lines against the locker takes more than {MAX_STATES} steps",
                          "split the activation, or declare fewer vouchers shared between its lines")
        return search.result()


def as_voucher_unit(item) -> VoucherUnit:
    """Return ITEM (a VoucherUnit, a mapping, or a (reference, units) pair) as a checked VoucherUnit."""
    if isinstance(item, VoucherUnit):
        unit = item
    elif isinstance(item, Mapping):
        unit = VoucherUnit(str(item.get("voucher_reference", item.get("reference"))),
                           item.get("units_per_voucher", item.get("units", 1)))
    else:
        reference, units = item
        unit = VoucherUnit(str(reference), units)
    if (isinstance(unit.units_per_voucher, bool) or not isinstance(unit.units_per_voucher, int)
            or unit.units_per_voucher < 1):
        raise refusal("bad-matching", f"voucher {unit.voucher_reference}: units per voucher must be >= 1, "
                                      f"got {unit.units_per_voucher!r}")
    return unit


# --- the compiled rules --------------------------------------------------------------------------------

_COMPILED: dict[tuple, str] = {}  # matching key -> registered ruleset name, oldest first
_COMPILED_LOCK = threading.Lock()
_NAMES = itertools.count(1)


def compile_rules(matching: Matching) -> dict[str, dict]:
    """Return the ruleset of MATCHING: one rule per declared match, one for undeclared lines, one to pass."""
    rules: dict[str, dict] = {}
    for reference, options in sorted(matching._options.items()):
        for rank, option in enumerate(options):
            pattern = {"$and": [{"kind": "need"}, {"line": reference}, {"rank": rank}, {"open": True}]}
            # The preference order is the rank: a state at rank r is only ever matched by the rule of rank r, and
            # the rule of rank r hands on to rank r + 1. The priority says the same to the engine.
            rules[f"match-{len(rules)}"] = {"all": [{"m": pattern}], "pri": 1 + rank,
                                            "run": _taker(option, rank)}
    rules["own-reference"] = {"all": [{"m": {"$and": [{"kind": "need"}, {"declared": False}, {"open": True}]}}],
                              "pri": 1, "run": _own_taker}
    # Lines that nothing but their own reference covers, and that share it with no other line, have no choice
    # to make: one fact stands for all of them, and one firing covers each from its own vouchers.
    rules["own-references"] = {"all": [{"m": {"kind": "own-lines"}}], "pri": 1, "run": _own_lines}
    rules["pass"] = {"all": [{"m": {"$and": [{"kind": "need"}, {"open": False}]}}], "run": _pass}
    return rules


def _taker(option: VoucherUnit, rank: int):
    """Return the action of one declared match: take vouchers of OPTION from an open state at RANK."""

    def take(c) -> None:
        c.scratch.take(c.m["state"], option, rank, c.assert_fact)

    return take


def _own_taker(c) -> None:
    """Take vouchers of a line's own reference, one unit each (a line with no declared match)."""
    search = c.scratch
    state = search.states[c.m["state"]]
    search.take(c.m["state"], search.lines[state.line].options[0], 0, c.assert_fact)


def _own_lines(c) -> None:
    """Cover each line of a batch of lines with no declared match from its own reference, one unit a voucher."""
    search = c.scratch
    for state in search.batches.pop(c.m["state"]):
        search.take_forced(state, search.lines[state.line].options[0], 0)


def _pass(c) -> None:
    """Take nothing at this rank: the line needs no more units or the voucher has no balance left."""
    c.scratch.skip(c.m["state"], c.assert_fact)


def _ruleset(matching: Matching, engine: RuleSession) -> str:
    """Return the name of MATCHING's registered ruleset, compiling and registering it the first time."""
    with _COMPILED_LOCK:
        name = _COMPILED.get(matching.key)
        if name is not None:
            return name
        name = f"voucher-matching-{next(_NAMES)}"
        engine.register(name, compile_rules(matching))
        _COMPILED[matching.key] = name
        while len(_COMPILED) > MAX_COMPILED:
            oldest = next(iter(_COMPILED))
            engine.unregister(_COMPILED.pop(oldest))
        return name


def _run(matching: Matching, facts: list[dict], search: _Search) -> None:
    """Run the search in MATCHING's ruleset (registered again if another thread evicted it meanwhile)."""
    engine = default_engine()
    for attempt in range(3):
        name = _ruleset(matching, engine)
        try:
            engine.run(name, facts, search)
            return
        except KeyError:
            with _COMPILED_LOCK:
                if _COMPILED.get(matching.key) == name:
                    del _COMPILED[matching.key]
    raise refusal("matching-unavailable", "the voucher matching rules could not be registered; try again")


# --- the search the rules drive --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Line:
    """A bill-of-materials line as the search sees it."""

    index: int
    reference: str
    need: int
    options: tuple[VoucherUnit, ...]
    declared: bool
    later: frozenset[str]  # vouchers that later lines of its group may also take


@dataclass(frozen=True)
class _State:
    """A state of one group's search: at LINE (position in the group), RANK, NEED still to cover."""

    group: int
    line: int
    rank: int
    need: int
    pool: dict
    taken: tuple[int, ...]  # vouchers taken so far, per option, lines in order
    cost: tuple[int, int, int, int]  # uncovered, wasted, surplus bought, vouchers bought, over finished lines
    purchases: tuple


class _Search:
    """The scratch of one matching run: the lines, the states asserted so far, the best allocation per group."""

    def __init__(self, matching: Matching, needs: Sequence[tuple[str, int]], balances: Mapping[str, int]):
        self.matching = matching
        options = [matching.options_of(reference) for reference, _ in needs]
        self.groups = _groups([{option.voucher_reference for option in choice} for choice in options])
        self.lines: list[_Line] = []
        for members in self.groups:
            for position, index in enumerate(members):
                later = frozenset(option.voucher_reference for other in members[position + 1:] for option in options[other])
                reference, need = needs[index]
                self.lines.append(_Line(index, reference, need, options[index], reference in matching._options, later))
        self.first = list(itertools.accumulate([0] + [len(members) for members in self.groups]))
        self.pools = [{option.voucher_reference: max(0, int(balances.get(option.voucher_reference, 0)))
                       for index in members for option in options[index]} for members in self.groups]
        self.states: dict[int, _State] = {}
        self.seen: dict[tuple, tuple] = {}
        # Per line position and rank: the vouchers that this rank and the ones after it, and later lines, may take.
        self.ahead = [[sorted({option.voucher_reference for option in line.options[rank:]} | line.later)
                       for rank in range(len(line.options))] for line in self.lines]
        self.batches: dict[int, list[_State]] = {}
        self.ids = itertools.count(1)
        self.best: list[_State | None] = [None] * len(self.groups)
        self.count = 0
        self.overflow = False

    def start(self) -> list[dict]:
        """Return the first fact of every group (groups whose lines need nothing finish at once)."""
        facts: list[dict] = []
        alone: list[_State] = []
        for group, pool in enumerate(self.pools):
            state = _State(group, self.first[group], 0, 0, pool, (), (0, 0, 0, 0), ())
            line = self.lines[state.line]
            if self.first[group + 1] - self.first[group] == 1 and not line.declared and line.need > 0:
                alone.append(replace(state, need=line.need))
            else:
                self._begin_line(state, facts.append)
        if alone:
            batch_id = next(self.ids)
            self.batches[batch_id] = alone
            self.count += 1
            facts.append({"kind": "own-lines", "lines": len(alone), "state": batch_id})
        return facts

    def take_forced(self, state: _State, option: VoucherUnit, rank: int) -> None:
        """Take as many vouchers of OPTION as help a line that has no other option and shares none."""
        self._take(state, option, rank, [min(state.pool[option.voucher_reference],
                                             math.ceil(state.need / option.units_per_voucher))], None)

    # The rules' actions call these three.
    def take(self, state_id: int, option: VoucherUnit, rank: int, emit) -> None:
        """Branch on how many vouchers of OPTION the state takes, most first (the engine runs the last asserted first)."""
        state = self.states.pop(state_id)
        line = self.lines[state.line]
        most = min(state.pool[option.voucher_reference], math.ceil(state.need / option.units_per_voucher))
        last = rank == len(line.options) - 1
        # Fewer than `most` can only leave more uncovered, unless a later line could use what is left.
        self._take(state, option, rank, [most] if last and option.voucher_reference not in line.later
                   else range(most + 1), emit)

    def _take(self, state: _State, option: VoucherUnit, rank: int, counts, emit) -> None:
        """Go on from STATE with each of COUNTS vouchers of OPTION taken."""
        units = option.units_per_voucher
        for count in counts:
            pool = dict(state.pool)
            pool[option.voucher_reference] -= count
            self._advance(_State(state.group, state.line, rank + 1, state.need - count * units, pool,
                                 state.taken + (count,), state.cost, state.purchases), emit)

    def skip(self, state_id: int, emit) -> None:
        """Take nothing at the state's rank."""
        state = self.states.pop(state_id)
        self._advance(_State(state.group, state.line, state.rank + 1, state.need, state.pool, state.taken + (0,),
                             state.cost, state.purchases), emit)

    def _advance(self, state: _State, emit) -> None:
        """Go on with a state after a rank: to the next rank, or finish the line when it needs no more."""
        line = self.lines[state.line]
        if state.need <= 0 or state.rank >= len(line.options):
            padding = (0,) * (len(line.options) - state.rank)
            uncovered, wasted = max(state.need, 0), max(-state.need, 0)
            purchase = cheapest_purchase(uncovered, tuple(option.units_per_voucher for option in line.options))
            surplus = sum(count * line.options[rank].units_per_voucher for rank, count in enumerate(purchase)) - uncovered
            cost = tuple(map(sum, zip(state.cost, (uncovered, wasted, max(surplus, 0), sum(purchase)))))
            finished = _State(state.group, state.line + 1, 0, 0, state.pool, state.taken + padding, cost,
                              state.purchases + ((uncovered, wasted, purchase),))
            if finished.line == self.first[state.group + 1]:
                if self._better(finished):
                    self.best[state.group] = finished
                return
            self._begin_line(finished, emit)
            return
        self._emit(state, emit)

    def _begin_line(self, state: _State, emit) -> None:
        """Start the state's line at its first rank."""
        line = self.lines[state.line]
        self._advance(_State(state.group, state.line, 0, line.need, state.pool, state.taken, state.cost,
                             state.purchases), emit)

    def _emit(self, state: _State, emit) -> None:
        """Assert a state as a fact, unless it cannot beat the best allocation already found."""
        if not self._promising(state):
            return
        # Two states at the same line and rank, needing the same and holding the same balances of every voucher
        # still to be tried, have the same futures: only the one better so far can end better.
        key = (state.line, state.rank, state.need,
               tuple(state.pool[reference] for reference in self.ahead[state.line][state.rank]))
        rank = (state.cost, _negated(state.taken))
        known = self.seen.get(key)
        if known is not None and known <= rank:
            return
        self.seen[key] = rank
        self.count += 1
        if self.count > MAX_STATES:
            self.overflow = True
            return
        line = self.lines[state.line]
        state_id = next(self.ids)
        self.states[state_id] = state
        option = line.options[state.rank]
        balance = state.pool[option.voucher_reference]
        # `open`: the line still needs units and this rank's voucher still has balance (the rules test it as a
        # flag: one numeric bound per match rule would cross the engine's threshold limit in a large catalogue).
        emit({"kind": "need", "line": line.reference, "declared": line.declared, "rank": state.rank,
              "open": state.need > 0 and balance > 0, "state": state_id})

    def _promising(self, state: _State) -> bool:
        """Return whether a partial state can still beat the group's best (costs only grow as lines finish)."""
        best = self.best[state.group]
        if best is None or state.cost < best.cost:
            return True
        if state.cost > best.cost:
            return False
        return state.taken >= best.taken[:len(state.taken)]

    def _better(self, finished: _State) -> bool:
        """Return whether a finished group allocation beats the best so far (lower cost, then more preferred)."""
        best = self.best[finished.group]
        return best is None or (finished.cost, _negated(finished.taken)) < (best.cost, _negated(best.taken))

    def result(self) -> list[LineMatch]:
        """Return each line's match, in the order the lines were given."""
        matches: list[LineMatch | None] = [None] * len(self.lines)
        for group, best in enumerate(self.best):
            offset = 0
            for position in range(self.first[group], self.first[group + 1]):
                line = self.lines[position]
                taken = best.taken[offset:offset + len(line.options)]
                offset += len(line.options)
                uncovered, wasted, purchase = best.purchases[position - self.first[group]]
                matches[line.index] = LineMatch(line.options, taken, uncovered, wasted,
                                                _purchases(line.options, purchase, uncovered))
        return matches


def _negated(taken: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(-count for count in taken)


def _groups(vouchers: list[set[str]]) -> list[list[int]]:
    """Group line indexes that share a voucher (directly or through other lines), each group in line order."""
    parent = list(range(len(vouchers)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    holder: dict[str, int] = {}
    for index, references in enumerate(vouchers):
        for reference in references:
            if reference in holder:
                parent[root(index)] = root(holder[reference])
            else:
                holder[reference] = index
    members: dict[int, list[int]] = {}
    for index in range(len(vouchers)):
        members.setdefault(root(index), []).append(index)
    return sorted(members.values())


def _purchases(options: tuple[VoucherUnit, ...], counts: tuple[int, ...], uncovered: int) -> tuple[Purchase, ...]:
    """Return what to buy, in preference order, each with the units of the gap it closes."""
    left, items = uncovered, []
    for option, count in zip(options, counts):
        if count:
            closes = min(left, count * option.units_per_voucher)
            left -= closes
            items.append(Purchase(option.voucher_reference, count, closes))
    return tuple(items)


@lru_cache(maxsize=4096)
def cheapest_purchase(gap: int, units: tuple[int, ...]) -> tuple[int, ...]:
    """Return how many vouchers of each option to buy to close GAP: fewest surplus units, then fewest vouchers,
    then the most of the preferred options (UNITS per voucher, in preference order)."""
    if gap <= 0:
        return (0,) * len(units)
    top = gap + max(units)  # a cheapest purchase overshoots by less than its smallest voucher
    # fewest[k][t]: fewest vouchers of options k.. that cover exactly t units (None: impossible).
    fewest: list[list[int | None]] = [[0] + [None] * top]
    for size in reversed(units):
        table = list(fewest[0])
        for total in range(size, top + 1):
            before = table[total - size]
            if before is not None and (table[total] is None or before + 1 < table[total]):
                table[total] = before + 1
        fewest.insert(0, table)
    total = next(total for total in range(gap, top + 1) if fewest[0][total] is not None)
    counts = []
    for rank, size in enumerate(units):
        # The most vouchers of this option that still allow the fewest in all.
        count = next(count for count in range(total // size, -1, -1)
                     if fewest[rank + 1][total - count * size] is not None
                     and count + fewest[rank + 1][total - count * size] == fewest[rank][total])
        counts.append(count)
        total -= count * size
    return tuple(counts)
