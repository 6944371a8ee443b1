"""Sampling: prime the state with the seed, then choose one character per step, the state carried.

This module is the decoding policy: temperature, top-k, top-p, repetition penalty, stop text,
several samples side by side, co-writing. Running the model one character at a time is
`lstm_step.Stepper`'s job.

Randomness is per sample: sample i draws from its own generator seeded `random_seed + i`, so it is
the same text whether drawn alone or in a batch of many.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Iterator

import torch

from . import threads
from .config import SampleConfig, from_options
from .errors import CharLMError
from .lstm_step import Stepper
from .model import CharLM, inference

UNIFORM_BLOCK = 256  # uniforms drawn per generator at a time
MAX_STEPS_PER_CHAR = 4  # a character spelled as UTF-8 bytes takes up to 4 steps; never loop longer


class Uniforms:
    """Per-sample uniform draws: sample i has its own generator, seeded `seed + i`."""

    def __init__(self, seed: int | None, batch: int):
        base = secrets.randbits(62) if seed is None else seed  # not torch.seed(): that reseeds torch's global RNG
        self.generators = [torch.Generator().manual_seed(base + i) for i in range(batch)]
        self.block, self.used = torch.empty(batch, 0, dtype=torch.float64), 0

    def next(self) -> torch.Tensor:
        if self.used == self.block.size(1):
            draws = [torch.rand(UNIFORM_BLOCK, generator=g, dtype=torch.float64) for g in self.generators]
            self.block, self.used = torch.stack(draws), 0
        self.used += 1
        return self.block[:, self.used - 1]


class RecentCharacters:
    """The last `window` ids of every sample, for the repetition penalty."""

    def __init__(self, prime: torch.Tensor, batch: int, window: int, vocab_size: int):
        self.history = torch.full((batch, window), vocab_size, device=prime.device)  # vocab_size: an empty slot
        recent = prime[-window:]
        self.history[:, : recent.numel()] = recent
        self.position = recent.numel() % window
        self.vocab_size = vocab_size

    def add(self, ids: torch.Tensor) -> None:
        self.history[:, self.position] = ids
        self.position = (self.position + 1) % self.history.size(1)

    def penalize(self, logits: torch.Tensor, penalty: float) -> torch.Tensor:
        return penalize(logits, self.history, penalty, self.vocab_size)


def penalize(
    logits: torch.Tensor, history: torch.Tensor, penalty: float | torch.Tensor, vocab_size: int
) -> torch.Tensor:
    """CTRL's rule: a recent character's positive logit is divided by the penalty, a negative one
    multiplied, so it always becomes less likely. `history` (rows, window) holds each row's recent
    ids (`vocab_size` in an empty slot); `penalty` is one number or one per row, shaped (rows, 1)."""
    seen = torch.zeros(logits.size(0), vocab_size + 1, dtype=torch.bool, device=logits.device)
    seen.scatter_(1, history, True)
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen[:, :vocab_size], penalized, logits)


def choose(logits: torch.Tensor, options: SampleConfig, step: int, uniforms: Uniforms) -> torch.Tensor:
    """Next ids (batch,) from logits (batch, vocab) under the decoding options."""
    if options.greedy:
        return logits.argmax(dim=-1)
    logits = logits.float() / options.temperature_at(step)
    if options.top_k is not None and options.top_k < logits.size(-1):
        kth = torch.topk(logits, options.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if options.top_p is not None and options.top_p < 1:
        probs = nucleus(probs, options.top_p)
    return draw(probs, uniforms.next())


def draw(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One id per row of (unnormalized) probabilities, by inverting its CDF at that row's uniform."""
    cdf = probs.cumsum(dim=-1)
    target = (uniform.to(cdf) * cdf[:, -1]).unsqueeze(1)
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=probs.size(-1) - 1)


