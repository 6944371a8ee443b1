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
    """Evaluation mode without autograd, restoring the model's mode afterwards. In real fp32 (on a GPU,
    cuDNN may otherwise run an fp32 RNN on TF32 tensor cores, 10-bit mantissas) and outside any autocast
    of the caller's: scores and log-probabilities must not depend on the device or the precision the
    caller computes in (bpc compares across machines and training precisions). Contexts open at
    once in several threads share the changes, and the last to close puts back what the first found:
    one closing early must not switch dropout back on under another. Each count's undo is registered
    as soon as it is raised, so an exception (Ctrl-C) anywhere after, or in another undo, still gives it
    back: a count left raised would keep every later context from restoring the mode or the flag."""
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
