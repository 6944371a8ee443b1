"""The recurrent cells written out as the equations of a tutorial, gate by gate, in plain torch.

Training and sampling never call these: they run torch's fused `nn.LSTM` / `nn.GRU` / `nn.RNN` and,
for sampling an LSTM, `lstm_step.FusedLSTMStep`. These cells are the reference both are tested
against (tests/test_cells.py), and the plain form a reader can follow; `charlm inspect` runs them
too (`tracing.trace`), since it shows the gates that the fused kernels never expose. Weights are the
ones the model holds, in torch's layout: an LSTM layer's `weight_ih` stacks the rows of the input
gate, forget gate, candidate and output gate (i, f, g, o); a GRU's stacks reset, update and new (r, z, n).

For one character x_t with the previous hidden state h and cell state c, an LSTM layer computes

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)    input gate: how much of the candidate to write
    f = sigmoid(W_if x + b_if + W_hf h + b_hf)    forget gate: how much of the old cell to keep
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)       candidate: what could be written
    o = sigmoid(W_io x + b_io + W_ho h + b_ho)    output gate: how much of the cell to show
    c' = f * c + i * g                            the cell state: a running memory, added to
    h' = o * tanh(c')                             the hidden state: what the next layer and the head see
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class LSTMGates(NamedTuple):
    """An LSTM step's gates, each (batch, hidden), in the order torch stacks their weight rows: the
    order and names a trace gives them (`tracing.GATE_NAMES`)."""

    input: torch.Tensor
    forget: torch.Tensor
    candidate: torch.Tensor
    output: torch.Tensor


class GRUGates(NamedTuple):
    """A GRU step's gates and candidate, as `LSTMGates`."""

    reset: torch.Tensor
    update: torch.Tensor
    new: torch.Tensor


def lstm_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, LSTMGates]:
    """One LSTM step for a batch: x (batch, input), h and c (batch, hidden) -> h', c' and the gates."""
    pre = x @ w_ih.t() + b_ih + h @ w_hh.t() + b_hh  # all four gates' pre-activations, (batch, 4 * hidden)
    pre_i, pre_f, pre_g, pre_o = pre.chunk(4, dim=1)
    gates = LSTMGates(torch.sigmoid(pre_i), torch.sigmoid(pre_f), torch.tanh(pre_g), torch.sigmoid(pre_o))
    c = gates.forget * c + gates.input * gates.candidate
    h = gates.output * torch.tanh(c)
    return h, c, gates


def gru_cell(
    x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> tuple[torch.Tensor, GRUGates]:
    """One GRU step: no separate cell state; the update gate z blends the old state with a new one.

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)       reset gate: how much old state the new one sees
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)       update gate: how much old state to keep
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))    the new state on offer
    h' = (1 - z) * n + z * h
    """
    in_r, in_z, in_n = (x @ w_ih.t() + b_ih).chunk(3, dim=1)
    hid_r, hid_z, hid_n = (h @ w_hh.t() + b_hh).chunk(3, dim=1)
    reset, update = torch.sigmoid(in_r + hid_r), torch.sigmoid(in_z + hid_z)
    new = torch.tanh(in_n + reset * hid_n)
    return (1 - update) * new + update * h, GRUGates(reset, update, new)


def rnn_cell(
    x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> torch.Tensor:
    """The plain (Elman) RNN step: h' = tanh(W_ih x + b_ih + W_hh h + b_hh). No gates: every step
    rewrites the whole state, which is why gradients through many steps vanish or explode."""
    return torch.tanh(x @ w_ih.t() + b_ih + h @ w_hh.t() + b_hh)