def nucleus(probs: torch.Tensor, top_p: float | torch.Tensor) -> torch.Tensor:
    """Keep the smallest set of likeliest characters whose total probability reaches top_p (one
    number, or one per row shaped (rows, 1))."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # probability of the likelier characters
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter_(1, order, sorted_probs)


def sample_config(options: dict) -> SampleConfig:
    return from_options(SampleConfig, options, "sampling option")


class Generation:
    """`num_samples` texts growing side by side from one model state per sample."""

    def __init__(self, model: CharLM, options: SampleConfig):
        self.model, self.options, self.vocab = model, options, model.vocab
        batch = options.num_samples
        dtype = torch.bfloat16 if options.precision == "bf16" else torch.float32
        self.stepper, self.uniforms = Stepper(model, batch, dtype), Uniforms(options.random_seed, batch)
        self.recent: RecentCharacters | None = None
        self.logits: torch.Tensor | None = None
        self.steps = 0

    def feed(self, text: str) -> None:
        """Prime (or, later, extend) every sample's state with `text`."""
        ids = self.vocab.encode(text, what="--seed").to(self.model.device)
        if self.options.repetition_penalty != 1.0 and self.recent is None:
            self.recent = RecentCharacters(
                ids, self.options.num_samples, self.options.repetition_window, len(self.vocab)
            )
        self.logits = self.stepper.prime(ids)

    def run(self) -> Iterator[list[str]]:
        """Yields each step's new text per sample ('' once a sample has `length` characters or has
        produced its stop text) until every sample is done. A step adds one character with a char
        vocabulary, a piece (or nothing yet, mid-way through a character spelled as bytes) with
        sentencepiece. The state ends up holding everything produced."""
        options, batch = self.options, self.options.num_samples
        decode = self.vocab.decoder(batch)
        if self.vocab.one_char_per_id and not options.stop:  # every sample gains one character a step
            for _ in range(options.length):
                yield decode(self.advance())
            return
        made, tails, done = [0] * batch, [""] * batch, [options.length == 0] * batch
        for _ in range(MAX_STEPS_PER_CHAR * options.length):
            if all(done):
                return
            new = decode(self.advance())
            for i, piece in enumerate(new):
                new[i] = "" if done[i] else piece[: options.length - made[i]]
                if options.stop and new[i]:
                    new[i], done[i], tails[i] = cut_at_stop(tails[i], new[i], options.stop)
                made[i] += len(new[i])
                done[i] = done[i] or made[i] >= options.length
            yield new

    def advance(self) -> torch.Tensor:
        """Chooses every sample's next id, steps the model on it, and returns the ids."""
        started, logits = time.perf_counter(), self.logits
        if self.recent is not None:
            logits = self.recent.penalize(logits, self.options.repetition_penalty)
        ids = choose(logits, self.options, self.steps, self.uniforms)
        if self.recent is not None:
            self.recent.add(ids)
        self.logits = self.stepper.step(ids)
        self.steps += 1
        threads.record(time.perf_counter() - started, len(ids), "sample")
        return ids


def cut_at_stop(tail: str, piece: str, stop: str) -> tuple[str, bool, str]:
    """`piece` up to and including the stop text if it completes it (after the text `tail` before
    it), whether it did, and the new tail: the last len(stop) - 1 characters."""
    text = tail + piece
    found = text.find(stop)
    if found >= 0:
        return piece[: found + len(stop) - len(tail)], True, ""
    return piece, False, text[max(0, len(text) - len(stop) + 1) :]


def stream_samples(model: CharLM, seed: str = "", options: SampleConfig | None = None) -> Iterator[list[str]]:
    """Yields the seed for every sample, then each step's new character per sample.
    An empty seed starts at the beginning of a line."""
    options = options or SampleConfig()
    with inference(model):
        generation = Generation(model, options)
        generation.feed(seed or model.vocab.start_text())
        yield [seed] * options.num_samples
        yield from generation.run()


def generate(model: CharLM, seed: str = "", **options) -> list[str]:
    """`num_samples` texts, each the seed and what followed it; options as `SampleConfig`."""
    config = sample_config(options)
    texts: list[list[str]] = [[] for _ in range(config.num_samples)]
    for pieces in stream_samples(model, seed, config):
        for parts, piece in zip(texts, pieces):
            parts.append(piece)
    return ["".join(parts) for parts in texts]


def stream(model: CharLM, seed: str = "", **options) -> Iterator[str]:
    """The first sample's text in pieces as it is made: the seed, then a character at a time."""
    for pieces in stream_samples(model, seed, sample_config(options)):
        if pieces[0]:
            yield pieces[0]


class Conversation:
    """Interactive co-writing: each turn extends the carried state with the user's text, then the
    model continues it. State and transcript run on from turn to turn."""

    def __init__(self, model: CharLM, options: SampleConfig):
        self.model, self.options = model, dataclasses.replace(options, num_samples=1)
        self.generation: Generation | None = None
        self.transcript: list[str] = []

    def turn(self, text: str) -> Iterator[str]:
        with inference(self.model):
            if self.generation is None:
                self.generation = Generation(self.model, self.options)
                text = text or self.model.vocab.start_text()
            if text:
                self.generation.feed(text)
                self.transcript.append(text)
            for pieces in self.generation.run():
                self.transcript.append(pieces[0])
                yield pieces[0]


