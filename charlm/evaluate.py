"""Bits per character, the measure of quality, under the import path training and `charlm eval` use.

The computation is `scoring.bits_per_char` (one pass over the text, scored side by side in pieces);
this module names it for its callers.
"""

from __future__ import annotations

from .scoring import EVAL_STREAMS, EVAL_WARMUP, EVAL_WINDOW, LOG2E, bits_per_char

__all__ = ["EVAL_STREAMS", "EVAL_WARMUP", "EVAL_WINDOW", "LOG2E", "bits_per_char"]
