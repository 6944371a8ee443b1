"""A model that fits the time budget: the hidden size when `--hidden` is not given.

In a fixed wall time a bigger model learns more per character but sees fewer characters. The sweeps
of `bench/sweep.py` (docs/benchmarks.md, "Model size for the budget") found the best validation
bpc where the characters a run gets through are about CHARS_PER_PARAMETER times the model's trained
parameters (recurrent layers and head; the embedding is a lookup and costs almost nothing). So:
measure each candidate's training speed for a few steps on the real batches, predict how many
characters it would see in the budget, and take the largest candidate that still sees enough.
Batch size stays at its default (16): batch 32 trains a third more characters per second in bf16
at 2x256, yet only tied at equal time on tinyshakespeare and lost on hongloumeng, whose big head
gains no speed from it (bench/results/sweep-5m-batch-regularization-tinyshakespeare.txt).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from tqdm.auto import tqdm

from .config import Config
from .device import synchronize
from .tokens import TokenCorpus
from .trainer import Trainer

CANDIDATES = (128, 192, 256, 384, 512, 768, 1024)
CHARS_PER_PARAMETER = 2.0
NO_BUDGET_HIDDEN = 256  # without --max-time there is no budget to fit: the measured 10-minute default
PROBE_WARMUP, PROBE_STEPS = 2, 4  # untimed and timed training steps per size tried


def trained_parameters(cell: str, layers: int, hidden: int, vocab_size: int) -> int:
    """Weights the optimizer updates densely: every recurrent layer (input and hidden matrices, two
    biases) and the head; not the embedding."""
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    recurrent = layers * gates * (2 * hidden * hidden + 2 * hidden)
    return recurrent + hidden * vocab_size + vocab_size


@dataclass
class Candidate:
    hidden: int
    chars_per_second: float
    parameters: int
    seconds: float

    @property
    def chars_per_parameter(self) -> float:
        return self.chars_per_second * self.seconds / self.parameters


def choose_hidden(
    seconds: float, speed: Callable[[int], float], parameters: Callable[[int], int]
) -> tuple[int, list[Candidate]]:
    """The largest candidate whose predicted characters in `seconds` reach CHARS_PER_PARAMETER times
    its parameters (the smallest candidate if none does), and the candidates measured. Candidates are
    measured smallest first and the search stops at the first that falls short: bigger ones are slower
    and larger, so they would too."""
    measured: list[Candidate] = []
    for hidden in CANDIDATES:
        candidate = Candidate(hidden, speed(hidden), parameters(hidden), seconds)
        measured.append(candidate)
        if candidate.chars_per_parameter < CHARS_PER_PARAMETER:
            break
    fitting = [c for c in measured if c.chars_per_parameter >= CHARS_PER_PARAMETER]
    return (fitting[-1] if fitting else measured[0]).hidden, measured


def describe(chosen: int, measured: list[Candidate]) -> str:
    """One line for the terminal: what was measured and what was picked."""
    tried = ", ".join(f"{c.hidden}: {c.chars_per_second:,.0f} chars/s, {c.chars_per_parameter:.1f}" for c in measured)
    return f"--hidden {chosen} fits the budget (chars per parameter, want >= {CHARS_PER_PARAMETER:g}: {tried})"


def probe_speed(config: Config, corpus: TokenCorpus, hidden: int, world: int = 1) -> float:
    """Training characters per second of a `hidden`-sized model on the corpus's own batches: a few
    real training steps of a throwaway trainer. Under torchrun each of `world` processes trains
    batch_size / world streams, so one rank's share is timed and the job's speed is `world` times it
    (the gradient exchange is not counted). GPU work is waited for before the clock is read."""
    share = dataclasses.replace(config, hidden=hidden, batch_size=config.batch_size // world)
    trial = Trainer(share, corpus)
    for _ in range(PROBE_WARMUP):
        trial.train_step(0.0)
    synchronize(trial.device)
    started = time.perf_counter()
    for _ in range(PROBE_STEPS):
        trial.train_step(0.0)
    synchronize(trial.device)
    seconds = time.perf_counter() - started
    return world * PROBE_STEPS * share.batch_size * config.seq_len * corpus.chars_per_token / seconds


def fit_hidden(config: Config, corpus: TokenCorpus, world: int = 1) -> int:
    """The hidden size for a run whose user left it unset: fitted to its time budget."""
    seconds = config.max_seconds()
    if seconds is None:
        return NO_BUDGET_HIDDEN
    hidden, measured = choose_hidden(
        seconds,
        lambda h: probe_speed(config, corpus, h, world),
        lambda h: trained_parameters(config.cell, config.layers, h, len(corpus.vocab)),
    )
    if not config.quiet:
        tqdm.write(describe(hidden, measured), file=sys.stderr)
    return hidden
