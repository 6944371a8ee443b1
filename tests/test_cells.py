"""The reference cells (the tutorial's equations) against torch's fused modules and the fused sampling
step: all three must compute the same gates, cell states and hidden states."""

import pytest
import torch

from charlm.cells import gru_cell, lstm_cell, rnn_cell
from charlm.lstm_step import FusedLSTMStep

from .conftest import make_model


def run_reference(model, ids: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The model's core run with the reference cells, one character and one layer at a time: the
    top layer's outputs (batch, time, hidden) and each layer's final state."""
    core, hidden = model.core, model.config.hidden
    batch, steps = ids.shape
    inputs = model.embed(ids)
    finals = []
    for layer in range(model.config.layers):
        weights = [getattr(core, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h, c = torch.zeros(batch, hidden), torch.zeros(batch, hidden)
        outputs = []
        for t in range(steps):
            if model.config.cell == "lstm":
                h, c, _ = lstm_cell(inputs[:, t], h, c, *weights)
            elif model.config.cell == "gru":
                h, _ = gru_cell(inputs[:, t], h, *weights)
            else:
                h = rnn_cell(inputs[:, t], h, *weights)
            outputs.append(h)
        inputs = torch.stack(outputs, 1)
        finals.append((h, c))
    return inputs, finals


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_reference_cells_compute_what_the_fused_modules_compute(cell):
    torch.manual_seed(0)
    model = make_model("abcdefg", cell=cell, layers=3, hidden=12).eval()
    ids = torch.randint(0, 7, (4, 15))
    with torch.no_grad():
        fused, state = model.core(model.embed(ids))
        reference, finals = run_reference(model, ids)
    assert torch.allclose(reference, fused, atol=1e-5)
    hidden = state[0] if cell == "lstm" else state
    assert torch.allclose(torch.stack([h for h, _ in finals]), hidden, atol=1e-5)
    if cell == "lstm":
        assert torch.allclose(torch.stack([c for _, c in finals]), state[1], atol=1e-5)


def test_lstm_gates_are_in_range_and_make_the_cell_state():
    torch.manual_seed(1)
    x, h, c = torch.randn(5, 6), torch.randn(5, 8), torch.randn(5, 8)
    w_ih, w_hh, b_ih, b_hh = (0.3 * torch.randn(*shape) for shape in ((32, 6), (32, 8), (32,), (32,)))
    new_h, new_c, gates = lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh)
    for gate in (gates.input, gates.forget, gates.output):
        assert ((gate > 0) & (gate < 1)).all()
    assert ((gates.candidate > -1) & (gates.candidate < 1)).all()
    assert torch.allclose(new_c, gates.forget * c + gates.input * gates.candidate)
    assert torch.allclose(new_h, gates.output * torch.tanh(new_c))
    # A forget gate pinned open and an input gate shut keep the cell exactly: the LSTM's memory.
    b_ih[8:16], b_ih[:8] = 100.0, -100.0
    _, kept, _ = lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh)
    assert torch.allclose(kept, c, atol=1e-6)


def test_the_fused_sampling_step_computes_the_reference_cells():
    torch.manual_seed(2)
    model = make_model("abcdefg", layers=2, hidden=16).eval()
    ids = torch.randint(0, 7, (3, 10))
    step = FusedLSTMStep(model, batch=3)
    with torch.no_grad():
        for t in range(10):
            logits = step(ids[:, t])
        reference, finals = run_reference(model, ids)
        expected = model.head(reference[:, -1])
    hidden, cell = step.state()
    assert torch.allclose(logits, expected, atol=1e-5)
    assert torch.allclose(hidden, torch.stack([h for h, _ in finals]), atol=1e-5)
    assert torch.allclose(cell, torch.stack([c for _, c in finals]), atol=1e-5)
