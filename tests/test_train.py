import itertools
import math

import torch

import charlm
from charlm import checkpoint, trainer
from charlm.config import Config
from charlm.model import CharLM
from charlm.vocab import Vocab


def test_overfits_a_tiny_text_to_near_zero_loss(fox_file, tiny):
    tiny.update(hidden=64, seq_len=16, batch_size=8, lr=1e-2, max_steps=150, eval_every=50, dropout=0.0)
    model = charlm.train(fox_file, out="fox", **tiny)
    latest = checkpoint.read_checkpoint(checkpoint.resolve("fox", prefer=checkpoint.LATEST))
    assert latest["step"] == 150
    assert latest["best_bpc"] < 0.1
    assert model.generate("the quick", length=30, greedy=True).startswith("the quick brown fox jumps over")


def test_state_is_carried_across_steps_and_detached(fox_file, tiny, monkeypatch):
    """The state a step starts with is the previous step's final state, with no history."""
    seen = []
    original = CharLM.forward

    def spy(self, ids, state=None):
        logits, new_state = original(self, ids, state)
        if torch.is_grad_enabled():
            seen.append((state, new_state))
        return logits, new_state

    monkeypatch.setattr(CharLM, "forward", spy)
    charlm.train(fox_file, out="spy", **{**tiny, "max_steps": 5, "dropout": 0.0})
    assert seen[0][0] is None  # the first window of an epoch starts from zeros
    for (_, produced), (received, _) in itertools.pairwise(seen):
        assert all(r.grad_fn is None for r in received)
        assert all(torch.equal(r, p.detach()) for r, p in zip(received, produced))


def test_bits_per_char_is_cross_entropy_in_bits():
    torch.manual_seed(0)
    model = CharLM(Config(hidden=8, layers=1, dropout=0.0), Vocab("abcd")).eval()
    ids = torch.randint(0, 4, (301,))
    logits, _ = model(ids[:-1].unsqueeze(0))
    nats = torch.nn.functional.cross_entropy(logits[0], ids[1:])
    assert abs(trainer.bits_per_char(model, ids) - nats.item() / math.log(2)) < 1e-4


def test_learning_rate_warms_up_then_decays_over_the_budget():
    config = Config(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert trainer.learning_rate(config, 0, 0.0) == 0.1
    assert trainer.learning_rate(config, 10, 0.0) == 1.0
    assert abs(trainer.learning_rate(config, 500, 0.5) - 0.55) < 1e-9
    assert abs(trainer.learning_rate(config, 900, 1.0) - 0.1) < 1e-9


def test_same_random_seed_gives_the_same_run(fox_file, tiny):
    a = charlm.train(fox_file, out="a", **tiny)
    b = charlm.train(fox_file, out="b", **tiny)
    c = charlm.train(fox_file, out="c", **{**tiny, "random_seed": 7})
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_max_time_stops_the_run(fox_file, tiny):
    charlm.train(fox_file, out="timed", **{**tiny, "max_steps": None, "max_time": "2s"})
    latest = checkpoint.read_checkpoint(checkpoint.resolve("timed", prefer=checkpoint.LATEST))
    assert 2.0 <= latest["elapsed"] < 10.0 and latest["step"] > 10
