"""`charlm inspect`'s wall and CPU time under two or more git revisions of charlm, side by side in one run:
what a change to inspect saves (the machine is shared: compare the ratios, not the seconds).

    python -m bench.inspect_time RUN (FILE | --held-out) [--revisions 3642388,HEAD] [--rounds 5]

Each revision's charlm/ is taken out of git (`git archive`) into a temporary folder. Round after round,
the order rotated so that none always runs first, each revision runs `python -m charlm inspect RUN ...
--quiet --output PAGE` as a process of its own with its folder first on PYTHONPATH, as a user runs it:
Python and torch starting, the model read, the n-gram fitted, the text traced, the page written.
Prints each round's wall and CPU seconds (CPU: the process's and its threads', which waiting for a core
does not add to), then each revision's medians and their ratios to the first revision's, round by round
(median [lowest, highest]), with the machine's load average before and after.

--passes times instead, in this process and this checkout, only what the change was about: the model
reading the text as inspect reads it, twice (`trace`, then `scoring.surprise`: inspect before ace318e)
against once (`trace_and_surprise`), in turn, --rounds times each, with their medians and ratio. On
one thread, in CPU seconds: a core shared with other work then slows neither.

3642388 is the last commit whose inspect ran the model over the text twice (a trace, then the
surprises); from ace318e it runs once (`charlm.tracing.trace_and_surprise`).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

import charlm
from bench.common import errors_in_one_line
from charlm import runs
from charlm.corpus import read_texts
from charlm.errors import counted
from charlm.inspection import MAX_CHARS
from charlm.runtext import held_out_text
from charlm.scoring import surprise
from charlm.tracing import trace, trace_and_surprise

REPO = Path(__file__).resolve().parent.parent


def checkout(revision: str, folder: Path) -> str:
    """`revision`'s charlm/ written into `folder`; its short commit id."""
    archive = ["git", "archive", "--format=zip", revision, "charlm"]
    found = subprocess.run(archive, cwd=REPO, capture_output=True, check=False)
    if found.returncode:
        raise SystemExit(f"--revisions: {revision}: {found.stderr.decode().strip() or 'git archive failed'}")
    zipfile.ZipFile(io.BytesIO(found.stdout)).extractall(folder)
    short = ["git", "rev-parse", "--short", f"{revision}^{{commit}}"]
    return subprocess.run(short, cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def inspect_seconds(revision: str, folder: Path, arguments: list[str], page: Path) -> tuple[float, float]:
    """Wall and CPU seconds (the process's and its threads', user and system) of one `python -m charlm
    inspect ARGUMENTS` with `folder`'s charlm (`revision`'s) first on the path. CPU seconds are the steadier
    on a shared machine: waiting for a core adds to the wall time only."""
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "PYTHONPATH": path}
    command = [sys.executable, "-m", "charlm", "inspect", *arguments, "--quiet", "--output", str(page)]
    start, before = time.perf_counter(), cpu_seconds()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        said = (done.stderr.strip() or done.stdout.strip() or f"status {done.returncode}").splitlines()[-1]
        raise SystemExit(f"charlm inspect at {revision}: {said}")
    return seconds, cpu_seconds() - before


def cpu_seconds() -> float:
    """User and system seconds of this process's children that have ended."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder or checkpoint")
    parser.add_argument("file", nargs="?", help="the text to inspect (or --held-out)")
    parser.add_argument("--held-out", action="store_true", help="the run's held-out text")
    parser.add_argument("--revisions", default="3642388,HEAD", help="git revisions of charlm, the first the baseline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", action="store_true", help="time the model's passes alone, in this process")
    args = parser.parse_args()
    found = runs.resolve(args.run)  # a run that is not there said at once, in charlm's words
    if args.passes:
        return time_passes(found, args.file, args.rounds)
    arguments = [args.run, *([args.file] if args.file else []), *(["--held-out"] if args.held_out else [])]
    revisions = args.revisions.split(",")
    with tempfile.TemporaryDirectory(prefix="inspect-time-") as scratch:
        folders = {revision: Path(scratch, f"rev{i}") for i, revision in enumerate(revisions)}
        commits = {revision: checkout(revision, folder) for revision, folder in folders.items()}
        print(
            f"charlm inspect {' '.join(arguments)}; torch {torch.__version__}, {os.cpu_count()} CPUs, load average {load()}"
        )
        measured: dict[str, list[tuple[float, float]]] = {revision: [] for revision in revisions}
        for turn in range(args.rounds):
            order = revisions[turn % len(revisions) :] + revisions[: turn % len(revisions)]
            for revision in order:
                page = Path(scratch, "page.html")
                measured[revision].append(inspect_seconds(revision, folders[revision], arguments, page))
            times = (f"{r} {measured[r][-1][0]:.2f} s (CPU {measured[r][-1][1]:.2f} s)" for r in order)
            print(f"round {turn + 1}: " + "; ".join(times))
    first = revisions[0]
    print(f"load average {load()} at the end; {counted(args.rounds, 'round')}; medians, and ratios to {first} round")
    print("by round: median [lowest, highest]")
    for revision, timings in measured.items():
        print(f"{revision} ({commits[revision]}): " + "; ".join(
            f"{kind} " + summary([t[k] for t in timings], [t[k] for t in measured[first]], revision != first)
            for k, kind in enumerate(("wall", "CPU"))
        ))  # fmt: skip


def time_passes(found: Path, file: str | None, rounds: int) -> None:
    """CPU seconds of reading the inspected text twice (trace, surprise) and once (trace_and_surprise), in turn."""
    torch.set_num_threads(1)
    model = charlm.load(found)
    text = read_texts([file], "utf-8", model.vocab.normalize, limit=MAX_CHARS) if file else held_out_text(found, True)
    text = text[:MAX_CHARS]
    reads = {  # as inspect calls them: no distributions kept, the unknown symbol's note its own
        "twice": lambda: (
            trace(model, text, "", probs=False, warn=False),
            surprise(model, text, context="", warn=False),
        ),
        "once": lambda: trace_and_surprise(model, text, "", probs=False, warn=False),
    }
    print(f"{found}: {len(text):,} characters; torch {torch.__version__}, one thread, CPU seconds")
    measured = {name: [] for name in reads}
    for _ in range(rounds):
        for name, read in reads.items():
            start = time.process_time()
            read()
            measured[name].append(time.process_time() - start)
    print(f"load average {load()}; {counted(rounds, 'round')}; medians, and the ratio to twice round by round:")
    for name, seconds in measured.items():
        print(f"{name}: {summary(seconds, measured['twice'], name != 'twice')}")


def summary(seconds: list[float], baseline: list[float], compared: bool) -> str:
    """The median seconds, and where `compared` the median, lowest and highest ratio to `baseline`'s round by round."""
    ratios = sorted(s / b for s, b in zip(seconds, baseline))
    ratio = f" {statistics.median(ratios):.3f} [{ratios[0]:.3f}, {ratios[-1]:.3f}]" if compared else ""
    return f"{statistics.median(seconds):.2f} s{ratio}"


if __name__ == "__main__":
    with errors_in_one_line():
        main()
