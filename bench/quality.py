"""Validation bpc against wall time: train with the defaults for each budget on each corpus.

    python -m bench.quality ../shared/corpora/tinyshakespeare.txt ../shared/corpora/hongloumeng.txt \\
        --budgets 5m,15m --png docs/quality.png

Each (corpus, budget) is a separate run with the learning-rate schedule fitted to its budget (a
5-minute run is not the first third of a 15-minute one). Runs go one after another, never side by
side (on 2 cores they would slow each other). Prints every validation point (minutes, characters
seen, bpc) and a summary table with the size each run chose (the size rule fits it to the budget);
the PNG is `charlm plot` of all the runs. `--set name=value,...` overrides defaults for every run
(e.g. `--set precision=bf16`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import charlm
from bench.common import errors_in_one_line, parse
from charlm.plot import curves_of, plot_runs
from charlm.runs import read_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpora", nargs="+")
    parser.add_argument("--budgets", default="5m,15m", help="comma-separated --max-time values")
    parser.add_argument("--set", default="-", help="name=value[,name=value...] overriding defaults in every run")
    parser.add_argument("--png", default=None, help="write the curves of all runs to this PNG")
    parser.add_argument("--out", default="bench/out", help="folder for the runs")
    args = parser.parse_args()
    folder = Path(args.out) / f"quality-{time.strftime('%Y%m%d-%H%M%S')}"
    summary, runs = [], []
    for corpus in args.corpora:
        for budget in args.budgets.split(","):
            run = folder / f"{Path(corpus).stem}-{budget}"
            charlm.train(corpus, out=run, max_time=budget, quiet=True, **parse(args.set))
            rows = read_metrics(run)
            points = [(r["elapsed"] / 60, r["chars"], r["val_bpc"]) for r in rows if r.get("val_bpc") is not None]
            print(f"\n{corpus}, budget {budget}: validation bpc against time")
            for minutes, chars, bpc in points:
                print(f"  {minutes:6.2f} min  {chars:>12,} chars  {bpc:.4f} bpc")
            shape = charlm.load(run).config  # the size the rule fitted to this budget
            size, best = f"{shape.layers}x{shape.hidden}", min(p[2] for p in points)
            summary.append((Path(corpus).name, budget, size, rows[-1]["step"], rows[-1]["chars"], best))
            runs.append(run)
    print(f"\n| corpus | budget | size chosen | steps | chars seen | best val bpc |  ({args.set})")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for name, budget, size, steps, chars, bpc in summary:
        print(f"| {name} | {budget} | {size} | {steps:,} | {chars:,} | {bpc:.3f} |")
    if args.png:
        curves, _ = curves_of([str(run) for run in runs])  # every run here has curves: it just trained
        print(f"\ncurves: {plot_runs(curves, Path(args.png))}")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
