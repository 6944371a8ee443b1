"""How far could an n-gram memory or a cache lift a trained charlm model? An upper bound (issue 19).

    python -m bench.mixture RUN CORPUS [--orders 4,5] [--half-lives 500,2000] [--out FILE]

RUN is a charlm run folder or checkpoint trained on CORPUS (e.g. one of bench.versus's runs).
Scores the held-out text bench.versus scores (the last 10% of CORPUS, every character after the
first) with:
  charlm      the model in one pass, the state carried (each character's probability kept),
  KN-n        interpolated modified Kneser-Ney of order n on the training 90% (charlm/ngram.py),
  cache       the characters of the held-out text already read, each weighted by 0.5 ** (age /
              half-life): a unigram cache (Kuhn and De Mori 1990),
and mixtures p = (1 - a - b) p_charlm + a p_KN + b p_cache. The mixture weights are chosen on the
held-out text itself, from a grid, so each mixture row is an optimistic bound on what such a
component could add, not a result a model would reach: if the bound misses a target, so would the
component.
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import numpy as np
import torch

import charlm
from bench.common import errors_in_one_line, read_corpus, split_at
from charlm.inference_context import inference
from charlm.ngram import KneserNey

WINDOW = 1000  # characters per forward call; the state is carried across calls
WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)


def model_probabilities(model: charlm.CharLM, text: str) -> np.ndarray:
    """The model's probability of each character of `text` after the first, in one pass."""
    ids = model.vocab.encode(text)
    parts, state = [], None
    with inference(model):
        for start in range(0, len(ids) - 1, WINDOW):
            window = ids[start : start + WINDOW + 1]
            nats, state = model(window[None, :-1], state, window[None, 1:])
            parts.append(nats[0].double())
    return torch.exp(-torch.cat(parts)).numpy()


def cache_probabilities(text: str, half_life: float) -> np.ndarray:
    """P(character i | the decayed counts of characters 0..i-1), for each character after the first.
    Instead of decaying every count at each step, each new count weighs `growth` times the one before
    (the same ratios), and all are scaled down together before the numbers overflow."""
    growth, weight, counts, total = 0.5 ** (-1.0 / half_life), 1.0, {}, 0.0
    probabilities = np.zeros(len(text) - 1)
    for i in range(1, len(text)):
        counts[text[i - 1]] = counts.get(text[i - 1], 0.0) + weight
        total += weight
        probabilities[i - 1] = counts.get(text[i], 0.0) / total
        weight *= growth
        if weight > 1e100:
            counts, total, weight = {c: n / weight for c, n in counts.items()}, total / weight, 1.0
    return probabilities


def bits(probabilities: np.ndarray) -> float:
    return float(-np.log2(probabilities).mean())


def best_mixture(base: np.ndarray, others: list[np.ndarray]) -> tuple[float, tuple[float, ...]]:
    """The lowest bits per character over the WEIGHTS grid for each of `others` (summing below 1)."""
    best = (math.inf, ())
    for weights in itertools.product(WEIGHTS, repeat=len(others)):
        if sum(weights) < 1:
            mixed = (1 - sum(weights)) * base + sum(w * p for w, p in zip(weights, others))
            best = min(best, (bits(mixed), weights))
    return best


def describe(mixed: tuple[float, tuple[float, ...]], names: tuple[str, ...]) -> tuple[float, str]:
    """A best_mixture result as (bpc, "KN 0.25, cache 0.02")."""
    value, weights = mixed
    return value, ", ".join(f"{name} {w:g}" for name, w in zip(names, weights))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("corpus")
    parser.add_argument("--orders", default="4,5", help="Kneser-Ney orders, comma-separated")
    parser.add_argument("--half-lives", default="500,2000", help="cache half-lives in characters")
    parser.add_argument("--out", default=None, help="also write the report here")
    args = parser.parse_args()

    text = read_corpus(args.corpus)
    cut = split_at(text)
    train, held_out = text[:cut], text[cut:]
    model = charlm.load(args.run)
    lines = [f"{Path(args.corpus).name}: {len(held_out) - 1:,} held-out characters scored; {args.run}", ""]
    p_model = model_probabilities(model, held_out)
    rows = [("charlm", bits(p_model), "")]
    caches = {h: cache_probabilities(held_out, float(h)) for h in args.half_lives.split(",")}
    for half_life, p_cache in caches.items():
        rows.append(
            (f"charlm + cache (half-life {half_life})", *describe(best_mixture(p_model, [p_cache]), ("cache",)))
        )
    for order in (int(n) for n in args.orders.split(",")):
        kneser_ney = KneserNey(train, len(model.vocab), max_order=order)
        p_ngram = 2.0 ** -kneser_ney.bits(held_out[1:], order, context=held_out[:1])
        rows.append((f"KN-{order} alone", bits(p_ngram), ""))
        rows.append((f"charlm + KN-{order}", *describe(best_mixture(p_model, [p_ngram]), ("KN",))))
        for half_life, p_cache in caches.items():
            mixed = best_mixture(p_model, [p_ngram, p_cache])
            rows.append((f"charlm + KN-{order} + cache ({half_life})", *describe(mixed, ("KN", "cache"))))
    lines += ["| scorer | bpc | mixture weights |", "| --- | ---: | --- |"]
    lines += [f"| {name} | {value:.4f} | {weights} |" for name, value, weights in rows]
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    with errors_in_one_line():
        main()
