"""Memory benchmark: resident memory before and after 100,000 evaluations, in a fresh process per catalogue.

    .venv/bin/python -m bench.memory_bench [--evaluations 100000] [--products 300] [--only sample|synthetic]

Each catalogue is measured in its own child process: load and compile it, parse 2,000 generated mixed
requests, evaluate them once as a warm-up (first-use allocations, caches), then evaluate 100,000 times in a
cycle, reading the current RSS (/proc/self/statm, not the peak) every 10,000 evaluations. Growth is
(after - before) / before, where before is taken after the warm-up. Target: under 10%.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_GROWTH = 0.10
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Return the current resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def measure(directory: Path, evaluations: int, distinct: int, seed: int) -> dict:
    from bench.requests import generate_requests
    from engine.inference.compile import load
    from engine.inference.evaluate import evaluate
    from engine.inference.request import request_from_data

    start = rss_bytes()
    compiled = load(directory)
    requests = [request_from_data(item, compiled.catalog) for item in generate_requests(compiled.catalog, distinct, seed)]
    compiled_rss = rss_bytes()
    for request in requests:  # warm-up
        evaluate(compiled, request).to_json()
    gc.collect()
    before = rss_bytes()
    samples = []
    started = time.perf_counter()
    for index in range(evaluations):
        evaluate(compiled, requests[index % distinct]).to_json()
        if (index + 1) % 10_000 == 0:
            samples.append(rss_bytes())
    elapsed = time.perf_counter() - started
    gc.collect()
    after = rss_bytes()
    return {
        "products": len(compiled.catalog.products),
        "evaluations": evaluations,
        "seconds": elapsed,
        "rss_start": start,
        "rss_compiled": compiled_rss,
        "rss_before": before,
        "rss_after": after,
        "growth": (after - before) / before,
        "bytes_per_evaluation": (after - before) / evaluations,
        "samples": samples,
    }


def run_child(name: str, directory: Path, args) -> dict:
    command = [sys.executable, "-m", "bench.memory_bench", "--child", str(directory),
               "--evaluations", str(args.evaluations), "--distinct", str(args.distinct), "--seed", str(args.seed)]
    process = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if process.returncode != 0:
        raise SystemExit(f"{name}: the measuring process failed ({process.returncode}):\n{process.stderr[-3000:]}")
    result = json.loads(process.stdout.strip().splitlines()[-1])
    result["name"] = name
    return result


def render(results: list[dict]) -> str:
    mb = lambda value: f"{value / 2**20:.1f} MB"  # noqa: E731
    lines = []
    for r in results:
        verdict = "ok" if r["growth"] < TARGET_GROWTH else "MISSED"
        lines.append(f"{r['name']} ({r['products']} products): {r['evaluations']:,} evaluations in {r['seconds']:.1f} s")
        lines.append(f"  RSS at start {mb(r['rss_start'])}, compiled {mb(r['rss_compiled'])}, "
                     f"before {mb(r['rss_before'])}, after {mb(r['rss_after'])}")
        lines.append(f"  growth {100 * r['growth']:+.2f}% ({r['bytes_per_evaluation']:+.1f} bytes per evaluation)  "
                     f"[{verdict}: target < {100 * TARGET_GROWTH:.0f}%]")
        lines.append("  every 10,000: " + " ".join(f"{value / 2**20:.1f}" for value in r["samples"]) + " MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=2_000, help="distinct requests cycled through")
    parser.add_argument("--products", type=int, default=300, help="products in the synthetic catalogue")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("sample", "synthetic"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(measure(args.child, args.evaluations, args.distinct, args.seed)))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="companion-membench-") as temporary:
        if args.only in (None, "sample"):
            results.append(run_child("sample (rules/)", ROOT / "rules", args))
        if args.only in (None, "synthetic"):
            from bench.synthetic import generate_catalog

            synthetic = Path(temporary) / f"synthetic-{args.products}"
            generate_catalog(synthetic, products=args.products)
            results.append(run_child(f"synthetic {args.products}", synthetic, args))
    print(render(results))
    return 0 if all(r["growth"] < TARGET_GROWTH for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
