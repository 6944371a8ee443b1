"""Characters <-> ids. The vocabulary is saved with the model, so a checkpoint decodes on its own.

By default every character of the corpus gets an id (lossless). `--min-count N` or `--coverage P`
keep only the frequent ones and map the rest to one unknown symbol, which shrinks a Chinese model's
embedding and head. Text is Unicode-normalized (`--normalize`, NFC by default; a `Vocab` built by
hand normalizes nothing unless told) before it is looked up, corpus and seed alike, so the same
character typed two ways is one character.
"""

from __future__ import annotations

import functools
import warnings
from collections import Counter
from collections.abc import Callable, Collection
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .corpus import check_characters, normalize_problem, normalized
from .errors import CharLMError, callers_stacklevel
from .fields import SHOWN, missing_keys, said
from .pieces import PieceVocab, TextIndex, token_ids
from .unseen import (
    first_named,
    never_seen,
    other_forms,
    other_forms_table,
    other_script,
    with_hint,
)

# The id of a character outside the vocabulary, where a caller asks to read such text (`encode(unseen=True)`):
# the model's `Embedding` reads it as the zero vector.
UNSEEN = -1
UNKNOWN = "\ufffd"  # the replacement character stands for every character left out of the vocabulary
MAX_CODE_POINT = 0x110000
UNKNOWN_SLICE = 1 << 20  # characters `Vocab.unseen_in` looks up at a time


@runtime_checkable  # CharLM refuses anything else for its vocabulary
class Vocabulary(Protocol):
    """What a model reads and writes through: a character vocabulary (`Vocab`, below) or SentencePiece
    pieces (`pieces.PieceVocab`). Both meet this protocol; code that takes either names this type, and
    reads a character vocabulary's own fields (`chars`, `index`, `unknown_id`) only where `one_char_per_id`,
    and a piece vocabulary's (`pieces`, `processor`, `byte_ids`) never: it asks (`token_text`, ...)."""

    tokenizer: str  # "char" or "sentencepiece", as stored in checkpoints
    one_char_per_id: bool  # every id spells exactly one character
    normalize: str  # the Unicode normalization applied to text before encoding

    def __len__(self) -> int: ...
    def encode(
        self, text: str, what: str = "text", unseen: bool = False, already_normalized: bool = False, warn: bool = True
    ) -> torch.Tensor: ...
    def encode_array(self, text: str) -> np.ndarray: ...  # already normalized text, for the corpus cache
    def dtype(self) -> np.dtype: ...  # the smallest unsigned type that holds every id
    def decode(self, ids: list[int] | torch.Tensor | np.ndarray) -> str: ...
    def decoder(self, batch: int) -> Callable[[torch.Tensor], list[str]]: ...
    def normalized(self, text: str) -> str: ...
    def knows(self, char: str) -> bool: ...
    def writes_text(self, token: int) -> bool: ...  # False for the unknown symbol and control pieces
    def byte_pieces(self) -> tuple[list[bytes], int] | None: ...  # for decoding's UTF-8 rule: see PieceVocab
    def byte_piece_ids(self) -> dict[int, int]: ...  # byte -> the id that spells it (byte fallback; else empty)
    def token_text(self, token: int) -> str | bytes: ...  # what id `token` writes: its text, or a lone byte
    def text_index(self) -> TextIndex: ...  # every id's `token_text`, once per vocabulary, for token healing
    def token_name(self, token: int) -> str: ...  # as the tokenizer names it: `</s>` for a piece that writes ""
    def char_lengths(self) -> torch.Tensor: ...
    def start_text(self) -> str: ...
    def size_text(self) -> str: ...
    def first(self, size: int) -> Vocabulary: ...
    def extended(self, chars: list[str]) -> Vocabulary: ...
    def to_dict(self) -> dict: ...


