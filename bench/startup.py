"""How long each charlm command takes from the shell to its first answer, beside Python importing torch.

    python -m bench.startup [--rounds 7]

In a temporary folder: a 20,000-character text and a tiny run trained on it (1x32 LSTM, 2 steps). Then,
round after round, the order rotated so that none always runs first, each of these runs as a process of
its own (`python -m charlm ...`, as the `charlm` script starts it), timed from its start to its end:

- import torch: `python -c "import torch"`, the floor of every command that runs a model;
- help: `charlm --help` (no torch);
- sample: `charlm sample --checkpoint RUN --seed x --length 1`;
- eval: `charlm eval RUN TEXT --quiet`;
- train: `charlm train TEXT --max-steps 1 --dropout 0.1 ...`, a 1x32 LSTM (dropout given: no size probe);
- train, probed: the same with --dropout unset under the default --max-time, so the run first times
  its size's training speed (the probe) to fit dropout to the passes it will make;
- serve: `charlm serve RUN --port 0` until GET /health answers 200 (bench.common.wait_healthy).

Prints each one's median seconds and its median difference from `import torch` taken round by round
(each round's floor against the same round's command), with the spread; the machine's load is said.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import charlm
from bench.common import served_url, wait_healthy
from bench.lifeline import Lifeline
from charlm.errors import counted

ALPHABET = string.ascii_letters + " \n"
TINY = {"layers": 1, "hidden": 32, "seq_len": 16, "batch_size": 4}
TINY_ARGS = [word for name, value in TINY.items() for word in (f"--{name.replace('_', '-')}", str(value))]


def commands(run: Path, text: Path, out: Path) -> dict[str, list[str]]:
    """Each timed command's arguments after `python`."""
    train = ["-m", "charlm", "train", str(text), "--max-steps", "1", "--quiet", *TINY_ARGS]
    return {
        "import torch": ["-c", "import torch"],
        "help": ["-m", "charlm", "--help"],
        "sample": ["-m", "charlm", "sample", "--checkpoint", str(run), "--seed", "x", "--length", "1"],
        "eval": ["-m", "charlm", "eval", str(run), str(text), "--quiet"],
        "train": [*train, "--dropout", "0.1", "--out", str(out / "given")],
        "train, probed": [*train, "--out", str(out / "probed")],
        "serve": ["-m", "charlm", "serve", str(run), "--port", "0"],
    }


def seconds(name: str, args: list[str], lifeline: Lifeline) -> float:
    """One start of the command, to its end (serve: to its first healthy /health), in seconds."""
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, *args], **pipes, **lifeline.joining())
    if name != "serve":
        out, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"{name} failed ({process.returncode}): {err or out}")
        return time.perf_counter() - started
    try:
        wait_healthy(served_url(process.stdout.readline()), process)
        return time.perf_counter() - started
    finally:
        process.kill()
        process.communicate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="", help="commands to time beside import torch, comma-separated")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        text = folder / "small.txt"
        rng = random.Random(0)
        text.write_text("".join(rng.choice(ALPHABET) for _ in range(20_000)) + "\n", encoding="utf-8")
        run = folder / "run"
        charlm.train(text, out=run, max_steps=2, max_time=None, eval_every=2, dropout=0.0, quiet=True, **TINY)
        timed = commands(run, text, folder)
        if args.only:
            timed = {name: timed[name] for name in ["import torch", *args.only.split(",")]}
        times = {name: [] for name in timed}
        lifeline = Lifeline()
        try:
            for turn in range(args.rounds):
                names = list(timed)
                for name in names[turn % len(names) :] + names[: turn % len(names)]:
                    for out in ("given", "probed"):  # train's --out is a new run each time
                        shutil.rmtree(folder / out, ignore_errors=True)
                    times[name].append(seconds(name, timed[name], lifeline))
        finally:
            lifeline.end()

    print(
        f"start-up of charlm's commands, each a process of its own: torch {torch.__version__}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
        f"{counted(args.rounds, 'round')}, each command in turn\n"
    )
    print("| command | s, median | minus import torch, median [spread] |")
    print("|---|---:|---:|")
    floor = times["import torch"]
    for name, taken in times.items():
        differences = sorted(t - f for t, f in zip(taken, floor, strict=True))
        print(
            f"| {name} | {statistics.median(taken):.2f} | {statistics.median(differences):+.2f} "
            f"[{differences[0]:+.2f}, {differences[-1]:+.2f}] |"
        )


if __name__ == "__main__":
    main()
