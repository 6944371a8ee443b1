"""Training speed of the full and the adaptive head on a big vocabulary, side by side.

    python -m bench.head_speed ../shared/corpora/hongloumeng.txt [--hidden 256] [--steps 60] [--rounds 3]

Builds a trainer of each head on the corpus's own batches (same size, batch and precision), then
times `--steps` training steps of each, taking turns for `--rounds` rounds, and prints the best
chars/s of each and their ratio. Training quality at equal characters is a `python -m bench.sweep` run with
`head=full` and `head=adaptive` at the same `max_steps`.
"""

from __future__ import annotations

import argparse
import tempfile

from bench.common import bare_config, errors_in_one_line, training_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="head-speed-") as folder:  # removed at the end and on Ctrl-C
        settings = {"hidden": args.hidden, "layers": args.layers, "precision": args.precision}
        trainers = {
            head: training_step(bare_config(head=head, **settings), [args.corpus], f"{folder}/{head}")
            for head in ("full", "adaptive")
        }
        best = {head: 0.0 for head in trainers}
        for _ in range(args.rounds):
            for head, trainer in trainers.items():
                best[head] = max(best[head], trainer.chars_per_second(args.steps))
        vocab = len(trainers["full"].model.vocab)
        print(f"{args.corpus}: vocabulary {vocab:,}, {args.layers}x{args.hidden}, {trainers['full'].precision}")
        print(f"adaptive head cutoffs: {trainers['adaptive'].model.config.head_cutoffs}")
        print("| head | parameters | chars/s (best of rounds) |")
        print("| --- | ---: | ---: |")
        for head, trainer in trainers.items():
            print(f"| {head} | {trainer.model.num_parameters():,} | {best[head]:,.0f} |")
        print(f"adaptive / full: {best['adaptive'] / best['full']:.2f}x")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
