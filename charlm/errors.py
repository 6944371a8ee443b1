"""The one exception type a user sees: a one-line message saying what is wrong and what to do; where
a warning about a user's own input points; and how a name charlm did not choose is shown on one line."""

import contextlib
import functools
import os
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent
# the standard library's wrappers a call into charlm may pass through (a `with` on charlm's own
# @contextmanager runs its code from contextlib's __enter__): never the line a warning is about
WRAPPERS = {Path(contextlib.__file__), Path(functools.__file__)}
# what splits a line or moves a terminal's cursor: C0 and C1 control characters, Unicode's line and paragraph
# separators; and a lone surrogate, which no terminal's encoding writes (printed, a UnicodeEncodeError)
UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# a byte of a file name not in the locale's encoding, as os.fsdecode holds it: U+DC80..U+DCFF for 0x80..0xff
UNDECODABLE_BYTE = re.compile(r"[\udc80-\udcff]")


def one_line(text: str) -> str:
    """`text` as it is shown on one line: each control character as repr writes it (a line break as
    `\\n`), and a blank one quoted (`' '`). A name charlm did not choose (a file named with a line break,
    a run folder renamed by hand to a space) would otherwise split a message or a table row, or show
    as nothing; one with a byte not in the locale's encoding shows it as the byte (`escaped`)."""
    escaped_text = UNSHOWABLE.sub(lambda match: escaped(match.group()), text)
    return repr(text) if escaped_text and not escaped_text.strip() else escaped_text


def escaped(char: str) -> str:
    """One character as a message shows it escaped: as repr writes it (`\\n`, `\\x1b`), but a byte of a file
    name not in the locale's encoding as that byte, `\\xff`, as a shell user types it (`fields.typed`),
    where repr's `\\udcff` names a character no file name holds."""
    if UNDECODABLE_BYTE.fullmatch(char):
        return f"\\x{ord(char) - 0xDC00:02x}"
    return repr(char)[1:-1]


def counted(count: int, noun: str) -> str:
    """`1 character`, `2 characters`, `1,024 ids`: a count with its noun agreeing, never `1 character(s)`."""
    return f"{count:,} {agreeing(noun, count)}"


def agreeing(noun: str, count: int) -> str:
    """`noun` as it agrees with `count`: itself for one, with an s for any other number (`unknown options`)."""
    return noun if count == 1 else f"{noun}s"


def listed_in_brief(names: list[str], shown: int = 3) -> str:
    """Up to `shown` of `names`, and how many more (`a, b, c and 4,997 more`): thousands of files changed
    or folders left unread are still said on one line."""
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def one_line_path(path: str | Path) -> str:
    """`path` as `one_line` shows it, each name in it apart, and a name with a space at either end quoted:
    a run folder renamed by hand to a space is `checkpoints/' '`, and one to `run ` is `checkpoints/'run '`,
    where the whole path would show the one as nothing and the other as `run`, another folder. The platform's
    separator is kept: a Windows user's `C:\\runs\\x` is shown as typed, as the command to paste back has it."""
    shown = (repr(name) if name != name.strip() else one_line(name) for name in str(Path(path)).split(os.sep))
    return os.sep.join(shown)


class CharLMError(Exception):
    """The exception charlm raises for bad input or a state it cannot go on from: a one-line message
    that names the keyword, file or field and says what to do. A Python caller is told keywords
    (`max_time=None`), the `charlm` command's user options (`--max-time none`).

    The CLI prints it as one line, no traceback; a name in it with a line break or another control
    character (a file named so) shows it escaped, as `\\n`, so the message stays one line.
    """

    def __str__(self) -> str:
        return one_line(super().__str__())


class SaidElsewhere(CharLMError):
    """An error another process of a torchrun job says: this one exits with status 1 and no word, so a
    user with 8 GPUs reads it once."""


class FieldError(CharLMError):
    """A CharLMError about one option a caller gave, `field` its bare name (`acrostic`): its message names it
    as the caller wrote it (`--acrostic`, `acrostic=`), so the server takes an answer's `param` from here,
    where a reworded message cannot change it."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


class BiasError(FieldError):
    """A logit bias the model cannot take, its message written once after the name of who gave it:
    `logit_bias` (Python, the server), or `--ban` in `as_ban()`, for `charlm sample` (whose user cannot
    give token ids, so `ban_says` replaces advice a shell user could not follow)."""

    def __init__(self, says: str, ban_says: str | None = None):
        self.says, self.ban_says = says, ban_says or says
        super().__init__(f"logit_bias{says}", "logit_bias")

    def as_ban(self) -> CharLMError:
        return CharLMError(f"--ban{self.ban_says}")


def callers_stacklevel() -> int:
    """The `stacklevel` that points a warning raised by the function calling this at the first line
    outside charlm and the standard library's wrappers (contextlib, functools): one about the caller's
    own option (`charlm.train(threads=8)`) names the caller's line, not charlm's or contextlib's,
    however deep in charlm it was met."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and charlms_or_a_wrapper(Path(frame.f_code.co_filename)):
        frame, level = frame.f_back, level + 1
    return level


def charlms_or_a_wrapper(file: Path) -> bool:
    return file.is_relative_to(PACKAGE) or file in WRAPPERS
