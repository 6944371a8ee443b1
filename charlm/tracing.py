"""Tracing: everything a model computes on a text, character by character: its predictions, every
layer's gates, cell states and hidden states, as numpy arrays a notebook can plot (`charlm inspect`'s
figures; the predictions are scored as scoring.py scores them).

Training runs torch's fused `nn.LSTM`, which hands back only the top layer's outputs. To look inside
every layer, `trace` runs the layers one at a time with the same fused kernel (each layer's weights
in a one-layer module), which gives each layer's hidden states h_1..h_T. The gates then take one
batched call of the reference cell (`cells.lstm_cell`) for the whole text, the T steps as a batch of
T rows, since the gates at step t depend only on the layer's input x_t and the hidden state h_{t-1},
both known by then. The cell states follow from the one recurrence left, c_t = f_t * c_{t-1} + i_t * g_t,
a few elementwise operations per character. tests/test_model.py checks all of it against
`cells.lstm_cell` stepped one character at a time and against `nn.LSTM`'s outputs. A GRU has reset and
update gates and a candidate (`cells.gru_cell`) but no cell state; a plain RNN has neither gates nor
cell state: their traces say so with `cells is None` and fewer gates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .arguments import check_reading, reading_text
from .cells import GRUGates, LSTMGates, gru_cell, lstm_cell
from .inference_context import inference
from .model import CharLM
from .scoring import TOP, Scores, Surprise, checked_top, guesses, ids_with_context, mean_bits, preview, score, tokens_of

GATE_NAMES = {"lstm": LSTMGates._fields, "gru": GRUGates._fields, "rnn": ()}  # the reference cells' names, in order


@dataclass(repr=False)
class Trace:
    """A model's run over a text. T is the number of tokens read (characters, for a character
    vocabulary), L the layers, H the hidden size, V the vocabulary size. Row t belongs to token t:
    `probs[t]` is what the model predicted for it before reading it; the states are those after
    reading it."""

    cell: str  # "lstm", "gru" or "rnn"
    tokens: list[str]  # (T,) the text as the model read it (normalized), one string per token
    ids: np.ndarray  # (T,) int64 vocabulary ids
    bits: np.ndarray  # (T,) float64: -log2 of the probability given to token t (NaN where none was, or unseen)
    probs: np.ndarray | None  # (T, V) float32: the distribution token t was drawn against; None if not asked
    hidden: np.ndarray  # (L, T, H) float32: h after reading token t, every layer
    cells: np.ndarray | None  # (L, T, H) float32: the LSTM's cell state c (not squashed); None for GRU and RNN
    gates: dict[str, np.ndarray]  # name -> (L, T, H) float32, names as GATE_NAMES[cell]; {} for an RNN

    @property
    def bpc(self) -> float:
        """Bits per character over the tokens that were predicted."""
        return mean_bits(self.bits, self.tokens)

    def __repr__(self) -> str:
        shapes = [
            f"{name} {getattr(self, name).shape}"
            for name in ("probs", "hidden", "cells")
            if getattr(self, name) is not None
        ]
        gates = f"gates {', '.join(self.gates)}" if self.gates else "no gates"
        return f"Trace({self.cell}, {preview(self.tokens, self.bits)}; {'; '.join(shapes)}; {gates})"


def trace(model: CharLM, text: str, context: str | None = None, probs: bool = True, warn: bool = True) -> Trace:
    """Run `model` over `text` and record everything it computes. The model first reads `context`
    (None: the start of a line, as sampling from an empty seed does), so the first character is
    predicted too; with `context=""` it starts cold and token 0 has no prediction. `probs=False`
    leaves out the (T, V) distributions, which for a big vocabulary are most of the memory. `warn`: as
    `scoring.ids_with_context`."""
    return read_through("tracing.trace", model, text, context, probs, warn, top=0)[0]


def trace_and_surprise(
    model: CharLM, text: str, context: str | None = None, probs: bool = True, warn: bool = True, top: int = TOP
) -> tuple[Trace, Surprise]:
    """`trace`, and `scoring.surprise` with its `top` guesses, from one run of the model over the text: the
    same head on the same top layer's outputs, so `charlm inspect`, which shows both, reads the text once."""
    traced, scores = read_through("tracing.trace_and_surprise", model, text, context, probs, warn, top)
    return traced, Surprise(traced.tokens, scores.bits, guesses(model, scores))


