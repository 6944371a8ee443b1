"""What size of model a state_dict's weights are of, as far as their shapes show it.

torch refuses a state of another model's size with a paragraph listing every weight's shapes; this says
it in one line naming both models' sizes (`CharLM.load_state_dict`), and gives a checkpoint's check the
architecture its weights are of (`checkpoint.py`). It reads torch's names for charlm's weights
(core.weight_hh_l0, embed.weight, head.softmax.*) and never imports model.py, which uses it.
"""

from collections.abc import Mapping

import torch
from torch import nn


def state_mismatch(model: nn.Module, state: Mapping[str, object], strict: bool) -> str:
    """Why torch would refuse to load `state` into `model` (a weight of another shape; with `strict`, one
    missing or more), in a line that names the sizes of both models, or "" where it fits."""
    if not isinstance(state, Mapping):
        return ""  # torch names what it takes
    own = model.state_dict()
    shaped = [n for n, t in state.items() if n in own and isinstance(t, torch.Tensor) and t.shape != own[n].shape]
    differ = set(own) ^ set(state) if strict else set()
    if not shaped and not differ:
        return ""
    first = shaped[0] if shaped else min(differ)
    if shaped:
        found = f"{first} is {list(state[first].shape)}, this model's {list(own[first].shape)}"
    else:
        found = f"{first} is {'in the state but not in this model' if first in state else 'missing from the state'}"
    mine, theirs = size_of_state(own), size_of_state(state)
    if theirs == mine:  # weights added or left out, as no charlm model has them
        return f"{found}; give the state_dict() of a model of this config and vocabulary"
    return (
        f"the state is of another model ({theirs}) than this one ({mine}): {found}; load it into a model of its "
        "own config and vocabulary (charlm.CharLM(other.config, other.vocab))"
    )


def size_of_state(state: Mapping[str, object]) -> str:
    """`2x64 lstm, 31 ids`: the size of the model a state_dict is of, as far as its weights show it."""
    shape = architecture_of(state)
    embed = state.get("embed.weight")
    parts = [f"{shape['layers']}x{shape['hidden']} {shape.get('cell', '')}".strip()] if shape else []
    parts += [f"{embed.shape[0]} ids"] if isinstance(embed, torch.Tensor) and embed.dim() == 2 else []
    parts += ["adaptive head"] if any(name.startswith("head.softmax.") for name in state) else []
    return ", ".join(parts) or "weights of no charlm model"


def architecture_of(weights: Mapping[str, object]) -> dict:
    """The cell, layers, hidden size and head cutoffs charlm's model of `weights` has, as far as they show
    them (torch's recurrent weights: core.weight_hh_l0 is (4 x hidden, hidden) for an LSTM; the head's,
    `head_cutoffs_of`); {} where they do not (damaged in another way, which `Checkpoint.check` names)."""
    recurrent = weights.get("core.weight_hh_l0")
    if not isinstance(recurrent, torch.Tensor) or recurrent.dim() != 2 or not recurrent.shape[1]:
        return {}
    rows, hidden = recurrent.shape
    cell = {4: "lstm", 3: "gru", 1: "rnn"}.get(rows // hidden if rows % hidden == 0 else 0)
    layers = sum(1 for name in weights if name.startswith("core.weight_hh_l"))
    cutoffs = head_cutoffs_of(weights)
    shape = {"layers": layers, "hidden": hidden} | ({"cell": cell} if cell else {})
    return shape | ({"head_cutoffs": cutoffs} if cutoffs is not None else {})


def head_cutoffs_of(weights: Mapping[str, object]) -> list[int] | None:
    """The head cutoffs (ModelConfig.head_cutoffs, as a list) the head of `weights` is of: [] for a full head
    (head.weight); for an adaptive one, its head's rows are the frequent ids and one per cluster, and each
    cluster's output layer (head.softmax.tail.N.1) has a row per id of it. None where they do not say."""
    adaptive = any(name.startswith("head.softmax.") for name in weights)
    if "head.weight" in weights:
        return None if adaptive else []
    head, sizes = weights.get("head.softmax.head.weight"), []
    while isinstance(tail := weights.get(f"head.softmax.tail.{len(sizes)}.1.weight"), torch.Tensor) and tail.dim() == 2:
        sizes.append(tail.shape[0])
    if not isinstance(head, torch.Tensor) or head.dim() != 2 or not sizes or min(sizes) < 1:
        return None
    cutoffs = [head.shape[0] - len(sizes)]
    for size in sizes[:-1]:
        cutoffs.append(cutoffs[-1] + size)
    return cutoffs if cutoffs[0] >= 1 else None
