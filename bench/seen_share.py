"""How much of a text `charlm inspect` finds in the n-gram's training text (`analysis.share_seen`), and its cost.

    python -m bench.seen_share ../shared/corpora/{hongloumeng,tinyshakespeare,alice,tangshi300}.txt

Each corpus split as a run splits it (its last tenth held out): the share and seconds for 5,000 characters
from the middle of the training split and for the first 5,000 held-out ones, and the share for the whole
held-out text (`share_seen`'s 500 spans at most, spread over it), which the note's threshold must stay above;
then the slowest case, 20,000 characters found nowhere in 2,000,000 (the n-gram's most).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from bench.common import errors_in_one_line
from charlm.inspection.analysis import SEEN_SHARE, share_seen
from charlm.ngram import MAX_TRAIN_CHARS

INSPECTED = 5000  # charlm inspect's --max-chars default


def timed(text: str, fitted: str) -> str:
    start = time.perf_counter()
    share = share_seen(text, fitted)
    return f"{share:6.1%} in {time.perf_counter() - start:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpora", nargs="+")
    args = parser.parse_args()
    texts = [Path(path).read_text(encoding="utf-8") for path in args.corpora]
    print(f"a note from {SEEN_SHARE:.0%} of a text's spans up")
    for path, text in zip(args.corpora, texts):
        train, held = text[: len(text) - len(text) // 10], text[len(text) - len(text) // 10 :]
        middle = len(train) // 2
        print(
            f"{Path(path).stem}: {len(train):,} training characters; {INSPECTED:,} of them "
            f"{timed(train[middle : middle + INSPECTED], train)}; {INSPECTED:,} held out {timed(held[:INSPECTED], train)}; "
            f"all {len(held):,} held out {share_seen(held, train):.1%}"
        )
    fitted = "".join(texts)[:MAX_TRAIN_CHARS]
    nowhere = "".join(random.Random(0).choice("0123456789") for _ in range(20_000))
    print(f"20,000 characters in none of {len(fitted):,}: {timed(nowhere, fitted)}")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
