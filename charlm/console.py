"""Output that a console or pipe cannot encode: written as escapes, with one warning, never a traceback.

Where stdout's encoding is a legacy code page (Windows with output redirected or piped: cp1252, or
cp936 for characters outside GBK), printing a Chinese sample would raise UnicodeEncodeError mid-text,
after minutes of training. Such characters are written as `\\uXXXX` instead, and the first one says
how to get the text itself.
"""

from __future__ import annotations

import codecs
from typing import TextIO

import click

ERRORS = "charlm-console"  # the name of the encode error handler below


class EscapeAndSayOnce:
    """An encode error handler: `\\uXXXX` for each character the stream cannot encode; the first time,
    a warning on stderr with the way out."""

    def __init__(self, encoding: str) -> None:
        self.encoding, self.said = encoding, False  # the stream's: the codec's own may be just "charmap"

    def __call__(self, error: UnicodeError) -> tuple[str, int]:
        if not isinstance(error, UnicodeEncodeError):
            raise error
        if not self.said:
            self.said = True
            click.echo(
                f"warning: the output's encoding ({self.encoding}) cannot show some characters "
                f"(U+{ord(error.object[error.start]):04X}); they are written as \\u escapes. Set PYTHONUTF8=1 "
                "(or PYTHONIOENCODING=utf-8) to write them as UTF-8, or use --output FILE where a command has it",
                err=True,
            )
        return codecs.backslashreplace_errors(error)


def tolerate_unshowable(stream: TextIO) -> None:
    """Make `stream` (stdout) escape what its encoding cannot show, if it would raise instead; once per
    command, so each says so."""
    if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        codecs.register_error(ERRORS, EscapeAndSayOnce(stream.encoding))
        stream.reconfigure(errors=ERRORS)
