"""Which size the rule picks, several times over: the speed probe's stability.

    python -m bench.size_rule ../shared/corpora/tinyshakespeare.txt ../shared/corpora/hongloumeng.txt \\
        --budgets 98s,5m,15m --repeats 3

For each corpus and budget, runs the size probe and the rule (`sizing.measure_sizes`, what `charlm train`
does when --hidden is not given) --repeats times in this process and prints each choice with the
speeds it measured. On a quiet machine every repeat should choose the same size.
"""

from __future__ import annotations

import argparse
import time

from bench.common import errors_in_one_line, probe_sizes
from charlm.config import Config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpora", nargs="+")
    parser.add_argument("--budgets", default="98s,5m,15m")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| corpus | budget | repeat | chosen | probe chars/s by size |")
    print("| --- | --- | ---: | --- | --- |")
    for corpus in args.corpora:
        for budget in args.budgets.split(","):
            config = Config(max_time=budget, quiet=True)
            for repeat in range(1, args.repeats + 1):
                started = time.perf_counter()
                hidden, measured = probe_sizes(config, [corpus])
                speeds = ", ".join(f"{size}: {speed:,.0f}" for size, speed in measured.items())
                seconds = time.perf_counter() - started
                name = corpus.rsplit("/", 1)[-1]
                print(f"| {name} | {budget} | {repeat} | {config.layers}x{hidden} | {speeds} ({seconds:.1f} s) |")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
