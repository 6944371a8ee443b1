import os
import subprocess
import sys
from pathlib import Path

import torch

from charlm import optim
from charlm.config import Config
from charlm.optim import learning_rate, make_optimizer, param_groups

from .conftest import TINY, make_model


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


class _Unfusable(optim.AdamW):
    """AdamW as torch 2.4 is on mps (2.3 on the CPU): it adds the groups, then refuses fused=True."""

    def __init__(self, params, **options):
        super().__init__(params, **options)
        if options.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")


def test_a_torch_that_refuses_the_fused_optimizer_gets_an_unfused_one(monkeypatch):
    """The fallback once reused the groups the refused optimizer had marked fused, so the first step
    ran the missing kernel: under torch 2.3 every training run on the CPU failed with NotImplementedError."""
    monkeypatch.setattr(optim, "AdamW", _Unfusable)
    model = make_model("abcd")
    optimizer = make_optimizer(model, Config())
    assert [group["fused"] for group in optimizer.param_groups] == [None, None]


def _steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list[torch.Tensor]) -> None:
    """Training steps as train_state.train_step takes them: zero, backward, clip, step."""
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        logits, _ = model(batch[:, :-1])
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()


def test_charlms_optimizer_trains_bit_for_bit_as_torchs_adamw():
    """make_optimizer's AdamW skips torch's compiler guards (torch._dynamo, seconds to import in every
    training process): the weights and optimizer state after steps, a save and a resume are torch's own."""
    torch.manual_seed(0)
    batches = [torch.randint(0, 4, (3, 9)) for _ in range(6)]
    config = Config(weight_decay=0.1, lr=0.01)
    torch.manual_seed(1)
    ours, theirs = make_model("abcd", dropout=0.0), make_model("abcd", dropout=0.0)
    theirs.load_state_dict(ours.state_dict())
    optimizer = make_optimizer(ours, config)
    reference = torch.optim.AdamW(param_groups(theirs, config), lr=config.lr, fused=True)
    _steps(ours, optimizer, batches[:3])
    _steps(theirs, reference, batches[:3])
    saved = optimizer.state_dict()
    optimizer = make_optimizer(ours, config)  # a resumed run's: a fresh optimizer given the saved state
    optimizer.load_state_dict(saved)
    _steps(ours, optimizer, batches[3:])
    _steps(theirs, reference, batches[3:])
    for (name, mine), theirs_ in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(mine, theirs_), name
    states, expected = optimizer.state_dict(), reference.state_dict()
    assert states["param_groups"] == expected["param_groups"]
    for key, state in expected["state"].items():
        for name, value in state.items():
            assert torch.equal(states["state"][key][name], value), (key, name)
    assert all(p.grad is not None for p in ours.parameters())
    optimizer.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in ours.parameters())


def test_training_and_resuming_import_no_compiler(tmp_path):
    """torch's AdamW imports torch._dynamo at its first use (its methods are guarded for torch.compile,
    which charlm never applies to the optimizer): seconds more than torch's own import in every
    training process and every test that trains in a subprocess."""
    (tmp_path / "fox.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 60, encoding="utf-8")
    code = (
        "import sys, charlm\n"
        f"charlm.train('fox.txt', out='run', **{TINY!r})\n"
        "charlm.train(resume='run', max_steps=25)\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(optim.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