def read_through(
    function: str, model: CharLM, text: str, context: str | None, probs: bool, warn: bool, top: int
) -> tuple[Trace, Scores]:
    """The trace and the scores with `top` guesses that `function`, the public one called, returns: its
    errors name it, as the caller wrote it."""
    check_reading(function, model, text, context, probs=probs, warn=warn)
    top = checked_top(function, top)
    with reading_text(function, text):  # "notes.txt" names a file: the name is read, with a warning
        ids, start, read = ids_with_context(model, text, context, warn=warn)
    with inference(model):
        inputs, layers = model.embed(ids), []
        for number in range(model.config.layers):
            layers.append(trace_layer(model, number, inputs))
            inputs = layers[-1].hidden  # what the next layer, and after the last the head, reads
        scores = score(model, inputs, ids, start, top=top, keep_probs=probs)

    def stack(parts: list[torch.Tensor]) -> np.ndarray:
        """Each layer's (T, H), the context's steps left out, as one (L, T, H) array."""
        return torch.stack([p[start:] for p in parts]).float().cpu().numpy()

    text_ids = ids[start:].cpu()
    names = GATE_NAMES[model.config.cell]
    gates = {name: stack([layer.gates[k] for layer in layers]) for k, name in enumerate(names)}
    traced = Trace(
        cell=model.config.cell,
        tokens=tokens_of(model, read, text_ids),
        ids=text_ids.numpy(),
        bits=scores.bits,
        probs=scores.probs,
        hidden=stack([layer.hidden for layer in layers]),
        cells=stack([layer.cells for layer in layers]) if model.config.cell == "lstm" else None,
        gates=gates,
    )
    return traced, scores


class LayerTrace(NamedTuple):
    """One layer's run over the text, each tensor (T, H)."""

    hidden: torch.Tensor  # h after each token: the next layer's input
    cells: torch.Tensor | None  # an LSTM's c after each token; None for a GRU or RNN
    gates: tuple[torch.Tensor, ...]  # in GATE_NAMES order; () for an RNN


def trace_layer(model: CharLM, layer: int, x: torch.Tensor) -> LayerTrace:
    """One layer over inputs x (T, input) from a zero state: its hidden states, its cell states for an
    LSTM and its gates."""
    weights = layer_weights(model, layer)
    hidden, _ = one_layer(model, layer)(x[None])
    hidden = hidden[0]
    previous = torch.cat([torch.zeros_like(hidden[:1]), hidden[:-1]])  # h_{t-1}, zero before the first step
    if model.config.cell == "lstm":
        _, _, gates = lstm_cell(x, previous, torch.zeros_like(previous), *weights)  # gates ignore c
        return LayerTrace(hidden, cell_states(gates.forget, gates.input * gates.candidate), tuple(gates))
    if model.config.cell == "gru":
        _, gates = gru_cell(x, previous, *weights)
        return LayerTrace(hidden, None, tuple(gates))
    return LayerTrace(hidden, None, ())


def cell_states(forget: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
    """c_t = f_t * c_{t-1} + (i_t * g_t), from c_0 = 0: the one step of an LSTM that needs a loop."""
    cells = torch.empty_like(written)
    c = torch.zeros_like(written[0])
    for t in range(len(written)):
        c = forget[t] * c + written[t]
        cells[t] = c
    return cells


def layer_weights(model: CharLM, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Layer `layer`'s (W_ih, W_hh, b_ih, b_hh) in torch's stacked layout, as `cells.py` takes them."""
    return tuple(getattr(model.core, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def one_layer(model: CharLM, layer: int) -> nn.RNNBase:
    """A one-layer copy of the core's layer `layer`: the same fused kernel on the same weights, of their
    float type (a model.double() or .bfloat16() reads its inputs in it)."""
    core, weights = model.core, layer_weights(model, layer)
    single = type(core)(core.input_size, core.hidden_size, num_layers=1, batch_first=True)
    single.to(device=model.device, dtype=weights[0].dtype)
    single.load_state_dict(dict(zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), weights)))
    return single
