"""Option values typed through a Chinese (or Japanese) input method in its full-width mode, read as typed.

Such a method types '１２' for 12, '０．５' for 0.5, '，' between a list's values and '　' for a space: the
full-width forms of ASCII (U+FF01 to U+FF5E, and U+3000), which Unicode's NFKC makes the ASCII characters
themselves. Python's int() and float() read the digits and nothing else of them, so '１２' was 12 but '０．５'
no number, '１０m' ten minutes but '１０ｍ' no duration. One rule instead: every option that takes a number,
a duration, a list of numbers, a device or a named choice (`--precision ｂｆ１６`: `as_choice`) reads the
whole set as ASCII (`half_width`), on the command line and in Python alike, and a config keeps the value
as read: run.json says '10m', not '１０ｍ' (fields.py's `store_as_read`). What stands for no ASCII character
('。' for '.', a duration's unit such as 分钟 or number such as 一, or its unit spelt out in English, minutes),
and a next option joined to the value by a full-width comma or space (no shell splits there), is named where
the value cannot be read (`retype_hint`); an option joined to its value by a full-width space, which click
takes for an unknown option, is named with the space to retype (`joined_value_hint`). An option's dashes as
an input method types them, `——top-p` (U+2014 twice, a Chinese input method's `--`), `－－top-p` or `—top-p`
(macOS's autocorrected `--`), `–top-p` (a web page's en dash) or `－－ｔｏｐ－ｐ` (its name in full width), are
read as `--` where the name after them is one of the command's long options (`as_option`), so a seed `——他说`
stays text; before no option of it they are named (`dashes_hint`).
Within a number any of those dashes is its minus (`as_number`): `--random-seed –5`, `--lr 1e−4`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: ord(" ")}

# Marks an input method types where a number has an ASCII one, but which are no full-width form of it.
MARKS = {"。": ".", "、": ","}
# A duration's units as Chinese writes them, and as English spells them out, with the letter charlm reads
# (config.parse_duration): `5minutes`, `2 hrs` are named as `10分钟` is, the letter to type being the one rule.
DURATION_UNITS = {
    **dict.fromkeys(("小时", "小時", "钟头", "鐘頭"), "h"),
    **dict.fromkeys(("分钟", "分鐘", "分"), "m"),
    "秒": "s",
    **dict.fromkeys(("hours", "hour", "hrs", "hr"), "h"),
    **dict.fromkeys(("minutes", "minute", "mins", "min"), "m"),
    **dict.fromkeys(("seconds", "second", "secs", "sec"), "s"),
}
# A duration's number as Chinese says it (一分钟, 十五秒, 两个半小时, 半小时): 1 to 99 (十 and one digit
# either side), then 半 (and a half), 个 (the measure word) where Chinese puts them; or typed in digits
# with those after it (1个小时, 1个半小时, 1.5个小时: read whole, not its '5个'), which a retyped unit alone
# leaves unread. Named with its number in a duration's error, beside the units, so that one retyping
# reads; numerals that say no one number (三五分钟: three to five minutes; 1.5.5个) are not named.
DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
CHINESE_NUMBER = re.compile(
    r"(?<![\d.．。])\d+(?:[.．。]\d+)?(?:个半?个?|半个?)|[一二两三四五六七八九十]+个?半?个?|半个?"
)
SMALL_NUMBER = re.compile(r"(?:([一二两三四五六七八九])?十)?([一二两三四五六七八九])?")

# A long option after a comma or space within one value: `--top-p 0.9，--length 3`.
JOINED_OPTION = re.compile(r"([,\s]+)(--[A-Za-z][\w-]*)")
# A long option and its value in one word, a full-width space between them: `--length　5`.
JOINED_VALUE = re.compile(r"(--[A-Za-z][\w-]*)(\s+)(\S.*)", re.DOTALL)
# Dashes as an input method, autocorrect or a blog's typography types `-`: hyphens, en and em dashes,
# the minus sign, the full-width and small hyphen-minus.
DASHES = "‐‑‒–—―−－﹘﹣"
# Each of them as the minus it stands for within a number (`as_number`).
MINUSES = str.maketrans(dict.fromkeys(DASHES, "-"))
# A long option after such dashes (or its name in full width), its value joined by '=' (or '＝') if any:
# `——top-p=0.9`, `–top-p`, `--ｔｏｐ-p`. Only a word that is not ASCII throughout is read so (`option_typed`).
DASHED_OPTION = re.compile(
    rf"([-{DASHES}]{{1,2}})([A-Za-zＡ-Ｚａ-ｚ][-\wＡ-Ｚａ-ｚ０-９－＿]*)(?:[=＝](.*))?", re.ASCII | re.DOTALL
)


def half_width(text: str) -> str:
    """`text` with each full-width form of an ASCII character as that character, '　' as a space."""
    return text.translate(FULL_WIDTH)


def as_number(text: str) -> str:
    """A number's `text` as ASCII (`half_width`), each dash of `DASHES` in it a '-': a minus typed by an
    input method or copied from a word processor, a web page or a paper (`–5`, `1e−4`) is read as typed."""
    return half_width(text).translate(MINUSES)


def as_choice(value: object, choices: Collection[str]) -> object:
    """`value` as one of `choices` (`ｂｆ１６` is bf16), in any case, spelled as the choice is (`NFC`, Unicode's
    own name, is nfc), or as given where it is none even so: its error shows what was typed."""
    if not isinstance(value, str):
        return value
    by_case = {choice.casefold(): choice for choice in choices}
    return by_case.get(half_width(value).casefold(), value)


def retype_hint(text: str, units: dict[str, str] | None = None) -> str:
    """What to retype in a value that cannot be read, as a clause to end its error with ('' if nothing):
    an option the shell left inside it, else each mark of `MARKS` (and `units`) it holds, with its ASCII."""
    joined = JOINED_OPTION.search(half_width(text))
    separator = text[joined.start(1) : joined.end(1)] if joined else " "
    if not (separator.isascii() and separator.isspace()):  # a space the user quoted is theirs
        typed = "a full-width space" if separator.isspace() else repr(separator)  # repr says '\\u3000'
        return f" ({joined[2]} ran into it: type a half-width space before {joined[2]}, not {typed})"
    table = {**MARKS, **(units or {})}
    marks = "|".join(map(mark_pattern, sorted(table, key=len, reverse=True)))
    if units:  # a duration's: its numbers too (一分钟), or `一m` is refused once '分钟' is retyped
        marks = f"{CHINESE_NUMBER.pattern}|{marks}"
    found = {mark: table.get(mark.lower()) or chinese_number(mark) for mark in re.findall(marks, text, re.IGNORECASE)}
    retyped = [f"{mark!r} as {ascii_form!r}" for mark, ascii_form in found.items() if ascii_form]
    return f" (retype {', '.join(retyped)})" if retyped else ""


def mark_pattern(mark: str) -> str:
    """A pattern for `mark`: a word in letters only whole ('three' holds no 'hr' to retype), any other mark anywhere."""
    return rf"(?<![a-z]){re.escape(mark)}(?![a-z])" if mark.isascii() else re.escape(mark)


def chinese_number(spoken: str) -> str | None:
    """A duration's number as Chinese says it (`CHINESE_NUMBER`) in ASCII digits: '十五' is '15', '两个半'
    '2.5', '半' '0.5', '1.5个' '1.5'; None where it says no one number ('三五', three or five; '1.5个半')."""
    whole = spoken.replace("个", "").removesuffix("半")
    small = SMALL_NUMBER.fullmatch(whole)
    half = spoken.replace("个", "").endswith("半")
    decimal = half_width(whole).replace("。", ".")
    if "." in decimal:  # typed in digits with a fraction (1.5个)
        return None if half else decimal
    if whole.isdecimal():  # typed in digits (1个半), full-width ones too
        number = int(whole)
    elif small is None:
        return None
    else:
        tens = (DIGITS[small[1]] if small[1] else 1) if "十" in whole else 0
        number = 10 * tens + (DIGITS[small[2]] if small[2] else 0)
    return f"{number}.5" if half else str(number) if number else None


def joined_value_hint(word: str, options: Collection[str]) -> str:
    """What to retype in `word`, taken for an unknown option, where it is one of `options` and its value
    joined by a full-width space (no shell splits there): `--length　5`. '' for any other word: a quoted
    ASCII space is the user's, and a mistyped option is its own error."""
    joined = JOINED_VALUE.fullmatch(word)
    if not joined or joined[2].isascii() or joined[1] not in options:
        return ""
    option = joined[1]
    return f"a full-width space joins {option} to its value; type a half-width space after {option}"


