import pytest
import torch

from charlm.errors import CharLMError
from charlm.model import CharLM, ModelConfig, detach_state, head_cutoffs
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


def zipf_counts(size: int) -> torch.Tensor:
    """Character counts falling off as 1/rank, as in a novel, in a shuffled id order."""
    counts = (10_000 / torch.arange(1, size + 1)).round().long() + 1
    return counts[torch.randperm(size, generator=torch.Generator().manual_seed(0))]


def test_big_vocabularies_get_an_adaptive_head_whose_clusters_follow_frequency():
    assert head_cutoffs("auto", zipf_counts(65)) == ()
    assert head_cutoffs("full", zipf_counts(4000)) == ()
    counts = zipf_counts(4000)
    cutoffs = head_cutoffs("auto", counts)
    assert len(cutoffs) == 2 and 0 < cutoffs[0] < cutoffs[1] < 4000
    share = torch.sort(counts, descending=True).values.cumsum(0) / counts.sum()
    assert share[cutoffs[0] - 1] >= 0.9 > share[cutoffs[0] - 2]  # the frequent cluster covers 90% of the text
    assert head_cutoffs("adaptive", zipf_counts(65))  # asked for, a small vocabulary gets one too


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_both_heads_give_a_distribution_and_its_exact_negative_log_likelihood(head):
    torch.manual_seed(0)
    vocab = Vocab([chr(0x4E00 + i) for i in range(300)])
    counts = zipf_counts(300)
    config = ModelConfig("lstm", 2, 16, 0.0, 300, head_cutoffs("adaptive", counts) if head == "adaptive" else ())
    model = CharLM(config, vocab).eval()
    if head == "adaptive":
        model.head.set_frequencies(counts)
        assert model.head.rank[counts.argmax()] == 0  # the most frequent id is ranked first
    ids, targets = torch.randint(0, 300, (3, 9)), torch.randint(0, 300, (3, 9))
    logits, state = model(ids)
    nats, same_state = model(ids, None, targets)
    assert torch.allclose(torch.softmax(logits, -1).sum(-1), torch.ones(3, 9), atol=1e-5)
    expected = -torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert nats.shape == (3, 9) and torch.allclose(nats, expected, atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(state, same_state))
