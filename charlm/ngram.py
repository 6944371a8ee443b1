"""A character n-gram model, the baseline `charlm inspect` measures an LSTM against.

Interpolated modified Kneser-Ney smoothing (Chen & Goodman 1998, "An Empirical Study of Smoothing
Techniques for Language Modeling", section 3.5), the strongest of the classic n-gram smoothers. For a
character w after a history h of n-1 characters:

    P_n(w | h) = max(c(hw) - D(c(hw)), 0) / c(h.)  +  gamma(h) * P_{n-1}(w | h minus its first character)
    gamma(h)   = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / c(h.)

c(hw) counts hw in the training text, c(h.) sums it over every w, and N1, N2, N3+ count the
characters seen once, twice and three or more times after h: the discounted mass goes to the
shorter history. An unseen history leaves the shorter one's estimate as it is. The discounts come
from the counts of counts n1..n4 of each order: Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1,
D2 = 2 - 3Y n3/n2, D3 = 3 - 4Y n4/n3. Every order below the highest counts not occurrences but
distinct left neighbours (Kneser-Ney's continuation counts: how many different characters precede
hw), and the chain ends in a uniform distribution over the vocabulary, so no character gets zero.

One `KneserNey` holds every order up to `max_order`; `probability(history, char, order)` scores
with any of them, so one fit compares orders.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from .bars import progress_bar

MAX_ORDER = 7  # held-out bpc levels off from 6-grams on (docs/inspect.md); each order costs memory
# Characters of training text the baseline is fitted on, at most (the first so many): every order's counts
# are Python dicts, and a run on a 90M-character text decoded all of it into one string (1.8 GB, 40 s
# before the bar) to fit them, 35-40 s an order. Measured fits (docs/inspect.md): tinyshakespeare's first
# 1M characters 4.5 s and 0.28 GB; hongloumeng's 879k (Chinese: many more distinct n-grams) 20 s and
# 1.9 GB. Above both, so runs their size fit on all their text.
MAX_TRAIN_CHARS = 2_000_000


@dataclass
class Level:
    """One order's counts (raw or continuation), its discounts and, per history, the count total
    and the discounted mass: (c(h.), D1 N1(h.) + D2 N2(h.) + D3 N3+(h.))."""

    counts: dict[str, int]
    discounts: tuple[float, float, float]
    histories: dict[str, tuple[int, float]]

    @classmethod
    def fit(cls, counts: dict[str, int]) -> Level:
        discounts = modified_discounts(Counter(c for c in counts.values() if c <= 4))
        totals, mass = defaultdict(int), defaultdict(float)
        for gram, count in counts.items():
            totals[gram[:-1]] += count
            mass[gram[:-1]] += discounts[min(count, 3) - 1]
        return cls(counts, discounts, {h: (totals[h], mass[h]) for h in totals})

    def discount(self, count: int) -> float:
        return self.discounts[min(count, 3) - 1] if count else 0.0


def modified_discounts(counts_of_counts: Counter) -> tuple[float, float, float]:
    """D1, D2, D3+ from n1..n4 (how many n-grams occur exactly once, twice, three and four times)."""
    n1, n2, n3, n4 = (counts_of_counts.get(k, 0) for k in (1, 2, 3, 4))
    fallback = (0.75, 0.75, 0.75)  # plain absolute discounting, where the text is too small to estimate
    if min(n1, n2, n3, n4) == 0:
        return fallback
    y = n1 / (n1 + 2 * n2)
    estimated = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return estimated if all(0 < d <= k for k, d in zip((1, 2, 3), estimated)) else fallback


class KneserNey:
    """Interpolated modified Kneser-Ney over the characters of `text`, every order 1..max_order."""

    def __init__(self, text: str, vocab_size: int, max_order: int = MAX_ORDER, quiet: bool = True):
        self.max_order, self.uniform = max_order, 1.0 / max(vocab_size, len(set(text)), 1)
        # An order's raw counts serve when it is the highest; below that, its continuation counts, which
        # come from the order above's distinct n-grams.
        self.highest, self.lower = {}, {}
        for order in progress_bar(range(max_order, 0, -1), desc="n-gram model", unit="order", disable=quiet):
            raw = Counter(text[i : i + order] for i in range(len(text) - order + 1))
            self.highest[order] = Level.fit(raw)
            if order > 1:
                self.lower[order - 1] = Level.fit(Counter(gram[1:] for gram in raw))

    def probability(self, history: str, char: str, order: int) -> float:
        """P(char | the last order-1 characters of history) under the model of that order."""
        p = self.uniform
        for k in range(1, order + 1):
            if k - 1 > len(history):
                break
            level = self.highest[k] if k == order else self.lower[k]
            context = history[len(history) - (k - 1) :] if k > 1 else ""
            total, mass = level.histories.get(context, (0, 0.0))
            if total:
                count = level.counts.get(context + char, 0)
                p = (max(count - level.discount(count), 0.0) + mass * p) / total
        return p

    def bits(self, text: str, order: int, context: str = "\n") -> np.ndarray:
        """Bits spent on each character of `text`, read after `context` as the LSTM reads it."""
        full, start = context + text, len(context)
        return np.array(
            [
                -math.log2(self.probability(full[max(0, i - order + 1) : i], full[i], order))
                for i in range(start, len(full))
            ]
        )
