"""What `CharLM.forward` is given, said back to a caller who gave it wrong: ids, a state and targets that
the model cannot read, refused in one line naming the argument and what it takes, where torch would
stop deep inside (an LSTM's "Expected input to be 2D or 3D, got 4D", an embedding's "index out of range
in self").

A forward's hot path (a training step, a sampled character) pays nothing for it: torch checks shapes
and ranges itself as it runs, and only once it has failed does `refusal` look at what the caller gave.
The one check made before is that of ids moving from the CPU to another device (`long_ids`): on a
GPU an id out of range is a device-side assert that leaves the process's CUDA unusable, and checking on
the CPU makes the GPU wait for nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import CharLMError
from .fields import SHOWN
from .pieces import holds_integers
from .vocab import UNSEEN


def long_ids(ids: torch.Tensor, device: torch.device, lowest: int, size: int, what: str = "ids") -> torch.Tensor:
    """Ids of any integer dtype as the long tensor on `device` that lookups and losses take: torch's
    embedding refuses uint8 and int16, and indexing reads uint8 as a mask. A numpy array or a list is
    refused, as torch's layers refuse it, but saying how to make a tensor of it. `lowest` and `size`: the
    ids' range, checked where they move from the CPU to another device (`device` first: a model on the
    CPU, sampling's and CPU training's every step, asks no more)."""
    if not isinstance(ids, torch.Tensor):
        raise CharLMError(
            f"the model's {what} must be a tensor of integers, not a {type(ids).__name__}: torch.as_tensor({what})"
        )
    if not holds_integers(ids):
        raise CharLMError(f"the model's {what} must be integers (a torch.long tensor), not {ids.dtype}")
    if device.type != "cpu" and ids.device.type == "cpu" and (problem := out_of_range(ids, lowest, size, what)):
        raise CharLMError(problem)
    return ids.to(device, torch.long)


def lowest_id(model: nn.Module) -> int:
    """The lowest id the model reads: UNSEEN (a character it never saw, as the zero vector) outside
    training, where `Embedding` reads it; 0 in training."""
    return 0 if model.training else UNSEEN


def out_of_range(ids: torch.Tensor, lowest: int, size: int, what: str) -> str | None:
    """What is wrong with ids outside [lowest, size), or None."""
    if not ids.numel() or ids.is_meta:  # a meta tensor has no values to look at
        return None
    low, high = int(ids.min()), int(ids.max())
    if lowest <= low and high < size:
        return None
    bad = low if low < lowest else high
    either = f", or {UNSEEN} (a character never seen)" if lowest == UNSEEN else ""
    if bad == UNSEEN and what == "ids":  # where `lowest` is 0: a model in training
        advice = f"; {UNSEEN}, a character never seen, is read only by a model in eval mode (model.eval())"
    else:
        advice = ": model.vocab.encode(text) gives a text's ids"
    return f"the model's {what} must be from 0 to {size - 1} (len(model.vocab) - 1){either}, not {bad}{advice}"


def refusal(model: nn.Module, ids: object, state: object, targets: object) -> CharLMError | None:
    """Why a CharLM's `model(ids, state, targets)` failed, where the fault is the caller's: the first
    argument that is not what the model takes, said as an error; None where all three are (torch's own
    error stands). `model` is typed nn.Module so that model.py's import of this module stays one-way."""
    if not isinstance(ids, torch.Tensor):  # `long_ids` has said it
        return None
    size = model.config.vocab_size
    problem = (
        shape_problem(ids)
        or out_of_range(ids, lowest_id(model), size, "ids")
        or state_problem(model, ids, state)
        or targets_problem(ids, targets, size)
    )
    return None if problem is None else CharLMError(problem)


def shape_problem(ids: torch.Tensor) -> str | None:
    if ids.dim() not in (1, 2):
        one = "; one id is ids.view(1, 1)" if ids.dim() == 0 else ""
        return (
            f"the model's ids must be (batch, time), or (time,) for one row, "
            f"not {ids.dim()} dimensions (shape {tuple(ids.shape)}){one}"
        )
    if ids.size(-1) == 0:
        return f"the model's ids hold no id to read (shape {tuple(ids.shape)}): give each row at least one"
    return None


def state_problem(model: nn.Module, ids: torch.Tensor, state: object) -> str | None:
    """A state that is not what the model returned for ids of this batch: (h, c) for an LSTM, h for a GRU
    or RNN, each (layers, batch, hidden), or (layers, hidden) for ids of one dimension."""
    if state is None:
        return None
    config = model.config
    rows = ids.dim() == 2
    shape = (config.layers, ids.size(0), config.hidden) if rows else (config.layers, config.hidden)
    lstm = config.cell == "lstm"

    def fits(part: object) -> bool:
        return isinstance(part, torch.Tensor) and tuple(part.shape) == shape

    pair = isinstance(state, tuple) and len(state) == 2
    if (pair and all(map(fits, state))) if lstm else fits(state):
        return None
    wanted = f"(h, c), two tensors of shape {shape}" if lstm else f"h, a tensor of shape {shape}"
    axes = "(layers, batch, hidden)" if rows else "(layers, hidden) for ids of one row"
    return (
        f"the model's state must be None or {wanted} {axes}, as the model returned it for ids of this shape, "
        f"not {described(state)}"
    )


def described(state: object) -> str:
    """A state as given: a tensor's shape, a tuple's or a list's parts, or the value of anything else."""
    if isinstance(state, torch.Tensor):
        return f"a tensor of shape {tuple(state.shape)}"
    if isinstance(state, (tuple, list)):
        parts = ", ".join(described(part) for part in state)
        return f"a {type(state).__name__} of {len(state)}" + (f" ({parts})" if parts else "")
    return SHOWN.repr(state)


def targets_problem(ids: torch.Tensor, targets: object, size: int) -> str | None:
    if not isinstance(targets, torch.Tensor):  # None, or `long_ids` has said it
        return None
    if targets.shape != ids.shape:
        return (
            f"the model's targets must have the ids' shape {tuple(ids.shape)}, one next id for each, "
            f"not {tuple(targets.shape)}"
        )
    return out_of_range(targets, 0, size, "targets")
