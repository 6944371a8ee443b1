"""Fine-tuning from a base run against training from scratch, on a small text, at the same budgets.

    python -m bench.finetune BASE_RUN TEXT --steps 7200,18000 [--scratch] [CONFIG ...]
    python -m bench.finetune BASE_RUN TEXT --minutes 2,5 --scratch
    python -m bench.finetune BASE_RUN TEXT --init [--steps 1000]

Budgets are optimizer steps (`--max-steps`, the schedule decaying over them), so the machine's load
cannot move a result. For each budget: with `--scratch`, one run from scratch with the defaults at the
base's size (--hidden, --layers); then one fine-tuning run (`--init-from BASE_RUN`) per CONFIG
(`name=value[,name=value...]` over the fine-tuning defaults; `-` or none: the defaults). Every run is
scored every 200 steps (--eval-every; scoring does not change training), and reports the held-out bpc
of the small text that best.pt keeps at that cadence and at the run's default one (once per pass over
the text, `bench.common.default_eval_every`, from scratch and fine-tuned alike; and the
last step), the base's own
held-out bpc under that best.pt, and a sample of it.

`--minutes`: budgets in wall time instead (`--max-time`, what a user gives), for the issue's figures:
the run from scratch then takes every default, the size rule included, and each run is scored at
its own default cadence only. Run it on an otherwise idle machine.

`--init`: how to start the rows of characters the base lacks. For each way, the held-out bpc of the
small text and of the base's text right after loading, and with `--steps N` after N fine-tuning steps.
Runs go one after another into bench/out/finetune-*/ (or --out).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import charlm
from bench.common import default_eval_every, errors_in_one_line, parse, training_step
from charlm import checkpoint, runs
from charlm.model import CharLM
from charlm.runs import read_metrics
from charlm.scoring import bits_per_char
from charlm.tokens import load_corpus

SAMPLE = {"length": 400, "temperature": 0.8, "random_seed": 1}
EVAL_CHARS = 150_000  # --eval-chars: the held-out characters scored, as many as a training run's validation scores
RARE_ROWS = 16  # --rare-rows: the rarest known characters whose rows the 'rare' start averages (charlm's full head: 16)
INITS = ("zero", "rare", "fresh")  # charlm's choice, then the alternatives measured against it


def base_heldout(base: str) -> torch.Tensor:
    """The held-out ids of the base's own corpus (a fine-tuned model keeps the base's ids for them)."""
    saved = checkpoint.read(runs.resolve(base))
    return torch.as_tensor(load_corpus(saved.corpus["sources"], saved.config, quiet=True).val_ids.astype("int64"))


def best_bpcs(run: Path, steps: int, cadence: int = 1) -> tuple[float, int, float]:
    """The best held-out bpc the run scored, its step, and the best of those a run evaluating every
    `cadence` steps (and at its last) would have scored."""
    rows = [r for r in read_metrics(run) if r.get("val_bpc") is not None]
    best = min(rows, key=lambda r: r["val_bpc"])
    default = [r["val_bpc"] for r in rows if r["step"] % cadence == 0 or r["step"] == steps]
    return best["val_bpc"], best["step"], min(default)


def report(
    name: str, run: Path, steps: int | None, heldout: torch.Tensor | None, eval_chars: int, cadence: int = 1
) -> str:
    """One table row for a finished run (and its sample, printed); `cadence`: its default --eval-every.
    With `steps` None (a time budget) the row gives the steps made and the best.pt score."""
    model = charlm.load(run)
    forgets = f"{bits_per_char(model, heldout, eval_chars):.3f}" if heldout is not None else "-"
    if steps is None:
        made = read_metrics(run)[-1]["step"]
        best, step, _ = best_bpcs(run, made)
        size = f"{model.config.layers}x{model.config.hidden}"
        line = f"| {name} | {size} | {made:,} | {best:.3f} (step {step:,}) | {forgets} |"
    else:
        best, step, default = best_bpcs(run, steps, cadence)
        line = f"| {name} | {steps:,} | {best:.3f} (step {step:,}) | {default:.3f} | {forgets} |"
    print(line, flush=True)
    print(f"sample of {run}/best.pt (temperature 0.8, random seed 1):\n{charlm.generate(model, '', **SAMPLE)}\n")
    return line


def restart_new_rows(model: CharLM, known: int, how: str, rare_rows: int) -> None:
    """Overwrite the rows of ids >= known: 'zero' leaves charlm's (zero rows, a full head's bias the
    rare mean), 'rare' makes each row the mean of the `rare_rows` rarest known characters' rows (the
    lowest biases of a full head, the last ranks of an adaptive one; `rare_rows` of them), 'fresh' a
    new model's (torch's initialisation)."""
    if how == "zero":
        return
    fresh = CharLM(model.config, model.vocab).to(model.device)
    adaptive = bool(model.config.head_cutoffs)
    head, fresh_head = model.head, fresh.head
    if adaptive:  # the new ids are the last rows of the last cluster's output layer
        head, fresh_head = head.softmax.tail[-1][1], fresh_head.softmax.tail[-1][1]
        rare_ids = torch.argsort(model.head.rank[:known], descending=True)[:rare_rows]
        rare_rows = model.head.rank[rare_ids] - model.head.softmax.cutoffs[-2]
    else:
        rare_ids = rare_rows = torch.argsort(head.bias[:known])[:rare_rows]
    rows = [(model.embed.weight, fresh.embed.weight, rare_ids), (head.weight, fresh_head.weight, rare_rows)]
    if not adaptive:
        rows.append((head.bias, fresh_head.bias, rare_rows))
    extra = model.config.vocab_size - known
    with torch.no_grad():
        for mine, new, rare in rows:
            mine[-extra:] = new[-extra:] if how == "fresh" else mine[rare].mean(0)


def measure_inits(args, folder: Path, base_ids: torch.Tensor) -> None:
    known = len(charlm.load(args.base).vocab)
    steps = int(args.steps.split(",")[0]) if args.steps else 0
    print(
        f"| new rows | {args.text} held-out, at load | base held-out, at load | {args.text} held-out after {steps} steps |"
    )
    print("| --- | ---: | ---: | ---: |")
    for how in INITS:
        options = {"max_steps": max(steps, 1), "max_time": None, "eval_every": args.eval_every, "quiet": True}
        trainer = training_step(options, [args.text], folder / f"init-{how}", init_from=args.base)
        restart_new_rows(trainer.model, known, how, args.rare_rows)
        at_load = [bits_per_char(trainer.model, ids, args.eval_chars) for ids in (trainer.val_ids, base_ids)]
        after = "-"
        if steps:
            trainer.fit()
            after = f"{best_bpcs(trainer.run_dir, steps)[0]:.3f}"
        print(f"| {how} | {at_load[0]:.3f} | {at_load[1]:.3f} | {after} |", flush=True)


def by_time(args: argparse.Namespace, folder: Path, base_ids: torch.Tensor, before: float) -> None:
    """The issue's figures: from scratch with every default and fine-tuned with its defaults, given
    the same --max-time."""
    lines = []
    for minutes in args.minutes.split(","):
        budget = {"max_time": f"{minutes}m", "quiet": True}
        if args.scratch:
            run = folder / f"scratch-{minutes}m"
            charlm.train(args.text, out=run, **budget)
            lines.append(report(f"scratch, defaults, {minutes} min", run, None, None, args.eval_chars))
        for i, spec in enumerate(args.configs or ["-"]):
            run = folder / f"finetune-{minutes}m-{i}"
            charlm.train(args.text, out=run, init_from=args.base, **{**budget, **parse(spec)})
            lines.append(report(f"fine-tuned, {spec}, {minutes} min", run, None, base_ids, args.eval_chars))
    print(f"\n| run | size | steps | {args.text} held-out bpc of best.pt (step) | base held-out bpc |")
    print("| --- | --- | ---: | ---: | ---: |")
    print("\n".join(lines))
    print(f"(base held-out bpc before fine-tuning: {before:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the base run (folder or .pt)")
    parser.add_argument("text", help="the small text")
    parser.add_argument("configs", nargs="*", help="fine-tuning settings, name=value[,name=value...]; -: defaults")
    parser.add_argument("--steps", default="", help="comma-separated budgets in optimizer steps")
    parser.add_argument("--minutes", default="", help="comma-separated budgets in minutes of wall time")
    parser.add_argument("--scratch", action="store_true", help="also train from scratch at each budget")
    parser.add_argument("--init", action="store_true", help="measure the ways of starting new characters' rows")
    parser.add_argument("--eval-every", type=int, default=200, help="score every run this often")
    parser.add_argument("--eval-chars", type=int, default=EVAL_CHARS, help="held-out characters scored at most")
    parser.add_argument("--rare-rows", type=int, default=RARE_ROWS, help="--init: rows the 'rare' start averages")
    parser.add_argument("--out", default="bench/out", help="folder for the runs")
    args = parser.parse_intermixed_args()
    folder = Path(args.out) / f"finetune-{time.strftime('%Y%m%d-%H%M%S')}"
    base_ids = base_heldout(args.base)
    before = bits_per_char(charlm.load(args.base), base_ids, args.eval_chars)
    print(
        f"base {args.base}: held-out bpc {before:.3f} on its own text ({min(len(base_ids), args.eval_chars):,} chars)"
    )
    if args.init:
        measure_inits(args, folder, base_ids)
        return
    if args.minutes:
        by_time(args, folder, base_ids, before)
        return
    base = checkpoint.read(runs.resolve(args.base)).config
    lines = []
    default_cadence = default_eval_every([args.text])  # a run's default --eval-every, scratch or fine-tuned
    for steps in [int(s) for s in args.steps.split(",")]:
        common = {"max_steps": steps, "max_time": None, "eval_every": args.eval_every, "quiet": True}
        if args.scratch:
            run = folder / f"scratch-{steps}"
            charlm.train(args.text, out=run, hidden=base.hidden, layers=base.layers, **common)
            lines.append(report("scratch, defaults", run, steps, None, args.eval_chars, default_cadence))
        for i, spec in enumerate(args.configs or ["-"]):
            run = folder / f"finetune-{steps}-{i}"
            charlm.train(args.text, out=run, init_from=args.base, **{**common, **parse(spec)})
            cadence = parse(spec).get("eval_every", default_cadence)
            lines.append(report(f"fine-tuned, {spec}", run, steps, base_ids, args.eval_chars, cadence))
    print(
        f"\n| run | steps | {args.text} held-out bpc, best of every {args.eval_every} steps | at the run's default "
        "--eval-every | base held-out bpc |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    print("\n".join(lines))
    print(f"(base held-out bpc before fine-tuning: {before:.3f})")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
