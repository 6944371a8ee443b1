"""The reference cells (the tutorial's equations) against torch's fused modules and the fused sampling
step: all three must compute the same gates, cell states and hidden states; and the equations the docs
write out for a reader, evaluated as written, against the reference cells."""

import ast
import re
from pathlib import Path

import pytest
import torch

from charlm.cells import gru_cell, lstm_cell, rnn_cell
from charlm.lstm_step import FusedLSTMStep

from .conftest import REPO, make_model


def docstrings_as_written(path: Path, function: str) -> str:
    """The module's docstring and `function`'s, indented as the source writes them: Python 3.13's `__doc__`
    drops a function docstring's indent, and with it the one that marks its equations out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    (defined,) = (node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function)
    return f"{ast.get_docstring(tree, clean=False)}\n{ast.get_docstring(defined, clean=False)}"


# Where the cells' equations are written out for a reader: each page's indented blocks of `name = ...` lines.
EQUATION_PAGES = {
    "docs/how-it-works.md": (REPO / "docs/how-it-works.md").read_text(encoding="utf-8"),
    "docs/how-it-works.zh.md": (REPO / "docs/how-it-works.zh.md").read_text(encoding="utf-8"),
    "charlm/cells.py": docstrings_as_written(REPO / "charlm/cells.py", "gru_cell"),
}
GATES = {"lstm": "ifgo", "gru": "rzn"}  # each cell's gates, in the order torch stacks their weight rows


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


def equation_blocks(page: str) -> list[list[tuple[str, str]]]:
    """Each block of equations a page writes (indented `i_t = σ(...)` or `i = sigmoid(...)` lines, a comment
    after two spaces or more), as (name, Python expression) in one notation: x, h_prev and c_prev the step's
    input and old state, c_new and h_new the new state, each weight W_ab a function of the vector it takes."""
    blocks, block = [], []
    for line in [*page.splitlines(), ""]:
        written = re.match(r"\s+([a-z](?:_t|')?) = (.+?)(?:\s{2,}\S.*)?$", line)
        if not written:
            if block:
                blocks.append(block)
            block = []
            continue
        name, expression = written.groups()
        if re.search(r"\b[a-z]_t\b", line):  # the docs' notation: x_t, h_{t-1}, c_{t-1}, c_t, i_t
            renames = [
                (r"h_\{t-1\}", "h_prev"),
                (r"c_\{t-1\}", "c_prev"),
                (r"\b([ch])_t\b", r"\1_new"),
                (r"\b(\w)_t\b", r"\1"),
            ]
        else:  # the docstrings': x, h and c the old state, c' the new one
            renames = [(r"\b([ch])'", r"\1_new"), (r"\b([ch])\b(?![_'])", r"\1_prev")]
        for pattern, renamed in renames:
            expression = re.sub(pattern, renamed, expression)
        expression = re.sub(r"\b(W_\w\w) (\w+)", r"\1(\2)", expression.replace("σ", "sigmoid").replace("⊙", "*"))
        name = re.sub(r"_t$", "", name).replace("'", "")
        block.append(({"c": "c_new", "h": "h_new"}.get(name, name), expression))
    return blocks


def weights_named(w_ih, w_hh, b_ih, b_hh, gates: str) -> dict:
    """W_ia, W_ha, b_ia, b_ha for each gate a, sliced from torch's stacked layout; a plain RNN's W_ih, W_hh."""
    if not gates:
        return {"W_ih": lambda v: v @ w_ih.t(), "W_hh": lambda v: v @ w_hh.t(), "b_ih": b_ih, "b_hh": b_hh}
    size = w_hh.shape[1]
    named = {}
    for k, gate in enumerate(gates):
        rows = slice(k * size, (k + 1) * size)
        named |= {f"W_i{gate}": lambda v, w=w_ih[rows]: v @ w.t(), f"W_h{gate}": lambda v, w=w_hh[rows]: v @ w.t()}
        named |= {f"b_i{gate}": b_ih[rows], f"b_h{gate}": b_hh[rows]}
    return named


@pytest.mark.parametrize("where", EQUATION_PAGES)
def test_the_equations_a_reader_is_given_compute_what_the_reference_cells_compute(where):
    """how-it-works.md, its Chinese twin and cells.py's docstrings write the LSTM's, the GRU's and the RNN's
    equations out for a reader: each is evaluated as written, on the weights of a layer in torch's stacked
    layout, and must give the gates and states the reference cells (and so nn.LSTM) compute."""
    torch.manual_seed(3)
    blocks = equation_blocks(EQUATION_PAGES[where])
    cells = {{"i": "lstm", "r": "gru", "h_new": "rnn"}[block[0][0]]: block for block in blocks}
    assert set(cells) == ({"lstm", "gru"} if where.endswith(".py") else {"lstm", "gru", "rnn"}), where
    x, h, c = torch.randn(3, 5), torch.randn(3, 4), torch.randn(3, 4)
    for cell, block in cells.items():
        gates = GATES.get(cell, "")
        rows = 4 * max(len(gates), 1)  # hidden size 4: one row per gate and cell
        weights = [torch.randn(rows, 5), torch.randn(rows, 4), torch.randn(rows), torch.randn(rows)]
        if cell == "lstm":
            h_new, c_new, reference = lstm_cell(x, h, c, *weights)
            expected = {**dict(zip("ifgo", reference)), "c_new": c_new, "h_new": h_new}
        elif cell == "gru":
            h_new, reference = gru_cell(x, h, *weights)
            expected = {**dict(zip("rzn", reference)), "h_new": h_new}
        else:
            expected = {"h_new": rnn_cell(x, h, *weights)}
        values = {"x": x, "h_prev": h, "c_prev": c, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
        values |= weights_named(*weights, gates)
        for name, expression in block:
            values[name] = eval(expression, {}, values)
        assert [name for name, _ in block] == list(expected), f"{where}: the {cell} equations define {block}"
        for name, value in expected.items():
            assert torch.allclose(values[name], value, atol=1e-6), f"{where}: the {cell}'s {name}"
