"""Time loading a synthetic catalogue: source -> schema -> model -> check.

Run: `.venv/bin/python -m bench.load_bench [--products 300 --tiers 10 --addons 20 --runs 7]`.
Generates the catalogue in a temporary directory, then times `load_catalog` over several runs and prints the
median and the minimum in seconds (wall clock, and CPU time, which a busy machine disturbs less), and the
median of each stage (timed separately, the same way
load_catalog runs them). Target: under 1 s for 300 x 10 x 20 on the 2-core build machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.synthetic import generate_catalog
from engine.catalogue.load import build_catalog, load_catalog
from engine.catalogue.check import check_catalog
from engine.catalogue.files import RULE_FILES
from engine.catalogue.schema import validate_source
from engine.catalogue.source import load_yaml


def time_stages(directory: Path) -> dict[str, float]:
    """Run each loading stage once, as load_catalog does (cycle collector paused); return CPU seconds each."""
    times = {}
    collecting = gc.isenabled()
    gc.disable()
    try:
        start = time.process_time()
        sources = {name: load_yaml(directory / name, name) for name in RULE_FILES if (directory / name).exists()}
        times["source"] = time.process_time() - start
        start = time.process_time()
        problems = [problem for name, source in sources.items()
                    for problem in validate_source(source, RULE_FILES[name].schema)]
        times["schema"] = time.process_time() - start
        start = time.process_time()
        catalog = build_catalog(directory, sources, "bench")
        times["model"] = time.process_time() - start
        start = time.process_time()
        problems += check_catalog(catalog)
        times["check"] = time.process_time() - start
    finally:
        if collecting:
            gc.enable()
    if problems:
        raise SystemExit(f"the synthetic catalogue has {len(problems)} problems, e.g. {problems[0].render()}")
    return times


def retained_megabytes(directory: Path) -> float:
    """Return the memory a loaded catalogue keeps (its sources, their node trees, the model), in MB."""
    gc.collect()
    tracemalloc.start()
    try:
        catalog = load_catalog(directory)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del catalog
    return kept / 1e6


def main(argv: list[str] | None = None) -> None:
    """Generate the catalogue, time it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--tiers", type=int, default=10)
    parser.add_argument("--addons", type=int, default=20)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        generate_catalog(directory, args.products, args.tiers, args.addons, args.seed)
        size = sum(path.stat().st_size for path in directory.glob("*.yaml"))
        catalog = load_catalog(directory)  # warm-up: imports, compiled schemas; also proves it loads clean
        print(f"catalogue: {len(catalog.products)} products x {args.tiers} tiers x {args.addons} add-ons, "
              f"{len(catalog.references):,} references, {size / 1e6:.1f} MB of YAML")
        totals, cpu = [], []
        for _ in range(args.runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            load_catalog(directory)
            totals.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        stages = [time_stages(directory) for _ in range(args.runs)]
        retained = retained_megabytes(directory)
    print(f"load_catalog over {args.runs} runs: median {statistics.median(totals):.3f} s, min {min(totals):.3f} s "
          f"(CPU time: median {statistics.median(cpu):.3f} s, min {min(cpu):.3f} s)")
    print(f"memory kept by one loaded catalogue: {retained:.0f} MB (tracemalloc)")
    print("stages (median CPU time): " + ", ".join(f"{name} {statistics.median(run[name] for run in stages):.3f} s"
                                         for name in stages[0]))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} while running")


if __name__ == "__main__":
    main()
