"""A poem form or template (forms.py) compiled for one model's vocabulary: which ids may come at each
position of a sample, and where each id leads.

At each step the sampler keeps only the characters the template allows there (`Cursor.allowed`) and
renormalizes over them, so a sample always fits its form; temperature, top-k, top-p and the penalty act
inside that set. Where the template has no fixed script (forms.SCRIPT_RULE), `_` is whichever of Han
characters and letters the model's vocabulary holds more of.

A seed may begin the poem (`Constrained.begun`): its text after its last line that is not a whole line of
the template (a title, an author, a blank line), less any whole poems at its start, each ended by a line
break. When that text is the template's start (`_` in characters of the script the model writes, fixed
text in place), the sample writes the rest of that poem; otherwise a new poem after the seed. An acrostic
is the whole poem's: the verses the seed began must begin with their characters.

A sentencepiece model writes pieces: a piece is allowed where all of its text fits the next
positions and the rest of the template can still be written after it (`Constrained.reachable`).
A fixed character no piece holds (a rare 鬱, a 「 the training text never had) is written as the
model writes it anywhere, in byte-fallback pieces: its UTF-8 bytes, one position each.

Tokens a sample's logit bias bans (`decoding.bias_vector`) are left out of the template as if the
model did not have them, so a sample never dead-ends; a template they make impossible to write
(a fixed character banned, every character `_` may be banned) is refused before sampling.
"""

from __future__ import annotations

from typing import Protocol

import torch

from .errors import BiasError, CharLMError, FieldError
from .fields import said
from .forms import Template, fills, is_han, is_letter, option_named, template_of
from .unseen import never_seen, other_forms
from .vocab import Vocabulary