def code_points(text: str) -> np.ndarray:
    """The code points of `text` as an array, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class UnknownCharacterWarning(UserWarning):
    """Seed characters outside the vocabulary were mapped to the unknown symbol."""


class Vocab:
    """A character set, maybe with UNKNOWN. A corpus's own vocabulary is sorted (the same text always
    gives the same ids); a fine-tuning run's is its base's, in the base's order, with the new text's
    characters appended (`extended`), so every id the base knew keeps its meaning."""

    tokenizer = "char"
    one_char_per_id = True  # so a sampler's step count is its character count

    def __init__(self, chars: str | list[str], unknown: bool = False, normalize: str = "none"):
        if wrong := wrong_fields(chars, unknown, normalize):
            raise CharLMError(f"charlm.vocab.Vocab: {'; '.join(wrong)}")
        self.chars = list(chars)
        if unknown and UNKNOWN not in self.chars:
            self.chars.append(UNKNOWN)
        if not self.chars:
            raise CharLMError("the vocabulary is empty: the corpus has no characters")
        if len(self.chars) >= 2**32:
            raise CharLMError(f"{len(self.chars):,} distinct characters do not fit 32-bit ids")
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.unknown_id = self.index[UNKNOWN] if unknown else None
        self.normalize = normalize
        self._table: np.ndarray | None = None
        self._texts: TextIndex | None = None

    @classmethod
    def from_counts(cls, counts: Counter, min_count: int = 1, coverage: float = 1.0, normalize: str = "none") -> Vocab:
        """The characters that occur at least `min_count` times and, most frequent first, cover at least
        `coverage` of the text; the rest become UNKNOWN."""
        total = sum(counts.values())
        kept, covered = [], 0
        for char, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            if count < min_count or (covered >= coverage * total and coverage < 1.0):
                break
            kept.append(char)
            covered += count
        if counts and not kept:  # every character one unknown symbol: nothing left to learn
            raise CharLMError(
                f"{said('min_count', min_count)} and {said('coverage', metavar=f'{coverage:g}')} keep {len(kept)} "
                f"of the text's {len(counts):,} distinct characters; lower {said('min_count')} or raise {said('coverage')}"
            )
        return cls(sorted(kept), unknown=len(kept) < len(counts), normalize=normalize)

    def extended(self, chars: list[str]) -> Vocab:
        """This vocabulary with the characters it lacks from `chars` appended, sorted; its ids unchanged.
        (UNKNOWN among them gives the result the unknown symbol.)"""
        added = sorted(set(chars) - set(self.chars))
        return Vocab(self.chars + added, self.unknown_id is not None or UNKNOWN in added, self.normalize)

    def first(self, size: int) -> Vocab:
        """The vocabulary of ids 0..size-1: the base a vocabulary was `extended` from."""
        chars = self.chars[:size]
        return Vocab(chars, UNKNOWN in chars, self.normalize)

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        """What a notebook shows for `model.vocab`: its size and normalization, not the characters."""
        return f"Vocab({self.size_text()}, normalize={self.normalize!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars and self.unknown_id == other.unknown_id

    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id."""
        for dtype in (np.uint8, np.uint16, np.uint32):
            if len(self) <= np.iinfo(dtype).max + 1:
                return np.dtype(dtype)
        raise CharLMError(f"{len(self):,} distinct characters do not fit 32-bit ids")

    def normalized(self, text: str) -> str:
        return normalized(text, self.normalize)

    def knows(self, char: str) -> bool:
        return char in self.index

    def writes_text(self, token: int) -> bool:
        """Whether id `token` writes a character of the text: every id but the unknown symbol's."""
        return token != self.unknown_id

    def byte_pieces(self) -> None:
        """None: every id is a whole character (`PieceVocab.byte_pieces` spells some a byte at a time)."""

    def byte_piece_ids(self) -> dict[int, int]:
        """Empty: no id spells a byte."""
        return {}

    def token_text(self, token: int) -> str:
        """The character id `token` writes (the unknown symbol's is UNKNOWN: `writes_text` tells it apart)."""
        return self.chars[token]

    def text_index(self) -> TextIndex:
        """Every id's character, indexed as a piece vocabulary's texts are (`PieceVocab.text_index`)."""
        if self._texts is None:
            self._texts = TextIndex([c if self.writes_text(i) else b"" for i, c in enumerate(self.chars)])
        return self._texts

    def token_name(self, token: int) -> str:
        """A character is its own name."""
        return self.chars[token]

    def unseen_in(self, text: str) -> list[str]:
        """Characters of `text` outside the vocabulary, in order of first appearance (`unseen_counts`'s)."""
        return list(self.unseen_counts(text))

    def unseen_counts(self, text: str, start: int = 0) -> dict[str, int]:
        """Characters of `text` (from index `start`) outside the vocabulary, in order of first appearance,
        each with how many times it is found. Vectorized (`encode_array`'s table): a Python loop over a
        file's characters costs `charlm eval` as much as scoring it with a small model. A `UNKNOWN_SLICE`
        of characters at a time: a whole file's code points and ids at once would take 12 bytes per
        character, more than eval's scoring itself."""
        counts: dict[str, int] = {}
        for at in range(start, len(text), UNKNOWN_SLICE):
            codes = code_points(text[at : at + UNKNOWN_SLICE])
            outside = codes[self.outside_mask(codes, self.id_table()[codes])]
            found, first, times = np.unique(outside, return_index=True, return_counts=True)
            for at_first in np.argsort(first):
                char = chr(found[at_first])
                counts[char] = counts.get(char, 0) + int(times[at_first])
        return counts

    def outside_mask(self, codes: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Which of a text's code points (with their ids, `id_table`'s) the vocabulary does not know."""
        outside = ids == (UNSEEN if self.unknown_id is None else self.unknown_id)
        if self.unknown_id is not None:
            outside &= codes != ord(UNKNOWN)  # the symbol itself, written in the text, is known
        return outside

    def outside(self, codes: np.ndarray, ids: np.ndarray) -> list[str]:
        """`unseen_in` of a text's code points and their ids (`id_table`'s), for `encode`, which has both."""
        outside = self.outside_mask(codes, ids)
        found, first = np.unique(codes[outside], return_index=True)
        return [chr(code) for code in found[np.argsort(first)]]

    def name_unseen(self, char: str, banned: Collection[str] = (), times: int | None = None) -> str:
        """An unseen character as an error shows it, with a hint of what was meant, never mapped silently: the
        forms of it the vocabulary knows and `banned` does not ban (':' -> "did you mean '：'?"), or that it
        is of the other Chinese script (`other_script`: '寶' under a simplified model). `times`: found that many
        times in a scored text (`charlm eval`), which no one typed: "'「' 8 times (the model writes '“')",
        no question, no note on the script (such a text's rare characters are in Big5 too, not traditional
        forms). The pages name characters alike (charlm/serve/page.js: nameUnseen, from `unseen_hints`)."""
        if times is not None:
            known = self.known_forms(char)
            hint = f"the model writes {' or '.join(map(repr, known))}" if known else ""
            return with_hint(f"{char!r} {'once' if times == 1 else f'{times:,} times'}", hint, quoted=True)
        script, note = self.other_script
        return with_hint(char, self.forms_hint(char, banned) or (note if char in script else ""))

    def forms_hint(self, char: str, banned: Collection[str] = ()) -> str:
        """What to say of an unseen character whose other forms (`other_forms`) the vocabulary knows,
        less those `banned`: "did you mean '：'?"; "" where it knows none."""
        known = [c for c in self.known_forms(char) if c not in banned]
        return f"did you mean {' or '.join(map(repr, known))}?" if known else ""

    def known_forms(self, char: str) -> list[str]:
        """The other forms of `char` (`other_forms`) the vocabulary knows, likeliest meant first."""
        return [c for c in other_forms(char) if c in self.index]

    def names_unseen(self, counts: dict[str, int], width: int = 100) -> str:
        """A text's unseen characters (each with how many times it is found there) named in one short line,
        for a note on a whole text's (`charlm eval`): each as `name_unseen` names a text's, as many as fit in
        `width` characters, then " ..."."""
        shown: list[str] = []
        for char, times in counts.items():
            name = self.name_unseen(char, times=times)
            if shown and len(" ".join([*shown, name])) > width:
                break
            shown.append(name)
        return " ".join(shown) + (" ..." if len(shown) < len(counts) else "")

    def unseen_hints(self) -> dict:
        """What `name_unseen` needs of Python's tables, for a reader without them (the exported page,
        charlm/export/html.py, and the serve page, from /v1/models): each unseen character with other
        forms the vocabulary knows, those forms (`known_forms`: ',' -> ['，', '、']), and, for a model
        of simplified or traditional Chinese, the other script's characters it does not know, with the note
        that names one (`other_script`: the pages name each as `'寶' (note)`)."""
        unseen = [char for char in sorted(other_forms_table()) if char not in self.index]
        script, note = self.other_script
        return {
            "forms": {char: known for char in unseen if (known := self.known_forms(char))},
            "other_script": "".join(sorted(script)),
            "other_script_note": note,
        }

    @functools.cached_property
    def other_script(self) -> tuple[frozenset[str], str]:
        """`unseen.other_script` of this vocabulary, worked out once: every unseen character named asks."""
        return other_script(self.chars)

    def id_table(self) -> np.ndarray:
        """Every code point's id (the unknown symbol's, or UNSEEN, for those outside the vocabulary),
        built at the first use: a lookup table indexed by code point."""
        if self._table is None:
            missing = UNSEEN if self.unknown_id is None else self.unknown_id
            self._table = np.full(MAX_CODE_POINT, missing, dtype=np.int64)
            self._table[[ord(c) for c in self.chars]] = np.arange(len(self.chars))
        return self._table

    def encode_array(self, text: str) -> np.ndarray:
        """Already normalized text -> ids, vectorized (`id_table`)."""
        return self.id_table()[code_points(text)]

    def encode(
        self, text: str, what: str = "text", unseen: bool = False, already_normalized: bool = False, warn: bool = True
    ) -> torch.Tensor:
        """Text -> int64 ids. Characters the model has never seen are mapped to the unknown symbol with a
        warning, when the vocabulary has one; else, with `unseen`, to UNSEEN (a character the model knows
        nothing about: scoring reads it and leaves it out of the score; the caller tells the user), and
        otherwise they are an error that names them (a seed: see docs/data-and-checkpoints.md).
        `already_normalized`: the caller normalized `text` for its own use, so it is not done twice.
        `warn=False`: the caller says it itself (`unseen_notes.unseen_note`); a warnings filter would silence
        every thread's warning, not just this call's."""
        check_characters(text, what)
        text = text if already_normalized else self.normalized(text)
        codes = code_points(text)
        ids = self.id_table()[codes]  # looked up once, for the check and the ids
        missing = self.outside(codes, ids)
        if missing and not (unseen and self.unknown_id is None):
            if self.unknown_id is None:
                raise never_seen(what, missing, self.name_unseen)
            if warn:
                shown = first_named(missing, self.name_unseen)
                warnings.warn(
                    f"{what}: {shown} not in the vocabulary, read as {UNKNOWN!r}",
                    UnknownCharacterWarning,
                    callers_stacklevel(),
                )
        return torch.from_numpy(ids)

    def decode(self, ids: list[int] | torch.Tensor | np.ndarray) -> str:
        return "".join(self.chars[i] for i in token_ids(ids, len(self)))

    def decoder(self, batch: int) -> Callable[[torch.Tensor], list[str]]:
        """Decodes one id per sample per call: the protocol's general path. charlm's own code calls it
        for sentencepiece only: `generation.Batch.decoder` reads `chars` directly for a character row."""
        return lambda ids: [self.chars[i] for i in token_ids(ids, len(self))]

    def char_lengths(self) -> torch.Tensor:
        """Characters per id: one each (bits per character then equals bits per token)."""
        return torch.ones(len(self), dtype=torch.int64)

    def start_text(self) -> str:
        """What an empty seed primes with: the start of a line, or failing that the first character."""
        return "\n" if "\n" in self.index else self.chars[0]

    def size_text(self) -> str:
        return f"{len(self):,} characters" + (" (one the unknown symbol)" if self.unknown_id is not None else "")

    def to_dict(self) -> dict:
        """Stored in checkpoints as plain values: safe to load, nothing to unpickle."""
        return {"chars": "".join(self.chars), "unknown": self.unknown_id is not None, "normalize": self.normalize}

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        """A character or, when the dict says so, a sentencepiece vocabulary. A `tokenizer` of neither, or a
        character vocabulary holding a sentencepiece one's `model`, is damage: read as characters, a vocab.json
        edited by hand (its export too old to record its sha256) would load as another model than it says."""
        if isinstance(data, dict) and data.get("tokenizer") == PieceVocab.tokenizer:
            return PieceVocab.from_dict(data)
        if isinstance(data, dict) and (tokenizer := data.get("tokenizer", cls.tokenizer)) != cls.tokenizer:
            kinds = f"{cls.tokenizer!r} or {PieceVocab.tokenizer!r}"
            raise CharLMError(f"the vocabulary is damaged: tokenizer is {SHOWN.repr(tokenizer)}, not {kinds}")
        if isinstance(data, dict) and "model" in data:
            raise CharLMError(
                f"the vocabulary is damaged: model is {SHOWN.repr(data['model'])}, a sentencepiece vocabulary's "
                "field in a character vocabulary"
            )
        if not isinstance(data, dict):  # a tensor's [name] is a torch warning, then an IndexError
            raise CharLMError("the vocabulary is damaged: expected chars, unknown and normalize")
        if missing := missing_keys(data, ("chars", "unknown", "normalize")):
            raise CharLMError(f"the vocabulary is damaged: {missing}")
        chars, unknown, normalize = data["chars"], data["unknown"], data["normalize"]
        if wrong := wrong_fields(chars, unknown, normalize):
            raise CharLMError(f"the vocabulary is damaged: {'; '.join(wrong)}")
        if not chars:  # a stored vocabulary holds the unknown symbol too: none is an edit, not an empty corpus
            raise CharLMError("the vocabulary is damaged: chars is empty")
        return cls(list(chars), unknown, normalize)


def wrong_fields(chars: object, unknown: object, normalize: object) -> list[str]:
    """What is wrong with a vocabulary's fields, stored or given to `Vocab` by hand, each named with its
    value: each field checked on its own, so a message blames the field at fault, not a bare TypeError."""
    wrong = []
    if not isinstance(chars, (str, list)):
        wrong.append(f"chars is {SHOWN.repr(chars)}, not a string")
    elif strays := [c for c in chars if not isinstance(c, str) or len(c) != 1]:
        wrong.append(f"chars holds {SHOWN.repr(strays[0])}, not a character")
    elif repeated := next((c for c, times in Counter(chars).items() if times > 1), None):
        wrong.append(f"chars holds {repeated!r} twice")
    if not isinstance(unknown, bool):
        wrong.append(f"unknown is {SHOWN.repr(unknown)}, not true or false")
    if problem := normalize_problem(normalize):
        wrong.append(problem)
    return wrong
