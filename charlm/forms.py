"""Poem forms and templates: which characters each position of a sample may take.

A template is text in which `_` is any one character of the script the model writes and every
other character is fixed. A 五言绝句 as the shared Tang poems write it is two lines of two
five-character verses:

    _____，_____。        床前明月光，疑是地上霜。
    _____，_____。        举头望明月，低头思故乡。

A form goes by its full name (`FORMS`) or the others readers use (`OTHER_NAMES`): 五绝 for 五言绝句,
and either in traditional characters (五言絕句, 五絕).

An acrostic fixes the first `_` of each verse (each run of `_`): `--acrostic 春夏秋冬`.

What `_` allows (`SCRIPT_RULE`): a Han character if the template's fixed text or the acrostic has a
Han character or CJK/full-width punctuation; a letter (`str.isalpha`, not Han) if it has letters;
otherwise whichever of the two the model's vocabulary holds more of.

This module reads the options (`template_of`) and needs no model, nor torch: the command line's help
and Tab completion list the forms without loading either. constraints.py compiles a template for a
model's vocabulary: the ids each position allows, as the sampler draws.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .corpus import check_characters
from .errors import FieldError, counted
from .fields import SHOWN, said

FREE = "_"
FORMS = {
    "五言绝句": "_____，_____。\n_____，_____。",
    "七言绝句": "_______，_______。\n_______，_______。",
    "五言律诗": "\n".join(["_____，_____。"] * 4),
    "七言律诗": "\n".join(["_______，_______。"] * 4),
}
# Each form by every name a reader may type: its own, its short name (first), and both in traditional characters.
OTHER_NAMES = {
    "五言绝句": ("五绝", "五言絕句", "五絕"),
    "七言绝句": ("七绝", "七言絕句", "七絕"),
    "五言律诗": ("五律", "五言律詩"),
    "七言律诗": ("七律", "七言律詩"),
}
FORM_NAMES = {name: form for form in FORMS for name in (form, *OTHER_NAMES[form])}  # name -> its form in FORMS
FORM_CHOICES = (
    f"{', '.join(FORMS)} or a short name ({', '.join(names[0] for names in OTHER_NAMES.values())}), "
    "in simplified or traditional characters"
)
SCRIPT_RULE = (
    "`_` is a Han character when the template or the acrostic has Han text or CJK punctuation, "
    "a letter when it has letters, else whichever the model knows more of"
)
ESCAPES = {"n": "\n", "t": "\t", "_": "_", "\\": "\\"}  # `\_`: a literal underscore, a fixed slot


def is_han(char: str) -> bool:
    """A CJK unified or compatibility ideograph (any plane)."""
    return unicodedata.name(char, "").startswith("CJK ") and unicodedata.category(char) == "Lo"


def is_cjk_punctuation(char: str) -> bool:
    """CJK symbols and punctuation (，。、「」《》, U+3000-U+303F) and the full-width forms (，！？：；, U+FF00-U+FFEF);
    General Punctuation's “”…—, which English uses as much, is not."""
    code = ord(char)
    return 0x3000 <= code <= 0x303F or (0xFF00 <= code <= 0xFFEF and not char.isalnum())


def is_letter(char: str) -> bool:
    return char.isalpha() and not is_han(char)


@dataclass(frozen=True)
class Template:
    """A template parsed: `slots[i]` is None where any character of `script` goes, else the fixed
    character. `script` is "han", "letter" or None (decided by the model's vocabulary)."""

    slots: tuple[str | None, ...]
    script: str | None
    name: str  # the option that gave it, for errors: "--form 五言绝句" (form='五言绝句' in Python) or "--template"
    acrostic: str = ""
    acrostic_at: tuple[int, ...] = ()  # the slots the acrostic fixed (each verse's first `_`)
    form: str = ""  # the form's full name (FORMS) when a form gave it: a whole poem in lines, not a template's text

    @property
    def field(self) -> str:
        """The option that gave it, bare, as a `FieldError` names it."""
        return "form" if self.form else "template"

    def fits(self, text: str, script: str | None = None) -> bool:
        """Whether `text` is exactly this template filled in (free positions in the script)."""
        accepts = {"han": is_han, "letter": is_letter}[script or self.script or "han"]
        return len(text) == len(self.slots) and fills(text, self.slots, accepts)


