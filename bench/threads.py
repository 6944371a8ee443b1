"""Training under load: steps in a fixed time with the old fixed thread count and with the governor,
quiet, with a core kept busy by another process, and two trainings started together.

    python -m bench.threads ../shared/corpora/tinyshakespeare.txt [--seconds 40] [--hidden 256] [--only ...]
    python -m bench.threads ../shared/corpora/tinyshakespeare.txt --quality [--minutes 5]

Speed (default): each situation trains a --hidden model (size fixed, so only threads differ) for
--seconds in a process of its own, and reports the steps it made and their ratio to the quiet run
with one thread per core. Quality (--quality): validation bpc of a --minutes run with one core busy,
of two --minutes runs started together, and of a quiet run given half the time (the CPU share the
others had), all with the defaults (size fitted, threads adapting).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import busy_processes, errors_in_one_line
from charlm import checkpoint, runs, sources


def train(corpus: str, folder: Path, name: str, *options: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "charlm", "train", corpus, "--out", str(folder / name), "--quiet", *options]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> None:
    _, err = process.communicate()
    if process.returncode:
        raise SystemExit(f"a training failed: {err.strip()}")


def result(folder: Path, name: str) -> checkpoint.Checkpoint:
    return checkpoint.read(runs.resolve(folder / name, prefer=runs.LATEST))


SITUATIONS = ("quiet-fixed", "quiet-governor", "busy-fixed", "busy-one", "busy-governor", "pair-fixed", "pair-governor")


def speed(args, folder: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    fixed = ["--hidden", str(args.hidden), "--max-time", f"{args.seconds}s", "--eval-every", "1000000"]
    rows = []

    def one(label: str, name: str, *extra: str) -> None:
        if name in args.only:
            finished(train(args.corpus, folder, name, *fixed, *extra))
            rows.append((label, result(folder, name).progress.step))

    one(f"quiet, {cores} threads (fixed)", "quiet-fixed", "--threads", str(cores))
    one("quiet, governor", "quiet-governor")
    with busy_processes(1):
        one(f"one core busy, {cores} threads (fixed)", "busy-fixed", "--threads", str(cores))
        one("one core busy, 1 thread (fixed)", "busy-one", "--threads", "1")
        one("one core busy, governor", "busy-governor")
    for label, name, extra in (
        (f"{cores} threads (fixed)", "pair-fixed", ["--threads", str(cores)]),
        ("governor", "pair-governor", []),
    ):
        if name in args.only:
            pair = [train(args.corpus, folder, f"{name}-{i}", *fixed, *extra) for i in range(2)]
            for process in pair:
                finished(process)
            steps = [result(folder, f"{name}-{i}").progress.step for i in range(2)]
            rows.append((f"two trainings together, {label}, each", steps))
    quiet = rows[0][1] if isinstance(rows[0][1], int) else rows[0][1][0]  # the first situation run is the reference
    print(f"{args.corpus}: 2x{args.hidden}, {args.seconds} s each, {cores} cores")
    print("| situation | steps | share of quiet |")
    print("| --- | ---: | ---: |")
    for label, steps in rows:
        shown = steps if isinstance(steps, list) else [steps]
        print(
            f"| {label} | {' and '.join(f'{s:,}' for s in shown)} | {' and '.join(f'{s / quiet:.2f}' for s in shown)} |"
        )


def quality(args, folder: Path) -> None:
    budget = args.minutes * 60
    half = ["--max-time", f"{budget / 2:.0f}s"]
    full = ["--max-time", f"{budget:.0f}s"]
    finished(train(args.corpus, folder, "quiet-half", *half))
    with busy_processes(1):
        finished(train(args.corpus, folder, "busy", *full))
    pair = [train(args.corpus, folder, f"together-{i}", *full) for i in range(2)]
    for process in pair:
        finished(process)
    print(f"{args.corpus}: defaults, {args.minutes} min under load against {args.minutes / 2:g} min quiet")
    print("| run | size | steps | best val bpc |")
    print("| --- | --- | ---: | ---: |")
    for name in ("quiet-half", "busy", "together-0", "together-1"):
        saved = result(folder, name)
        size = f"{saved.model_config.layers}x{saved.model_config.hidden}"
        print(f"| {name} | {size} | {saved.progress.step:,} | {saved.progress.best_bpc:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument(
        "--out", default=None, help="folder for the runs, kept (default: a temporary one, removed at the end)"
    )
    parser.add_argument(
        "--only",
        default=",".join(SITUATIONS),
        help=f"speed: the situations to run, comma-separated, of {', '.join(SITUATIONS)}",
    )
    args = parser.parse_args()
    args.only = args.only.split(",")
    unknown = set(args.only) - set(SITUATIONS)
    if unknown:
        parser.error(f"--only: no situation {', '.join(sorted(unknown))}; pick from {', '.join(SITUATIONS)}")
    sources.source_parts([args.corpus], quiet=True)  # one not there said before the trainings start
    started = time.perf_counter()
    # without --out the runs are scratch: removed at the end and on Ctrl-C
    with contextlib.nullcontext(args.out) if args.out else tempfile.TemporaryDirectory(prefix="threads-") as folder:
        (quality if args.quality else speed)(args, Path(folder))
    print(f"({time.perf_counter() - started:.0f} s in all" + (f"; runs in {args.out})" if args.out else ")"))


if __name__ == "__main__":
    with errors_in_one_line():
        main()
