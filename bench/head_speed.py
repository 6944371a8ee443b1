"""Training speed of the full and the adaptive head on a big vocabulary, side by side.

    python bench/head_speed.py ../shared/corpora/hongloumeng.txt [--hidden 256] [--steps 60] [--rounds 3]

Builds a trainer of each head on the corpus's own batches (same size, batch and precision), then
times `--steps` training steps of each, taking turns for `--rounds` rounds, and prints the best
chars/s of each and their ratio. Training quality at equal characters is a `bench/sweep.py` run with
`head=full` and `head=adaptive` at the same `max_steps`.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from charlm import api, train_state
from charlm.config import Config
from charlm.device import synchronize


def trainer_for(corpus: str, head: str, args, folder: str):
    config = Config(
        hidden=args.hidden, layers=args.layers, head=head, max_steps=10**9, max_time=None, eval_every=10**9,
        checkpoint_every=10**9, quiet=True, precision=args.precision,
    )  # fmt: skip
    trainer = api.start_run(config, [corpus], out=f"{folder}/{head}")
    trainer.model.train()
    return trainer


def chars_per_second(trainer, steps: int) -> float:
    for _ in range(3):
        train_state.train_step(trainer.state, 0.5)
    synchronize(trainer.device)
    started = time.perf_counter()
    for _ in range(steps):
        train_state.train_step(trainer.state, 0.5)
    synchronize(trainer.device)
    config = trainer.config
    return steps * config.batch_size * config.seq_len / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="head-speed-")
    trainers = {head: trainer_for(args.corpus, head, args, folder) for head in ("full", "adaptive")}
    best = {head: 0.0 for head in trainers}
    for _ in range(args.rounds):
        for head, trainer in trainers.items():
            best[head] = max(best[head], chars_per_second(trainer, args.steps))
    vocab = len(trainers["full"].corpus.vocab)
    print(f"{args.corpus}: vocabulary {vocab:,}, {args.layers}x{args.hidden}, {trainers['full'].precision}")
    print(f"adaptive head cutoffs: {trainers['adaptive'].model.config.head_cutoffs}")
    print("| head | parameters | chars/s (best of rounds) |")
    print("| --- | ---: | ---: |")
    for head, trainer in trainers.items():
        print(f"| {head} | {trainer.model.num_parameters():,} | {best[head]:,.0f} |")
    print(f"adaptive / full: {best['adaptive'] / best['full']:.2f}x")


if __name__ == "__main__":
    main()