class Constrained:
    """A template compiled for one model's vocabulary: which ids may come at each position, and
    where each id leads. Built once per request; each sample walks it with its own `Cursor`."""

    def __init__(
        self,
        template: Template,
        vocab: Vocabulary,
        acrostic_name: str | None = None,
        banned: torch.Tensor | None = None,
    ):
        """`banned`: the ids a logit bias bans (bool over the vocabulary), which the template never allows.
        `acrostic_name`: the acrostic's option in messages (None: as its caller wrote it)."""
        acrostic_name = said("acrostic") if acrostic_name is None else acrostic_name
        self.template, self.acrostic_name = template, acrostic_name
        # fixed text as the model reads it (a model trained on NFKC text knows "," for "，")
        slots = [
            slot if slot is None or len(vocab.normalized(slot)) != 1 else vocab.normalized(slot)
            for slot in template.slots
        ]
        self.texts, self.byte_ids = id_texts(vocab), vocab.byte_piece_ids()
        fixed = [c for c in slots if c is not None]
        option = {c: acrostic_name if c in template.acrostic else template.name for c in fixed}  # that fixed it
        written = self.written = {c for text in self.texts for c in text}  # what the model writes, bans aside
        self.spelled_bytes = set(self.byte_ids)  # and the bytes it spells any other character in, bans aside
        in_bytes = {c for c in fixed if c not in written}  # no piece holds it: spelled in byte pieces
        if missing := unwritten(fixed, written, self.byte_ids, in_bytes):
            what = option[missing[0]]  # every character of the option that fixed the first, as a seed's are named
            name = vocab.name_unseen if vocab.one_char_per_id else repr  # ',' (did you mean '，'?)
            field = "acrostic" if what == acrostic_name else template.field
            raise never_seen(what, [c for c in missing if option[c] == what], name, field)
        self.script = template.script or majority_script(self.texts)
        bans = banned is not None and bool(banned.any())
        if bans:
            self.leave_out(banned.tolist(), vocab, fixed, in_bytes, option)
        self.slots, self.compiled_at = spelled_slots(slots, in_bytes)
        self.shape = [None if i in template.acrostic_at else slot for i, slot in enumerate(slots)]  # no acrostic
        self.text_slots = slots  # each position of the template's text: its character as read, None where free
        self.size = len(self.slots)
        # how far each id moves a cursor: its characters, or one position for a byte piece
        self.widths = [len(text) for text in self.texts]
        for i in self.byte_ids.values():
            self.widths[i] = 1
        self.accepts = is_han if self.script == "han" else is_letter
        self.masks: dict[int, torch.Tensor] = {}
        self.character_masks: dict[str, torch.Tensor] = {}  # a one-character-per-id vocabulary's, by character
        self.free: torch.Tensor | None = None
        if vocab.one_char_per_id:  # one character per id: a position allows its character or the script
            self.free = torch.tensor([len(t) == 1 and self.accepts(t) for t in self.texts], dtype=torch.bool)
            self.index = vocab.index  # character -> id
            self.finishes = [bool(self.free.any())] * (self.size + 1)
        else:
            self.finishes = self.reachable()
        if not self.finishes[0]:
            free = "Han characters" if self.script == "han" else "letters"
            if bans:
                raise BiasError(f" bans every way to write {template.name} (`_` needs {free}); ban fewer")
            cannot = f"{template.name}: the model cannot write this template (it knows no {free} for `_`)"
            raise FieldError(cannot, template.field)

    def leave_out(
        self, out: list[bool], vocab: Vocabulary, fixed: list[str], in_bytes: set[str], option: dict[str, str]
    ) -> None:
        """Drop the ids a logit bias bans (`out`) from what the template may write, as if the model did not
        have them; a fixed character they leave no way to write is refused, naming the option that fixed it."""
        self.texts = ["" if out[i] else text for i, text in enumerate(self.texts)]
        self.byte_ids = {byte: i for byte, i in self.byte_ids.items() if not out[i]}
        unbanned = {c for text in self.texts for c in text}
        if missing := unwritten(fixed, unbanned, self.byte_ids, in_bytes):
            char = missing[0]
            shown = repr(char)
            if char in in_bytes:  # the ban names a token, not the character
                token = next(i for byte, i in vocab.byte_piece_ids().items() if byte in piece_bytes(char) and out[i])
                shown = f"token {token} (a byte of {char!r})"
            raise BiasError(f" bans {shown}, but {option[char]} must write it; leave it unbanned")

    def fit(self, text: str, position: int) -> bool:
        """Whether an id's text fits the template from `position` on."""
        slots = self.slots[position : position + len(text)]
        return bool(text) and len(slots) == len(text) and fills(text, slots, self.accepts)

    def reachable(self) -> list[bool]:
        """finishes[p]: some sequence of pieces writes the template from position p to its end."""
        finishes = [False] * self.size + [True]
        for position in range(self.size - 1, -1, -1):
            if isinstance(self.slots[position], int):  # a byte: its byte piece, which `unwritten` made sure of
                finishes[position] = finishes[position + 1]
            else:
                finishes[position] = any(finishes[position + len(t)] for t in self.texts if self.fit(t, position))
        return finishes

    def allowed(self, position: int) -> torch.Tensor:
        """The ids that may come at `position` (bool over the vocabulary), cached."""
        mask = self.masks.get(position)
        if mask is None:
            slot = self.slots[position]
            if isinstance(slot, int):  # a byte of a character spelled in bytes
                mask = torch.zeros(len(self.texts), dtype=torch.bool)
                mask[self.byte_ids[slot]] = True
            elif self.free is not None:  # a character's mask is one for all its positions (copied to a GPU once)
                mask = self.free if slot is None else self.character_masks.get(slot)
                if mask is None:
                    mask = self.character_masks[slot] = torch.zeros_like(self.free)
                    mask[self.index[slot]] = True
            else:
                mask = torch.tensor(
                    [self.fit(t, position) and self.finishes[position + len(t)] for t in self.texts], dtype=torch.bool
                )
            self.masks[position] = mask
        return mask

    def cursor(self, start: int = 0) -> Cursor:
        """A sample's place, `start` (`begun`) positions in."""
        return Cursor(self, start)

    def begun(self, seed: str, what: str = "the seed", typed: str | None = None, option: str | None = None) -> int:
        """Where the poem the seed began leaves off (a cursor's start; 0: a new poem after the seed).
        The seed's poem is its text after its last line that is not a whole line of the template (its
        title, its author, a blank line), less the whole poems at its start, each ended by a line break;
        it is begun if it is shorter than the template and its start. `seed`: as the model reads it.
        A verse it began whose first character is not the acrostic's is a one-line error naming `what`,
        or, in co-writing, `typed`, the line typed last (the seed is the transcript), which can only be typed again.
        Given `option` (the seed's: `--seed`, or the server's `prompt`), a seed whose last line is text but no
        poem of a form begun (`refuse_unbegun`) is a one-line error naming it: the new poem would go on that
        line. A `--template` goes on after any text, as its user laid it out (`The sea` + `___ ____.`)."""
        poem = self.poem_of(seed)
        if not poem:
            if option is not None and self.template.form:  # a template's text may go on a line of prose
                self.refuse_unbegun(seed, option)
            return 0
        for verse, at in enumerate(self.template.acrostic_at, 1):
            if at < len(poem) and poem[at] != self.text_slots[at]:
                acrostic, found, wanted = (
                    f"{self.acrostic_name} {self.template.acrostic}",
                    poem[at],
                    self.text_slots[at],
                )
                if typed is not None:
                    raise FieldError(
                        f"{acrostic}: {typed} begins verse {verse} of the poem with {found!r}, not {wanted!r}; "
                        "an acrostic is the whole poem's, the verses you write too: begin each with its character",
                        "acrostic",
                    )
                raise FieldError(
                    f"{acrostic}: {what}'s poem begins verse {verse} with {found!r}, not {wanted!r}; an acrostic is "
                    f"the whole poem's: begin {what}'s verses with it, or end it before them for a new poem",
                    "acrostic",
                )
        return self.compiled_at[len(poem)]

    def refuse_unbegun(self, seed: str, option: str) -> None:
        """A seed whose last line is text (no line break ends it) that begins no poem of the template (`poem_of`
        found none) is a one-line error naming `option` and the template, with where its poem leaves the form:
        a poem written after it would go on that line, glued to it (`黄鹤楼送孟浩然之广陵`, a six-character
        verse, a '？' where the form writes '，', a whole poem)."""
        last = seed[seed.rfind("\n") + 1 :]
        if not last:
            return
        poem, name = seed[self.poem_start(seed) :], self.template.name
        wrong = next((k for k, c in enumerate(poem[: len(self.shape)]) if not self.fits_shape(c, k)), None)
        new_poem = "end the seed with a line break for a new poem under it"
        if wrong is None:  # a finished poem: nothing to write there
            problem = f"completes a whole {name}; {new_poem}, or leave the finished poem out"
        else:
            slot = self.shape[wrong]
            wanted = ("a Han character" if self.script == "han" else "a letter") if slot is None else repr(slot)
            problem = f"has {poem[wrong]!r} where {name} writes {wanted}; write the form there, or {new_poem}"
        raise CharLMError(f"{option}: its last line {last!r} {problem}")

    def marked(self, seed: str) -> str:
        """`seed` with the marks of its poem (`poem_of`, and the whole verse lines before it: `poem_start`'s) written
        as the template writes them: a seed typed with half-width punctuation (`床前明月光,`, which a model that
        learned a stray ',' reads as a character) is read as `床前明月光，`, so its poem goes on in the form's
        shape and marks. Other text is as it was; the length never changes (`same_mark`)."""
        lines = seed.split("\n")
        verse_lines, out = self.verse_lines(), list(seed)
        end = len(seed) - len(lines[-1]) - 1  # where the line walked over ends (its line break)
        for line in reversed(lines[:-1]):
            shape = next(
                (shape for at, shape in verse_lines if len(line) == len(shape) and self.fits_shape(line, at)), None
            )
            if shape is None:
                break
            out[end - len(line) : end] = written_as(line, shape)
            end -= len(line) + 1
        poem = self.poem_of(seed)
        if poem and lines[-1]:
            out[len(seed) - len(lines[-1]) :] = written_as(
                lines[-1], self.shape[len(poem) - len(lines[-1]) : len(poem)]
            )
        return "".join(out)

    def poem_of(self, seed: str) -> str:
        """The poem `seed` began (`begun`), '' if none: its text after its last line that is not a whole line
        of the template, less the whole poems at its start, if shorter than the template and its start."""
        poem = seed[self.poem_start(seed) :]
        return poem if 0 < len(poem) < len(self.shape) and self.fits_shape(poem) else ""

    def poem_start(self, seed: str) -> int:
        """Where `poem_of` looks for the poem `seed` began: after its last line that is not a verse line,
        less the whole poems after that line."""
        size, lines = len(self.shape), seed.split("\n")
        verse_lines = self.verse_lines()
        start = len(seed) - len(lines[-1])  # the poem's start: after the last line that is not a verse line
        for line in reversed(lines[:-1]):
            if not any(len(line) == len(shape) and self.fits_shape(line, at) for at, shape in verse_lines):
                break
            start -= len(line) + 1
        ends_in_break = self.shape[-1] == "\n"  # then poems follow one another with no break between
        while len(seed) - start > size and self.fits_shape(seed[start : start + size]):
            if not ends_in_break and seed[start + size] != "\n":
                break
            start += size + (not ends_in_break)  # a whole poem and its line break: the seed's own
        return start

    def kept(self, seed: str) -> str:
        """The end of `seed` that `poem_of` needs, whatever text comes after it: co-writing's transcript grows
        without end, and each turn looked for its poem in all of it. Its text from `poem_start` on (the
        text before it is a line that is not a verse's, or whole poems); where that is longer than the
        template (verse lines that are no poem: none is begun till a line that is not a verse's), the
        lines that show it (the template's length and a line, whole) and the last line, which may end as either."""
        start, size = self.poem_start(seed), len(self.shape)
        if len(seed) - start <= size:
            return seed[start:]
        # the whole lines after `start` that hold a template's length and one character more
        shown_end = seed.find("\n", start + size) + 1
        last_line = seed.rfind("\n") + 1
        return seed[start:shown_end] + seed[last_line:] if 0 < shown_end <= last_line else seed[start:]

    def leaves_verse_open(self, before: str, line: str) -> bool:
        """Whether `line`, typed after `before` in co-writing (both as the model reads them), stops mid-verse,
        so the line break typed to send it is the writer's, not the poem's: its poem is begun (`poem_of`),
        the template's next character is not a line break, and the line is a verse's, not a title's: it goes
        on a poem begun before it or holds the template's fixed text (a verse's "，"). A short line of its
        own (`静夜思`, `李白`) could be either, and is taken for a title, as the line break after it says."""
        poem = self.poem_of(before + line)
        if not poem or self.shape[len(poem)] == "\n":
            return False
        typed = self.shape[len(poem) - min(len(line), len(poem)) : len(poem)]
        return len(poem) > len(line) or any(slot is not None for slot in typed)

    def verse_lines(self) -> list[tuple[int, tuple[str | None, ...]]]:
        """Each different line of the template (between its fixed line breaks, not empty): where it begins, its slots."""
        found, start = {}, 0
        for end in [i for i, slot in enumerate(self.shape) if slot == "\n"] + [len(self.shape)]:
            line = tuple(self.shape[start:end])
            if line and line not in found:
                found[line] = start
            start = end + 1
        return [(at, line) for line, at in found.items()]

    def fits_shape(self, text: str, at: int = 0) -> bool:
        """Whether `text` could be the template's text from `at` on, the acrostic aside: each `_` a character
        of its script that the model writes (a piece's, or one it spells in byte pieces), each fixed
        character itself or its other width (`same_mark`: ',' for '，', which `marked` writes as the form's)."""
        slots = self.shape[at : at + len(text)]
        return len(slots) == len(text) and all(
            self.writes(c) and self.accepts(c) if slot is None else same_mark(c, slot) for c, slot in zip(text, slots)
        )

    def writes(self, char: str) -> bool:
        """Whether the model writes `char`: one of its ids' text, or spelled in byte pieces (byte fallback)."""
        return char in self.written or set(piece_bytes(char)) <= self.spelled_bytes