class RowSampler:
    """The decoding policy for rows that come and go, as a server's continuous batching has them.

    Each row has its own options, its own generator and its own recent characters, kept as tensors
    over the rows, so that one `choose` picks every row's next id. A row set with a sample's options
    and seed draws what that sample of `Generation` draws: its generator is seeded the way `Uniforms`
    seeds sample i (`seed + i`, the caller adds i), and a step's arithmetic is `choose`'s, row by row.
    A temperature list is not on offer here: a row has one temperature, 0 meaning greedy."""

    def __init__(self, capacity: int, vocab_size: int, window: int = SampleConfig.repetition_window):
        self.vocab_size, self.window = vocab_size, window
        self.temperature = torch.ones(capacity, 1)
        self.top_k = torch.full((capacity, 1), vocab_size, dtype=torch.long)
        self.top_p = torch.full((capacity, 1), float("inf"))  # inf: no nucleus
        self.penalty = torch.ones(capacity, 1)
        self.history = torch.full((capacity, window), vocab_size, dtype=torch.long)  # vocab_size: an empty slot
        self.position = torch.zeros(capacity, dtype=torch.long)
        self.generators: list[torch.Generator | None] = [None] * capacity
        self.block = torch.zeros(capacity, UNIFORM_BLOCK, dtype=torch.float64)
        self.used = torch.full((capacity,), UNIFORM_BLOCK, dtype=torch.long)
        self.rows = [self.temperature, self.top_k, self.top_p, self.penalty, self.history, self.position]
        self.rows += [self.block, self.used]

    def set(self, row: int, options: SampleConfig, seed: int, prime: torch.Tensor) -> None:
        """Row `row` starts a sample with these options, drawing from a generator seeded `seed`, after
        the text `prime` (ids; its last characters count for the repetition penalty)."""
        if options.repetition_window != self.window:
            raise CharLMError(f"repetition_window must be {self.window} here, not {options.repetition_window}")
        self.temperature[row] = 0.0 if options.greedy else options.temperature_at(0)
        self.top_k[row] = min(options.top_k or self.vocab_size, self.vocab_size)
        self.top_p[row] = options.top_p if options.top_p is not None and options.top_p < 1 else float("inf")
        self.penalty[row] = options.repetition_penalty
        recent = prime[-self.window :]
        self.history[row] = self.vocab_size
        self.history[row, : recent.numel()] = recent
        self.position[row] = recent.numel() % self.window
        self.generators[row] = torch.Generator().manual_seed(seed)
        self.used[row] = UNIFORM_BLOCK

    def move(self, src: int, dst: int) -> None:
        for tensor in self.rows:
            tensor[dst] = tensor[src]
        self.generators[dst] = self.generators[src]

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """Next ids (rows,) of rows 0..rows-1 from their logits (rows, vocab); the ids join each row's
        recent characters."""
        rows = logits.size(0)
        if bool((self.penalty[:rows] != 1).any()):
            logits = penalize(logits, self.history[:rows], self.penalty[:rows], self.vocab_size)
        temperature = self.temperature[:rows]
        greedy = temperature == 0
        scaled = logits.float() / torch.where(greedy, 1.0, temperature)
        top_k, limited = self.top_k[:rows], self.top_k[:rows] < self.vocab_size
        if bool(limited.any()):
            largest = int(top_k[limited].max())
            kth = torch.topk(scaled, largest, dim=-1).values.gather(1, top_k.clamp(max=largest) - 1)
            scaled = scaled.masked_fill((scaled < kth) & limited, float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        top_p = self.top_p[:rows]
        if bool(torch.isfinite(top_p).any()):
            probs = nucleus(probs, top_p)
        ids = torch.where(greedy.squeeze(1), logits.argmax(dim=-1), draw(probs, self.uniforms(rows)))
        self.history[torch.arange(rows), self.position[:rows]] = ids
        self.position[:rows] = (self.position[:rows] + 1) % self.window
        return ids

    def uniforms(self, rows: int) -> torch.Tensor:
        """This step's uniform of each row, refilling a row's block from its generator as `Uniforms` does."""
        used = self.used[:rows]
        for row in (used == UNIFORM_BLOCK).nonzero().flatten().tolist():
            self.block[row] = torch.rand(UNIFORM_BLOCK, generator=self.generators[row], dtype=torch.float64)
            used[row] = 0
        drawn = self.block[:rows].gather(1, used.unsqueeze(1)).squeeze(1)
        used += 1
        return drawn
