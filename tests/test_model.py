import pytest
import torch

from charlm import CharLM, Config
from charlm.model import detach_state
from charlm.vocab import Vocab


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_forward_takes_and_returns_state_and_carrying_it_equals_one_long_pass(cell):
    torch.manual_seed(0)
    model = CharLM(Config(cell=cell, layers=2, hidden=16, dropout=0.0), Vocab("abcdef")).eval()
    ids = torch.randint(0, 6, (3, 20))
    whole, _ = model(ids)
    first, state = model(ids[:, :12])
    second, _ = model(ids[:, 12:], state)
    assert whole.shape == (3, 20, 6)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-5)


def test_detached_state_keeps_values_and_drops_history():
    model = CharLM(Config(hidden=8, layers=2), Vocab("ab"))
    _, state = model(torch.zeros(2, 5, dtype=torch.long))
    assert all(s.grad_fn is not None for s in state)
    detached = detach_state(state)
    assert all(d.grad_fn is None and torch.equal(d, s) for d, s in zip(detached, state))


def test_weights_start_as_torch_rnn_modules_start_them():
    model = CharLM(Config(hidden=64, layers=2), Vocab("abc"))
    bound = 1 / 64**0.5
    for name, p in model.core.named_parameters():
        assert p.abs().max() <= bound, name


def test_no_bidirectional_core():
    assert not CharLM(Config(hidden=8), Vocab("ab")).core.bidirectional
