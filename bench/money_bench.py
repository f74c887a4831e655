"""What an idempotency key costs a partner: activations and redemptions over HTTP, with and without a key.

`companion serve` (2 workers x 4 threads) on a fresh SQLite file (and, with --postgresql URL, on that
PostgreSQL database), one client on a keep-alive connection. Each round sends, side by side: an activation
without a key, one with a new key, the replay of that keyed activation, a redemption without and with a key.
Reports the median and p90 round trip of each, and the keyed / plain ratios.

    .venv/bin/python bench/money_bench.py [--rounds 150] [--postgresql postgresql://...]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.web_bench import EMAIL, PASSWORD, free_port, token, wait_ready  # noqa: E402
from engine.locker import accounts
from engine import locker  # noqa: E402
from engine.locker.db import open_store  # noqa: E402

ESSENTIAL = {"configuration": {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
                               "tier": "essential", "devices": 100}}


def seed(url: str, rounds: int) -> list[str]:
    """Add the user with vouchers for 2 activations a round; return 2 voucher codes a round to redeem."""
    with open_store(url) as store:
        locker.add_user(store, EMAIL, company="Bench", badges=["power-management"], country="US")
        accounts.set_password(store, EMAIL, PASSWORD)
        for reference, quantity in (("EPO-ESS-SUB-3Y", 2 * rounds), ("EPO-DEV-SUB-3Y", 150 * rounds)):
            [code] = locker.issue_vouchers(store, reference, quantity)
            locker.redeem(store, EMAIL, code)
        return locker.issue_vouchers(store, "EPO-DEV-SUB-1Y", 1, 2 * rounds)


def post(connection, path: str, body: str, headers: dict) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    connection.request("POST", path, body, headers)
    response = connection.getresponse()
    data = response.read()
    return time.perf_counter() - started, response.status, data


def measure(url: str, rounds: int) -> dict[str, list[float]]:
    """Serve URL, then run ROUNDS rounds of the five requests; return their round trips."""
    codes = seed(url, rounds)
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="money-bench-"))
    companion = Path(sys.executable).with_name("companion")
    process = subprocess.Popen([str(companion), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers",
                                "2", "--threads", "4", "--database-url", url, "--instance", str(root / "instance")],
                               stdout=open(root / "serve.log", "w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_ready(port, process)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token(port)}"}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        times: dict[str, list[float]] = {name: [] for name in
                                         ("activate", "activate+key", "replay", "redeem", "redeem+key")}
        body = json.dumps(ESSENTIAL)
        for index in range(rounds):
            key = {"Idempotency-Key": uuid.uuid4().hex}
            for name, path, data, extra in (
                    ("activate", "/api/v1/activate", body, {}),
                    ("activate+key", "/api/v1/activate", body, key),
                    ("replay", "/api/v1/activate", body, key),
                    ("redeem", "/api/v1/redeem", json.dumps({"code": codes[2 * index]}), {}),
                    ("redeem+key", "/api/v1/redeem", json.dumps({"code": codes[2 * index + 1]}),
                     {"Idempotency-Key": uuid.uuid4().hex})):
                elapsed, status, answer = post(connection, path, data, {**headers, **extra})
                if status != 200 or (path.endswith("activate") and not json.loads(answer)["activated"]):
                    raise SystemExit(f"{name}: {status} {answer[:200]!r}")
                times[name].append(elapsed)
        return times
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def report(label: str, times: dict[str, list[float]]) -> None:
    def ms(values, q):
        return statistics.quantiles(values, n=10)[8] * 1000 if q == 90 else statistics.median(values) * 1000

    print(f"\n{label}: {len(times['activate'])} rounds")
    for name, values in times.items():
        print(f"  {name:<13} median {ms(values, 50):6.2f} ms   p90 {ms(values, 90):6.2f} ms")
    for keyed, plain in (("activate+key", "activate"), ("replay", "activate"), ("redeem+key", "redeem")):
        print(f"  {keyed} / {plain}: {statistics.median(times[keyed]) / statistics.median(times[plain]):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--postgresql", metavar="URL", help="also measure on this (empty) PostgreSQL database")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        report("SQLite", measure(f"sqlite:///{folder}/money.sqlite3", args.rounds))
    if args.postgresql:
        report("PostgreSQL", measure(args.postgresql, args.rounds))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
