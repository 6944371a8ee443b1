"""Sweep training settings at a fixed wall-time budget and print validation bpc for each.

    python -m bench.sweep ../shared/corpora/tinyshakespeare.txt --max-time 4m hidden=256 hidden=384 hidden=512

Each argument after the corpus is one configuration, `name=value[,name=value...]` overriding the
defaults (`-` alone: the defaults). Runs go one after another in this process (never side by side:
on 2 cores they would slow each other), into bench/out/sweep-*/ (or --out).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import charlm
from bench.common import errors_in_one_line, parse, trained_parameters
from charlm import checkpoint, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--max-time", default="4m")
    parser.add_argument("--out", default="bench/out", help="folder for the runs")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for i, spec in enumerate(args.configs):
        options = {"max_time": args.max_time, "quiet": True, **parse(spec)}
        run = Path(args.out) / f"sweep-{stamp}" / str(i)
        charlm.train(args.corpus, out=run, **options)
        latest = checkpoint.read(run / runs.LATEST)
        config, steps = latest.config, latest.progress.step
        row = (
            spec,
            config.layers,
            config.hidden,
            steps,
            steps * config.batch_size * config.seq_len,
            latest.progress.best_bpc,
            trained_parameters(config, [args.corpus]),
        )
        rows.append(row)
        print(
            f"{spec:<40} {row[1]}x{row[2]:<5} steps {row[3]:>7,} chars {row[4]:>12,} best val {row[5]:.4f} bpc",
            flush=True,
        )
    print(
        f"\n| config | size | steps | chars seen | chars / trained parameter | best val bpc |"
        f"  (budget {args.max_time}, {args.corpus})"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for spec, layers, hidden, steps, chars, bpc, parameters in rows:
        print(f"| {spec} | {layers}x{hidden} | {steps:,} | {chars:,} | {chars / parameters:.1f} | {bpc:.3f} |")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
