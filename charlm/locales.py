"""Text that only a locale whose encoding is not UTF-8 gets wrong (`LC_ALL=C` with UTF-8 mode off: ASCII).

Python reads the command line, and names files to the OS, in the locale's encoding: there a UTF-8 `--seed`
arrives as its bytes (surrogate escapes), and a path in Chinese cannot be named at all unless it came from
the command line as those bytes (a run's record, a Python caller's path). The text is fine; the locale is
not, and the message says so in one wording, where the user would otherwise re-save good text or look for
a file that is there.
"""

import codecs
import sys

ADVICE = "set PYTHONUTF8=1 or a UTF-8 locale (LANG=C.UTF-8)"


def locale_encoding() -> str | None:
    """The encoding Python reads the command line and names files in, where it is not UTF-8; else None."""
    encoding = sys.getfilesystemencoding()
    return None if codecs.lookup(encoding).name == "utf-8" else encoding


def arrived_as_bytes(text: str) -> str:
    """The clause for `text`, a command line's, where its undecodable bytes are UTF-8 that the locale's
    encoding could not read (`the text is UTF-8, but ...`); "" where it is not, or the locale reads UTF-8."""
    as_utf8 = read_as_utf8(text)
    if as_utf8 == text or any("\ud800" <= char <= "\udfff" for char in as_utf8):  # ASCII, or not all UTF-8
        return ""
    return (
        f"the text is UTF-8, but the terminal's locale ({locale_encoding()}) is not and Python read its bytes; {ADVICE}"
    )


def read_as_utf8(text: str) -> str:
    """`text`, a command line's, with its bytes read as UTF-8 where the locale's encoding read them otherwise (and
    failed): a C locale's 你 and a byte 0xff are then 你 and 0xff, as a UTF-8 locale reads them, not four bytes."""
    encoding = locale_encoding()
    if encoding is None:
        return text
    try:
        return text.encode(encoding, "surrogateescape").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # characters from elsewhere (a Python caller)
        return text


def cannot_name(path: str) -> str:
    """The clause for `path` (a run's record of its text, a file given to Python) where the locale's encoding
    has no bytes for some character of it that UTF-8 has, so the OS cannot be asked for it; else ""."""
    encoding = locale_encoding()
    if encoding is None:
        return ""
    try:
        path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate: no locale names it, and the advice would lead to the next error
        return ""
    try:
        path.encode(encoding, "surrogateescape")
    except UnicodeEncodeError:
        return f"the terminal's locale ({encoding}) cannot name it, as it is not UTF-8; {ADVICE}"
    return ""