def fills(text: str, slots: Sequence[str | int | None], accepts: Callable[[str], bool]) -> bool:
    """Whether each character of `text` goes in its slot: a free slot's script, or the fixed character."""
    return all(accepts(c) if slot is None else c == slot for c, slot in zip(text, slots))


def template_of(
    form: str | None = None, template: str | None = None, acrostic: str | None = None, prefix: str | None = None
) -> Template | None:
    """The template that `--form`, `--template` and `--acrostic` ask for (None: free text).
    Raises a one-line FieldError naming the option for anything it cannot use: as its caller wrote
    it (`said`), or `prefix` + its name (the server's fields have none)."""
    form_, template_, acrostic_ = (option_named(name, prefix) for name in ("form", "template", "acrostic"))
    if form is not None and template is not None:
        raise FieldError(f"give {form_} or {template_}, not both", "form")
    if form is not None:
        if form not in FORM_NAMES:
            shown = repr(form) if prefix is not None else SHOWN.repr(form)  # the server's come cut (api_error.shown)
            given = option_named("form", prefix, shown)
            raise FieldError(f"{given} is not a form charlm knows; choose one of {FORM_CHOICES}", "form")
        slots = template_slots(FORMS[FORM_NAMES[form]])
        name = said("form", form) if prefix is None else f"{prefix}form {form}"
    elif template is not None:
        check_characters(template, template_)
        slots, name = template_slots(template), template_
    elif acrostic is not None:
        raise FieldError(
            f"{acrostic_} fixes the first character of each verse of a form: give {form_} or {template_} too",
            "acrostic",
        )
    else:
        return None
    if acrostic is not None:
        check_characters(acrostic, acrostic_)
    if None not in slots:
        raise FieldError(f"{name} has no `_` for the model to fill; write `_` for each character it writes", "template")
    starts: list[int] = []
    if acrostic is not None:
        starts = verses(slots)
        if len(acrostic) != len(starts):
            characters, verses_ = counted(len(acrostic), "character"), counted(len(starts), "verse")
            raise FieldError(f"{acrostic_} has {characters} but {name} has {verses_}; give one per verse", "acrostic")
        for start, char in zip(starts, acrostic):
            slots[start] = char
    given = [c for c in slots if c is not None]
    if any(is_han(c) or is_cjk_punctuation(c) for c in given):
        script = "han"
    elif any(is_letter(c) for c in given):
        script = "letter"
    else:
        script = None
    if script is not None:  # an acrostic's characters begin verses of the script `_` writes (SCRIPT_RULE)
        accepts, kind = (is_han, "a Han character") if script == "han" else (is_letter, "a letter")
        for verse, char in enumerate(acrostic or "", 1):
            if not accepts(char):
                raise FieldError(
                    f"{acrostic_} {acrostic}: verse {verse} would begin with {char!r}, which is not {kind}, as the "
                    f"verses of {name} are; give one {kind.split(' ', 1)[1]} per verse",
                    "acrostic",
                )
    return Template(tuple(slots), script, name, acrostic or "", tuple(starts), FORM_NAMES.get(form or "", ""))


def template_slots(text: str) -> list[str | None]:
    """A template's slots: None for each `_`, else the character fixed there, after a shell user's `\\n`
    (line break), `\\t`, `\\_` (a literal underscore) and `\\\\`. Read in one pass, so that no character
    of the template (a NUL) is taken for a mark the parse left."""
    slots: list[str | None] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ESCAPES:
            slots.append(ESCAPES[text[i + 1]])
            i += 2
        else:
            slots.append(None if text[i] == FREE else text[i])
            i += 1
    return slots


def verses(slots: list[str | None]) -> list[int]:
    """Where each verse (run of free positions) begins."""
    return [i for i, slot in enumerate(slots) if slot is None and (i == 0 or slots[i - 1] is not None)]


def option_named(name: str, prefix: str | None, shown: str | None = None) -> str:
    """A form option in a message, with the value as `shown`: as its caller wrote it (`said`: --form on
    the command line, form= in Python) when `prefix` is None, else `prefix` + its name (the server's)."""
    if prefix is None:
        return said(name, metavar=shown)
    return f"{prefix}{name} {shown}" if shown is not None else f"{prefix}{name}"
