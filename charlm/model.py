"""CharLM: embedding -> stacked LSTM/GRU/RNN (torch's fused kernels) -> head over the vocabulary.

A model carries its architecture (`ModelConfig`) and its vocabulary, never the options it was trained
with: that is all a checkpoint needs to rebuild it for sampling.

The head scores every character of the vocabulary. For a small alphabet it is one linear layer
(`FullHead`). A Chinese novel has thousands of distinct characters, and a full head would then cost
more per character than the whole LSTM; `AdaptiveHead` (an adaptive softmax) spends a full-width row
only on the frequent characters and reaches the rare ones through a cluster token and a narrower
projection, so training computes them only for the few targets that are rare. Both give exact
probabilities over the whole vocabulary.

There is deliberately no bidirectional option: a backward pass over the window would see the very
characters the model has to predict.

The jobs around the model have modules of their own: weight_checks.py (values no trained weight holds),
weight_shapes.py (the size of model a state_dict is of), model_skeleton.py (a model on the meta device,
for checking a checkpoint's weights) and inference_context.py (eval mode in real fp32, shared by threads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import MAXIMA
from .device import cpu_core_dtype
from .errors import CharLMError
from .fields import SHOWN, holds, keywords_named, missing_keys
from .model_inputs import long_ids, lowest_id, refusal
from .vocab import UNSEEN, Vocabulary
from .weight_shapes import state_mismatch

# An LSTM carries (h, c); a GRU or plain RNN carries h. Each is (layers, batch, hidden).
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

CORES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
ADAPTIVE_MIN_VOCAB = 1000  # --head auto: an adaptive head from this many distinct characters up
ADAPTIVE_FEWEST_IDS = 4  # --head adaptive: a smaller vocabulary has no rare ids worth a cluster (plan refuses it)
HEAD_DIVISION = 4  # each cluster of the adaptive head is this many times narrower than the one before
HEAD_COVERAGE = (0.9, 0.98)  # the adaptive head's clusters end where the ranked characters cover these shares
RARE_ROWS = 16  # a full head's new character starts with the mean bias of this many of its rarest characters


@keywords_named
@dataclass(frozen=True)
class ModelConfig:
    """A model's architecture, its `.config`: its recurrent `cell` (lstm, gru or rnn), `layers`,
    `hidden` units per layer, `dropout` and `vocab_size`, and an adaptive head's `head_cutoffs` (its
    clusters' edges in frequency rank; (): a full head). Training options (learning rate, budget, ...)
    live in `charlm.Config`.

    Raises CharLMError for a keyword that is not one of its fields, or a field missing.
    """

    cell: str
    layers: int
    hidden: int
    dropout: float
    vocab_size: int
    head_cutoffs: tuple[int, ...] = ()  # the adaptive head's cluster edges, in frequency rank; (): a full head

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "head_cutoffs": list(self.head_cutoffs)}

    def head_text(self, unit: str) -> str:
        """The output layer as `charlm info` shows it, so that a run given `--head auto` says which head it
        got. An adaptive head's clusters, most frequent first, each with the width its rows have. `unit`: what
        an id is, "characters" or a sentencepiece model's "tokens" (the config does not know)."""
        if not self.head_cutoffs:
            return f"full, a row of width {self.hidden} for each of {self.vocab_size:,} {unit}"
        edges = [0, *self.head_cutoffs, self.vocab_size]
        sizes = [end - start for start, end in itertools.pairwise(edges)]
        widths = [self.hidden // HEAD_DIVISION**i for i in range(len(sizes))]
        rest = " and ".join(f"{size:,} at {width}" for size, width in zip(sizes[1:], widths[1:]))
        return f"adaptive, {sizes[0]:,} frequent {unit} at width {widths[0]}, then clusters of {rest}"

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """A stored description (a checkpoint's, config.json's "model"); a key lost from it is named as a
        record's field is (`no 'hidden', 'dropout'`: `fields.missing_keys`), so its reader knows what to put back."""
        required = [f.name for f in dataclasses.fields(cls) if f.name != "head_cutoffs"]
        if not isinstance(values, dict):  # a tensor's [name] is a torch warning, then an IndexError
            raise CharLMError(f"the model description is damaged: expected {', '.join(required)}")
        if missing := missing_keys(values, required):
            raise CharLMError(f"the model description is damaged: {missing}")
        cutoffs = values.get("head_cutoffs", [])  # anything but a list is said by `problem`
        config = cls(
            **{name: values[name] for name in required},
            head_cutoffs=tuple(cutoffs) if isinstance(cutoffs, list) else cutoffs,
        )
        if problem := config.problem():
            raise CharLMError(f"the model description is damaged: {problem}")
        return config

    def problem(self) -> str | None:
        """What keeps a model from being built of this config, or None: a cell torch does not have, or a
        size outside `config.MAXIMA`. Checked before a stored description allocates anything (a hidden size of
        10**12 would otherwise be an out-of-memory crash), and before a config made by hand stops deep
        inside torch (a hidden size of -1: "Trying to create tensor with negative dimension")."""
        if self.cell not in CORES:
            return f"unknown cell {self.cell!r} (one of {', '.join(CORES)})"
        limits = {"layers": MAXIMA["layers"], "hidden": MAXIMA["hidden"], "vocab_size": 2**31 - 1}
        for name, most in limits.items():
            value = getattr(self, name)
            if not holds(value, int) or not 1 <= value <= most:
                return f"{name} must be an integer from 1 to {most}, not {value!r}"
        if not holds(self.dropout, float) or not 0 <= self.dropout < 1:
            return f"dropout must be in [0, 1), not {self.dropout!r}"
        cutoffs = self.head_cutoffs
        if (
            not isinstance(cutoffs, (tuple, list))
            or not all(holds(cutoff, int) for cutoff in cutoffs)
            or list(cutoffs) != sorted(set(cutoffs))
            or not 0 < min(cutoffs, default=1)
        ):
            return f"head_cutoffs {list(cutoffs) if isinstance(cutoffs, tuple) else cutoffs!r} are not rising ranks"
        if cutoffs and cutoffs[-1] >= self.vocab_size:
            return f"head_cutoffs {list(cutoffs)} reach past vocab_size {self.vocab_size}"
        return None


class CharLM(nn.Module):
    """The model, a plain `torch.nn.Module`: ids -> embedding -> `layers` recurrent layers -> a head
    scoring every next id. `charlm.train` and `charlm.load` return one.

    It is built from its architecture (its `.config`, a `charlm.ModelConfig`) and its vocabulary alone
    (its `.vocab`: `encode(text)` gives a tensor of ids, `decode(ids)` the text), so a checkpoint
    rebuilds it for sampling.

    Raises CharLMError for a config that is not a `charlm.ModelConfig` or one no model can be built of
    (an unknown cell, a size out of range), a vocabulary that is not one (a model's `.vocab`), or a
    config whose vocab_size is not the vocabulary's size; `load_state_dict` for the state of a model of
    another size (naming both sizes), where torch listed the shape of every weight.
    """

    def __init__(self, config: ModelConfig, vocab: Vocabulary):
        super().__init__()
        check_parts(config, vocab)
        self.config, self.vocab = config, vocab
        self.embed = Embedding(config.vocab_size, config.hidden)
        # Weights keep torch's RNN initialisation: uniform in +-1/sqrt(hidden).
        self.core = CORES[config.cell](
            config.hidden,
            config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,  # between layers: one layer has none
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        if config.head_cutoffs:
            self.head = AdaptiveHead(config.hidden, config.vocab_size, config.head_cutoffs)
        else:
            self.head = FullHead(config.hidden, config.vocab_size)

    def forward(
        self, ids: torch.Tensor, state: State | None = None, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """`logits, state = model(ids, state)`, as with `nn.LSTM`: ids (batch, time) -> logits (batch,
        time, vocab) and the state after the last character, from which the next call goes on (state
        None: the start).

        Given `targets` (batch, time), the first result is instead each target's negative log-likelihood
        in nats (batch, time): what training and evaluation need, without a full softmax where the head
        can avoid one. Inputs may live anywhere and be of any integer dtype (the caller's ids are often
        on the CPU, a corpus's uint16): they are moved to the model's device, where the results are.

        Returns (logits or nats, state): the state a tensor h for a GRU or RNN, a tuple (h, c) for an
        LSTM, each (layers, batch, hidden).

        Raises CharLMError for ids that are not a tensor of integers (a numpy array or list: torch.as_tensor
        it first), not (batch, time) or (time,), empty, or outside 0 to len(model.vocab) - 1 (-1, a
        character never seen, is read in eval mode); a state that is not what the model returned for ids
        of this batch; targets not of the ids' shape or outside the vocabulary. On a GPU, ids already there
        are not checked first: an id out of range there is CUDA's device-side assert.

        A state is taken in the weights' dtype: one read under autocast is bf16 or fp16, and the
        recurrent core outside autocast stops on a state of another dtype than its weights.
        """
        device, dtype, size = self.device, self.embed.weight.dtype, self.config.vocab_size
        given = ids, state, targets
        try:
            ids = long_ids(ids, device, lowest_id(self), size)
            state = map_state(lambda s: s.to(device, dtype), state)
            with core_autocast(self.core, device):
                out, state = self.core(self.embed(ids), state)
            out = self.drop(out)
            if targets is None:
                return self.head.logits(out), state
            return self.head.nats(out, long_ids(targets, device, 0, size, "targets")), state
        except CharLMError:
            raise
        except Exception:  # torch's error from deep inside: said as the caller's argument, where that is at fault
            if problem := refusal(self, *given):
                raise problem from None
            raise

    @property
    def device(self) -> torch.device:
        """Where the weights are, and the results of a call: `charlm.load(..., device=...)` chose it."""
        return self.embed.weight.device

    def num_parameters(self) -> int:
        """How many weights the model has, as `charlm info` and `charlm train` count them."""
        return sum(p.numel() for p in self.parameters())

    def architecture(self) -> str:
        """`2x256 lstm`: layers x hidden and the cell, as the CLI prints a model."""
        return f"{self.config.layers}x{self.config.hidden} {self.config.cell}"

    def load_state_dict(self, state_dict: Mapping[str, object], strict: bool = True, assign: bool = False):
        """torch's, but a state of another model's size is one line naming both sizes, where torch
        listed a paragraph of every weight's shapes (docs/python.md shows the call to copy a model)."""
        if problem := state_mismatch(self, state_dict, strict):
            raise CharLMError(f"charlm.CharLM.load_state_dict: {problem}")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def head_cutoffs(head: str, counts: torch.Tensor) -> tuple[int, ...]:
    """The adaptive head's cluster edges for `--head` and the training text's count of each id: () for a
    full head. The frequent characters covering HEAD_COVERAGE[0] of the text get full-width rows; the
    next ones up to HEAD_COVERAGE[1] a quarter-width cluster; the rest a sixteenth-width one. Under
    ADAPTIVE_FEWEST_IDS ids: a full head, whatever `head`."""
    if head == "full" or (head == "auto" and len(counts) < ADAPTIVE_MIN_VOCAB) or len(counts) < ADAPTIVE_FEWEST_IDS:
        return ()
    edges = [frequent_characters(counts, share) for share in HEAD_COVERAGE]
    return tuple(sorted({min(edge, len(counts) - 1) for edge in edges}))


def frequent_characters(counts: torch.Tensor, share: float = HEAD_COVERAGE[0]) -> int:
    """How many of the most frequent ids it takes to cover `share` of the text (at least 1)."""
    covered = torch.cumsum(torch.sort(counts.double(), descending=True).values, 0) / max(counts.sum().item(), 1)
    return max(1, int(torch.searchsorted(covered, share).item()) + 1)


def narrowest_hidden(cutoffs: tuple[int, ...]) -> int:
    """The smallest hidden size whose adaptive head of `cutoffs` gives each cluster a width: each is HEAD_DIVISION
    times narrower than the one before, rounded down by torch, and a cluster 0 wide scores its ids alike
    whatever the context. 1 for a full head."""
    return HEAD_DIVISION ** len(cutoffs)


def auto_head_reason(cutoffs: tuple[int, ...], size: int, unit: str = "characters") -> str:
    """Why `head_cutoffs("auto", ...)` gave `cutoffs` for a vocabulary of `size` ids: said of the head it gave,
    not worked out again, so the reason cannot name another head than the model has. The rule counts the
    vocabulary's ids, `unit`: characters, or a sentencepiece model's tokens (not its distinct characters)."""
    chosen = "adaptive" if cutoffs else "full"
    return f"--head auto chose {chosen}: a vocabulary of {size:,} {unit} (adaptive from {ADAPTIVE_MIN_VOCAB:,})"


def check_parts(config: ModelConfig, vocab: Vocabulary) -> None:
    """A model's config and vocabulary as `CharLM` takes them, or a CharLMError saying which is wrong, where
    torch would stop building a layer ("'dict' object has no attribute 'vocab_size'", "negative dimension")."""
    if not isinstance(config, ModelConfig):
        hint = "; charlm.ModelConfig.from_dict(config) reads model.config.to_dict()" if isinstance(config, dict) else ""
        raise CharLMError(f"charlm.CharLM: config must be a charlm.ModelConfig, not {SHOWN.repr(config)}{hint}")
    if problem := config.problem():
        raise CharLMError(f"charlm.CharLM: no model can be built of this config: {problem}")
    if not isinstance(vocab, Vocabulary):
        raise CharLMError(
            f"charlm.CharLM: vocab must be a vocabulary, a model's .vocab (charlm.vocab.Vocab(characters) makes "
            f"one), not {SHOWN.repr(vocab)}"
        )
    if config.vocab_size != len(vocab):
        raise CharLMError(
            f"charlm.CharLM: config.vocab_size is {config.vocab_size} but the vocabulary has {len(vocab)} ids: give "
            "the config and vocabulary of one model (model.config with model.vocab), or a config made for this "
            "vocabulary (vocab_size=len(vocab))"
        )


class Embedding(nn.Embedding):
    """The id -> vector lookup, which also reads UNSEEN: a character the model knows nothing about, as
    the zero vector, the row `grow_vocab` gives a fine-tuning run's new characters. A model with the
    unknown symbol never gets UNSEEN (its vocabulary maps such characters to the symbol); docs/benchmarks.md,
    "Text the model has never seen", measures the zero row against the alternatives."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.training:  # training text is the vocabulary's own: no UNSEEN, no extra work
            return super().forward(ids)
        known = ids != UNSEEN
        return super().forward(torch.where(known, ids, 0)) * known.unsqueeze(-1).to(self.weight.dtype)


def grow_vocab(model: CharLM, vocab: Vocabulary) -> CharLM:
    """A copy of `model` over `vocab`, which extends the model's vocabulary (the same ids first, then
    new characters: `Vocab.extended`). Known characters keep every weight, so the logits of the known
    characters are unchanged. Each new character starts as a rare one, not as noise: zero embedding
    and head rows, so it reads as nothing in particular and its logit is the same in every context, that
    of a rare character (see the heads' `grown_state`). docs/benchmarks.md, "Fine-tuning", measures
    this against fresh random rows and against rows copied from the rarest characters."""
    extra = len(vocab) - model.config.vocab_size
    if extra < 0 or vocab.first(model.config.vocab_size) != model.vocab:
        raise CharLMError("the new vocabulary does not extend the model's: its first ids must be the model's")
    grown = CharLM(dataclasses.replace(model.config, vocab_size=len(vocab)), vocab).to(model.device)
    state = dict(model.state_dict())
    state["embed.weight"] = _appended(state["embed.weight"], extra)
    state.update(model.head.grown_state(extra, "head."))
    grown.load_state_dict(state)
    return grown.train(model.training)


def _appended(rows: torch.Tensor, extra: int, value: float = 0.0) -> torch.Tensor:
    """`rows` with `extra` more rows of `value`."""
    return torch.cat([rows, torch.full((extra, *rows.shape[1:]), value, dtype=rows.dtype, device=rows.device)])


class FullHead(nn.Linear):
    """One row of weights per character: logits = W h + b."""

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        return self(out)

    def grown_state(self, extra: int, prefix: str) -> dict:
        """`extra` new rows: zero weights, and the mean bias of the RARE_ROWS lowest biases (the
        characters least likely out of context)."""
        rare_bias = torch.sort(self.bias.detach()).values[:RARE_ROWS].mean().item()
        return {
            prefix + "weight": _appended(self.weight.detach(), extra),
            prefix + "bias": _appended(self.bias.detach(), extra, rare_bias),
        }

    def nats(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(out).flatten(0, -2), targets.reshape(-1), reduction="none").view_as(targets)


class AdaptiveHead(nn.Module):
    """An adaptive softmax (Grave et al. 2017, `nn.AdaptiveLogSoftmaxWithLoss`) over characters ranked
    by frequency. The first `cutoffs[0]` characters and one token per rare cluster share a full-width
    layer; each rare cluster is reached through a projection HEAD_DIVISION times narrower than the one
    before it. `rank` maps a vocabulary id to its frequency rank, so ids themselves never change.

    It always computes in its weights' dtype (fp32, as charlm trains and loads them), outside autocast:
    torch's adaptive softmax copies each cluster's log-probabilities into a buffer of its input's dtype,
    and under autocast those differ (bf16 on a CPU, fp32 against cuDNN's fp16 LSTM output on a GPU),
    which fails. The head is a small share of a step, and fp32 log-probabilities are what the loss
    wants anyway."""

    def __init__(self, hidden: int, vocab_size: int, cutoffs: tuple[int, ...]):
        super().__init__()
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(hidden, vocab_size, list(cutoffs), div_value=float(HEAD_DIVISION))
        self.register_buffer("rank", torch.arange(vocab_size))

    def set_frequencies(self, counts: torch.Tensor) -> None:
        """Rank the vocabulary by how often each id occurs (ties: by id), before training starts."""
        order = torch.sort(-counts.double(), stable=True).indices
        self.rank[order] = torch.arange(len(order), device=self.rank.device)

    def grown_state(self, extra: int, prefix: str) -> dict:
        """New characters are ranked last, after the rarest, so their rows join the output layer of
        the last (rarest) cluster, as zero rows: a logit of zero within that cluster in every context."""
        state = {prefix + name: value for name, value in self.state_dict().items()}
        last = f"{prefix}softmax.tail.{len(self.softmax.tail) - 1}.1.weight"
        state[last] = _appended(state[last], extra)
        size = len(self.rank)
        state[prefix + "rank"] = torch.cat([self.rank, torch.arange(size, size + extra, device=self.rank.device)])
        return state

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the whole vocabulary, in id order (valid logits: their softmax is the
        distribution)."""
        with autocast_off(out):
            ranked = self.softmax.log_prob(self.rows(out))
        return ranked[:, self.rank].view(*out.shape[:-1], -1)

    def nats(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each target's negative log-likelihood. index_select, not indexing: `rank[-1]` would score a target
        of -1 as the last id, where index_select refuses it (and is the faster of the two)."""
        ranked = self.rank.index_select(0, targets.reshape(-1))
        with autocast_off(out):
            return -self.softmax(self.rows(out), ranked).output.view_as(targets)

    def rows(self, out: torch.Tensor) -> torch.Tensor:
        """The recurrent output as (rows, hidden) in the weights' dtype (a model cast with `.half()`: fp16)."""
        return out.reshape(-1, out.size(-1)).to(self.softmax.head.weight.dtype)


def autocast_off(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off on `tensor`'s device: what runs inside computes in the dtype it is given."""
    return torch.autocast(tensor.device.type, enabled=False)


def core_autocast(core: nn.Module, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off around the recurrent core where a CPU's autocast would compute it in fp32 anyway (a
    GRU) or cannot run it at all (an LSTM without oneDNN's bf16 kernel, `device.cpu_core_dtype`): the
    embedding before it and the head after it still run under the caller's autocast."""
    lowered = device.type == "cpu" and torch.is_autocast_enabled("cpu")
    if lowered and cpu_core_dtype(type(core), torch.get_autocast_dtype("cpu")) == torch.float32:
        return torch.autocast("cpu", enabled=False)
    return contextlib.nullcontext()


def map_state(fn: Callable[[torch.Tensor], torch.Tensor], state: State | None) -> State | None:
    """Apply `fn` to each tensor of a state: (h, c) for an LSTM, h otherwise."""
    if state is None:
        return None
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def detach_state(state: State | None) -> State | None:
    """Keep the state's values, cut its history: TBPTT's gradient stops at the window edge.
    The kept state is fp32 whatever autocast computed it in, so a checkpoint resumes in any precision."""
    return map_state(lambda s: s.detach().float(), state)
