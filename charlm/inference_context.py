"""`inference`: a model read for scores or samples, in eval mode, without autograd, in real fp32.

Threads open it at once on one model (a web app's requests, the server's engine beside a generate): they
share its changes, and only the last to close puts back what the first one found.
"""

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .model import CharLM, autocast_off

# What the open `inference` contexts changed, put back when the last one closes: per model its mode, and
# (key None) the process's cuDNN TF32 flag. Threads open them at once (a web app's requests on one model).
INSIDE: dict[CharLM | None, list] = {}  # key -> [contexts open, the value found before the first]
INSIDE_LOCK = threading.Lock()


def set_tf32(allowed: bool) -> None:
    """cuDNN's TF32 flag is process-wide: what a caller set before the first context is what comes back."""
    torch.backends.cudnn.allow_tf32 = allowed


def set_mode(model: CharLM, training: bool) -> None:
    """`model.train(training)`, skipped when every module is in that mode already: train() sets the flag
    on each module through nn.Module's __setattr__, and sampling enters and leaves `inference` once a
    character (4,002 recursive train() calls per 2,000 characters)."""
    if not in_mode(model, training):
        model.train(training)


def in_mode(model: nn.Module, training: bool) -> bool:
    """Whether `model` and every module in it are in training mode (or all not): `modules()` without its
    generators and names, as it is asked twice a character."""
    to_visit = [model]
    while to_visit:
        module = to_visit.pop()
        if module is None:  # a child slot registered empty
            continue
        if module.training != training:
            return False
        to_visit.extend(module._modules.values())
    return True


def leave_inference(key: CharLM | None, restore: Callable[[bool], object]) -> None:
    """One context's share of `key` given back; the last one out restores what the first one found."""
    with INSIDE_LOCK:
        opened = INSIDE[key]
        opened[0] -= 1
        if not opened[0]:
            restore(INSIDE.pop(key)[1])


@contextlib.contextmanager
def inference(model: CharLM) -> Iterator[None]:
    """Eval mode without autograd, in real fp32 (no cuDNN TF32, none of the caller's autocast), the mode
    put back afterwards: scores must not depend on the device or precision the caller computes in (bpc is
    compared across machines). Threads share it as the module says; each share's undo is registered as
    soon as it is taken, so an exception after it (Ctrl-C, a failing undo) still gives it back."""
    with contextlib.ExitStack() as undo:
        with INSIDE_LOCK:
            for key, found, restore in (
                (None, torch.backends.cudnn.allow_tf32, set_tf32),
                (model, model.training, functools.partial(set_mode, model)),
            ):
                INSIDE.setdefault(key, [0, found])[0] += 1
                undo.callback(leave_inference, key, restore)
            set_tf32(False)
            set_mode(model, False)
        with torch.inference_mode(), autocast_off(model.embed.weight):
            yield
