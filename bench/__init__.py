"""Benchmarks, run on demand; figures in bench/RESULTS.md."""
