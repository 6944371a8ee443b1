"""The values no trained model's weight holds: NaN, an infinity, or one so large that its products overflow.

Checked on every checkpoint read and save, on a Python caller's model, and as training goes (a diverged
run stops, writing nothing): each tensor in one pass, no copy, as a checkpoint's Adam states are twice its weights.
"""

import math
from collections.abc import Mapping

import torch

# The largest weight a model may hold. A trained model's are tens at most; below this bound no product in
# charlm's model (embedding x input weights summed over 16,384 units, the adaptive head's two projections)
# overflows a float32, whose products of larger ones can: inf logits, then NaN, which would sample one
# character over and over and score "nan bits per character", without a word.
MAX_WEIGHT = 1e12


def unsound_weight(weights: Mapping[str, object]) -> str | None:
    """The name of the first of `weights` (a state dict; tensors not of floats are skipped) that holds NaN,
    an infinity or a value past MAX_WEIGHT (`weight_problem` says which), or None where none does: no
    model of them samples or scores anything but noise."""
    floats = (n for n, t in weights.items() if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel())
    return next((name for name in floats if weight_problem(name, weights[name])), None)


def weight_problem(name: str, tensor: torch.Tensor) -> str | None:
    """What is wrong with the values of weight `name`, or None where every one is finite and within
    MAX_WEIGHT (`value_range`)."""
    low, high = value_range(tensor)
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{name} holds NaN or infinite values"
    if max(-low, high) > MAX_WEIGHT:
        return (
            f"{name} holds {max(-low, high):.3g}, which no trained model's weight is (at most {MAX_WEIGHT:.0e} is "
            "read): its products would overflow into NaN text and scores"
        )
    return None


def value_range(tensor: torch.Tensor) -> tuple[float, float]:
    """The lowest and highest of `tensor`'s values (floats, at least one), both NaN for a NaN anywhere: one pass
    (aminmax), no copy, where isfinite().all() writes a bool per value before it looks at one (on a CPU
    about 20 times as long: a checkpoint's Adam states are twice its weights)."""
    low, high = torch.aminmax(tensor.detach())
    return float(low), float(high)


def holds_nonfinite(tensor: torch.Tensor) -> bool:
    """Whether a tensor of floats (a training state's: its optimizer's, its hidden state) holds NaN or an
    infinity (`value_range`)."""
    return bool(tensor.numel()) and not all(map(math.isfinite, value_range(tensor)))
