"""Corpus preparation speed and memory, and training memory against corpus size, in one run.

    python -m bench.prepare [--mb 100] [--out bench/out/prepare] [--val-fraction F] [--hidden N]
    python -m bench.prepare --many-files 20000 [--out bench/out/prepare]

1. Generates an English-like and a CJK-like corpus of --mb megabytes each (fixed seed).
2. Prepares each in a fresh process: MB/s and the process's peak RSS.
3. Trains a few steps on the 100 MB corpus and on its first 1 MB (both prepared beforehand), each
   in a fresh process, and compares peak RSS: memory-mapped ids should make them equal. Each run
   scores its held-out text (charlm's share of the corpus, or --val-fraction) once or twice. Its model
   is charlm's default size, or --hidden N units (a smaller one: the corpus's memory against less besides).

--many-files N instead prepares a folder of N files of one line each (a scraped collection, a poem a
file) against one file of the same lines, each in a fresh process: a file's own cost (listing, opening,
hashing, counting) against its bytes', as the ratio of their seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from charlm.errors import counted

MB = 1_000_000


def english_like(rng: random.Random, size: int) -> str:
    syllables = ["th", "e", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed", "is", "it"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(5000)]
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choices(words, k=rng.randint(4, 14))).capitalize() + rng.choice(".,;:!?")
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


def cjk_like(rng: random.Random, size: int) -> str:
    chars = [chr(0x4E00 + i) for i in range(4000)]
    # Zipf-like, as in a novel; summed once here (the same text as `weights=`, which sums them every call)
    cumulative = list(itertools.accumulate(1 / (i + 1) for i in range(4000)))
    lines, total = [], 0
    while total < size:
        line = "".join(rng.choices(chars, cum_weights=cumulative, k=rng.randint(10, 60))) + rng.choice("，。！？：；")
        lines.append(line)
        total += len(line.encode()) + 1
    return "\n".join(lines) + "\n"


def write_corpus(path: Path, make, megabytes: int) -> None:
    """Writes `megabytes` of text built from a generated block of 4 MB (or less, if that is more than
    asked for), repeated with its lines shuffled."""
    if path.exists() and path.stat().st_size >= megabytes * MB * 0.99:
        return
    rng = random.Random(0)
    block = make(rng, min(4, megabytes) * MB).splitlines(keepends=True)
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < megabytes * MB:
            rng.shuffle(block)
            text = "".join(block)
            f.write(text)
            written += len(text.encode())


def child(code: str, *args: str) -> tuple[float, float, str]:
    """Run python code in a fresh process: (seconds, peak RSS in MB, stdout)."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code + "\nimport resource, sys\n"
         "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode:
        raise SystemExit(result.stderr)
    rss_kb = int(result.stderr.strip().splitlines()[-1].split()[1])
    return time.perf_counter() - start, rss_kb / 1024, result.stdout


PREPARE = """
import sys, time
from pathlib import Path
from charlm.corpus import source_files
from charlm.tokens import prepare
start = time.perf_counter()
folder = prepare([source_files([sys.argv[1]])], root=Path(sys.argv[2]), quiet=True)
print(time.perf_counter() - start)
"""

PREPARE_FOR_TRAINING = """
import sys
from charlm.config import Config
from charlm.tokens import load_corpus
load_corpus([sys.argv[1]], Config(), quiet=True)
"""

TRAIN = """
import json, sys
import charlm
charlm.train(sys.argv[1], out=sys.argv[2], max_time=None, quiet=True, **json.loads(sys.argv[3]))
"""


def prepared(path: Path, cache: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of preparing `path` (a file or a folder) in a fresh process, the cache empty."""
    shutil.rmtree(cache, ignore_errors=True)  # measure a real preparation, not a cache hit
    _, rss, stdout = child(PREPARE, str(path), str(cache))
    return float(stdout.split()[-1]), rss


def many_files(out: Path, count: int) -> None:
    """A folder of `count` one-line files against one file of the same lines (--many-files)."""
    lines = english_like(random.Random(0), count * 40).splitlines(keepends=True)[:count]
    folder, whole = out / f"lines-{count}", out / f"lines-{count}.txt"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for number, line in enumerate(lines):
        (folder / f"{number:06d}.txt").write_text(line, encoding="utf-8")
    whole.write_text("".join(lines), encoding="utf-8")
    size = whole.stat().st_size / MB
    print(f"{'corpus':<28} {'MB':>6} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12}")
    seconds, files = {}, counted(count, "file")
    for label, path in ((f"{files} of one line", folder), ("one file of the same lines", whole)):
        seconds[label], rss = prepared(path, out / "cache" / path.name)
        print(f"{label:<28} {size:>6.2f} {seconds[label]:>8.2f} {size / seconds[label]:>7.2f} {rss:>12.0f}", flush=True)
    ratio = seconds[f"{files} of one line"] / seconds["one file of the same lines"]
    print(f"seconds, {files} / one file of the same bytes: {ratio:.1f}x")
    (out / "result-many-files.json").write_text(json.dumps({"files": count, "seconds": seconds, "ratio": ratio}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--out", default="bench/out/prepare")
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--val-fraction", type=float, help="the share each training run holds out (default: charlm's)")
    parser.add_argument("--hidden", type=int, help="the training runs' hidden units (default: charlm's)")
    parser.add_argument("--many-files", type=int, help="instead: N one-line files against one file of them")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.many_files:
        return many_files(out, args.many_files)
    cache = out / "cache"
    corpora = {"english-like": english_like, "cjk-like": cjk_like}
    print(f"{'corpus':<14} {'MB':>7} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12}")
    for name, make in corpora.items():
        path = out / f"{name}-{args.mb}mb.txt"
        write_corpus(path, make, args.mb)
        seconds, rss = prepared(path, cache / name)
        size = path.stat().st_size / MB
        print(f"{name:<14} {size:>7.1f} {seconds:>8.1f} {size / seconds:>7.1f} {rss:>12.0f}", flush=True)

    big = out / f"english-like-{args.mb}mb.txt"
    small = out / "english-like-1mb.txt"
    small.write_bytes(big.read_bytes()[:MB])
    rows = {}
    options = {"max_steps": args.train_steps, "eval_every": max(1, args.train_steps // 2)}
    options |= {name: value for name in ("val_fraction", "hidden") if (value := getattr(args, name)) is not None}
    model = "" if args.hidden is None else f" ({args.hidden} hidden)"
    for label, path in (("1 MB", small), (f"{args.mb} MB", big)):
        child(PREPARE_FOR_TRAINING, str(path))  # the cache is built first, so only training is measured
        run = str(out / f"run-{label.replace(' ', '')}-{time.time_ns()}")
        _, rss, _ = child(TRAIN, str(path), run, json.dumps(options))
        rows[label] = rss
        print(f"training {counted(args.train_steps, 'step')}{model} on {label:>7}: peak RSS {rss:,.0f} MB", flush=True)
    ratio = rows[f"{args.mb} MB"] / rows["1 MB"]
    print(f"training RSS {args.mb} MB corpus / 1 MB corpus: {ratio:.3f}")
    (out / "result.json").write_text(
        json.dumps({"train_rss_mb": rows, "ratio": ratio, "hidden": args.hidden}, indent=1)
    )


if __name__ == "__main__":
    main()
