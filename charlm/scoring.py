"""Scoring: how well a model predicts a text, computed in one place for `charlm eval`, training's
validation, `charlm inspect` and the server's log-probabilities (the layers' gates and states: tracing.py).

- `bits_per_char`: bits per character of a token stream, as one pass over it scores it, the state
  carried from its first token to its last (validation; `text_bits`: a text, for `charlm eval` and
  `charlm.bits_per_char`);
- `surprise`: the bits spent on each token of a text and the model's top guesses before it (the
  inspect page, and `prompt_logprobs` for the server's `echo`); `top_logprobs` the same for a batch
  of next-token logits (the server's `logprobs` while sampling); `next_probs` the distribution
  after a prefix (`charlm.next_probs`).

Losses are summed in nats, converted to bits and divided by the characters the scored tokens spell
(one each for a character vocabulary, several for a SentencePiece piece), so models with different
tokenizers compare.

`total_bits`, under both, cuts the text into up to EVAL_STREAMS pieces scored side by side for
speed; every piece but the first starts from the state of reading the EVAL_WARMUP tokens before it
(unscored), which is what one pass has there, to within a small difference (see EVAL_WARMUP). Every
token after the first is scored exactly once.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from . import threads
from .arguments import check_reading, reading_text, refuse
from .bars import LEAD_IN_SECONDS, progress_bar
from .batches import as_ids
from .corpus import check_characters
from .device import has_float64
from .errors import CharLMError, callers_stacklevel
from .fields import plain
from .inference_context import inference
from .model import CharLM, State, map_state
from .unseen import first_named
from .vocab import UNSEEN, Vocabulary

if TYPE_CHECKING:  # the bar's type; bars.py makes every bar
    from tqdm.auto import tqdm

LOG2E = 1.0 / math.log(2.0)  # bits per nat
TOP = 5  # guesses `surprise` keeps before each token by default
PREVIEW_TOKENS = 24  # of the text a Surprise or Trace shows in its repr

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
# Characters encoded, and ids counted, at a time: a whole text's code points (4 bytes a character) and
# int64 ids and lookups (8 bytes each) at once would make `charlm eval` of a 50 MB file peak at 1.5 GB.
SLICE = 1 << 20
HEAD_CHUNK = 512  # positions whose full distribution is computed at once (a 4,447-character vocabulary: 9 MB)


def bits_per_char(
    model: CharLM,
    ids: torch.Tensor | np.ndarray,
    max_tokens: int | None = None,
    each_window: Callable[[], object] | None = None,
) -> float:
    """Bits per character of `ids` (of its first max_tokens + 1) under the model, as one pass scores it:
    validation's figure, so it shows no progress bar (`charlm eval` scores through `text_bits`). NaN
    where nothing was scored, as `mean_bits`: 0 would read as a perfect model, the best a run could keep
    (`check_data` and `read_eval_also` refuse such texts before training). `each_window`: as `total_bits`."""
    bits, chars = total_bits(model, ids, max_tokens, each_window=each_window)
    return bits / chars if chars else math.nan


def total_bits(
    model: CharLM,
    ids: torch.Tensor | np.ndarray,
    max_tokens: int | None = None,
    progress: bool = False,
    label: str = "scoring",
    each_window: Callable[[], object] | None = None,
) -> tuple[float, int]:
    """The bits `ids` (its first max_tokens + 1) cost under the model, and the characters they spell
    that were scored: several texts' sums give their joint bits per character. The first character's
    tokens are read, not scored (`first_character_tokens`). A character the model never saw (UNSEEN)
    is read, as a character it knows nothing about, and left out of the score: it has no probability
    to score. The text is cut into pieces scored side by side (`cut_into_pieces`, `warm_up`), a window
    of EVAL_WINDOW tokens of each at a time (`window_of`, `window_nats`). `label` names the progress bar.
    `each_window` is called before each window: where a training run hears a stop asked while it scores (a big
    model's scoring takes tens of seconds), to say it at once."""
    ids = as_ids(ids[: max_tokens + 1] if max_tokens is not None else ids)
    char_lengths = model.vocab.char_lengths()
    read = first_character_tokens(char_lengths, ids)
    starts, length = cut_into_pieces(scored=len(ids) - 1)
    total_nats = torch.zeros((), dtype=widest_float(model.device), device=model.device)
    chars = 0
    with scoring_bar(char_lengths, ids[read:], progress, label) as bar, inference(model):
        state = warm_up(model, ids, starts)
        for column in range(0, length, EVAL_WINDOW):
            if each_window:
                each_window()
            started = time.perf_counter()
            window, counted = window_of(ids, starts, column, min(EVAL_WINDOW, length - column), read)
            nats, state = window_nats(model, window, counted, state, total_nats.dtype)
            total_nats += nats
            window_chars = int(char_lengths[window[:, 1:][counted]].sum())
            chars += window_chars
            bar.update(window_chars)
            threads.record(time.perf_counter() - started, int(counted.sum()), f"score {len(starts)} pieces")
    return total_nats.item() * LOG2E, chars


def cut_into_pieces(scored: int) -> tuple[torch.Tensor, int]:
    """Where each of the pieces scored side by side starts, and how many tokens each predicts (the last
    may predict fewer), for a text whose `scored` tokens are predicted: up to EVAL_STREAMS pieces, each
    long enough that reading the EVAL_WARMUP tokens before it costs little (PIECE_PER_WARMUP)."""
    pieces = max(1, min(EVAL_STREAMS, scored // (EVAL_WARMUP * PIECE_PER_WARMUP)))
    length = -(-scored // pieces)
    return torch.arange(pieces) * length, length


def warm_up(model: CharLM, ids: torch.Tensor, starts: torch.Tensor) -> State | None:
    """Each piece's state at its start: the first starts the text (a fresh state, as in one pass);
    every other reads the EVAL_WARMUP tokens before its start."""
    if len(starts) == 1:
        return None
    before = starts[1:, None] - EVAL_WARMUP + torch.arange(EVAL_WARMUP)
    _, state = model(ids[before].long().to(model.device))
    return map_state(lambda s: torch.cat([torch.zeros_like(s[:, :1]), s], dim=1), state)


def scoring_bar(char_lengths: torch.Tensor, ids: torch.Tensor, progress: bool, label: str) -> tqdm:
    """The bar over the characters the scored `ids` spell (those never seen left out), named `label`; a
    disabled one, nothing counted, unless `progress`."""
    return progress_bar(
        total=spelled(char_lengths, ids, seen_only=True)[0] if progress else None,
        disable=not progress,
        desc=label,
        unit="char",
        unit_scale=True,
        dynamic_ncols=True,
    )


def window_of(
    ids: torch.Tensor, starts: torch.Tensor, column: int, width: int, read: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each piece's tokens `column` to `column + width` (one row a piece, int64): the last `width` are
    predicted from those before them. And which predictions count: none past the text's end (the last
    piece's), none of the first character's tokens (`read`), none of a character never seen."""
    scored = len(ids) - 1
    positions = starts[:, None] + column + torch.arange(width + 1)
    window = ids[positions.clamp(max=scored)].long()
    predicted = positions[:, 1:]
    counted = (predicted <= scored) & (predicted >= read) & (window[:, 1:] != UNSEEN)
    return window, counted


def window_nats(
    model: CharLM, window: torch.Tensor, counted: torch.Tensor, state: State | None, dtype: torch.dtype
) -> tuple[torch.Tensor, State]:
    """The nats the `counted` predictions of `window` cost, summed in `dtype`, and the state after it.
    An UNSEEN target is scored as id 0 and left out."""
    device = model.device
    targets = window[:, 1:].clamp(min=0)
    nats, state = model(window[:, :-1].to(device), state, targets.to(device))
    return (nats.to(dtype) * counted.to(device)).sum(), state


def text_bits(
    model: CharLM, text: str, what: str = "text", progress: bool = False, label: str = "scoring"
) -> tuple[float, int]:
    """`total_bits` of a text, as `charlm eval` scores a file: its first character is read, every one
    after it predicted. Characters the model never saw are read and left out of the score, or scored as
    its unknown symbol; `unseen_notes.unseen_note` says which, once for all the texts, so no warning here."""
    ids, characters = scored_ids(model.vocab, text, what, progress)
    return ids_bits(model, ids, what, progress, label, characters)


def ids_bits(
    model: CharLM,
    ids: torch.Tensor | np.ndarray,
    what: str = "text",
    progress: bool = False,
    label: str = "scoring",
    characters: int | None = None,
) -> tuple[float, int]:
    """`total_bits` of a text's ids (a run's held-out split as it was prepared: `charlm eval RUN`), refused
    where nothing could be scored. `characters`: what they spell, where the caller counted it (`check_ids`).
    Numpy ids are taken as int32, 4 bytes a token, not int64 (`scored_ids`)."""
    if isinstance(ids, np.ndarray):
        ids = torch.from_numpy(np.asarray(ids, dtype=np.int32))
    if characters is None:
        characters = check_ids(model.vocab, ids, what)
    bits, chars = total_bits(model, ids, progress=progress, label=label)
    check_scored(what, characters, scored=chars)
    return bits, chars


def scored_ids(vocab: Vocabulary, text: str, what: str, progress: bool = False) -> tuple[torch.Tensor, int]:
    """`text`'s ids as eval and --eval-also read it: a character the model never saw is UNSEEN (left out
    of the score) or its unknown symbol, without a warning (`unseen_notes.unseen_note` says it once); refused where
    nothing could be scored. Returns the ids, as int32 (half the memory of the int64 an embedding takes a
    window at a time in), and the characters they spell. A character vocabulary's ids are encoded a
    `SLICE` at a time (one id per character, so its slices encode as the whole does), under a bar if
    `progress`: seconds for a 50 MB file, before the scoring bar."""
    if not vocab.one_char_per_id:  # a sentencepiece piece may span a cut: the text whole
        ids = vocab.encode(text, what=what, unseen=True).to(torch.int32)
    else:
        check_characters(text, what)
        text = vocab.normalized(text)
        ids = torch.empty(len(text), dtype=torch.int32)
        bar = progress_bar(
            total=len(text),
            desc="encoding",
            unit="char",
            unit_scale=True,
            disable=not progress,
            delay=LEAD_IN_SECONDS,
        )
        with bar:
            for start in range(0, len(text), SLICE):
                part = vocab.encode(text[start : start + SLICE], what, unseen=True, already_normalized=True, warn=False)
                ids[start : start + len(part)] = part
                bar.update(len(part))
    return ids, check_ids(vocab, ids, what)


def first_character_tokens(char_lengths: torch.Tensor, ids: torch.Tensor) -> int:
    """How many of the first `ids` spell the text's first character, which is read, not scored: one,
    or for a character spelled as several byte pieces (or a validation split that starts inside one)
    all of them, since the bits of a later byte belong to no character scored (it spells none). Looked
    for in the first `SLICE` ids, then, only if none starts a character there, in all of them."""
    for head in (ids[1 : SLICE + 1], ids[1:]):
        starts = char_lengths[head.clamp(min=0).long()] > 0  # not a byte piece that continues a character
        if starts.any():
            return 1 + int(starts.int().argmax())
    return len(ids)


def spelled(char_lengths: torch.Tensor, ids: torch.Tensor, seen_only: bool = False) -> tuple[int, int]:
    """The characters `ids` spell and the ids that start one (an UNSEEN id as id 0, or as none if
    `seen_only`), from a count of each id taken a `SLICE` at a time: the lengths of a whole text's ids
    looked up at once would be int64 copies of it, 8 bytes per id each, and take seconds for 50 MB."""
    counts = np.zeros(len(char_lengths) + 1, dtype=np.int64)  # counts[0]: UNSEEN's, counts[1 + i]: id i's
    flat = ids.numpy()
    for start in range(0, len(flat), SLICE):
        counts += np.bincount(flat[start : start + SLICE] - UNSEEN, minlength=len(counts))
    lengths = char_lengths.numpy()
    lengths = np.concatenate([[0 if seen_only else lengths[0]], lengths])
    return int(counts @ lengths), int(counts[lengths > 0].sum())


def check_ids(vocab: Vocabulary, ids: torch.Tensor, what: str) -> int:
    """Refuse the ids of a text with nothing to score (`check_scored`) before scoring it, with the same
    words for eval and --eval-also; returns the characters they spell."""
    characters, tokens = spelled(vocab.char_lengths(), ids)
    check_scored(what, characters, tokens=tokens)
    return characters


def check_scored(what: str, characters: int, scored: int | None = None, tokens: int | None = None) -> None:
    """Refuse a text with nothing to score, before scoring (`scored` None) and after (`scored`: the
    characters that were): under 2 characters (the first is read, never scored), one token (a
    sentencepiece piece of several characters: `tokens` counts those that start a character; the first is
    read whole), or no scored character (every one after the first unseen), where a bits per character
    would be 0 bits, read as perfect, or NaN. The same words for eval and inspect."""
    if characters < 2:
        raise CharLMError(f"{what}: need at least 2 characters to score (the first is read, not scored)")
    if tokens is not None and tokens < 2:
        raise CharLMError(
            f"{what}: its {characters} characters are one token to the model, and the first token is read, "
            "not scored: nothing is left to score; give a longer text"
        )
    if scored == 0:
        raise CharLMError(
            f"{what}: no character after its first is one the model knows; nothing to score: give a text "
            "written in the characters of the text the model was trained on"
        )


def widest_float(device: torch.device) -> torch.dtype:
    """float64 for sums over many tokens and exact probabilities, where `device` has it (mps has not)."""
    return torch.float64 if has_float64(device) else torch.float32


@dataclass
class Scores:
    """What the head said before each token: its bits, and optionally the full distribution or the
    `top` most likely tokens. Rows as `Trace`'s; a row with no prediction is NaN (top ids: -1)."""

    bits: np.ndarray  # (T,) float64
    probs: np.ndarray | None  # (T, V) float32
    top_ids: np.ndarray  # (T, top) int64, most likely first
    top_probs: np.ndarray  # (T, top) float64


def ids_with_context(
    model: CharLM, text: str, context: str | None, already_normalized: bool = False, warn: bool = True
) -> tuple[torch.Tensor, int, str]:
    """The context's and the text's ids in one tensor on the model's device, where the text starts, and
    the text as the model reads it: normalized once, here, unless `already_normalized` (the server's
    prompt, which it normalized to check its length), for its ids and its tokens (`tokens_of`) alike.
    `warn=False`: no UnknownCharacterWarning for a character read as the unknown symbol, where the caller
    says it itself (`unseen_notes.unseen_note`)."""
    if not text and context == "":  # the recurrent core cannot run over zero steps
        raise CharLMError('nothing to read: the text is empty and context is ""; give a text, or context=None')
    context = model.vocab.start_text() if context is None else context
    context_ids = (
        model.vocab.encode(context, what="context", unseen=True, warn=warn)
        if context
        else torch.zeros(0, dtype=torch.long)
    )
    read = text if already_normalized else model.vocab.normalized(text)
    text_ids = model.vocab.encode(read, what="text", unseen=True, already_normalized=True, warn=warn)
    return torch.cat([context_ids, text_ids]).to(model.device), len(context_ids), read


def score(
    model: CharLM, outputs: torch.Tensor, ids: torch.Tensor, start: int, top: int = 0, keep_probs: bool = False
) -> Scores:
    """Score tokens ids[start:] by the top layer's outputs (T_all, H) over all of `ids`: the head's
    distribution after token t-1 against token t, a chunk of positions at a time. One function for
    `trace`, `surprise` and `prompt_logprobs`, so all report the same numbers."""
    count = len(ids) - start
    top = min(top, len(model.vocab))  # a larger top is every id (surprise(top=10**30): no such array)
    cold = 1 if start == 0 else 0  # nothing was read before token 0
    bits = np.full(count, np.nan)
    probs = np.full((count, len(model.vocab)), np.nan, dtype=np.float32) if keep_probs else None
    top_ids = np.full((count, top), -1, dtype=np.int64)
    top_probs = np.full((count, top), np.nan)  # float64: log(p) gives back the log-probability `bits` came from
    first = start + cold  # the first token with a prediction; row t's distribution is outputs[t - 1]
    for begin in range(first, len(ids), HEAD_CHUNK):
        end = min(begin + HEAD_CHUNK, len(ids))
        log_probs = F.log_softmax(model.head.logits(outputs[begin - 1 : end - 1]).float(), dim=-1)
        rows = slice(begin - start, end - start)
        targets = ids[begin:end, None]
        chosen = log_probs.gather(1, targets.clamp(min=0))[:, 0].to(widest_float(log_probs.device))
        chosen = torch.where(targets[:, 0] == UNSEEN, math.nan, chosen)  # no probability for a character never seen
        bits[rows] = (-chosen * LOG2E).cpu().numpy()
        if keep_probs:
            probs[rows] = log_probs.exp().cpu().numpy()
        if top:
            best = log_probs.topk(min(top, log_probs.size(1)), dim=1)
            top_ids[rows, : best.indices.size(1)] = best.indices.cpu().numpy()
            top_probs[rows, : best.indices.size(1)] = (
                best.values.to(widest_float(best.values.device)).exp().cpu().numpy()
            )
    return Scores(bits, probs, top_ids, top_probs)


def tokens_of(model: CharLM, read: str, ids: torch.Tensor) -> list[str]:
    """The text as the model read it, from `read`, the text normalized (`ids_with_context`): its
    characters (kept as typed where the vocabulary maps them to the unknown symbol), or each
    sentencepiece token's text."""
    if model.vocab.one_char_per_id:
        return list(read)
    return [model.vocab.decode([i]) for i in ids.tolist()]


def scored_chars(bits: np.ndarray, tokens: list[str]) -> int:
    """The characters of the tokens that were scored (a NaN is a token that was not): what a bits per
    character is over, so the count printed beside it."""
    return sum(len(token) for token, bit in zip(tokens, bits) if not np.isnan(bit))


def mean_bits(bits: np.ndarray, tokens: list[str]) -> float:
    """Bits per character of scored tokens: total bits over the characters of the tokens that were
    scored. NaN when none was: 0 would read as a perfect score."""
    chars = scored_chars(bits, tokens)
    return float(np.nansum(bits) / chars) if chars else math.nan


def preview(tokens: list[str], bits: np.ndarray) -> str:
    """`3,000 tokens 'It was the be...', 2.197 bpc`: how a repr names the text it holds, in one line where
    a notebook would otherwise show every number of every token."""
    text = "".join(tokens[:PREVIEW_TOKENS])
    shown = repr(text + "..." if len(tokens) > PREVIEW_TOKENS else text)
    return f"{len(tokens):,} tokens {shown}, {mean_bits(bits, tokens):.3f} bpc"


@dataclass(repr=False)
class Surprise:
    """The bits a model spent on each token of a text and its top guesses before it. Row t belongs to
    token t; a token with no prediction (a cold start) has NaN bits and no guesses."""

    tokens: list[str]
    bits: np.ndarray  # (T,) float64
    top: list[list[tuple[str, float]]]  # (T, <= top): (token, probability), most likely first

    def __repr__(self) -> str:
        return f"Surprise({preview(self.tokens, self.bits)}, {max(map(len, self.top), default=0)} guesses each)"

    @property
    def bpc(self) -> float:
        return mean_bits(self.bits, self.tokens)

    @property
    def scored_chars(self) -> int:
        """The characters `bpc` is over: not those the model never saw."""
        return scored_chars(self.bits, self.tokens)

    def to_dict(self) -> dict:
        """Plain values for JSON (a web page): bits rounded, NaN as None."""
        return {
            "tokens": self.tokens,
            "bits": [None if np.isnan(b) else round(float(b), 3) for b in self.bits],
            "top": [[[token, round(p, 4)] for token, p in guesses] for guesses in self.top],
        }


def surprise(
    model: CharLM,
    text: str,
    top: int = TOP,
    context: str | None = None,
    already_normalized: bool = False,
    warn: bool = True,
) -> Surprise:
    """Bits spent on each token of `text` and the model's `top` guesses before it. The model first
    reads `context` (None: the start of a line), so the first token is predicted too. The same head
    computation as `trace` (`score`), without the per-layer states. `already_normalized`, `warn`: as
    `ids_with_context`."""
    check_reading("scoring.surprise", model, text, context, already_normalized=already_normalized, warn=warn)
    top = checked_top("scoring.surprise", top)
    with reading_text("scoring.surprise", text):  # "notes.txt" names a file: the name is read, with a warning
        ids, start, read = ids_with_context(model, text, context, already_normalized, warn)
    with inference(model):
        outputs, _ = model.core(model.embed(ids[None]))
        scores = score(model, outputs[0], ids, start, top=top)
    return Surprise(tokens_of(model, read, ids[start:].cpu()), scores.bits, guesses(model, scores))


def checked_top(function: str, top: object) -> int:
    """How many guesses `function` (`surprise`, `tracing.trace_and_surprise`) was asked to keep, refused
    unless a count."""
    top = plain(top)  # np.int64(3), as charlm.next_probs takes it
    if not isinstance(top, int) or isinstance(top, bool) or top < 0:
        refuse(function, "top must be an integer, 0 or more", top)
    return top


def guesses(model: CharLM, scores: Scores) -> list[list[tuple[str, float]]]:
    """Each row's top guesses (`Scores.top_ids`) as (token, probability), likeliest first, as `Surprise.top`
    holds them: `surprise`'s and `tracing.trace_and_surprise`'s alike."""
    if not scores.top_ids.shape[1]:  # none asked: no need to decode a big vocabulary's every token
        return [[] for _ in scores.top_ids]
    decode = [model.vocab.decode([i]) for i in range(len(model.vocab))]
    return [
        [(decode[i], float(p)) for i, p in zip(row_ids, row_probs) if i >= 0]
        for row_ids, row_probs in zip(scores.top_ids.tolist(), scores.top_probs.tolist())
    ]


def top_logprobs(logits: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model's own distribution for rows of next-token logits (rows, vocab), before any temperature
    or penalty: (log-probabilities (rows, vocab), the `top` likeliest values and their ids)."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    values, ids = logprobs.topk(min(top, logprobs.size(-1)), dim=-1)
    return logprobs, values, ids


def next_probs(model: CharLM, prefix: str, top: int | None = None) -> list[tuple[str, float]]:
    """The `top` likeliest tokens after `prefix` (None: every one) with their probabilities, likeliest
    first: the model's own distribution, before any temperature or penalty, after reading the prefix
    (empty: the start of a line) as scoring reads a text, since these are the probabilities scoring
    takes its bits from: a character the model never saw is read as one it knows nothing about, with a
    warning that names it, where a seed refuses it."""
    ids = model.vocab.encode(prefix or model.vocab.start_text(), what="prefix", unseen=True)
    if (ids == UNSEEN).any():
        shown = first_named(model.vocab.unseen_in(model.vocab.normalized(prefix)), model.vocab.name_unseen)
        warnings.warn(
            f"prefix: {shown} never seen by the model, read as a character it knows nothing about",
            stacklevel=callers_stacklevel(),
        )
    with inference(model):
        logits, _ = model(ids[None])
        _, values, top_ids = top_logprobs(logits[0, -1], top or len(model.vocab))
    return [(model.vocab.decode([i]), math.exp(v)) for i, v in zip(top_ids.tolist(), values.tolist())]


def prompt_logprobs(
    model: CharLM, prompt: str, top: int, already_normalized: bool = False
) -> list[tuple[str, float | None, list | None]]:
    """Each token of `prompt` with the model's natural-log probability of it given the ones before
    (None for the first, which nothing predicted, and for a character the model never saw, which has
    no probability; that one still has its alternatives) and its `top` likeliest alternatives, as the
    server's `echo` reports them: the `surprise` computation, read cold. `already_normalized`: as
    `ids_with_context`."""
    scored = surprise(model, prompt, top=top, context="", already_normalized=already_normalized)
    tokens = []
    for i, (text, bits, guesses) in enumerate(zip(scored.tokens, scored.bits.tolist(), scored.top)):
        # the first has no alternatives (None); any other has its `top`, none when `top` is 0
        alternatives = [(alt, math.log(p)) for alt, p in guesses if p > 0] if i else None
        tokens.append((text, None if math.isnan(bits) else -bits * math.log(2), alternatives))
    return tokens
