"""Bits per character: how well a model predicts a text it reads in order, the measure of quality.

Used for validation during training and by `charlm eval`. The total is in nats over the characters
the scored tokens spell (one each for a character vocabulary, several for a SentencePiece piece),
converted to bits, so models with different tokenizers compare.

The figure is that of one pass over the text, the state carried from its first token to its last.
For speed the text is cut into up to EVAL_STREAMS pieces scored side by side; every piece but the
first starts from the state of reading the EVAL_WARMUP tokens before it (unscored), which is what one
pass has there, to within a small difference (see EVAL_WARMUP). Every token after the first is
scored exactly once.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import threads
from .batches import as_ids
from .model import CharLM, State, inference, map_state

EVAL_STREAMS = 16  # pieces scored side by side
EVAL_WINDOW = 250  # tokens per forward call: longer windows, same result, fewer calls
# Tokens a piece reads, unscored, before its start, to rebuild the state one pass has there. Measured
# with 16 pieces, in bits per character against one pass (commands in the commit that set it):
#                                                   one pass    cold     25 tokens  50 tokens  100
#   2x128 LSTM, 1 min on tinyshakespeare; its last   3.0101   +0.0004   +0.000000  +0.000000  0.000000
#     100k characters (held out)
#   the same run at 3 min; last 100k characters      2.7388   +0.0006   +0.000006  +0.000001  0.000000
#   the same run at 3 min; last 3,000 characters     2.8690   +0.0167   -0.0009    +0.00001   0.000000
#   1x32 LSTM, 400 steps on a repeated sentence      0.1455   +0.0169   +0.000006   0.000000  0.000000
# 200 and 400 tokens: 0.000000 as well. 200 leaves a margin for better-trained models, which remember longer.
EVAL_WARMUP = 200
PIECE_PER_WARMUP = 10  # a piece predicts at least this many warm-ups' worth of tokens: warming costs <= 10% more
LOG2E = 1.0 / math.log(2.0)


def bits_per_char(
    model: CharLM, ids: torch.Tensor | np.ndarray, max_tokens: int | None = None, progress: bool = False
) -> float:
    """Bits per character of `ids` (of its first max_tokens + 1) under the model, as one pass scores it.
    `progress`: a bar of the characters scored, on stderr (`charlm eval`; validation stays silent)."""
    ids = as_ids(ids[: max_tokens + 1] if max_tokens is not None else ids)
    scored = len(ids) - 1  # every token but the first is predicted from the ones before it
    pieces = max(1, min(EVAL_STREAMS, scored // (EVAL_WARMUP * PIECE_PER_WARMUP)))
    length = -(-scored // pieces)  # tokens each piece predicts; the last piece may predict fewer
    starts = torch.arange(pieces) * length
    device = model.device
    char_lengths = model.vocab.char_lengths()
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    chars = 0
    bar = tqdm(
        total=int(char_lengths[ids[1:]].sum()) if progress else None,
        disable=not progress,
        desc="scoring",
        unit="char",
        unit_scale=True,
        dynamic_ncols=True,
    )
    with bar, inference(model):
        state = warm_up(model, ids, starts)
        for column in range(0, length, EVAL_WINDOW):
            started = time.perf_counter()
            positions = starts[:, None] + column + torch.arange(min(EVAL_WINDOW, length - column) + 1)
            window = ids[positions.clamp(max=scored)]
            inside = positions[:, 1:] <= scored  # a last piece's columns past the end are not scored
            nats, state = model(window[:, :-1].to(device), state, window[:, 1:].to(device))
            total_nats += (nats.double() * inside.to(device)).sum()
            window_chars = int(char_lengths[window[:, 1:][inside]].sum())
            chars += window_chars
            bar.update(window_chars)
            threads.record(time.perf_counter() - started, int(inside.sum()), "score")
    return total_nats.item() / max(chars, 1) * LOG2E


def warm_up(model: CharLM, ids: torch.Tensor, starts: torch.Tensor) -> State | None:
    """Each piece's state at its start: the first starts the text (a fresh state, as in one pass);
    every other reads the EVAL_WARMUP tokens before its start."""
    if len(starts) == 1:
        return None
    before = starts[1:, None] - EVAL_WARMUP + torch.arange(EVAL_WARMUP)
    _, state = model(ids[before].to(model.device))
    return map_state(lambda s: torch.cat([torch.zeros_like(s[:, :1]), s], dim=1), state)
