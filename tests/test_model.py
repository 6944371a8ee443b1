import pytest
import torch

from charlm.errors import CharLMError
from charlm.model import CharLM, ModelConfig, detach_state
from charlm.vocab import Vocab

from .conftest import make_model


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_forward_takes_and_returns_state_and_carrying_it_equals_one_long_pass(cell):
    torch.manual_seed(0)
    model = make_model("abcdef", cell=cell).eval()
    ids = torch.randint(0, 6, (3, 20))
    whole, _ = model(ids)
    first, state = model(ids[:, :12])
    second, _ = model(ids[:, 12:], state)
    assert whole.shape == (3, 20, 6)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-5)


def test_detached_state_keeps_values_and_drops_history():
    model = make_model("ab", hidden=8)
    _, state = model(torch.zeros(2, 5, dtype=torch.long))
    assert all(s.grad_fn is not None for s in state)
    detached = detach_state(state)
    assert all(d.grad_fn is None and torch.equal(d, s) for d, s in zip(detached, state))


def test_weights_start_as_torch_rnn_modules_start_them():
    model = make_model("abc", hidden=64)
    bound = 1 / 64**0.5
    for name, p in model.core.named_parameters():
        assert p.abs().max() <= bound, name


def test_no_bidirectional_core():
    assert not make_model("ab", hidden=8).core.bidirectional


def test_the_model_carries_its_architecture_not_the_training_options():
    model = make_model("abc", cell="gru", layers=3, hidden=8, dropout=0.2)
    assert model.config == ModelConfig("gru", 3, 8, 0.2, 3)
    assert ModelConfig.from_dict(model.config.to_dict()) == model.config
    with pytest.raises(CharLMError, match="expects 4 ids but the vocabulary has 3"):
        CharLM(ModelConfig("lstm", 1, 8, 0.0, 4), Vocab("abc"))
    with pytest.raises(CharLMError, match="unknown cell 'transformer'"):
        ModelConfig.from_dict({**model.config.to_dict(), "cell": "transformer"})
