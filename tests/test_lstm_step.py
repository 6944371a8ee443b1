"""The per-character step of sampling against the model run over whole windows."""

import pytest
import torch

from charlm import lstm_step
from charlm.lstm_step import FusedLSTMStep, RowStepper
from charlm.model import CharLM, ModelConfig, map_state
from charlm.sampler import generate
from charlm.vocab import Vocab

from .conftest import make_model


def test_fused_step_matches_the_lstm_module(model):
    ids = torch.randint(0, len(model.vocab), (3, 12))
    expected, state = model(ids)
    step = FusedLSTMStep(model, batch=3)
    with torch.no_grad():
        _, primed = model(ids[:, :1])
        for row in range(3):
            step.load_row(row, map_state(lambda s, row=row: s[:, row : row + 1], primed))
        for t in range(1, 12):
            assert torch.allclose(step(ids[:, t]), expected[:, t], atol=1e-5)
    assert torch.allclose(step.state()[1], state[1], atol=1e-5)


def test_bf16_step_stays_close_to_fp32_and_keeps_its_state_in_fp32(model):
    ids = torch.randint(0, len(model.vocab), (4, 30))
    exact, low = FusedLSTMStep(model, batch=4), FusedLSTMStep(model, batch=4, dtype=torch.bfloat16)
    with torch.no_grad():
        for t in range(30):
            reference, logits = exact(ids[:, t]), low(ids[:, t])
            assert logits.dtype == torch.float32 and 0 < (logits - reference).abs().max() < 0.05
    hidden, cell = low.state()
    assert hidden.dtype == cell.dtype == torch.float32
    assert torch.allclose(hidden, exact.state()[0], atol=0.03) and torch.allclose(cell, exact.state()[1], atol=0.03)
    texts = generate(model, "ab", length=40, precision="bf16", random_seed=3, num_samples=2)
    assert all(text.startswith("ab") and len(text) == 42 for text in texts)


def test_bf16_step_packs_weights_for_onednn_and_falls_back_to_plain_products(model, monkeypatch):
    ids = torch.randint(0, len(model.vocab), (4, 20))
    packed = FusedLSTMStep(model, batch=4, dtype=torch.bfloat16)
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert all(p.packed is not None for p in [*packed.products, packed.head])
    monkeypatch.setattr(lstm_step, "onednn_packed", lambda weight, batch: None)
    plain = FusedLSTMStep(model, batch=4, dtype=torch.bfloat16)
    assert all(p.packed is None for p in [*plain.products, plain.head])
    with torch.no_grad():
        for t in range(20):
            assert (packed(ids[:, t]) - plain(ids[:, t])).abs().max() < 0.05


def test_generation_carries_state_instead_of_rerunning_the_prefix(model, monkeypatch):
    calls = []
    original = FusedLSTMStep.__call__

    def spy(self, ids):
        calls.append(ids.shape)
        return original(self, ids)

    monkeypatch.setattr(FusedLSTMStep, "__call__", spy)
    generate(model, "abcde", length=20, random_seed=0)
    assert calls == [(1,)] * 20  # one step per character, each over one character (one sample: not padded)


def test_the_fused_step_of_a_model_with_an_adaptive_head_matches_the_model():
    torch.manual_seed(0)
    vocab = Vocab([chr(0x4E00 + i) for i in range(200)])
    model = CharLM(ModelConfig("lstm", 2, 16, 0.0, 200, (20, 80)), vocab).eval()
    model.head.set_frequencies(torch.arange(200, 0, -1))
    ids = torch.randint(0, 200, (3, 10))
    expected, _ = model(ids)
    step = FusedLSTMStep(model, batch=3)
    with torch.no_grad():
        for t in range(10):
            logits = step(ids[:, t])
            assert torch.allclose(logits, expected[:, t], atol=1e-5)
    texts = generate(model, "", length=30, num_samples=2, random_seed=0)
    assert all(len(text) == 30 and set(text) <= set(vocab.chars) for text in texts)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_row_moved_into_a_freed_place_goes_on_from_its_own_state(cell):
    """A server keeps its live rows at the front: when a row leaves, the last one moves into its place
    (`RowStepper.move`) and reads on from its own hidden and cell state, as if it had never moved."""
    torch.manual_seed(0)
    model = make_model("\nabcdefgh ", cell=cell, layers=2).eval()
    texts = torch.randint(0, len(model.vocab), (3, 10))
    stepper = RowStepper(model, capacity=3)
    for row in range(3):
        stepper.load(row, *stepper.prime(texts[row, :6]))
    stepper.move(2, 0)  # row 0 left; row 2 takes its place
    for t in range(6, 10):
        logits = stepper.step(texts[[2, 1], t])
    with torch.no_grad():
        expected = model(texts[[2, 1]])[0][:, -1]
    assert torch.allclose(logits, expected, atol=1e-5)
