"""SentencePiece tokens instead of single characters (`--tokenizer sentencepiece`).

A piece vocabulary stands in for `Vocab` everywhere: same encode/decode, same place in the
checkpoint (the serialized SentencePiece model travels inside it, so a checkpoint is self-contained).
The model is trained so that decoding gives back exactly the text that was encoded:

- identity normalization (charlm's own `--normalize` has already run), no dummy prefix, runs of
  spaces kept;
- "\\n" a piece of its own, so line breaks survive and no piece spans one (which also makes
  encoding a text chunk by chunk, cut after newlines, the same as encoding it whole);
- byte fallback: a character the model never saw is spelled as its UTF-8 bytes, so any seed encodes.

(One character does not survive: SentencePiece writes spaces as U+2581 "▁", so a literal U+2581 in
the text comes back as a space.)

Quality stays in bits per *character*: `char_lengths()` gives each piece's length in characters
(a byte piece counts 1 if it starts a character, 0 if it continues one), so a scored stretch of
pieces knows exactly how many characters it covers.
"""

from __future__ import annotations

import base64
import bisect
import codecs
import contextlib
import io
import operator
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import sentencepiece as spm
import torch

from .corpus import check_characters, normalize_problem, normalized
from .errors import CharLMError
from .fields import SHOWN, said

MAX_SENTENCE_CHARS = 2048  # longer lines are cut into pieces of this many characters for training
MAX_SENTENCE_BYTES = 4 * MAX_SENTENCE_CHARS  # so no training sentence is dropped as too long
TRAINING_SENTENCES = 2_000_000  # a big corpus trains the tokenizer on a random sample of its lines
BYTE_PIECES, SPECIAL_PIECES = 256, 4  # byte fallback's <0x00>..<0xFF>; <unk>, <s>, </s> and "\n"
EXTRA_MERGED_PIECES = 2048  # the default --vocab-size for bpe/unigram: the characters, plus this many
MIN_COVERAGE = 0.98  # the least character coverage SentencePiece trains with
MAX_CHAR = 0x10FFFF  # the last code point, which no character follows (`TextIndex.extending`)
HEALING_MASKS = 64  # the masks `TextIndex.healing` keeps, the latest used: a vocabulary's (bool, (vocab,)) each


def default_vocab_size(model_type: str, distinct_characters: int) -> int:
    """char: every character gets a piece; bpe/unigram: the characters plus EXTRA_MERGED_PIECES."""
    extra = 0 if model_type == "char" else EXTRA_MERGED_PIECES
    return distinct_characters + BYTE_PIECES + SPECIAL_PIECES + extra


def char_model_size(counts: Counter, coverage: float) -> int:
    """The fewest pieces `--spm-model char` needs, as bpe and unigram do: one per character `coverage`
    keeps (the most frequent first, as SentencePiece picks them), plus the byte and special pieces."""
    frequencies = sorted((n for char, n in counts.items() if char != "\n"), reverse=True)  # "\n" is special
    kept, covered = 0, 0
    while kept < len(frequencies) and covered < coverage * sum(frequencies):
        covered += frequencies[kept]
        kept += 1
    return kept + BYTE_PIECES + SPECIAL_PIECES


def training_sentences(texts: Iterable[str]) -> Iterator[str]:
    """Lines of the text (a long paragraph cut into MAX_SENTENCE_CHARS pieces), for the trainer."""
    for text in texts:
        for line in text.split("\n"):
            for start in range(0, len(line), MAX_SENTENCE_CHARS):
                yield line[start : start + MAX_SENTENCE_CHARS]


def train_model(texts: Iterable[str], model_type: str, vocab_size: int, coverage: float = 1.0) -> bytes:
    """Train a SentencePiece model on text chunks; returns its serialized form."""
    if not MIN_COVERAGE <= coverage <= 1.0:
        raise CharLMError(
            f"{said('coverage', coverage)} is below {MIN_COVERAGE}, the least sentencepiece accepts; "
            f"raise it, or leave rare characters to byte pieces with {said('coverage', 1.0)}"
        )
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=training_sentences(texts),
            model_writer=model,
            model_type=model_type,
            vocab_size=vocab_size,
            hard_vocab_limit=False,  # a small corpus may not support vocab_size pieces: fewer is fine
            character_coverage=coverage,
            normalization_rule_name="identity",
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            user_defined_symbols=["\n"],
            byte_fallback=True,
            max_sentence_length=MAX_SENTENCE_BYTES,
            input_sentence_size=TRAINING_SENTENCES,
            shuffle_input_sentence=True,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if needed := re.search(r"smaller than required_chars\. \d+ vs (\d+)", message):
            # sentencepiece's "(40 vs 287)" leaves a user to guess what 287 is: the pieces the corpus's
            # characters and byte fallback's 256 bytes need
            raise CharLMError(
                f"{said('vocab_size', vocab_size)} is too small for this corpus: its characters and the 256 "
                f"byte pieces need at least {int(needed[1]):,}; raise {said('vocab_size')} or lower {said('coverage')}"
            ) from None
        raise CharLMError(f"sentencepiece could not train a tokenizer: {message}") from None
    return model.getvalue()


