import torch

from charlm.config import Config
from charlm.optim import learning_rate, make_optimizer

from .conftest import make_model


def test_learning_rate_warms_up_then_decays_over_the_budget():
    config = Config(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(config, 0, 0.0) == 0.1
    assert learning_rate(config, 10, 0.0) == 1.0
    assert abs(learning_rate(config, 500, 0.5) - 0.55) < 1e-9
    assert abs(learning_rate(config, 900, 1.0) - 0.1) < 1e-9


def test_weight_decay_applies_to_matrices_only():
    model = make_model("abcd")
    decayed, free = make_optimizer(model, Config(weight_decay=0.1)).param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decayed["params"])
    assert free["weight_decay"] == 0.0 and all(p.dim() == 1 for p in free["params"])
    assert len(decayed["params"]) + len(free["params"]) == len(list(model.parameters()))


class _Unfusable(torch.optim.AdamW):
    """AdamW as torch 2.4 is on mps (2.3 on the CPU): it adds the groups, then refuses fused=True."""

    def __init__(self, params, **options):
        super().__init__(params, **options)
        if options.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")


def test_a_torch_that_refuses_the_fused_optimizer_gets_an_unfused_one(monkeypatch):
    """The fallback once reused the groups the refused optimizer had marked fused, so the first step
    ran the missing kernel: under torch 2.3 every training run on the CPU failed with NotImplementedError."""
    monkeypatch.setattr(torch.optim, "AdamW", _Unfusable)
    model = make_model("abcd")
    optimizer = make_optimizer(model, Config())
    assert [group["fused"] for group in optimizer.param_groups] == [None, None]
