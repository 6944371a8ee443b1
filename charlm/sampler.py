"""Sampling: prime the state with the seed, then one character per step with the state carried.

Each new character costs one step of the recurrent core, never a re-run of the text so far. For an
LSTM that step is `FusedLSTMStep`: a table lookup for layer 0's input, then one matrix product per
layer, into preallocated buffers. (Calling `nn.LSTM` once per character pays its whole dispatch,
about 2 ms on a CPU, for a few microseconds of work.)

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

    Layer 0's input is always one of the vocabulary's embeddings, so its input product is looked up:
    `table[id] = embedding[id] @ W_ih0^T + biases`, computed once for every id. What remains per step
    is one matrix product per layer: layer 0 over its hidden state, layer l > 0 over
    `xh[l] = [input | hidden]` with `[W_ih | W_hh]` concatenated once. Gate rows are reordered once to
    (input, forget, output, cell), so one sigmoid covers the first three.

    With `dtype=torch.bfloat16` the products (weights, `xh`) run in bf16 through oneDNN with each weight
    packed once into its blocked layout, which a CPU with bf16 hardware (AMX) does at several times
    the fp32 rate (the head too: for a 4,447-character Chinese vocabulary at 64 samples, 0.3 ms against
    1.7 ms); the nonlinear part and the cell state stay fp32. In bf16 a sample's last bits can depend
    on the batch around it, so fp32 is the default.
    """

    @torch.no_grad()
    def __init__(self, model: CharLM, batch: int, dtype: torch.dtype = torch.float32):
        core, h = model.core, model.config.hidden
        self.layers = core.num_layers
        order = torch.cat([torch.arange(0, 2 * h), torch.arange(3 * h, 4 * h), torch.arange(2 * h, 3 * h)])

        def weight(name: str, layer: int) -> torch.Tensor:
            return getattr(core, f"{name}_l{layer}")[order]

        biases = [weight("bias_ih", n) + weight("bias_hh", n) for n in range(self.layers)]
        self.table = torch.addmm(biases[0], model.embed.weight, weight("weight_ih", 0).t()).to(dtype)
        matrices = [weight("weight_hh", 0)] + [
            torch.cat([weight("weight_ih", n), weight("weight_hh", n)], 1) for n in range(1, self.layers)
        ]
        self.products = [Product(m, b, dtype, batch) for m, b in zip(matrices, [None, *biases[1:]])]
        self.inputs = [0] + [h] * (self.layers - 1)  # columns of xh[l] before its hidden state
        device = self.table.device
        self.rows = torch.empty(batch, 4 * h, device=device, dtype=dtype)  # this step's table rows
        self.xh = [torch.zeros(batch, size + h, device=device, dtype=dtype) for size in self.inputs]
        self.cell = torch.zeros(self.layers, batch, h, device=device)
        self.gates = torch.empty(batch, 4 * h, device=device)
        self.sigmoids, self.candidate = self.gates[:, : 3 * h], self.gates[:, 3 * h :]
        self.input_gate, self.forget_gate = self.gates[:, :h], self.gates[:, h : 2 * h]
        self.output_gate = self.gates[:, 2 * h : 3 * h]
        self.cell_tanh = torch.empty(batch, h, device=device)
        self.head = Product(model.head.weight, model.head.bias, dtype, batch)
        self.logits = torch.empty(batch, model.head.out_features, device=device)

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
        gates, cell_tanh = self.gates, self.cell_tanh
        for n in range(self.layers):
            rows = torch.index_select(self.table, 0, ids, out=self.rows) if n == 0 else None
            gates.copy_(self.products[n](self.xh[n], add=rows))
            self.sigmoids.sigmoid_()
            self.candidate.tanh_()
            cell = self.cell[n]
            cell.mul_(self.forget_gate).addcmul_(self.input_gate, self.candidate)
            hidden = self.xh[n][:, self.inputs[n] :]
            torch.mul(torch.tanh(cell, out=cell_tanh), self.output_gate, out=hidden)
            if n + 1 < self.layers:
                self.xh[n + 1][:, : self.inputs[n + 1]].copy_(hidden)
        return self.logits.copy_(self.head(hidden))


class Product:
    """`x @ weight^T (+ bias) (+ add)` for a fixed weight. In bf16 on a CPU it goes through oneDNN
    with the weight packed once into oneDNN's blocked layout (measured here for a 1,024 x 2,048 weight
    at batch 64: 230 us, against 380 us for a plain bf16 product and 1,200 us in fp32)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype, batch: int):
        self.bias = None if bias is None else bias.to(dtype)
        self.packed = onednn_packed(weight.to(dtype), batch)
        self.weight_t = weight.t().contiguous().to(dtype) if self.packed is None else None

    def __call__(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        if self.packed is not None:
            if add is None:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
            return torch.ops.mkldnn._linear_pointwise.binary(x, add, self.packed, self.bias, "add")
        base = self.bias if add is None else add if self.bias is None else add + self.bias
        return torch.mm(x, self.weight_t) if base is None else torch.addmm(base, x, self.weight_t)


def onednn_packed(weight: torch.Tensor, batch: int) -> torch.Tensor | None:
    """The bf16 CPU weight in oneDNN's layout for `batch` rows, or None where that is not on offer
    (fp32, a GPU, a torch build without oneDNN or without these ops)."""
    if weight.dtype != torch.bfloat16 or weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch)
        probe, add = torch.zeros(batch, weight.size(1), dtype=weight.dtype), torch.zeros(batch, weight.size(0))
        torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], "")
        torch.ops.mkldnn._linear_pointwise.binary(probe, add.to(weight.dtype), packed, None, "add")
    except (AttributeError, RuntimeError):
        return None
    return packed


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
        logits = self.logits
        if self.recent is not None:
            logits = self.recent.penalize(logits, self.options.repetition_penalty)
        ids = choose(logits, self.options, self.steps, self.uniforms)
        if self.recent is not None:
            self.recent.add(ids)
        self.logits = self.stepper.step(ids)
        self.steps += 1
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
