"""What reading a checkpoint's weights back costs, and the share of it the check of their values takes.

    python -m bench.checkpoint_load [--layers 3 --hidden 2048] [--rounds 7]

Writes a checkpoint of an untrained LSTM (charlm's own model and `checkpoint.save`; 3x2048 over 96
characters is 101M parameters, a 404 MB file) to a temporary folder, then loads it with
`checkpoint.load` (the whole load: the file read, its sha256, torch.load, the checks, the model built
and its weights copied in) with each way of checking the weights' values (`weight_checks.weight_problem`:
finite, within MAX_WEIGHT) in turn, the order rotated each round so that none always runs first:

- aminmax: charlm's check (one torch.aminmax per weight);
- vector_norm: torch.linalg.vector_norm(ord=inf) per weight, a candidate that refuses the same files;
- none: no check of the values (names, shapes and kinds are still checked).

Prints each one's median load time, its ratio to aminmax's taken round by round (median [lowest,
highest]), and the check alone (each way over the loaded weights, timed in the same rounds) as a
share of the load.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import string
import tempfile
from pathlib import Path

import torch

from bench.common import best_seconds
from charlm import checkpoint, weight_checks
from charlm.checkpoint import Checkpoint, Progress
from charlm.config import Config
from charlm.errors import counted
from charlm.model import CharLM, ModelConfig
from charlm.vocab import Vocab
from charlm.weight_checks import MAX_WEIGHT

ALPHABET = string.digits + string.ascii_letters + string.punctuation + " \n"  # 96 characters


def vector_norm_check(name: str, tensor: torch.Tensor) -> str | None:
    """weight_problem's refusals from one reduction: the largest magnitude, NaN where any value is NaN."""
    largest = float(torch.linalg.vector_norm(tensor, ord=math.inf))
    if not math.isfinite(largest):
        return f"{name} holds NaN or infinite values"
    if largest > MAX_WEIGHT:
        return f"{name} holds {largest:.3g}, which no trained model's weight is"
    return None


CHECKS = {"aminmax": weight_checks.weight_problem, "vector_norm": vector_norm_check, "none": lambda name, tensor: None}


def write_checkpoint(folder: Path, layers: int, hidden: int) -> tuple[Path, int]:
    """An untrained model's checkpoint, as a run writes it; its path and parameter count."""
    vocab = Vocab(ALPHABET)
    net = CharLM(ModelConfig("lstm", layers, hidden, 0.0, len(vocab)), vocab)
    saved = Checkpoint(
        net.config,
        net.vocab,
        net.state_dict(),
        Config(hidden=hidden, layers=layers),
        {"name": "alphabet", "sources": [], "digest": ""},
        Progress(step=1),
    )
    path = folder / "best.pt"
    checkpoint.save(saved, [path])
    return path, net.num_parameters()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path, parameters = write_checkpoint(Path(folder), args.layers, args.hidden)
        size = path.stat().st_size
        weights = checkpoint.read(path).weights
        checkpoint.load(path)  # the file in the page cache, torch warm
        loads = {name: [] for name in CHECKS}
        alone = {name: [] for name in CHECKS}
        original = weight_checks.weight_problem
        try:
            for turn in range(args.rounds):
                names = list(CHECKS)
                for name in names[turn % len(names) :] + names[: turn % len(names)]:
                    check = weight_checks.weight_problem = CHECKS[name]
                    loads[name].append(best_seconds(lambda: checkpoint.load(path), 1))
                    alone[name].append(best_seconds(lambda check=check: [check(n, t) for n, t in weights.items()], 1))
        finally:
            weight_checks.weight_problem = original

    print(
        f"checkpoint.load of a {args.layers}x{args.hidden} LSTM over {len(ALPHABET)} characters: {parameters:,} "
        f"parameters, {size / 1e6:,.0f} MB; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; {counted(args.rounds, 'round')}, "
        "each way in turn\n"
    )
    print("| values checked by | load s, median | ratio to aminmax, median [spread] | check alone s | share of load |")
    print("|---|---:|---:|---:|---:|")
    for name in CHECKS:
        ratios = sorted(a / b for a, b in zip(loads[name], loads["aminmax"]))
        load, check = statistics.median(loads[name]), statistics.median(alone[name])
        print(
            f"| {name} | {load:.3f} | {statistics.median(ratios):.3f} [{ratios[0]:.3f}, {ratios[-1]:.3f}] | "
            f"{check:.3f} | {check / statistics.median(loads['aminmax']):.1%} |"
        )


if __name__ == "__main__":
    main()
