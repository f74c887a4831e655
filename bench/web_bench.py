"""Web benchmark: `companion serve` with 2 gunicorn workers on 127.0.0.1, driven by a local load generator.

Several client processes, each with one keep-alive HTTP connection (it reconnects when the server closes
it), POST /api/v1/validate with a bearer token, cycling through a few valid and refused configurations,
bounded by a request count and a time limit. Reports throughput, p50, p99 and the error count.

    .venv/bin/python bench/web_bench.py [--clients 2] [--requests 6000] [--seconds 30] [--threads 4] [--json]

Target (issue 7): >= 300 requests/s, p99 < 50 ms, 0 errors, on a 2-core machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODIES = [
    {"configuration": {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
                       "tier": "advanced", "devices": 150, "addons": [{"id": "insulation-monitoring", "quantity": 1}]}},
    {"configuration": {"product": "epo", "license": "subscription", "term_months": 12, "tier": "essential",
                       "devices": 40, "addons": [{"id": "insulation-monitoring", "quantity": 1}]}},
    {"configuration": {"product": "pme", "license": "perpetual", "tier": "expert", "devices": 300,
                       "addons": [{"id": "power-quality", "quantity": 1}, {"id": "energy-analysis", "quantity": 1}]}},
    {"configuration": {"product": "ebo", "version": "7.2", "license": "subscription", "term_months": 36,
                       "tier": "advanced-plus", "devices": 500}},
]
EMAIL, PASSWORD = "bench@integrator.example", "benchmark passphrase"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(root: Path, port: int, workers: int, threads: int) -> subprocess.Popen:
    """Seed a user in a fresh SQLite database and start `companion serve`."""
    from engine.locker import accounts
    from engine import locker
    from engine.locker.db import open_store

    url = f"sqlite:///{root / 'bench.sqlite3'}"
    with open_store(url) as store:
        locker.add_user(store, EMAIL, company="Bench", badges=["power-management", "building-automation"],
                        country="US")
        accounts.set_password(store, EMAIL, PASSWORD)
    companion = Path(sys.executable).with_name("companion")
    log = open(root / "serve.log", "w")
    return subprocess.Popen([str(companion), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers",
                             str(workers), "--threads", str(threads), "--database-url", url, "--instance",
                             str(root / "instance")], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("companion serve exited early")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/v1/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("companion serve did not start in time")


def token(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/api/v1/tokens", json.dumps({"email": EMAIL, "password": PASSWORD}),
                       {"Content-Type": "application/json"})
    return json.loads(connection.getresponse().read())["token"]


def client(args: tuple) -> tuple[list[float], int]:
    """Send COUNT requests (or stop at DEADLINE); return latencies in seconds and the error count."""
    port, bearer, count, deadline, offset = args
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {bearer}", "Connection": "keep-alive"}
    bodies = [json.dumps(body) for body in BODIES]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies: list[float] = []
    errors = 0
    for index in range(count):
        if time.time() > deadline:
            break
        body = bodies[(index + offset) % len(bodies)]
        started = time.perf_counter()
        try:
            connection.request("POST", "/api/v1/validate", body, headers)
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        latencies.append(time.perf_counter() - started)
        errors += 0 if ok else 1
    connection.close()
    return latencies, errors


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2: one per core)")
    parser.add_argument("--requests", type=int, default=6000, help="total requests (default 6000)")
    parser.add_argument("--seconds", type=float, default=30, help="time limit of the measured run (default 30)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--threads", type=int, default=4,
                        help="threads per worker (default 4, gthread workers with keep-alive; 1: sync workers)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="companion-web-bench-") as directory:
        port = free_port()
        server = start_server(Path(directory), port, options.workers, options.threads)
        try:
            wait_ready(port, server)
            bearer = token(port)
            client((port, bearer, 200, time.time() + 30, 0))  # warm-up: connections, caches, both workers
            per_client = max(1, options.requests // options.clients)
            deadline = time.time() + options.seconds
            jobs = [(port, bearer, per_client, deadline, index) for index in range(options.clients)]
            started = time.perf_counter()
            with multiprocessing.Pool(options.clients) as pool:
                results = pool.map(client, jobs)
            elapsed = time.perf_counter() - started
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    latencies = [value for values, _ in results for value in values]
    errors = sum(count for _, count in results)
    result = {
        "requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "clients": options.clients, "workers": options.workers, "threads": options.threads,
        "cpus": os.cpu_count(),
    }
    if options.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"POST /api/v1/validate: {result['requests']} requests in {result['seconds']} s from "
              f"{options.clients} clients -> {result['throughput_rps']} req/s; p50 {result['p50_ms']} ms, "
              f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms; errors {errors} "
              f"({options.workers} workers x {options.threads} threads, {result['cpus']} CPUs)")
        target = result["throughput_rps"] >= 300 and result["p99_ms"] < 50 and errors == 0
        print("target (>= 300 req/s, p99 < 50 ms, 0 errors): " + ("met" if target else "NOT met"))
    return result


if __name__ == "__main__":
    main()
