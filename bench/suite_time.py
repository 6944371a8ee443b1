"""How long the whole test suite takes in one pytest process and in two (pytest-xdist's `-n 2`).

    python -m bench.suite_time [--workers 0,2] [--output bench/results/suite-time.txt] [PYTEST ARGS...]

Runs `python -m pytest -q -p no:cacheprovider [-n N]` once per worker count (0: no xdist), one after the
other on the same checkout, and prints for each its wall seconds, the CPU seconds of it and every process
it waited for (user + sys), its last pytest line and the machine's load average before it. README's test
command takes the faster: the suite is mostly processes, servers and a browser waiting on one another, so
one pytest process leaves a 2-core machine's second core idle about half the time.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name, as Linux's /proc/cpuinfo gives it ('' where there is none)."""
    cpuinfo = Path("/proc/cpuinfo")
    found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE) if cpuinfo.exists() else None
    return found[1].strip() if found else platform.machine()


def timed_run(workers: int, extra: list[str]) -> dict:
    """One whole suite: its wall and CPU seconds, its exit status and its summary line."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra]
    if workers:
        command += ["-n", str(workers)]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    finished = subprocess.run(command, check=False, capture_output=True, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = finished.stdout.strip().splitlines() or ["(no output)"]
    return {
        "workers": workers,
        "wall": wall,
        "cpu": cpu,
        "status": finished.returncode,
        "summary": lines[-1],
        "load": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="0,2", help="worker counts to run, comma-separated (0: no xdist)")
    parser.add_argument("--output", type=Path, help="also write the table here")
    args, extra = parser.parse_known_args()
    rows = [timed_run(int(workers), extra) for workers in args.workers.split(",")]
    first = rows[0]["wall"]
    lines = [
        f"python -m bench.suite_time --workers {args.workers} {' '.join(extra)}".rstrip(),
        f"{cpu_name()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        f"{'workers':>7} {'wall s':>8} {'CPU s':>8} {'CPU/wall':>8} {'vs first':>8} {'load':>5}  pytest",
    ]
    for row in rows:
        lines.append(
            f"{row['workers']:>7} {row['wall']:>8.1f} {row['cpu']:>8.1f} {row['cpu'] / row['wall']:>8.2f} "
            f"{row['wall'] / first:>8.2f} {row['load']:>5.2f}  exit {row['status']}: {row['summary']}"
        )
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