class PieceVocab:
    """Text <-> SentencePiece ids, with the interface of `Vocab`."""

    tokenizer = "sentencepiece"
    one_char_per_id = False  # a piece spells several characters, a byte piece part of one

    def __init__(self, model: bytes, normalize: str = "nfc"):
        if wrong := wrong_fields(model, normalize):  # a vocabulary built by hand; `from_dict` says a stored one's
            raise CharLMError(f"charlm.pieces.PieceVocab: {'; '.join(wrong)}")
        self.model, self.normalize = model, normalize
        self.processor = spm.SentencePieceProcessor()
        self.processor.LoadFromSerializedProto(model)
        self.pieces = [self._surface(i) for i in range(len(self))]
        # byte -> its byte piece's id: byte fallback's spelling of what no piece holds (empty without it)
        self.byte_ids = {self.pieces[i][0]: i for i in range(len(self)) if self.processor.is_byte(i)}
        self._texts: TextIndex | None = None

    def _surface(self, i: int) -> bytes:
        """The bytes piece `i` stands for in the text."""
        sp = self.processor
        if sp.is_byte(i):
            return bytes([int(sp.id_to_piece(i)[3:5], 16)])
        if sp.is_control(i):
            return b""
        if sp.is_unknown(i):
            return "\ufffd".encode()
        return sp.id_to_piece(i).encode()  # spaces still written "▁": see `_spaces`

    def __len__(self) -> int:
        return self.processor.get_piece_size()

    def extended(self, chars: list[str]) -> PieceVocab:
        """A fine-tuning run keeps its base's tokenizer unchanged: byte fallback spells new characters."""
        return self

    def first(self, size: int) -> PieceVocab:
        return self

    def __repr__(self) -> str:
        """What a notebook shows for `model.vocab`: its size, whether bytes spell what no piece does
        (charlm's tokenizers always do: `train_model`), and its normalization."""
        fallback = ", byte fallback" if self.byte_ids else ""
        return f"PieceVocab(sentencepiece, {len(self):,} pieces{fallback}, normalize={self.normalize!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PieceVocab) and self.model == other.model and self.normalize == other.normalize

    def knows(self, char: str) -> bool:
        """Whether the character is a piece of its own (else it is spelled as bytes)."""
        return self.processor.piece_to_id(char.replace(" ", "\u2581")) != self.processor.unk_id()

    def writes_text(self, token: int) -> bool:
        """Whether piece `token` writes text: not a control piece (<s>, </s>: nothing) nor <unk> ("\ufffd";
        byte fallback spells every character, so the model never saw it)."""
        return bool(self.pieces[token]) and not self.processor.is_unknown(token)

    def byte_pieces(self) -> tuple[list[bytes], int] | None:
        """Each piece's bytes and <unk>'s id, where byte fallback spells a character a byte at a time (so a
        sampler keeps the bytes it draws to UTF-8: `decoding.Utf8Rule`); None without byte pieces."""
        return (self.pieces, self.processor.unk_id()) if self.byte_ids else None

    def byte_piece_ids(self) -> dict[int, int]:
        """byte -> the id of its byte piece, byte fallback's spelling of what no piece holds (empty without it)."""
        return dict(self.byte_ids)

    def token_text(self, token: int) -> str | bytes:
        """The text piece `token` writes (a space as a space, "" for a control piece), or, for a byte piece
        that is part of a character and so writes no text alone, its byte."""
        try:
            return _spaces(self.pieces[token].decode("utf-8"))
        except UnicodeDecodeError:
            return self.pieces[token]

    def text_index(self) -> TextIndex:
        """Every piece's text, indexed for token healing: built at the first use, once per vocabulary."""
        if self._texts is None:
            self._texts = TextIndex([self.token_text(i) if self.writes_text(i) else b"" for i in range(len(self))])
        return self._texts

    def token_name(self, token: int) -> str:
        """The piece as SentencePiece names it: `</s>`, `<0xE4>`, `▁the`."""
        return self.processor.id_to_piece(token)

    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if len(self) <= 1 << 16 else np.uint32)

    def normalized(self, text: str) -> str:
        return normalized(text, self.normalize)

    def encode_array(self, text: str) -> np.ndarray:
        """Already normalized text -> ids."""
        return np.asarray(self.processor.encode(text), dtype=np.int64)

    def encode(
        self, text: str, what: str = "text", unseen: bool = False, already_normalized: bool = False, warn: bool = True
    ) -> torch.Tensor:
        """Text -> int64 ids. Byte fallback spells any character, so nothing is ever unknown (`unseen`
        changes nothing, nor does `warn`). `already_normalized`: as `Vocab.encode`."""
        check_characters(text, what)
        return torch.from_numpy(self.encode_array(text if already_normalized else self.normalized(text)))

    def decode(self, ids: list[int] | torch.Tensor | np.ndarray) -> str:
        return _spaces(b"".join(self.pieces[i] for i in token_ids(ids, len(self))).decode("utf-8", errors="replace"))

    def decoder(self, batch: int) -> Callable[[torch.Tensor], list[str]]:
        """Decodes one id per sample per call. A character spelled as bytes appears once its last
        byte has come, so each sample keeps its own incremental UTF-8 decoder."""
        decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(batch)]
        return lambda ids: [_spaces(d.decode(self.pieces[i])) for d, i in zip(decoders, token_ids(ids, len(self)))]

    def char_lengths(self) -> torch.Tensor:
        """Characters per piece: text length, or for a byte piece 1 if it starts a UTF-8 character."""
        return torch.tensor([len(p.decode("utf-8", errors="ignore")) or _starts_char(p) for p in self.pieces])

    def start_text(self) -> str:
        """What an empty seed primes with: the start of a line."""
        return "\n"

    def size_text(self) -> str:
        return f"{len(self):,} sentencepiece pieces"

    def to_dict(self) -> dict:
        """Plain values for the checkpoint and vocab.json: the model as base64 text."""
        return {
            "tokenizer": self.tokenizer,
            "model": base64.b64encode(self.model).decode(),
            "normalize": self.normalize,
        }

    @classmethod
    def from_dict(cls, data: dict) -> PieceVocab:
        try:
            model, normalize = base64.b64decode(data["model"], validate=True), data["normalize"]
        except (KeyError, TypeError, ValueError):
            raise CharLMError("the vocabulary is damaged: expected a base64 sentencepiece model") from None
        if wrong := wrong_fields(model, normalize):
            raise CharLMError(f"the vocabulary is damaged: {'; '.join(wrong)}")
        return cls(model, normalize)


