"""A moving average of the weights: what a run scores, keeps and samples from.

The streams are contiguous, so at any step the raw weights lean towards the stretch of text each
stream has just read; at the end of a run their validation bpc wobbles by about 0.01 from one
evaluation to the next. An exponential moving average over the last few thousand steps smooths
that away (bench/sweep.py: `weight_average=0` against the default). The raw weights keep training;
the average only follows them.
"""

from __future__ import annotations

import torch

from .model import CharLM

UPDATE_EVERY = 4  # steps between updates; each is one pass over the weights


class WeightAverage:
    def __init__(self, model: CharLM, decay: float):
        """`decay` per step: the average's memory is 1 / (1 - decay) steps, or a tenth of the steps
        so far while that is shorter, so it never drags the first random weights along."""
        self.model = CharLM(model.config, model.vocab).to(model.head.weight.device)
        self.model.load_state_dict(model.state_dict())
        self.model.requires_grad_(False)
        self.memory = 1.0 / (1.0 - decay)
        self.sources, self.targets = list(model.parameters()), list(self.model.parameters())

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Call after each optimizer step, `step` being the number of steps taken."""
        if step % UPDATE_EVERY == 0:
            memory = min(self.memory, step / 10)
            torch._foreach_lerp_(self.targets, self.sources, min(1.0, UPDATE_EVERY / memory))
