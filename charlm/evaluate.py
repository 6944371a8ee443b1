"""Bits per character: how well a model predicts a text it reads in order, the measure of quality.

Used for validation during training and by `charlm eval`. The total is in nats over the characters
the scored tokens spell (one each for a character vocabulary, several for a SentencePiece piece),
converted to bits, so models with different tokenizers compare.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from . import threads
from .batches import Windows, as_ids, make_streams
from .device import to_device
from .model import CharLM, inference

EVAL_STREAMS = 16  # streams scored side by side; each starts cold, so few and long is more faithful
EVAL_WINDOW = 250  # window: longer windows, same result, fewer calls
LOG2E = 1.0 / math.log(2.0)


def bits_per_char(model: CharLM, ids: torch.Tensor | np.ndarray, max_tokens: int | None = None) -> float:
    """Bits per character of `ids` under the model, the state carried across each stream."""
    if max_tokens is not None:
        ids = ids[: max_tokens + 1]
    streams = make_streams(as_ids(ids), max(1, min(EVAL_STREAMS, len(ids) // (EVAL_WINDOW + 1))))
    device = model.device
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    chars = torch.zeros((), dtype=torch.int64, device=device)
    lengths = model.vocab.char_lengths().to(device)
    with inference(model):
        state = None
        for inputs, targets in Windows(streams, EVAL_WINDOW):
            started = time.perf_counter()
            inputs, targets = to_device(inputs, device), to_device(targets, device)
            nats, state = model(inputs, state, targets)
            total_nats += nats.double().sum()
            threads.record(time.perf_counter() - started, targets.numel())
            chars += lengths[targets].sum()
    return total_nats.item() / max(chars.item(), 1) * LOG2E