def options_read(words: list[str], options: Collection[str], taking_values: Collection[str]) -> list[str]:
    """`words` (a command's, after its name) with each option typed after an input method's dashes as
    that option (`as_option`), where it stands in an option's place (`option_places`): a seed `——top-p`
    after `--seed`, one of `taking_values`, is the seed."""
    read = list(words)
    for at in option_places(read, taking_values):
        read[at] = as_option(read[at], options) or read[at]
    return read


def option_places(words: list[str], taking_values: Collection[str]) -> Iterator[int]:
    """The indices of `words` where an option may stand: not the value of the option before it (one of
    `taking_values`, given without '='), not after '--'. Each word is looked at once the one before is
    handed out, so a caller may read that one as an option first (`options_read`)."""
    value_next = False
    for at in range(len(words)):
        if not value_next:
            if words[at] == "--":
                return
            yield at
        value_next = not value_next and words[at] in taking_values


def as_option(word: str, options: Collection[str]) -> str | None:
    """`word` typed with an input method's dashes as the option it names, where that is one of `options`:
    '——top-p=0.9' is '--top-p=0.9'; None for any other word."""
    typed = option_typed(word)
    return "".join(typed) if typed and typed[0] in options else None


def option_typed(word: str) -> tuple[str, str] | None:
    """The option `word` names after an input method's dashes, and its '=VALUE' if any: ('--top-p',
    '=0.9') for '——top-p＝0.9'; None for a word of no such dashes and name."""
    dashed = typed_dashes(word)
    return None if dashed is None else (f"--{half_width(dashed[2])}", "" if dashed[3] is None else f"={dashed[3]}")


def typed_dashes(word: str) -> re.Match | None:
    """`word` as `DASHED_OPTION` reads it, where its dashes or name are not ASCII (an option as typed
    is click's); None for any other word."""
    dashed = DASHED_OPTION.fullmatch(word)
    return dashed if dashed and not (dashed[1] + dashed[2]).isascii() else None


def dashes_hint(word: str) -> str:
    """What to retype in `word`, an option's name after an input method's dashes (`——top-q`, where no
    option of the command is named so): "retype '——' as '--'"; '' for any other word."""
    dashed = typed_dashes(word)
    if dashed is None:
        return ""
    if dashed[2].isascii():
        return f"retype {dashed[1]!r} as '--'"
    return f"retype {dashed[1] + dashed[2]!r} as {'--' + half_width(dashed[2])!r}"  # a full-width name too
