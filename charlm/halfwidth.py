"""Option values typed through a Chinese (or Japanese) input method in its full-width mode, read as typed.

Such a method types '１２' for 12, '０．５' for 0.5, '，' between a list's values and '　' for a space: the
full-width forms of ASCII (U+FF01 to U+FF5E, and U+3000), which Unicode's NFKC makes the ASCII characters
themselves. Python's int() and float() read the digits and nothing else of them, so '１２' was 12 but '０．５'
no number, '１０m' ten minutes but '１０ｍ' no duration. One rule instead: every option that takes a number,
a duration, a list of numbers, a device or a named choice (`--precision ｂｆ１６`: `as_choice`) reads the
whole set as ASCII (`half_width`), on the command line and in Python alike, and a config keeps the value
as read: run.json says '10m', not '１０ｍ' (fields.py's `store_as_read`). What stands for no ASCII character ('。' for '.', a unit such as 分钟), and a next
option joined to the value by a full-width comma or space (no shell splits there), is named where the
value cannot be read (`retype_hint`); an option joined to its value by a full-width space, which click
takes for an unknown option, is named with the space to retype (`joined_value_hint`).
"""

from __future__ import annotations

import re
from collections.abc import Collection

FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: ord(" ")}

# Marks an input method types where a number has an ASCII one, but which are no full-width form of it.
MARKS = {"。": ".", "、": ","}
# A duration's units as Chinese writes them, and the letter charlm reads (config.parse_duration).
DURATION_UNITS = {"小时": "h", "小時": "h", "分钟": "m", "分鐘": "m", "分": "m", "秒": "s"}

# A long option after a comma or space within one value: `--top-p 0.9，--length 3`.
JOINED_OPTION = re.compile(r"([,\s]+)(--[A-Za-z][\w-]*)")
# A long option and its value in one word, a full-width space between them: `--length　5`.
JOINED_VALUE = re.compile(r"(--[A-Za-z][\w-]*)(\s+)(\S.*)", re.DOTALL)


def half_width(text: str) -> str:
    """`text` with each full-width form of an ASCII character as that character, '　' as a space."""
    return text.translate(FULL_WIDTH)


def as_choice(value: object, choices: Collection[str]) -> object:
    """`value` as one of `choices` (`ｂｆ１６` is bf16), or as given where it is none even so: its error shows
    what was typed."""
    read = half_width(value) if isinstance(value, str) else value
    return read if read in choices else value


def retype_hint(text: str, units: dict[str, str] | None = None) -> str:
    """What to retype in a value that cannot be read, as a clause to end its error with ('' if nothing):
    an option the shell left inside it, else each mark of `MARKS` (and `units`) it holds, with its ASCII."""
    joined = JOINED_OPTION.search(half_width(text))
    separator = text[joined.start(1) : joined.end(1)] if joined else " "
    if not (separator.isascii() and separator.isspace()):  # a space the user quoted is theirs
        typed = "a full-width space" if separator.isspace() else repr(separator)  # repr says '\\u3000'
        return f" ({joined[2]} ran into it: type a half-width space before {joined[2]}, not {typed})"
    table = {**MARKS, **(units or {})}
    found = re.findall("|".join(sorted(map(re.escape, table), key=len, reverse=True)), text)
    retyped = [f"{mark!r} as {table[mark]!r}" for mark in dict.fromkeys(found)]
    return f" (retype {', '.join(retyped)})" if retyped else ""


def joined_value_hint(word: str, options: Collection[str]) -> str:
    """What to retype in `word`, taken for an unknown option, where it is one of `options` and its value
    joined by a full-width space (no shell splits there): `--length　5`. '' for any other word: a quoted
    ASCII space is the user's, and a mistyped option is its own error."""
    joined = JOINED_VALUE.fullmatch(word)
    if not joined or joined[2].isascii() or joined[1] not in options:
        return ""
    option, value = joined[1], joined[3]
    return f"{value} ran into {option}: type a half-width space after {option}, not a full-width space"
