"""A model that fits the time budget: the hidden size when `--hidden` is not given (and, in `fit`,
the dropout and evaluation cadence that follow from the budget: `Config.fitted`).

In a fixed wall time a bigger model learns more per character but sees fewer characters. The sweeps
of `bench/sweep.py` (docs/benchmarks.md, "Model size") found the best validation
bpc where the characters a run gets through are about CHARS_PER_PARAMETER times the parameters whose
training the budget pays for: the recurrent layers, and one head row per *frequent* character (those
covering 90% of the text). A rare character's row learns from its few occurrences however long the
run; counting all 4,447 rows of a Chinese novel's head made the rule pick models too small for it.
The embedding is a lookup and costs almost nothing.

So: time each candidate's training steps on the real batches, predict how many characters it would
see in the budget, and take the largest candidate that still sees enough. Timing is noisy on a busy
machine, so each candidate's speed is the best of a few short windows, and the two sizes either side
of the decision are timed once more before it is made. Batch size stays at its default (16): batch
32 trains a third more characters per second in bf16 at 2x256, yet only tied at equal time on
tinyshakespeare and lost on hongloumeng (bench/results/sweep-5m-batch-regularization-tinyshakespeare.txt).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from . import threads
from .config import Config
from .device import synchronize
from .model import frequent_characters
from .tokens import TokenCorpus
from .trainer import Trainer

CANDIDATES = (128, 192, 256, 384, 512, 768, 1024)
CHARS_PER_PARAMETER = 2.0
NO_BUDGET_HIDDEN = 256  # without --max-time there is no budget to fit: the measured 10-minute default
PROBE_WARMUP = 2  # untimed training steps before a size is timed
PROBE_WINDOWS, PROBE_SECONDS, PROBE_MIN_STEPS = 2, 0.15, 3  # timed windows per size: each this long or longer


def trained_parameters(cell: str, layers: int, hidden: int, head_rows: int) -> int:
    """Weights whose training the budget pays for: every recurrent layer (input and hidden matrices,
    two biases) and `head_rows` rows of the head (the frequent characters'); not the embedding."""
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    recurrent = layers * gates * (2 * hidden * hidden + 2 * hidden)
    return recurrent + hidden * head_rows + head_rows


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
    # The decision rests on the last size that fits and the first that does not: time both again
    # (`speed` keeps the best it has seen), so a hiccup during one window does not move it.
    chosen = len(fitting) - 1
    for candidate in measured[max(chosen, 0) : chosen + 2]:
        candidate.chars_per_second = speed(candidate.hidden)
    fitting = [c for c in measured if c.chars_per_parameter >= CHARS_PER_PARAMETER]
    return (fitting[-1] if fitting else measured[0]).hidden, measured


def describe(chosen: int, measured: list[Candidate]) -> str:
    """One line for the terminal: what was measured and what was picked."""
    tried = ", ".join(f"{c.hidden}: {c.chars_per_second:,.0f} chars/s, {c.chars_per_parameter:.1f}" for c in measured)
    return f"--hidden {chosen} fits the budget (chars per parameter, want >= {CHARS_PER_PARAMETER:g}: {tried})"


class Probe:
    """Training characters per second of each candidate size on the corpus's own batches: real training
    steps of a throwaway trainer per size, kept so a size can be timed again; the best window counts.
    Under torchrun each of `world` processes trains batch_size / world streams, so one rank's share is
    timed and the job's speed is `world` times it (the gradient exchange is not counted). GPU work is
    waited for before the clock is read."""

    def __init__(self, config: Config, corpus: TokenCorpus, world: int = 1):
        self.config, self.corpus, self.world = config, corpus, world
        self.trainers: dict[int, Trainer] = {}
        self.best: dict[int, float] = {}

    def __call__(self, hidden: int) -> float:
        if hidden not in self.trainers:
            share = dataclasses.replace(  # a throwaway trainer never evaluates: no --eval-also text to read
                self.config, hidden=hidden, batch_size=self.config.batch_size // self.world, eval_also=None
            )
            self.trainers[hidden] = Trainer(share, self.corpus)
            for _ in range(PROBE_WARMUP):
                self.trainers[hidden].train_step(0.0)
            if len(self.trainers) == 1:  # time every size with the thread count the CPU can use now
                threads.calibrate(lambda: self.window(self.trainers[hidden]))
        for _ in range(PROBE_WINDOWS):
            self.best[hidden] = max(self.best.get(hidden, 0.0), self.window(self.trainers[hidden]))
        return self.best[hidden]

    def window(self, trial: Trainer) -> float:
        synchronize(trial.device)
        started, steps = time.perf_counter(), 0
        while steps < PROBE_MIN_STEPS or time.perf_counter() - started < PROBE_SECONDS:
            trial.train_step(0.0)
            steps += 1
            if steps >= PROBE_MIN_STEPS:
                synchronize(trial.device)
        seconds = time.perf_counter() - started
        tokens = self.world * steps * trial.config.batch_size * trial.config.seq_len
        return tokens * self.corpus.chars_per_token / seconds


def probe_speed(config: Config, corpus: TokenCorpus, hidden: int, world: int = 1) -> float:
    """One size's training characters per second (see `Probe`)."""
    return Probe(config, corpus, world)(hidden)


def head_rows(corpus: TokenCorpus) -> int:
    """The head rows the rule counts: one per frequent character of the training split."""
    return frequent_characters(torch.from_numpy(corpus.train_counts))


def fit(config: Config, corpus: TokenCorpus, world: int = 1) -> tuple[Config, float | None]:
    """The config with what the budget and the text decide filled in where the user left it unset: the
    hidden size (`fit_hidden`), then dropout and the evaluation cadence (`Config.fitted`, which needs the
    run's speed to know how many times a time budget reads the text), and the training chars/s probed."""
    probed = None
    if config.hidden is None:
        hidden, probed = fit_hidden(config, corpus, world)
        config = dataclasses.replace(config, hidden=hidden)
    elif config.dropout is None and config.max_seconds():
        probed = probe_speed(config, corpus, config.hidden, world)
    planned = config.planned_tokens(probed and probed / corpus.chars_per_token)
    fitted = config.fitted(len(corpus.train_ids), planned)
    if config.dropout is None and not config.quiet:
        passes = (planned or 0.0) / max(len(corpus.train_ids), 1)
        tqdm.write(
            f"--dropout {fitted.dropout:g} fits about {passes:.1f} passes over the training text", file=sys.stderr
        )
    return fitted, probed


def fit_hidden(config: Config, corpus: TokenCorpus, world: int = 1) -> tuple[int, float | None]:
    """The hidden size for a run whose user left it unset, fitted to its time budget, and the training
    chars/s the probe measured for it (None without a budget)."""
    if config.max_seconds() is None:
        return NO_BUDGET_HIDDEN, None
    hidden, measured = measure_sizes(config, corpus, world)
    if not config.quiet:
        tqdm.write(describe(hidden, measured), file=sys.stderr)
    return hidden, next((c.chars_per_second for c in measured if c.hidden == hidden), None)


def measure_sizes(config: Config, corpus: TokenCorpus, world: int = 1) -> tuple[int, list[Candidate]]:
    """Probe the candidate sizes on the corpus and apply the rule for the config's time budget."""
    rows = head_rows(corpus)
    probe = Probe(config, corpus, world)
    return choose_hidden(config.max_seconds(), probe, lambda h: trained_parameters(config.cell, config.layers, h, rows))
