"""Inference benchmark: the engine against the plain-Python floor, on the sample and a 300-product catalogue.

    .venv/bin/python -m bench.inference_bench [--requests 10000] [--products 300] [--profile]

Each catalogue is measured in a fresh child process (so that its compile time and peak RSS are its own);
inside it the engine and the floor run side by side, request by request, on the same parsed requests:

- load: `load_catalog` (read, schema, model, check); compile: `compile_catalog` (rulesets registered)
- evaluate latency: `evaluate(compiled, request)` for the engine, `evaluate_plain(catalog, request)` for
  the floor, each request parsed beforehand; median and p99 over all requests, after a warm-up
- parse+evaluate: `request_from_data` + `evaluate`, the cost an API call pays
- throughput: requests per second of an uninstrumented loop of `evaluate` over all requests
- disagreements: requests whose observable verdict differs between engine and floor (must be 0)
- CPU time per request (time.thread_time_ns) next to wall time: on a shared machine wall-time
  percentiles include waiting for a core; CPU time is what the request itself cost
- a control catalogue, the synthetic product shape with only 3 products: latency should follow the size
  of one product's rulesets, not the number of products
- peak RSS: `resource.getrusage(RUSAGE_SELF).ru_maxrss` of the child, which includes the interpreter,
  the C engine and the catalogue (tracemalloc would see only Python allocations)

--profile adds a cProfile of the engine's evaluate loop, its own time grouped by layer: the C extension,
durable's Python dispatch, engine/inference/session.py, the compiled actions, evaluate/explain, and the rest.
The machine is shared: compare figures measured in the same run, and quote medians.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGET_MEDIAN_US = 200
TARGET_RATIO = 30
TARGET_P99_US = 1000
TARGET_COMPILE_S = 1.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def measure(directory: Path, count: int, seed: int, warmup: int, profile: bool) -> dict:
    """Measure one catalogue in this process and return the figures."""
    from bench.plain import evaluate_plain, observe
    from bench.requests import generate_requests
    from engine.catalogue.load import load_catalog
    from engine.inference.compile import compile_catalog
    from engine.inference.evaluate import evaluate
    from engine.inference.request import request_from_data

    rss_start = _rss_mb()
    started = time.perf_counter()
    catalog = load_catalog(directory)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    compiled = compile_catalog(catalog)
    compile_s = time.perf_counter() - started
    rss_compiled = _rss_mb()

    data = generate_requests(catalog, count, seed)
    requests = [request_from_data(item, catalog) for item in data]
    clock = time.perf_counter_ns
    cpu = time.thread_time_ns  # CPU time of this thread: what the request cost, without waiting for a core

    for request in requests[:warmup]:  # warm caches, indexes and the engine's first-use paths
        evaluate(compiled, request)
        evaluate_plain(catalog, request)

    engine_ns, plain_ns, parse_eval_ns = [], [], []
    engine_cpu_ns, plain_cpu_ns = [], []
    disagreements = []
    valid = 0
    gc.collect()
    for item, request in zip(data, requests):
        t0 = clock()
        c0 = cpu()
        verdict = evaluate(compiled, request)
        c1 = cpu()
        t1 = clock()
        floor = evaluate_plain(catalog, request)
        c2 = cpu()
        t2 = clock()
        engine_ns.append(t1 - t0)
        plain_ns.append(t2 - t1)
        engine_cpu_ns.append(c1 - c0)
        plain_cpu_ns.append(c2 - c1)
        seen = observe(verdict.to_json())
        valid += seen["valid"]
        if seen != floor:
            disagreements.append({"request": item, "engine": seen, "plain": floor})
    for item in data:
        t0 = clock()
        evaluate(compiled, request_from_data(item, catalog))
        parse_eval_ns.append(clock() - t0)

    started = time.perf_counter()
    for request in requests:
        evaluate(compiled, request)
    engine_rps = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for request in requests:
        evaluate_plain(catalog, request)
    plain_rps = count / (time.perf_counter() - started)

    result = {
        "products": len(catalog.products),
        "rulesets": sum(len(names) for names in compiled.shards.values()),
        "rules": len(compiled.rules),
        "requests": count,
        "valid": valid,
        "load_s": load_s,
        "compile_s": compile_s,
        "engine_median_us": statistics.median(engine_ns) / 1000,
        "engine_p99_us": _percentile(engine_ns, 0.99) / 1000,
        "engine_max_us": max(engine_ns) / 1000,
        "engine_cpu_median_us": statistics.median(engine_cpu_ns) / 1000,
        "engine_cpu_p99_us": _percentile(engine_cpu_ns, 0.99) / 1000,
        "plain_cpu_median_us": statistics.median(plain_cpu_ns) / 1000,
        "plain_median_us": statistics.median(plain_ns) / 1000,
        "plain_p99_us": _percentile(plain_ns, 0.99) / 1000,
        "parse_eval_median_us": statistics.median(parse_eval_ns) / 1000,
        "parse_eval_p99_us": _percentile(parse_eval_ns, 0.99) / 1000,
        "engine_rps": engine_rps,
        "plain_rps": plain_rps,
        "disagreements": len(disagreements),
        "disagreement_examples": disagreements[:3],
        "rss_start_mb": rss_start,
        "rss_compiled_mb": rss_compiled,
        "rss_peak_mb": _rss_mb(),
    }
    result["ratio"] = result["engine_median_us"] / result["plain_median_us"]
    result["cpu_ratio"] = result["engine_cpu_median_us"] / result["plain_cpu_median_us"]
    result["load_average"] = os.getloadavg()[0]
    if profile:
        result["profile"] = profile_engine(compiled, requests)
    return result


LAYERS = (
    ("C extension (durable_rules_engine)", lambda file, name: "durable_rules_engine" in name),
    ("durable Python (durable/engine.py)", lambda file, name: "/durable/" in file),
    ("engine/inference/session.py (lock, checks, sid, delete)", lambda file, name: file.endswith("engine/inference/session.py")),
    ("engine/inference/compile.py (compiled actions)", lambda file, name: file.endswith("engine/inference/compile.py")),
    ("engine/inference/evaluate.py + explain.py (fact, verdict)",
     lambda file, name: file.endswith(("engine/inference/evaluate.py", "engine/inference/explain.py"))),
    ("json (durable serialises facts/state)", lambda file, name: "/json/" in file or "_json" in name),
    ("copy / deepcopy", lambda file, name: file.endswith("/copy.py")),
    ("logging", lambda file, name: "/logging/" in file),
)


def profile_engine(compiled, requests) -> dict:
    """Profile the engine's evaluate loop; return own time per layer in microseconds per request."""
    import cProfile
    import pstats

    from engine.inference.evaluate import evaluate

    profiler = cProfile.Profile()
    profiler.enable()
    for request in requests:
        evaluate(compiled, request)
    profiler.disable()
    stats = pstats.Stats(profiler)
    layers: dict[str, float] = {name: 0.0 for name, _ in LAYERS}
    layers["other (builtins, dataclasses, ...)"] = 0.0
    top = []
    total = 0.0
    for (file, _line, name), (_cc, calls, tottime, _cumtime, _callers) in stats.stats.items():
        total += tottime
        for layer, match in LAYERS:
            if match(file, name):
                layers[layer] += tottime
                break
        else:
            layers["other (builtins, dataclasses, ...)"] += tottime
        top.append((tottime, f"{Path(file).name}:{name}", calls))
    top.sort(reverse=True)
    count = len(requests)
    return {
        "total_us": total / count * 1e6,
        "layers_us": {layer: seconds / count * 1e6 for layer, seconds in layers.items()},
        "top": [(label, seconds / count * 1e6, calls / count) for seconds, label, calls in top[:15]],
    }


