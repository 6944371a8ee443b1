"""Sampling: prime the state with the seed, then one character per step with the state carried.

Each new character costs one step of the recurrent core, never a re-run of the text so far. For an
LSTM that step is `FusedLSTMStep`: per layer one matrix product over [input, hidden] with the two
weight matrices concatenated once, into preallocated buffers. (Calling `nn.LSTM` once per character
pays its whole dispatch, about 2 ms on a CPU, for a few microseconds of work.)

Randomness is per sample: sample i draws from its own generator seeded `random_seed + i`, so it is
the same text whether drawn alone or in a batch of many.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator

import torch

from .config import SampleConfig, from_options
from .model import CharLM, State, inference, map_state

PRIME_CHUNK = 2048  # a long seed is primed in chunks of this many characters, one forward pass each
UNIFORM_BLOCK = 256  # uniforms drawn per generator at a time
MAX_STEPS_PER_CHAR = 4  # a character spelled as UTF-8 bytes takes up to 4 steps; never loop longer


class FusedLSTMStep:
    """One character per call for a stacked LSTM at inference, in preallocated buffers.

    Layer l keeps `xh[l] = [input | hidden]`, so its gates are one `addmm` with the weight
    `[W_ih | W_hh]^T`. Gate order is torch's: input, forget, cell, output.

    With `dtype=torch.bfloat16` the matrix products (weights, `xh`) run in bf16, which a CPU with
    bf16 hardware does at over twice the fp32 rate once many samples share a step; the gates' nonlinear
    part and the cell state stay fp32. (At one sample bf16 is slower: the products are then bound by
    memory and dispatch, not arithmetic.)
    """

    def __init__(self, model: CharLM, batch: int, dtype: torch.dtype = torch.float32):
        core, hidden = model.core, model.config.hidden
        self.layers, self.hidden = core.num_layers, hidden
        self.inputs = [core.input_size] + [hidden] * (core.num_layers - 1)
        self.weights = [
            torch.cat([getattr(core, f"weight_ih_l{n}"), getattr(core, f"weight_hh_l{n}")], 1)
            .t()
            .contiguous()
            .to(dtype)
            for n in range(self.layers)
        ]
        self.biases = [
            (getattr(core, f"bias_ih_l{n}") + getattr(core, f"bias_hh_l{n}")).to(dtype) for n in range(self.layers)
        ]
        self.embedding = model.embed.weight
        self.head_weight = model.head.weight.t().contiguous().to(dtype)
        self.head_bias = model.head.bias.to(dtype)
        device, vocab = self.embedding.device, model.head.out_features
        self.xh = [torch.zeros(batch, size + hidden, device=device, dtype=dtype) for size in self.inputs]
        self.cell = torch.zeros(self.layers, batch, hidden, device=device)
        self.products = torch.empty(batch, 4 * hidden, device=device, dtype=dtype)
        self.head_out = torch.empty(batch, vocab, device=device, dtype=dtype)
        fp32 = dtype == torch.float32  # then the products are the gates and the head's output the logits
        self.gates = self.products if fp32 else torch.empty(batch, 4 * hidden, device=device)
        self.logits = self.head_out if fp32 else torch.empty(batch, vocab, device=device)
        self.scratch = torch.empty(batch, hidden, device=device)

    def load_state(self, state: State) -> None:
        h, c = state
        for n in range(self.layers):
            self.xh[n][:, self.inputs[n] :].copy_(h[n])
        self.cell.copy_(c)

    def state(self) -> State:
        hidden = torch.stack([self.xh[n][:, self.inputs[n] :] for n in range(self.layers)]).float()
        return hidden, self.cell.clone()

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (batch,) -> logits (batch, vocab); the buffer is reused by the next call."""
        h = self.hidden
        self.xh[0][:, : self.inputs[0]].copy_(self.embedding[ids])
        gates = self.gates
        for n in range(self.layers):
            torch.addmm(self.biases[n], self.xh[n], self.weights[n], out=self.products)
            if gates is not self.products:
                gates.copy_(self.products)
            gates[:, : 2 * h].sigmoid_()
            gates[:, 2 * h : 3 * h].tanh_()
            gates[:, 3 * h :].sigmoid_()
            cell = self.cell[n]
            cell.mul_(gates[:, h : 2 * h]).addcmul_(gates[:, :h], gates[:, 2 * h : 3 * h])
            torch.tanh(cell, out=self.scratch).mul_(gates[:, 3 * h :])
            self.xh[n][:, self.inputs[n] :].copy_(self.scratch)
            if n + 1 < self.layers:
                self.xh[n + 1][:, :h].copy_(self.scratch)
        last = self.xh[-1][:, self.inputs[-1] :]  # the top layer's new hidden state, in the products' dtype
        torch.addmm(self.head_bias, last, self.head_weight, out=self.head_out)
        if self.logits is not self.head_out:
            self.logits.copy_(self.head_out)
        return self.logits


class Stepper:
    """The model run forward for `batch` samples, keeping their state between calls."""

    def __init__(self, model: CharLM, batch: int, dtype: torch.dtype = torch.float32):
        self.model, self.batch = model, batch
        self.fused = FusedLSTMStep(model, batch, dtype) if model.config.cell == "lstm" else None
        self.state: State | None = None

    def prime(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed a text (1-D ids) to every sample; returns the logits after its last character.
        From a fresh state every sample reads the same text, so it is read once and the state shared."""
        if self.fused is not None and self.state is not None:
            self.state = self.fused.state()
        fresh = self.state is None
        rows = 1 if fresh else self.batch
        for chunk in ids.unsqueeze(0).expand(rows, -1).split(PRIME_CHUNK, dim=1):
            logits, self.state = self.model(chunk, self.state)
        logits = logits[:, -1]
        if fresh and self.batch > 1:
            logits = logits.expand(self.batch, -1)
            self.state = map_state(lambda s: s.expand(-1, self.batch, -1).contiguous(), self.state)
        if self.fused is not None:
            self.fused.load_state(self.state)
        return logits

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(ids)
        logits, self.state = self.model(ids.unsqueeze(1), self.state)
        return logits[:, -1]


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
    logits = logits.double() / options.temperature_at(step)
    if options.top_k is not None and options.top_k < logits.size(-1):
        kth = torch.topk(logits, options.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if options.top_p is not None and options.top_p < 1:
        probs = nucleus(probs, options.top_p)
    cdf = probs.cumsum(dim=-1)
    target = (uniforms.next().to(cdf.device) * cdf[:, -1]).unsqueeze(1)
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
        ids = self.vocab.encode(text, what="--seed").to(self.model.head.weight.device)
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
        made, tails, done = [0] * batch, [""] * batch, [options.length == 0] * batch
        for _ in range(MAX_STEPS_PER_CHAR * options.length):
            if all(done):
                return
            logits = self.logits
            if self.recent is not None:
                logits = self.recent.penalize(logits, options.repetition_penalty)
            ids = choose(logits, options, self.steps, self.uniforms)
            new = decode(ids)
            for i, piece in enumerate(new):
                new[i] = "" if done[i] else piece[: options.length - made[i]]
                if options.stop and new[i]:
                    new[i], done[i], tails[i] = cut_at_stop(tails[i], new[i], options.stop)
                made[i] += len(new[i])
                done[i] = done[i] or made[i] >= options.length
            if self.recent is not None:
                self.recent.add(ids)
            self.logits = self.stepper.step(ids)
            self.steps += 1
            yield new


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
