"""Which size the rule picks, several times over: the speed probe's stability.

    python bench/size_rule.py ../shared/corpora/tinyshakespeare.txt ../shared/corpora/hongloumeng.txt \\
        --budgets 98s,5m,15m --repeats 3

For each corpus and budget, runs the size probe and the rule (`sizing.measure_sizes`, what `charlm train`
does when --hidden is not given) --repeats times in this process and prints each choice with the
speeds it measured. On a quiet machine every repeat should choose the same size.
"""

from __future__ import annotations

import argparse
import time

from charlm import sizing
from charlm.config import Config
from charlm.tokens import load_corpus


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
            prepared = load_corpus([corpus], config, quiet=True)
            for repeat in range(1, args.repeats + 1):
                started = time.perf_counter()
                hidden, measured = sizing.measure_sizes(config, prepared)
                speeds = ", ".join(f"{c.hidden}: {c.chars_per_second:,.0f}" for c in measured)
                seconds = time.perf_counter() - started
                name = corpus.rsplit("/", 1)[-1]
                print(f"| {name} | {budget} | {repeat} | {config.layers}x{hidden} | {speeds} ({seconds:.1f} s) |")


if __name__ == "__main__":
    main()