def run_child(name: str, directory: Path, args) -> dict:
    command = [sys.executable, "-m", "bench.inference_bench", "--child", str(directory), "--requests",
               str(args.requests), "--seed", str(args.seed), "--warmup", str(args.warmup)]
    if args.profile:
        command.append("--profile")
    process = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if process.returncode != 0:
        raise SystemExit(f"{name}: the measuring process failed ({process.returncode}):\n{process.stderr[-3000:]}")
    result = json.loads(process.stdout.strip().splitlines()[-1])
    result["name"] = name
    return result


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def render(results: list[dict], args) -> str:
    rows = [
        ("products / rulesets / rules", lambda r: f"{r['products']} / {r['rulesets']} / {r['rules']}"),
        ("requests (valid)", lambda r: f"{r['requests']} ({r['valid']})"),
        ("load_catalog", lambda r: f"{r['load_s'] * 1000:.0f} ms"),
        ("compile_catalog", lambda r: f"{r['compile_s'] * 1000:.0f} ms  [{mark(r['compile_s'] < TARGET_COMPILE_S)}]"),
        ("engine evaluate median", lambda r: f"{r['engine_median_us']:.0f} us  "
                                             f"[{mark(r['engine_median_us'] <= TARGET_MEDIAN_US)}]"),
        ("engine evaluate p99", lambda r: f"{r['engine_p99_us']:.0f} us  [{mark(r['engine_p99_us'] < TARGET_P99_US)}]"),
        ("engine evaluate max", lambda r: f"{r['engine_max_us']:.0f} us"),
        ("engine evaluate CPU median", lambda r: f"{r['engine_cpu_median_us']:.0f} us"),
        ("engine evaluate CPU p99", lambda r: f"{r['engine_cpu_p99_us']:.0f} us"),
        ("plain evaluate median", lambda r: f"{r['plain_median_us']:.1f} us"),
        ("plain evaluate p99", lambda r: f"{r['plain_p99_us']:.1f} us"),
        ("engine / plain (medians)", lambda r: f"{r['ratio']:.1f}x  [{mark(r['ratio'] <= TARGET_RATIO)}]"),
        ("engine / plain (CPU medians)", lambda r: f"{r['cpu_ratio']:.1f}x"),
        ("parse+evaluate median", lambda r: f"{r['parse_eval_median_us']:.0f} us"),
        ("parse+evaluate p99", lambda r: f"{r['parse_eval_p99_us']:.0f} us"),
        ("engine throughput", lambda r: f"{r['engine_rps']:,.0f} req/s"),
        ("plain throughput", lambda r: f"{r['plain_rps']:,.0f} req/s"),
        ("disagreements", lambda r: f"{r['disagreements']}  [{mark(r['disagreements'] == 0)}]"),
        ("RSS after compile", lambda r: f"{r['rss_compiled_mb']:.0f} MB"),
        ("peak RSS (ru_maxrss)", lambda r: f"{r['rss_peak_mb']:.0f} MB"),
        ("load average at the end", lambda r: f"{r['load_average']:.2f}"),
    ]
    cells = [[label] + [render_cell(r) for r in results] for label, render_cell in rows]
    header = ["", *(r["name"] for r in results)]
    widths = [max(len(str(row[i])) for row in cells + [header]) for i in range(len(header))]
    line = lambda row: "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)]
    out.append("")
    out.append(f"targets: median <= {TARGET_MEDIAN_US} us and <= {TARGET_RATIO}x plain, p99 < {TARGET_P99_US} us, "
               f"compile < {TARGET_COMPILE_S:.0f} s, 0 disagreements")
    out.append(f"python {platform.python_version()}, {os.cpu_count()} cpus, load average "
               f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; peak RSS includes interpreter + C engine")
    for r in results:
        for example in r["disagreement_examples"]:
            out.append(f"DISAGREEMENT on {r['name']}: {json.dumps(example, default=str)}")
        if "profile" in r:
            p = r["profile"]
            out.append("")
            out.append(f"profile of engine evaluate, {r['name']} (own time, us per request; cProfile inflates "
                       f"Python-heavy code): total {p['total_us']:.0f} us")
            for layer, us in sorted(p["layers_us"].items(), key=lambda kv: -kv[1]):
                out.append(f"  {us:8.1f} us  {100 * us / p['total_us']:5.1f}%  {layer}")
            out.append("  top functions (own time us/request, calls/request):")
            for label, us, calls in p["top"]:
                out.append(f"  {us:8.1f} us  {calls:6.1f}  {label}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=300, help="products in the synthetic catalogue")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--profile", action="store_true", help="add a cProfile breakdown of the engine")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON as well")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(measure(args.child, args.requests, args.seed, args.warmup, args.profile), default=str))
        return 0
    with tempfile.TemporaryDirectory(prefix="companion-bench-") as temporary:
        from bench.synthetic import generate_catalog

        synthetic = Path(temporary) / f"synthetic-{args.products}"
        generate_catalog(synthetic, products=args.products)
        # A control: the same product shape (tiers, add-ons) with only 3 products. If routing works,
        # latency depends on the size of a product, not on how many products the catalogue holds.
        control = Path(temporary) / "synthetic-3"
        generate_catalog(control, products=3)
        # The same catalogue with a `when:` on every unlock, tier and add-on (conditions that always hold).
        conditioned = Path(temporary) / f"synthetic-{args.products}-conditions"
        generate_catalog(conditioned, products=args.products, conditions=True)
        results = [run_child("sample (rules/)", ROOT / "rules", args),
                   run_child(f"synthetic {args.products}", synthetic, args),
                   run_child(f"synthetic {args.products}, conditions", conditioned, args),
                   run_child("synthetic 3 (control)", control, args)]
    print(render(results, args))
    if args.json:
        print(json.dumps(results, indent=1, default=str))
    return 0 if all(r["disagreements"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
