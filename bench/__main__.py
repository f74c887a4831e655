"""Run every benchmark in turn (`make bench`); each prints its own figures. Record them in bench/RESULTS.md."""

from __future__ import annotations

import subprocess
import sys
import time

# Each benchmark runs as its own process: compile times and peak memory are then its own.
BENCHMARKS = [
    ("catalogue loading (issue 2)", ["-m", "bench.load_bench"]),
    ("inference vs plain Python (issue 3)", ["-m", "bench.inference_bench"]),
    ("memory across 100,000 evaluations (issue 3)", ["-m", "bench.memory_bench"]),
    ("fixture suites (issue 4)", ["bench/fixtures_bench.py"]),
    ("locker activations (issue 6)", ["bench/locker_bench.py"]),
    ("web API under load (issue 7)", ["bench/web_bench.py"]),
    ("idempotency keys over HTTP (issue 12)", ["bench/money_bench.py"]),
]


def main() -> int:
    """Run the benchmarks named on the command line (by number), or all of them."""
    chosen = [int(arg) for arg in sys.argv[1:]] or list(range(1, len(BENCHMARKS) + 1))
    failed = 0
    for number in chosen:
        title, args = BENCHMARKS[number - 1]
        print(f"\n=== {number}. {title}: python {' '.join(args)}", flush=True)
        started = time.monotonic()
        failed += subprocess.call([sys.executable, *args]) != 0
        print(f"=== {number}. done in {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