def wrong_fields(model: object, normalize: object) -> list[str]:
    """What is wrong with a piece vocabulary's fields, stored or given to `PieceVocab` by hand, each named
    with its value, as vocab.wrong_fields names a `Vocab`'s."""
    wrong = []
    if not (isinstance(model, bytes) and loads(model)):
        wrong.append(f"model is {SHOWN.repr(model)}, not a sentencepiece model's bytes (as pieces.train_model returns)")
    if problem := normalize_problem(normalize):
        wrong.append(problem)
    return wrong


def loads(model: bytes) -> bool:
    """Whether `model` is a sentencepiece model's serialized bytes."""
    try:
        spm.SentencePieceProcessor().LoadFromSerializedProto(model)
    except RuntimeError:
        return False
    return True


class TextIndex:
    """What each id writes (`token_text`; b"" where it writes no text), with the ids of whole texts
    sorted, so that token healing asks which pieces begin with a text, or spell a beginning of it, by
    bisection and a few lookups. Built once per vocabulary (`text_index`): a loop over every piece per
    row and per healing step, in Python, would be paid per request in the server's engine thread."""

    def __init__(self, texts: list[str | bytes]):
        self.texts = texts
        whole = sorted((t, i) for i, t in enumerate(self.texts) if isinstance(t, str) and t)
        self.sorted_texts = [t for t, _ in whole]
        self.sorted_ids = torch.tensor([i for _, i in whole], dtype=torch.int64)
        self.ids_of: dict[str, list[int]] = {}
        for t, i in whole:
            self.ids_of.setdefault(t, []).append(i)
        self.masks: OrderedDict[str, torch.Tensor] = OrderedDict()  # `healing`'s, by rest, the latest used last

    def extending(self, text: str) -> tuple[int, int]:
        """The span of `sorted_ids` whose texts begin with `text` (a non-empty text)."""
        low = bisect.bisect_left(self.sorted_texts, text)
        stem = text.rstrip(chr(MAX_CHAR))  # the first text past all that begin with `text`: its last character + 1
        high = (
            bisect.bisect_left(self.sorted_texts, stem[:-1] + chr(ord(stem[-1]) + 1), low)
            if stem
            else len(self.sorted_texts)
        )
        return low, high

    def healing(self, rest: str) -> torch.Tensor:
        """`healing_mask(rest)`, the same tensor each time (read only) while it is among the latest
        HEALING_MASKS used: every sample of a seed heals through the same rests, and the sampler copies a
        mask it has seen to the device once (`decoding.on_device`), not once a row a step.

        Threads that sample from one vocabulary at once (charlm.generate in threads, a server's engines
        on one model) share the masks: each change is one call on the OrderedDict, so that no thread
        changes it between another's look and change (two evicting the one oldest mask)."""
        mask = self.masks.get(rest)
        if mask is None:
            mask = self.masks.setdefault(rest, self.healing_mask(rest))  # another thread's, where it came first
        else:
            with contextlib.suppress(KeyError):  # evicted by another thread since the look: made again when next asked
                self.masks.move_to_end(rest)
        while len(self.masks) > HEALING_MASKS:
            with contextlib.suppress(KeyError):  # emptied by other threads meanwhile
                self.masks.popitem(last=False)
        return mask

    def healing_mask(self, rest: str) -> torch.Tensor:
        """Which ids write text that begins with `rest` or spells a beginning of it (bool, (vocab,))."""
        allowed = torch.zeros(len(self.texts), dtype=torch.bool)
        low, high = self.extending(rest)
        allowed[self.sorted_ids[low:high]] = True
        beginnings = [i for end in range(1, len(rest)) for i in self.ids_of.get(rest[:end], ())]
        allowed[beginnings] = True
        return allowed