def same_mark(char: str, slot: str) -> bool:
    """Whether `char` in a seed stands for the template's fixed `slot`: it, or the same mark in the other width
    (`unseen.other_forms`: ',' for '，', '.' for '。', '?' for '？'; a mark, not a letter). A mark that is
    another (a '!' or '？' where the form writes '，', a '、') is not: the seed's poem leaves the form there."""
    return char == slot or (not char.isalnum() and slot in other_forms(char))


def written_as(text: str, slots: tuple[str | None, ...] | list[str | None]) -> list[str]:
    """`text` with each fixed slot's character written as the slot's (`marked`)."""
    return [c if slot is None else slot for c, slot in zip(text, slots)]


def unwritten(chars: list[str], written: set[str], byte_ids: dict[int, int], in_bytes: set[str]) -> list[str]:
    """The distinct `chars` the ids cannot write, in order: one of `in_bytes` (no piece holds it) without
    all of its byte pieces in `byte_ids`, any other not among the characters the ids' texts hold
    (`written`). (A character whose own piece a ban removed is not spelled in bytes instead: the ban
    meant to keep it out.)"""
    missing = {c for c in in_bytes if not set(piece_bytes(c)) <= byte_ids.keys()}
    return [c for c in dict.fromkeys(chars) if c in missing or (c not in in_bytes and c not in written)]


