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
        """CTRL's rule: a recent character's positive logit is divided by the penalty, a negative one
        multiplied, so it always becomes less likely."""
        seen = torch.zeros(logits.size(0), self.vocab_size + 1, dtype=torch.bool, device=logits.device)
        seen.scatter_(1, self.history, True)
        penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
        return torch.where(seen[:, : self.vocab_size], penalized, logits)


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
    cdf = probs.cumsum(dim=-1)
    target = (uniforms.next().to(cdf) * cdf[:, -1]).unsqueeze(1)
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=logits.size(-1) - 1)


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of likeliest characters whose total probability reaches top_p."""
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
        threads.record(time.perf_counter() - started, len(ids))
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
