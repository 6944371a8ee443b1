"""Benchmarks of charlm: run each from the repository root as `python -m bench.NAME`."""