def spelled_slots(slots: list[str | None], in_bytes: set[str]) -> tuple[list[str | int | None], list[int]]:
    """The template's positions with each fixed character no piece holds (`in_bytes`) spelled as its
    UTF-8 bytes, a position each (an int: the byte); and where each position of the template's text
    begins among them (one more at the end: their count)."""
    spelled: list[str | int | None] = []
    starts = []
    for slot in slots:
        starts.append(len(spelled))
        spelled += list(piece_bytes(slot)) if slot in in_bytes else [slot]
    starts.append(len(spelled))
    return spelled, starts


def piece_bytes(char: str) -> bytes:
    """The bytes a byte-fallback model spells `char` in (a space as sentencepiece's "▁")."""
    return char.replace(" ", "\u2581").encode()


def id_texts(vocab: Vocabulary) -> list[str]:
    """Each id's text: its character, or a piece's whole characters ('' for the unknown symbol, a
    control id or a non-ASCII byte piece, which a template allows only within a fixed character that no
    piece writes, spelled in bytes: `Constrained.byte_ids`)."""
    texts = map(vocab.token_text, range(len(vocab)))
    return [text if isinstance(text, str) and vocab.writes_text(i) else "" for i, text in enumerate(texts)]


def majority_script(texts: list[str]) -> str:
    chars = {c for t in texts for c in t}
    return "han" if sum(map(is_han, chars)) >= sum(map(is_letter, chars)) else "letter"


class Cursor:
    """One sample's place in its template."""

    def __init__(self, constrained: Constrained, start: int = 0):
        self.constrained, self.position = constrained, start

    @property
    def done(self) -> bool:
        return self.position >= self.constrained.size

    def allowed(self) -> torch.Tensor:
        return self.constrained.allowed(self.position)

    def advance(self, token: int) -> None:
        self.position += self.constrained.widths[token]


class FormOptions(Protocol):
    """The options that ask for a form: a `SampleConfig`'s, or a server request's."""

    form: str | None
    template: str | None
    acrostic: str | None


def constrain(options: FormOptions, vocab: Vocabulary, banned: torch.Tensor | None = None) -> Constrained | None:
    """The compiled template of sampling options (a `SampleConfig`: `form`, `template`, `acrostic`),
    without the ids `banned` (a logit bias's bans), or None. The server compiles its own (`Completion`)."""
    template = template_of(options.form, options.template, options.acrostic)
    return None if template is None else Constrained(template, vocab, option_named("acrostic", None), banned)
