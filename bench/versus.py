"""charlm against a baseline in the same wall time, side by side on each corpus (issue 19): a baby GPT
(the default) or char-rnn (`--baseline charrnn`).

    python -m bench.versus ../shared/corpora/tinyshakespeare.txt ../shared/corpora/hongloumeng.txt \\
        ../shared/corpora/alice.txt --quiet --out bench/results/versus-quiet.txt

For each corpus, one after another in this process (torch's default thread count): train the baby
GPT of bench/babygpt.py for --iters iterations and time it, then train charlm with its defaults (and
--charlm-set) and max_time = those seconds, on the same file. Both are scored on the same
characters of the same held-out text, the last 10% of the file (charlm's val_fraction=0.1 split,
checked against charlm's own): every character after the first, charlm with its own evaluation
(`bits_per_char`: the figure of one pass, the state carried through the whole text), the baby GPT
with its sliding window (each character from up to `--block` characters before it). Each is scored
as its user would sample from it: charlm's best.pt (the best of its evaluations on that text), the
baby GPT's weights of its best held-out estimate (nanoGPT's checkpoint rule; bench/babygpt.py). The
load average is recorded before and after each training run; `--busy N` keeps
N busy-loop processes running through all the measurements (the "busy machine" table).

`--baseline charrnn --seconds S`: karpathy/char-rnn's recipe of bench/charrnn.py in place of the baby
GPT, trained for S seconds (default 300), its checkpoint the one of its lowest validation loss on the
held-out text (char-rnn's rule); it is scored in one pass with its state carried, as charlm is:

    python -m bench.versus ../shared/corpora/tinyshakespeare.txt --baseline charrnn --seconds 300 --quiet \\
        --out bench/results/versus-charrnn.txt

`--gpu`: the baby GPT with nanoGPT's GPU recipe (bench/babygpt.py), both trained on --device cuda:

    python -m bench.versus ../shared/corpora/tinyshakespeare.txt --gpu --out bench/results/versus-gpu.txt

Both train on --device (default: cpu, with --gpu cuda). The report gives each one's size, optimizer
steps, characters trained on per second of its wall time, wall time and bpc.

Writes the report to --out (default bench/out/versus-<time>.txt) and charlm's runs beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import charlm
from bench import babygpt, charrnn
from bench.common import busy_processes, errors_in_one_line, parse, read_corpus, split_at
from charlm import scoring as charlm_scoring
from charlm.corpus import source_files
from charlm.tokens import load_corpus


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def last_row(run: Path) -> tuple[int | None, float | None]:
    """The optimizer steps of a charlm run and its chars/s over its training time, from the last row
    of its metrics.jsonl (None if absent)."""
    try:
        lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        row = json.loads(lines[-1])
        return int(row["step"]), row["chars"] / max(row["elapsed"], 1e-9)
    except (OSError, IndexError, KeyError, ValueError, TypeError):
        return None, None


@dataclass
class Trained:
    """A baseline trained on the first 90% of a corpus: what the report gives of it, and its score."""

    size: str
    steps: int
    seconds: float
    chars_per_second: float
    parameters: int
    bits_per_char: Callable[[str], float]  # of a text: every character after its first, as its user samples


def train_babygpt(text: str, args: argparse.Namespace) -> Trained:
    baseline = babygpt.train_baseline(text, args)
    shape = baseline.model.config
    return Trained(
        f"{shape.layers}x{shape.embed}, context {shape.block}",
        baseline.config.iters,
        baseline.seconds,
        baseline.chars_per_second,
        baseline.model.num_parameters(),
        lambda held_out: babygpt.bits_per_char(baseline.model, [baseline.vocab.encode(held_out)]),
    )


def train_charrnn(text: str, args: argparse.Namespace) -> Trained:
    baseline = charrnn.train_baseline(text, charrnn.recipe_from(args))
    return Trained(
        f"{baseline.recipe.num_layers}x{baseline.recipe.rnn_size}",
        baseline.iterations,
        baseline.seconds,
        baseline.chars_per_second,
        baseline.model.num_parameters(),
        lambda held_out: charrnn.bits_per_char(baseline.model, baseline.vocab.encode(held_out)),
    )


def babygpt_recipe(args: argparse.Namespace) -> str:
    return (
        f"baby GPT ({'GPU' if args.gpu else 'CPU'} recipe): {args.layers} layers, {args.heads} heads, "
        f"embed {args.embed}, block {args.block}, dropout {args.dropout}, batch {args.batch}, {args.iters} iterations, "
        f"{args.precision}, torch.compile {'on' if args.compile else 'off'}"
    )


def charrnn_recipe(args: argparse.Namespace) -> str:
    r = charrnn.recipe_from(args)
    return (
        f"char-rnn (train.lua's defaults): {r.num_layers}x{r.rnn_size} LSTM, one-hot input, dropout {r.dropout}, "
        f"seq_length {r.seq_length}, batch_size {r.batch_size}, RMSprop lr {r.learning_rate:g} alpha {r.decay_rate} "
        f"eps {r.epsilon:g}, gradients clamped to {r.grad_clip:g}, lr x{r.learning_rate_decay} per epoch from epoch "
        f"{r.learning_rate_decay_after}, validation every {r.eval_val_every} iterations, {r.seconds:g} s, fp32"
    )


@dataclass(frozen=True)
class Kind:
    """One baseline --baseline names: its name in the report, how it trains, its recipe in words, and
    which of its weights are scored (both in words from the flags)."""

    title: str
    train: Callable[[str, argparse.Namespace], Trained]
    recipe: Callable[[argparse.Namespace], str]
    kept: Callable[[argparse.Namespace], str]


def babygpt_kept(args: argparse.Namespace) -> str:
    return f"the baby GPT's best held-out estimate (every {babygpt.TrainConfig.eval_interval} its and the last)"


def charrnn_kept(args: argparse.Namespace) -> str:
    every = charrnn.recipe_from(args).eval_val_every
    return f"char-rnn's lowest loss on the whole held-out text (every {every} its and the last)"


BASELINES = {
    "babygpt": Kind("baby GPT", train_babygpt, babygpt_recipe, babygpt_kept),
    "charrnn": Kind("char-rnn", train_charrnn, charrnn_recipe, charrnn_kept),
}
BABYGPT_FLAGS = ("gpu", "iters", "layers", "heads", "embed", "block", "dropout", "batch", "eval_iters", "precision")
BABYGPT_FLAGS += ("compile",)


def compare(corpus: str, args: argparse.Namespace, runs: Path) -> dict:
    """Train both on `corpus` and score them; one row of the report."""
    text = read_corpus(corpus)
    held_out = text[split_at(text) :]
    row = {"corpus": Path(corpus).name, "characters": len(text), "distinct": len(set(text))}
    kind = BASELINES[args.baseline]

    row["load before baseline"] = load_average()
    baseline = kind.train(text, args)
    row["load after baseline"] = load_average()
    row["baseline wall s"] = baseline.seconds
    row["baseline chars/s"] = baseline.chars_per_second
    row["baseline steps"] = baseline.steps
    row["baseline size"] = baseline.size

    options = {"quiet": True, "random_seed": args.seed, "device": args.device, **parse(args.charlm_set)}
    options["max_time"] = f"{max(baseline.seconds, 0.1):.1f}s"
    started = time.perf_counter()
    charlm.train(corpus, out=runs / Path(corpus).stem, **options)
    row["charlm wall s"] = time.perf_counter() - started
    model = charlm.load(runs / Path(corpus).stem)  # best.pt, what `charlm sample` reads
    row["load after charlm"] = load_average()

    prepared = load_corpus([corpus], charlm.Config(**options), quiet=True)  # from the cache training wrote
    if prepared.vocab.decode(prepared.val_ids) != held_out:
        raise SystemExit(f"{corpus}: charlm's held-out text is not the last 10% of the file as read here")
    charlm_ids = model.vocab.encode(held_out)
    row["charlm bpc"] = charlm_scoring.bits_per_char(model, charlm_ids)
    row["baseline bpc"] = baseline.bits_per_char(held_out)
    row["scored"] = len(held_out) - 1  # both vocabularies: one id per character
    row["held out"] = len(held_out)
    row["baseline parameters"] = baseline.parameters
    row["charlm parameters"] = sum(p.numel() for p in model.parameters())
    row["charlm size"] = f"{model.config.layers}x{model.config.hidden}"
    row["charlm steps"], row["charlm chars/s"] = last_row(runs / Path(corpus).stem)
    print(
        f"{row['corpus']}: {kind.title} {row['baseline wall s']:.1f} s {row['baseline bpc']:.4f} bpc, "
        f"charlm {row['charlm size']} {row['charlm wall s']:.1f} s {row['charlm bpc']:.4f} bpc",
        flush=True,
    )
    return row


def optional(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(columns: list[tuple[str, str]], rows: list[list[str]]) -> list[str]:
    """A markdown table; `columns` are (title, alignment row cell)."""
    lines = ["| " + " | ".join(title for title, _ in columns) + " |", "| " + " | ".join(a for _, a in columns) + " |"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def report(rows: list[dict], args: argparse.Namespace) -> str:
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    kind = BASELINES[args.baseline]
    setup = (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, device {args.device} "
        f"({device}), {args.busy} busy-loop processes running; baseline: {kind.recipe(args)}; "
        f"charlm: defaults and {args.charlm_set!r}, max_time = the {kind.title}'s wall s; seed {args.seed}"
    )
    left, right = "---", "---:"
    results = table(
        [("corpus", left), ("characters", right), ("distinct", right), ("baseline size", left)]
        + [("baseline steps", right), ("baseline chars/s", right), ("baseline wall s", right)]
        + [("baseline bpc", right), ("charlm size", left), ("charlm steps", right), ("charlm chars/s", right)]
        + [("charlm wall s", right), ("charlm bpc", right), ("charlm/baseline", right)],
        [
            [row["corpus"], f"{row['characters']:,}", f"{row['distinct']:,}", row["baseline size"]]
            + [f"{row['baseline steps']:,}", f"{row['baseline chars/s']:,.0f}", f"{row['baseline wall s']:.1f}"]
            + [f"{row['baseline bpc']:.4f}", row["charlm size"], optional(row["charlm steps"])]
            + [optional(row["charlm chars/s"]), f"{row['charlm wall s']:.1f}", f"{row['charlm bpc']:.4f}"]
            + [f"{row['charlm bpc'] / row['baseline bpc']:.4f}"]
            for row in rows
        ],
    )
    conditions = table(
        [("corpus", left), ("held-out chars", right), ("scored chars", right)]
        + [("baseline parameters", right), ("charlm parameters", right), ("load before baseline", left)]
        + [("after baseline", left), ("after charlm", left)],
        [
            [row["corpus"], f"{row['held out']:,}", f"{row['scored']:,}"]
            + [f"{row['baseline parameters']:,}", f"{row['charlm parameters']:,}", row["load before baseline"]]
            + [row["load after baseline"], row["load after charlm"]]
            for row in rows
        ],
    )
    notes = [
        "Scored: the same characters for both, every character of the last 10% of each file but its first.",
        f"Each model as its user samples it: charlm's best.pt, {kind.kept(args)}.",
        "charlm's wall s includes preparing the corpus, fitting its size and its final evaluation.",
        "Load: os.getloadavg(), the 1, 5 and 15 minute averages.",
    ]
    lines = [
        f"command: python -m bench.versus {' '.join(sys.argv[1:])}",
        setup,
        "",
        *results,
        "",
        *notes,
        "",
        *conditions,
    ]
    return "\n".join(lines) + "\n"


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Refuse a flag of the other baseline (it would be ignored); the flags not given take the recipe's."""
    other = charrnn.CHARRNN_FLAGS if args.baseline == "babygpt" else BABYGPT_FLAGS
    given = [name for name in other if getattr(args, name) != parser.get_default(name)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise SystemExit(
            f"{flag} is not a flag of --baseline {args.baseline}; leave it out or choose the other baseline"
        )
    if args.baseline == "charrnn":
        args.device = args.device or "cpu"
        return args
    return babygpt.resolve(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpora", nargs="+")
    parser.add_argument("--baseline", choices=sorted(BASELINES), default="babygpt", help="what charlm is against")
    babygpt.add_arguments(parser)
    charrnn.add_arguments(parser)
    parser.add_argument("--charlm-set", default="-", help="name=value[,name=value...] overriding charlm's defaults")
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes to run during the measurements")
    parser.add_argument("--out", default=None, help="report file (default bench/out/versus-<time>.txt)")
    args = resolve(parser, parser.parse_args())
    out = Path(args.out or f"bench/out/versus-{time.strftime('%Y%m%d-%H%M%S')}.txt")
    runs = out.with_suffix("")
    if runs.exists():
        raise SystemExit(f"--out: {runs} exists (charlm's runs go there); choose another --out")
    source_files(args.corpora)  # one not there said before the first corpus's trainings
    out.parent.mkdir(parents=True, exist_ok=True)
    with busy_processes(args.busy):
        rows = [compare(corpus, args, runs) for corpus in args.corpora]
    text = report(rows, args)
    out.write_text(text, encoding="utf-8")
    print("\n" + text + f"\nwritten to {out}; charlm's runs in {runs}/")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