def token_ids(ids: int | list[int] | torch.Tensor | np.ndarray, size: int) -> list[int]:
    """`ids` as a list, each a token of a vocabulary of `size`: a negative one would index from the end
    and decode as the last token, inventing text (-1 is `vocab.UNSEEN`, a character the model never saw,
    which has no text a vocabulary could give back). One row of ids (a lone id, `logits.argmax()` or its
    `.item()`, is one): a batch's rows are texts of their own, refused in one line, not a TypeError."""
    if isinstance(ids, (torch.Tensor, np.ndarray)):
        if ids.ndim > 1:
            raise CharLMError(
                f"decode takes one row of token ids, not {ids.ndim} dimensions (shape {tuple(ids.shape)}); "
                "decode a row at a time: [vocab.decode(row) for row in ids]"
            )
        if not holds_integers(ids):
            raise CharLMError(f"decode takes token ids, which are integers, not {ids.dtype} values")
        ids = ids.reshape(-1).tolist()
    elif not isinstance(ids, (list, tuple)):
        ids = [one_id(ids)]
    elif ids and isinstance(ids[0], (list, tuple)):
        raise CharLMError("decode takes one row of token ids, not a list of rows; decode a row at a time")
    else:
        ids = [one_id(i) for i in ids]
    if ids and ((low := min(ids)) < 0 or (high := max(ids)) >= size):
        bad = low if low < 0 else high
        raise CharLMError(
            f"decode: token id {bad} is not one of the vocabulary's (0 to {size - 1}); "
            "a character never seen (-1) has no text"
        )
    return ids


def one_id(value: object) -> int:
    """A token id given alone or in a list: an int, numpy's or a 0-D integer tensor. A float, a bool or a
    text indexed a list with it (a TypeError, or True decoded as id 1): refused in one line."""
    if not isinstance(value, bool) and (not isinstance(value, torch.Tensor) or holds_integers(value)):
        with contextlib.suppress(TypeError):
            return operator.index(value)
    hint = "; vocab.encode(text) gives a text's ids" if isinstance(value, str) else ""
    raise CharLMError(f"decode takes token ids, which are integers, not {SHOWN.repr(value)}{hint}")


def holds_integers(values: torch.Tensor | np.ndarray) -> bool:
    """Whether a tensor's or an array's values are integers, as token ids are: not floats, complex or bools."""
    if isinstance(values, torch.Tensor):
        return not (values.is_floating_point() or values.is_complex() or values.dtype == torch.bool)
    return bool(np.issubdtype(values.dtype, np.integer))


def _spaces(text: str) -> str:
    """SentencePiece writes a space as "▁", in a piece or, where no piece has it, as that character's
    bytes; either way it is a space again."""
    return text.replace("\u2581", " ")


def _starts_char(piece: bytes) -> int:
    """1 for a lone byte that begins a UTF-8 character (not a 10xxxxxx continuation byte)."""
    return int(len(piece) == 1 and piece[0] & 0xC0 != 0x80)
