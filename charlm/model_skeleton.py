"""A model's weights as names, shapes and dtypes, nothing allocated: what a checkpoint's are checked against.

A checkpoint says what model it holds; building that model to compare with would allocate and fill every
weight before one stored value is looked at.
"""

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .model import CharLM, ModelConfig
from .vocab import Vocabulary


def skeleton(config: ModelConfig, vocab: Vocabulary) -> CharLM:
    """A model of `config` on the meta device: its weights' names, shapes and dtypes, nothing allocated
    or computed, in milliseconds at any size (checkpoint.py checks stored weights against it)."""
    with torch.device("meta"), _Unfilled():
        return CharLM(config, vocab)


class _Unfilled(TorchFunctionMode):
    """Leaves the embedding's random values and the head's rank unfilled: on the meta device torch
    computes these through its Python reference ops, whose first use imports its compiler (seconds)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is nn.init.normal_:
            return kwargs["tensor"]
        if func is torch.arange:
            return torch.empty(len(range(*args)), dtype=torch.long)
        return func(*args, **kwargs)
