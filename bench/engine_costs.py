"""Measure what one RuleSession.run costs, and probe durable's limits in subprocesses.

Run by hand: `.venv/bin/python bench/engine_costs.py [--runs N] [--limits]`.
Prints the median microseconds per run of each scenario; with --limits, registers rulesets around each
limit of docs/engine-notes.md in a child process with a timeout (some of them hang or crash the process).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.inference.session import RuleSession  # noqa: E402


def _note(c) -> None:
    """Record a firing in the state (the way verdicts are collected)."""
    c.s["hits"] = (c.s["hits"] or 0) + 1


def _matching_rules(count: int, matching: int) -> dict[str, dict]:
    """Return count rules on distinct fields of a config fact, of which `matching` match the bench fact."""
    rules = {}
    for index in range(count):
        value = 1 if index < matching else 2
        rules[f"r{index}"] = {"all": [{"m": {"$and": [{"kind": "config"}, {f"f{index}": value}]}}], "run": _note}
    return rules


def _chain_rules() -> dict[str, dict]:
    """Return rules deriving level1 -> level2 -> level3 from a config fact."""

    def derive(level):
        return lambda c: c.assert_fact({"kind": f"level{level}"})

    return {
        "l1": {"all": [{"m": {"kind": "config"}}], "run": derive(1)},
        "l2": {"all": [{"m": {"kind": "level1"}}], "run": derive(2)},
        "l3": {"all": [{"m": {"kind": "level2"}}], "run": derive(3)},
        "done": {"all": [{"m": {"kind": "level3"}}], "run": _note},
    }


def _join_rules() -> dict[str, dict]:
    """Return one rule joining a config fact to an entitlement for the same product."""
    return {
        "join": {
            "all": [
                {"cfg": {"kind": "config"}},
                {"ent": {"$and": [{"kind": "entitled"}, {"product": {"cfg": "product"}}]}},
            ],
            "run": _note,
        }
    }


def _state_rules(count: int) -> dict[str, dict]:
    """Return count matching rules whose actions append to the state."""

    def append(c):
        c.s["items"] = (c.s["items"] or []) + [c.m.kind]

    return {f"r{i}": {"all": [{"m": {"$and": [{"kind": "config"}, {f"f{i}": 1}]}}], "run": append} for i in range(count)}


def _closure_rules(count: int, sink: list) -> dict[str, dict]:
    """Return count matching rules whose actions append to a Python list."""
    return {
        f"r{i}": {"all": [{"m": {"$and": [{"kind": "config"}, {f"f{i}": 1}]}}], "run": lambda c: sink.append(c.m.kind)}
        for i in range(count)
    }


def _median_us(engine: RuleSession, name: str, facts: list[dict], runs: int) -> float:
    """Return the median microseconds of `runs` evaluations."""
    engine.run(name, facts)  # warm up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        engine.run(name, facts)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def costs(runs: int) -> None:
    """Print the cost of each scenario."""
    engine = RuleSession()
    config = {"kind": "config", "product": "epo", **{f"f{i}": 1 for i in range(10)}}
    sink: list = []
    scenarios = [
        ("1 fact, 0 firings (not handled)", _matching_rules(10, 0), [{"kind": "other"}]),
        ("1 fact, 1 firing", _matching_rules(10, 1), [config]),
        ("1 fact, 10 firings", _matching_rules(10, 10), [config]),
        ("1 fact + chaining 3 levels", _chain_rules(), [{"kind": "config"}]),
        ("join config x entitled", _join_rules(), [config, {"kind": "entitled", "product": "epo"}]),
        ("10 rules, 8 match", _matching_rules(10, 8), [config]),
        ("100 rules, 8 match", _matching_rules(100, 8), [config]),
        ("500 rules, 8 match", _matching_rules(500, 8), [config]),
        ("10 firings appending to c.s", _state_rules(10), [config]),
        ("10 firings appending to a closure list", _closure_rules(10, sink), [config]),
    ]
    print(f"{'scenario':45} {'median us':>10}")
    for index, (label, rules, facts) in enumerate(scenarios):
        engine.register(f"bench{index}", rules)
        print(f"{label:45} {_median_us(engine, f'bench{index}', facts, runs):10.1f}")
        sink.clear()


_PROBE = """
import sys, time
sys.path.insert(0, {root!r})
from engine.inference.session import RuleSession, EngineFault
import durable_rules_engine
e = RuleSession()
rules = {rules}
start = time.perf_counter()
try:
    e._host.register_rulesets({{"probe": rules}})  # bypass check_limits on purpose
    print("registered in %.1fs" % (time.perf_counter() - start), flush=True)
    print("run:", e.run("probe", [{fact}]))
except (durable_rules_engine.error, EngineFault) as error:
    print("error:", error)
"""

_LIMITS = [
    ("4096 rules", "{f'r{i}': {'all': [{'m': {f'f{i}': 1}}], 'run': lambda c: None} for i in range(4096)}", "{'f1': 1}"),
    ("4097 rules", "{f'r{i}': {'all': [{'m': {f'f{i}': 1}}], 'run': lambda c: None} for i in range(4097)}", "{'f1': 1}"),
    ("511 x code == k", "{f'r{i}': {'all': [{'m': {'code': i}}], 'run': lambda c: None} for i in range(511)}", "{'code': 3}"),
    ("512 x code == k", "{f'r{i}': {'all': [{'m': {'code': i}}], 'run': lambda c: None} for i in range(512)}", "{'code': 3}"),
    ("513 x code == k", "{f'r{i}': {'all': [{'m': {'code': i}}], 'run': lambda c: None} for i in range(513)}", "{'code': 3}"),
    ("64 x total >= k", "{f'r{i}': {'all': [{'m': {'$gte': {'total': i}}}], 'run': lambda c: None} for i in range(64)}", "{'total': 99}"),
    ("65 x total >= k", "{f'r{i}': {'all': [{'m': {'$gte': {'total': i}}}], 'run': lambda c: None} for i in range(65)}", "{'total': 99}"),
    ("256 x same pattern", "{f'r{i}': {'all': [{'m': {'k': 1}}], 'run': lambda c: None} for i in range(256)}", "{'k': 2}"),
    ("257 x same pattern", "{f'r{i}': {'all': [{'m': {'k': 1}}], 'run': lambda c: None} for i in range(257)}", "{'k': 2}"),
]


def limits(timeout: float) -> None:
    """Probe each limit in a child process and print what happened."""
    root = str(Path(__file__).resolve().parent.parent)
    for label, rules, fact in _LIMITS:
        code = _PROBE.format(root=root, rules=rules, fact=fact)
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"{label:22} hangs (killed after {timeout:.0f} s)")
            continue
        lines = (done.stdout + done.stderr).strip().splitlines() or [""]
        outcome = " | ".join(line[:90] for line in lines[-2:])
        print(f"{label:22} exit {done.returncode}: {outcome}")


def main() -> None:
    """Parse arguments and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--limits", action="store_true", help="also probe the registration limits")
    parser.add_argument("--timeout", type=float, default=20.0)
    options = parser.parse_args()
    costs(options.runs)
    if options.limits:
        limits(options.timeout)


if __name__ == "__main__":
    main()
