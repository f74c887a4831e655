"""Evaluation is safe from several threads at once: same verdicts as single-threaded, and no crash.

durable_rules crashes the whole process with a segmentation fault when driven from threads unguarded,
so the threaded part runs in a child process: a crash shows up here as a failed test naming the signal
instead of taking pytest down with it.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"

# Runs in the child. argv: THREADS PER_THREAD RULES_DIR [RULES_DIR ...]; prints one JSON summary line.
CHILD = textwrap.dedent("""
    import json, sys, threading
    sys.path.insert(0, sys.argv[1])
    from engine.inference.compile import load
    from engine.inference.evaluate import evaluate
    from engine.inference.request import request_from_data
    from bench.requests import generate_requests

    threads, per_thread, directories = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    compiled = [load(directory) for directory in directories]
    # work[t] = [(catalogue index, parsed request)], catalogues alternating when there are several
    work = []
    for t in range(threads):
        items = []
        for c, catalogue in enumerate(compiled):
            data = generate_requests(catalogue.catalog, per_thread, seed=1000 + t)
            items.append([(c, request_from_data(d, catalogue.catalog)) for d in data])
        work.append([item for group in zip(*items) for item in group][:per_thread])
    expected = [[evaluate(compiled[c], request).to_json() for c, request in items] for items in work]
    differ = 0  # same request, different verdicts in the catalogues: proves the catalogues really differ
    if len(compiled) == 2:
        for d in generate_requests(compiled[0].catalog, per_thread, seed=1000):
            verdicts = [evaluate(catalogue, request_from_data(d, catalogue.catalog)).to_json()
                        for catalogue in compiled]
            for verdict in verdicts:
                verdict.pop("rules_version")
            differ += verdicts[0] != verdicts[1]

    sys.setswitchinterval(1e-5)  # switch threads as often as possible
    barrier = threading.Barrier(threads)
    got = [None] * threads
    errors = []

    def run(t):
        try:
            barrier.wait()
            got[t] = [evaluate(compiled[c], request).to_json() for c, request in work[t]]
        except BaseException as error:  # reported, not swallowed
            errors.append(f"thread {t}: {type(error).__name__}: {error}")

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    mismatches = []
    for t in range(threads):
        for i, verdict in enumerate(got[t] or []):
            if verdict != expected[t][i]:
                mismatches.append({"thread": t, "index": i, "request": repr(work[t][i][1].configuration),
                                   "threaded": verdict, "single": expected[t][i]})
    evaluated = sum(len(items or []) for items in got)
    print(json.dumps({"evaluated": evaluated, "errors": errors[:5], "mismatches": mismatches[:3],
                      "mismatch_count": len(mismatches), "differ": differ}))
""")


def run_child(tmp_path: Path, threads: int, per_thread: int, *directories: Path) -> dict:
    script = tmp_path / "threads_child.py"
    script.write_text(CHILD)
    process = subprocess.run([sys.executable, str(script), str(ROOT), str(threads), str(per_thread),
                              *map(str, directories)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    if process.returncode < 0:
        name = signal.Signals(-process.returncode).name
        pytest.fail(f"the threaded evaluation crashed the process with {name}\n{process.stderr[-3000:]}")
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


def test_eight_threads_agree_with_single_thread(tmp_path):
    summary = run_child(tmp_path, 8, 500, RULES)
    assert summary["errors"] == []
    assert summary["mismatch_count"] == 0, json.dumps(summary["mismatches"], indent=1)
    assert summary["evaluated"] == 8 * 500


def test_two_catalogues_used_concurrently(tmp_path):
    # A second catalogue: the sample with other device limits and another quantity limit, so that the
    # same request gets a different verdict (and rules version) from each.
    other = tmp_path / "other-rules"
    shutil.copytree(RULES, other)
    tiers = (other / "tiers.yaml").read_text()
    assert "devices: {included: 25, max: 100}" in tiers
    (other / "tiers.yaml").write_text(tiers.replace("devices: {included: 25, max: 100}",
                                                    "devices: {included: 10, max: 120}"))
    addons = (other / "addons.yaml").read_text()
    (other / "addons.yaml").write_text(addons.replace("quantity: {max: 50}", "quantity: {max: 5}"))
    summary = run_child(tmp_path, 8, 500, RULES, other)
    assert summary["errors"] == []
    assert summary["mismatch_count"] == 0, json.dumps(summary["mismatches"], indent=1)
    assert summary["evaluated"] == 8 * 500
    assert summary["differ"] > 25  # of 500 requests: the two catalogues really decide differently
