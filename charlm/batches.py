"""Token stream -> batches of windows for truncated backpropagation through time (TBPTT).

The encoded text is cut into `batch_size` contiguous streams, one row each. With the text
"abcdefghijklmnopqrstuvwxyz", batch_size 5 and seq_len 2 (26 // 5 = 5 characters per stream,
the leftover "z" dropped):

    stream 0:  a b  |  c d  |  e
    stream 1:  f g  |  h i  |  j
    stream 2:  k l  |  m n  |  o
    stream 3:  p q  |  r s  |  t
    stream 4:  u v  |  w x  |  y
               step 0  step 1

Step 0 feeds window 0 of every stream, inputs [[a b], [f g], [k l], [p q], [u v]], and its targets
are the same windows shifted one token on: [[b c], [g h], [l m], [q r], [v w]]. Step 1 feeds
[[c d], [h i], ...] with targets [[d e], [i j], ...]. Row i of step k+1 continues row i of step k in
the text, so the hidden state each stream ends a window with is carried into its next window,
detached: gradients stop at the window edge, the state does not. The last token of a stream is
only ever a target; a last window shorter than seq_len is fed as it is. (A token is a character, or
under `--tokenizer sentencepiece` a piece: this module counts ids, whatever they spell.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import CharLMError
from .fields import said


def min_tokens(batch_size: int, seq_len: int) -> int:
    """The fewest tokens that give every stream one full window plus its shifted target."""
    return batch_size * (seq_len + 1)


def make_streams(ids: torch.Tensor | np.ndarray, batch_size: int) -> torch.Tensor | np.ndarray:
    """Lay 1-D ids out as `batch_size` contiguous rows (the tail that does not fit is dropped).
    A memory-mapped array stays memory-mapped: only the windows in use are read."""
    stream_len = len(ids) // batch_size
    if stream_len < 2:
        raise CharLMError(
            f"text too short: {len(ids)} tokens cannot fill {batch_size} streams "
            f"of at least 2 tokens; lower {said('batch_size')} or use a longer text"
        )
    return ids[: stream_len * batch_size].reshape(batch_size, stream_len)


def as_ids(window: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A window as the int64 tensor an embedding takes (a copy of a few KB for memory-mapped ids)."""
    if isinstance(window, np.ndarray):
        return torch.from_numpy(window.astype(np.int64))
    return window


@dataclass
class Windows:
    """The windows of `streams`, in order. `position` is the column the next window starts at.

    When the streams run out, a new epoch starts again at column 0; `next` then says the hidden
    state must start fresh: row i's state was left by the end of stream i, but the text before
    its column 0 is the end of stream i - 1.
    """

    streams: torch.Tensor | np.ndarray
    seq_len: int
    position: int = 0
    epoch: int = 0

    @property
    def tokens_per_step(self) -> int:
        """Tokens a full window feeds: one per stream per column (the work threads.py weighs a step's time by)."""
        return self.streams.shape[0] * self.seq_len

    @property
    def input_columns(self) -> int:
        """Columns that are ever an input: all but a stream's last token, which is only a target."""
        return self.streams.shape[1] - 1

    def window(self, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of the window starting at column `start`."""
        end = min(start + self.seq_len, self.input_columns)
        return as_ids(self.streams[:, start:end]), as_ids(self.streams[:, start + 1 : end + 1])

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs, targets, fresh_state) for the next training step."""
        if self.position >= self.input_columns:
            self.position, self.epoch = 0, self.epoch + 1
        start = self.position
        inputs, targets = self.window(start)
        self.position = start + inputs.size(1)
        return inputs, targets, start == 0
