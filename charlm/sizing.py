"""The size probe and the size rules the planner (plan.py) applies when `--hidden` or `--batch-size`
is not given.

In a fixed wall time a bigger model learns more per character but sees fewer characters. The sweeps
of `bench/sweep.py` (docs/benchmarks.md, "Model size") found the best validation bpc where the
characters a run gets through are about CHARS_PER_PARAMETER times the parameters whose training the
budget pays for: the recurrent layers, and one head row per *frequent* character (those
covering 90% of the text). A rare character's row learns from its few occurrences however long the
run; counting all 4,447 rows of a Chinese novel's head made the rule pick models too small for it.
The embedding is a lookup and costs almost nothing.

So: time each candidate's training steps on the real batches, predict how many characters it would
see in the budget, and take the largest candidate that still sees enough. A run that `--max-steps`
ends sooner sees only that many steps' characters, whatever its speed: the smaller count is the one
the rule uses (`fit_to_chars` alone when there is no time budget: then nothing needs timing). Timing
is noisy on a busy machine, so each candidate's speed is the best of a few short windows, and the two
sizes either side of the decision are timed once more before it is made.

Under torchrun the speed that counts is the job's, not one process's times the processes: they share
the machine's cores and exchange gradients every step (on 2 cores, one rank's speed doubled planned
38,900 chars/s for a job that trained at 21,200). So every rank times each size at once, rank 0 naming
it (`follow`), with the gradient all-reduce in the step, and they take the slowest rank's figure.

On a CPU the batch stays at 16: batch 32 trains a third more characters per second in bf16 at 2x256,
yet only tied at equal time on tinyshakespeare and lost on hongloumeng
(bench/results/sweep-5m-batch-regularization-tinyshakespeare.txt). A GPU is far from busy at 16
streams, so there `choose_batch` doubles the streams while each doubling still buys speed, before
the hidden size is fitted with the chosen batch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import threads, train_state
from .config import Config
from .device import synchronize
from .distributed import SINGLE, Ranks
from .model import frequent_characters
from .tokens import TokenCorpus
from .train_state import TrainState

CANDIDATES = (128, 192, 256, 384, 512, 768, 1024)
SMALLEST_SHORT = ", the smallest size, is short of characters"  # what the line says when no size fits
CHARS_PER_PARAMETER = 2.0
BATCH_PROBE_HIDDEN = 256  # a GPU's batch is chosen before the size is fitted, at this one: the 10-minute runs' size
PROBE_WARMUP = 2  # untimed training steps before a size is timed
PROBE_WINDOWS, PROBE_SECONDS, PROBE_MIN_STEPS = 2, 0.15, 3  # timed windows per size: each this long or longer
PROBE_DROPOUT = 0.1  # a size whose dropout is still to be planned is timed at this (any p > 0 costs the same)
DEFAULT_BATCH_SIZE = 16  # streams when --batch-size is unset: on a CPU, and where the GPU rule starts
BATCH_CANDIDATES = tuple(DEFAULT_BATCH_SIZE * 2**k for k in range(6))  # streams a GPU run may get: 16 to 512
BATCH_GAIN = 1.15  # a doubling of the streams is kept while it raises chars/s by more than this factor


def trained_parameters(cell: str, layers: int, hidden: int, head_rows: int) -> int:
    """Weights whose training the budget pays for: every recurrent layer (input and hidden matrices,
    two biases) and `head_rows` rows of the head (the frequent characters'); not the embedding."""
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    recurrent = layers * gates * (2 * hidden * hidden + 2 * hidden)
    return recurrent + hidden * head_rows + head_rows


@dataclass
class Candidate:
    """A hidden size as the rule weighs it: its measured speed against the parameters it must train."""

    hidden: int
    chars_per_second: float
    parameters: int
    seconds: float
    max_chars: float | None = None  # the characters --max-steps lets any size see

    @property
    def chars(self) -> float:
        """The characters this size would train on: the time budget's at its speed, or fewer by --max-steps."""
        return min(self.chars_per_second * self.seconds, self.max_chars or float("inf"))

    @property
    def chars_per_parameter(self) -> float:
        return self.chars / self.parameters


def choose_hidden(
    seconds: float, speed: Callable[[int], float], parameters: Callable[[int], int], max_chars: float | None = None
) -> tuple[int, list[Candidate]]:
    """The largest candidate whose predicted characters in `seconds` (at most `max_chars`) reach
    CHARS_PER_PARAMETER times its parameters (the smallest candidate if none does), and the candidates
    measured. Candidates are measured smallest first and the search stops at the first that falls
    short: bigger ones are slower and larger, so they would too."""
    measured: list[Candidate] = []
    for hidden in CANDIDATES:
        candidate = Candidate(hidden, speed(hidden), parameters(hidden), seconds, max_chars)
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


def describe(chosen: int, measured: list[Candidate], processes: int = 1) -> str:
    """One line for the terminal (and `charlm info`, in parentheses): what was picked, the rule, and
    what was measured (by how many processes together). No parentheses of its own: info's row would read
    "128 (... (training chars per parameter, want >= 2: 128 at 47,237 chars/s: 1.7))"."""
    # ", " between sizes, each "SIZE gets R per parameter at S chars/s", whose S groups thousands with commas
    tried = ", ".join(
        f"{c.hidden} gets {per_parameter(c.chars_per_parameter)} per parameter at {c.chars_per_second:,.0f} chars/s"
        for c in measured
    )
    capped = measured and measured[0].max_chars and measured[-1].chars == measured[-1].max_chars
    limit = f"; --max-steps stops every size at {measured[0].max_chars:,.0f} characters" if capped else ""
    fits = any(c.hidden == chosen and c.chars_per_parameter >= CHARS_PER_PARAMETER for c in measured)
    verdict = " fits the budget: the largest size" if fits else f"{SMALLEST_SHORT} in the budget: no size"
    return (
        f"--hidden {chosen}{verdict} with {CHARS_PER_PARAMETER:g} or more training characters per parameter; "
        f"measured{measured_together(processes)}: {tried}{limit}"
    )


def per_parameter(ratio: float) -> str:
    """Training characters per parameter as a line shows them: 1.7, or 0.028 where 0.0 said nothing."""
    return f"{ratio:.1f}" if ratio >= 0.1 or ratio == 0 else f"{ratio:.2g}"


def measured_together(processes: int) -> str:
    """What a reason adds when its speeds are a torchrun job's (`Probe`); nothing for one process."""
    return f" with {processes} processes training together" if processes > 1 else ""


def fit_to_chars(chars: float, parameters: Callable[[int], int]) -> tuple[int, str]:
    """The largest candidate that `chars` training characters give CHARS_PER_PARAMETER per parameter
    (the smallest if none), and why: a run limited by --max-steps alone sees that many at any speed."""
    fitting = [h for h in CANDIDATES if chars >= CHARS_PER_PARAMETER * parameters(h)]
    hidden = fitting[-1] if fitting else CANDIDATES[0]
    verdict = " fits --max-steps" if fitting else f"{SMALLEST_SHORT} under --max-steps"
    return hidden, (
        f"--hidden {hidden}{verdict}: its {chars:,.0f} training characters are "
        f"{per_parameter(chars / parameters(hidden))} per parameter, {CHARS_PER_PARAMETER:g} or more wanted"
    )


def choose_batch(
    speed: Callable[[int], float], candidates: tuple[int, ...] = BATCH_CANDIDATES
) -> tuple[int, list[tuple[int, float]]]:
    """The streams to train side by side: from the first candidate, double while the next one trains
    more than `BATCH_GAIN` times as many characters per second (more streams are nearly free on an idle GPU;
    past that point they only make each step, and so each update, cost more). Returns the choice and
    the (batch, chars/s) measured."""
    measured = [(candidates[0], speed(candidates[0]))]
    for batch in candidates[1:]:
        measured.append((batch, speed(batch)))
        if measured[-1][1] <= BATCH_GAIN * measured[-2][1]:
            return measured[-2][0], measured
    return measured[-1][0], measured


def describe_batch(chosen: int, measured: list[tuple[int, float]], where: str = "") -> str:
    """One line for the terminal: the streams chosen, and the streams tried (`where`: at which size,
    on which device), without parentheses, which `charlm info` puts around it."""
    tried = ", ".join(f"{batch} streams at {speed:,.0f} chars/s" for batch, speed in measured)
    return (
        f"--batch-size {chosen}: more streams gained less than {BATCH_GAIN - 1:.0%} chars/s; measured{where}: {tried}"
    )


@dataclass(frozen=True)
class ProbeRequest:
    """Rank 0's word to the other ranks while it plans: time this (hidden, batch) of `config`, with the
    head the plan chose, with me."""

    config: Config
    head_cutoffs: tuple[int, ...]
    key: tuple[int, int]


class Probe:
    """Training characters per second of a (hidden size, batch) on the corpus's own batches: real
    training steps on a bare training state per pair (a model with the plan's head, `head_cutoffs`, its
    optimizer and the windows; no run folder, no trainer), kept so a pair can be timed again; the best
    window counts. Under torchrun
    rank 0 calls it and every other rank times the same pair at once (`follow`), as the job will train
    it: each rank its share of the streams, with DistributedDataParallel's gradient all-reduce in the
    step; a window's speed is the slowest rank's. GPU work is waited for before the clock is read."""

    def __init__(self, config: Config, corpus: TokenCorpus, ranks: Ranks = SINGLE, *, head_cutoffs: tuple[int, ...]):
        if config.dropout is None:
            config = dataclasses.replace(config, dropout=PROBE_DROPOUT)
        self.config, self.corpus, self.ranks, self.head_cutoffs = config, corpus, ranks, head_cutoffs
        self.states: dict[tuple[int, int], TrainState] = {}
        self.best: dict[tuple[int, int], float] = {}

    def __call__(self, hidden: int, batch: int | None = None) -> float:
        key = (hidden, batch or self.config.batch_size or DEFAULT_BATCH_SIZE)
        if self.ranks.active:  # on rank 0: the others, in `follow`, time the pair with it
            self.ranks.broadcast_object(ProbeRequest(self.config, self.head_cutoffs, key))
        return self.measure(key)

    def speed(self, hidden: int, batch: int) -> float:
        """The pair's best speed so far, timed now only if it never was (the batch rule may have timed it)."""
        return self.best.get((hidden, batch)) or self(hidden, batch)

    def measure(self, key: tuple[int, int]) -> float:
        """The (hidden, batch) pair `key`'s best speed so far, after PROBE_WINDOWS more windows."""
        speeds = []  # this pair's windows at the thread count the run gets
        if key not in self.states:
            pair = dataclasses.replace(self.config, hidden=key[0], batch_size=key[1])
            self.states[key] = train_state.build(pair, self.corpus, self.ranks, head_cutoffs=self.head_cutoffs)
            for _ in range(PROBE_WARMUP):
                train_state.train_step(self.states[key], 0.0)
            if len(self.states) == 1:  # time every size with the thread count the CPU can use now; the
                # calibration's windows at the count it keeps time this pair, as many on every rank
                speeds = threads.calibrate(lambda: self.window(self.states[key]))
        speeds += [self.window(self.states[key]) for _ in range(PROBE_WINDOWS - len(speeds))]
        self.best[key] = max(self.best.get(key, 0.0), *speeds)
        return self.best[key]

    def window(self, state: TrainState) -> float:
        """The job's chars/s over PROBE_MIN_STEPS steps or more, until PROBE_SECONDS have passed on rank
        0's clock: every rank must take as many steps (each ends in an all-reduce), so rank 0 says when."""
        synchronize(state.device)
        started, steps, done = time.perf_counter(), 0, False
        while not done:
            train_state.train_step(state, 0.0)
            steps += 1
            if steps >= PROBE_MIN_STEPS:
                synchronize(state.device)
                done = self.ranks.from_leader([time.perf_counter() - started >= PROBE_SECONDS], state.device)[0]
        seconds = time.perf_counter() - started
        tokens = steps * state.config.batch_size * state.config.seq_len  # the global batch: every rank's streams
        return self.ranks.slowest(tokens * self.corpus.chars_per_token / seconds)


def follow(corpus: TokenCorpus, ranks: Ranks) -> object:
    """On a rank other than 0 while rank 0 plans: time each pair it names together with it, on a `Probe`
    that mirrors rank 0's (a plan uses one), until it sends something else (its plan), which is returned."""
    probe = None
    while isinstance(message := ranks.broadcast_object(None), ProbeRequest):
        if probe is None or (probe.config, probe.head_cutoffs) != (message.config, message.head_cutoffs):
            probe = Probe(message.config, corpus, ranks, head_cutoffs=message.head_cutoffs)
        probe.measure(message.key)
    return message


def head_rows(corpus: TokenCorpus) -> int:
    """The head rows the rule counts: one per frequent character of the training split."""
    return frequent_characters(torch.from_numpy(corpus.train_counts))


def step_chars(config: Config, corpus: TokenCorpus) -> float | None:
    """The training characters --max-steps allows (None: unset)."""
    if not config.max_steps:
        return None
    return config.max_steps * (config.batch_size or DEFAULT_BATCH_SIZE) * config.seq_len * corpus.chars_per_token


def parameters_of(config: Config, corpus: TokenCorpus) -> Callable[[int], int]:
    """The rule's parameter count of each hidden size, for the config's cell and layers on this corpus."""
    rows = head_rows(corpus)
    return lambda hidden: trained_parameters(config.cell, config.layers, hidden, rows)


def measure_sizes(config: Config, corpus: TokenCorpus, probe: Probe) -> tuple[int, list[Candidate]]:
    """Time the candidate sizes with `probe` (the plan's, of the head the run will train) at the config's
    batch, and apply the rule for its time budget, or for --max-steps' characters where those are fewer."""
    return choose_hidden(
        config.max_seconds(),
        lambda hidden: probe(hidden, config.batch_size),
        parameters_of(config, corpus),
        max_chars=step_chars(config, corpus),
    )
