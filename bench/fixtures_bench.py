"""Benchmark `companion test`: 10,000 generated fixture cases, sequential (-j 1) and parallel (-j 2).

    .venv/bin/python bench/fixtures_bench.py [--cases 10000] [--files 100] [--jobs 1 2]

Cases are spread over the three products, valid and refused, in files of equal size (a suite organised by
area); each run is a fresh `companion test` process, so the times include start-up and compilation.
Target (issue 4): under 10 s with -j 2 on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
# (product, badge, version, tier, included devices, max devices, add-on or None, tier reference stem)
SHAPES = [
    ("epo", "power-management", "2024", "essential", 25, 100, "powerscada-anywhere", "EPO-ESS"),
    ("epo", "power-automation", "2022", "advanced", 50, 500, "insulation-monitoring", "EPO-ADV"),
    ("pme", "power-management", "2024", "expert", 100, 2500, "power-quality", "PME-EXP"),
    ("pme", "power-automation", "2023", "essential", 25, 100, "energy-analysis", "PME-ESS"),
    ("ebo", "building-automation", "7.2", "advanced-plus", 200, 5000, "energy-dashboard", "EBO-ADVP"),
    ("ebo", "building-automation", "7.1", "essential", 50, 250, "extra-clients", "EBO-ESS"),
]


def case(number: int) -> str:
    """Return one fixture case: valid, or one device over the tier's maximum."""
    product, badge, version, tier, included, maximum, addon, stem = SHAPES[number % len(SHAPES)]
    term = (12, 36)[number // len(SHAPES) % 2]
    over = number % 5 == 4
    devices = maximum + 1 if over else number % maximum
    suffix = "SUB-1Y" if term == 12 else "SUB-3Y"
    lines = [f"  - name: generated case {number}",
             "    request:",
             f"      partner: {{badges: [{badge}]}}",
             f"      configuration: {{product: {product}, version: \"{version}\", license: subscription, "
             f"term_months: {term}, tier: {tier}, devices: {devices}, addons: [{{id: {addon}}}]}}",
             "    expect:"]
    if over:
        lines += ["      valid: false", "      violations:", f"        - {{rule: tier.{product}.{tier}, code: over-limit}}"]
    else:
        lines += ["      valid: true", "      bom:", f"        - {{reference: {stem}-{suffix}, quantity: 1, months: {term}}}"]
        if devices > included:
            lines.append(f"        - {{reference: {product.upper()}-DEV-{suffix}, quantity: {devices - included}}}")
        lines.append(f"        - {{rule: addon.{product}.{addon}, quantity: 1}}")
    return "\n".join(lines) + "\n"


def generate(directory: Path, cases: int, files: int) -> None:
    """Write `cases` cases into `files` fixture files."""
    per_file = -(-cases // files)
    for index in range(files):
        numbers = range(index * per_file, min(cases, (index + 1) * per_file))
        if numbers:
            (directory / f"generated-{index:03}.yaml").write_text(
                "cases:\n" + "".join(case(number) for number in numbers), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="companion-fixtures-bench-") as scratch:
        generate(Path(scratch), args.cases, args.files)
        print(f"{args.cases:,} cases in {args.files} files")
        for jobs in args.jobs:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            run = subprocess.run([str(BIN / "companion"), "test", scratch, "-j", str(jobs)],
                                 capture_output=True, text=True)
            elapsed = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr.strip()[-300:]
            # CPU seconds (this process's children and their workers) tell the cost when the machine is shared.
            print(f"companion test -j {jobs}: {elapsed:6.2f} s wall, {cpu:6.2f} s CPU  (exit {run.returncode}; "
                  f"{summary}; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
