"""The optimizer and its learning-rate schedule: AdamW, linear warm-up, cosine decay over the budget."""

from __future__ import annotations

import math

import torch

from .config import Config


def param_groups(model: torch.nn.Module, config: Config) -> list[dict]:
    """Weight decay on matrices only; biases stay free. A checkpoint's optimizer state is checked
    against these groups (checkpoint.py) without building an optimizer."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    free = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": config.weight_decay}, {"params": free, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, config: Config) -> torch.optim.AdamW:
    """AdamW over `param_groups`, fused where this torch has it (torch 2.4 has no fused kernel on mps).
    The fallback gets fresh groups: the refused optimizer has already marked the first ones fused."""
    try:
        return torch.optim.AdamW(param_groups(model, config), lr=config.lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(param_groups(model, config), lr=config.lr)


def learning_rate(config: Config, step: int, progress: float) -> float:
    """Linear warm-up, then cosine decay from lr to lr * min_lr_ratio as progress (the share of the
    budget spent, in steps or seconds) goes 0 -> 1. The warm-up replaces the cosine's first steps, so
    it ends where the cosine then is: near lr for a long budget, well below for a short one."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)
