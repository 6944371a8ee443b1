"""The optimizer and its learning-rate schedule: AdamW, linear warm-up, cosine decay over the budget."""

from __future__ import annotations

import inspect
import math

import torch

from .config import Config


def param_groups(model: torch.nn.Module, config: Config) -> list[dict]:
    """Weight decay on matrices only; biases stay free. A checkpoint's optimizer state is checked
    against these groups (checkpoint.py) without building an optimizer."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    free = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": config.weight_decay}, {"params": free, "weight_decay": 0.0}]


class AdamW(torch.optim.AdamW):
    """torch's AdamW, the same arithmetic, without its compiler guards: torch wraps step, zero_grad,
    add_param_group, state_dict and load_state_dict in torch._dynamo calls, the first of which imports
    the compiler (seconds, in every training process; DDP, under torchrun, imports it anyway). charlm
    never compiles the optimizer, and outside a compiled graph the guards do nothing but that import.
    `inspect.unwrap` follows the `__wrapped__` that functools.wraps leaves on each guard."""

    add_param_group = inspect.unwrap(torch.optim.AdamW.add_param_group)
    zero_grad = inspect.unwrap(torch.optim.AdamW.zero_grad)
    state_dict = inspect.unwrap(torch.optim.AdamW.state_dict)
    load_state_dict = inspect.unwrap(torch.optim.AdamW.load_state_dict)
    _step = inspect.unwrap(torch.optim.AdamW.step)

    def step(self, closure=None):
        """torch's AdamW step, gradients off as torch's wrapper turns them off (not `differentiable`)."""
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return self._step(closure)


def make_optimizer(model: torch.nn.Module, config: Config) -> torch.optim.AdamW:
    """AdamW over `param_groups`, fused where this torch has it (torch 2.4 has no fused kernel on mps).
    The fallback gets fresh groups: the refused optimizer has already marked the first ones fused."""
    try:
        return AdamW(param_groups(model, config), lr=config.lr, fused=True)
    except (RuntimeError, TypeError):
        return AdamW(param_groups(model, config), lr=config.lr)


def learning_rate(config: Config, step: int, spent: float) -> float:
    """Linear warm-up, then cosine decay from lr to lr * min_lr_ratio as `spent` (the share of the
    budget spent, in steps or seconds: `Trainer.spent`) goes 0 -> 1. The warm-up replaces the cosine's
    first steps, so it ends where the cosine then is: near lr for a long budget, well below for a short one."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, spent)))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)
