"""A moving average of the weights: what a run scores, keeps and samples from.

The streams are contiguous, so at any step the raw weights lean towards the stretch of text each
stream has just read. An exponential moving average over the last thousand steps smooths that away:
mid-run it scored 0.03-0.08 bpc better than the raw weights on tinyshakespeare, so a run stopped
early keeps better weights; at the end of a run, with the learning rate decayed, the two tie
(bench/results/sweep-20k-steps-tinyshakespeare.txt), so it is off by default (`--weight-average`).
The raw weights keep training; the average only follows them.
"""

from __future__ import annotations

import torch

from .model import CharLM

UPDATE_EVERY = 4  # steps between updates; each is one pass over the weights


class WeightAverage:
    """A copy of the model whose weights trail the trained ones (`--weight-average`): the run scores, saves
    and samples from it, so an early stop keeps weights that lean towards no stream's latest text."""

    def __init__(self, model: CharLM, decay: float):
        """`decay` per step: the average's memory is 1 / (1 - decay) steps, or a tenth of the steps
        so far while that is shorter, so it never drags the first random weights along."""
        with torch.random.fork_rng(devices=[]):  # building draws initial weights: keep the run's dropout masks
            self.model = CharLM(model.config, model.vocab).to(model.device)
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
