"""The standard streams where they fail: text a console or pipe cannot encode, a stream closed (`opened`),
a full one (`unnamed_write`); each said in one line, never a traceback. A stream whose reader is gone (a
closed terminal; for training also `| tee` gone) goes to /dev/null (`to_nowhere`), for the rest of a command
(`outlive_terminal`, `outlive_readers`).

Where stdout's encoding is a legacy code page (Windows with output redirected or piped: cp1252, or
cp936 for characters outside GBK), printing a Chinese sample would raise UnicodeEncodeError mid-text,
after minutes of training; so did Linux's C locale with UTF-8 mode off (`LC_ALL=C PYTHONUTF8=0`: ASCII).
Such characters are written as `\\uXXXX` instead, and the first one says how to get the text itself.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator
from typing import TextIO

import click

from . import files, stopping
from .errors import CharLMError

ERRORS = "charlm-console"  # the name of the encode error handler below


class EscapeAndSayOnce:
    """An encode error handler: `\\uXXXX` for each character the stream cannot encode; the first time,
    a warning on stderr with the way out."""

    def __init__(self, encoding: str, keeps_bytes: bool) -> None:
        self.encoding, self.said = encoding, False  # the stream's: the codec's own may be just "charmap"
        self.keeps_bytes = keeps_bytes  # the stream's errors were "surrogateescape": a file name's raw byte stays one

    def __call__(self, error: UnicodeError) -> tuple[str | bytes, int]:
        if not isinstance(error, UnicodeEncodeError):
            raise error
        if self.keeps_bytes and "\udc80" <= error.object[error.start] <= "\udcff":
            return bytes([ord(error.object[error.start]) - 0xDC00]), error.start + 1
        if not self.said:
            self.said = True
            click.echo(
                f"warning: the output's encoding ({self.encoding}) cannot show some characters "
                f"(U+{ord(error.object[error.start]):04X}); they are written as \\u escapes. Set PYTHONUTF8=1 "
                "(or PYTHONIOENCODING=utf-8) to write them as UTF-8, or use --output FILE where a command has it",
                err=True,
            )
        one = error.start + 1  # one at a time: a run of characters may mix in surrogate escapes
        return codecs.backslashreplace_errors(UnicodeEncodeError(error.encoding, error.object, error.start, one, ""))


def tolerate_unshowable(stream: TextIO) -> None:
    """Make `stream` (stdout) escape what its encoding cannot show, if it would raise instead; once per
    command, so each says so. Python's own "surrogateescape" (a C locale's) raises for any other character,
    but UTF-8 (UTF-8 mode's) has no other character to raise for: that stream is left as it is."""
    errors = getattr(stream, "errors", None)
    if errors == "surrogateescape" and codecs.lookup(stream.encoding).name == "utf-8":
        return
    if errors in ("strict", "surrogateescape") and hasattr(stream, "reconfigure"):
        codecs.register_error(ERRORS, EscapeAndSayOnce(stream.encoding, keeps_bytes=errors == "surrogateescape"))
        stream.reconfigure(errors=ERRORS)


def opened(name: str, user: str, fix: str) -> TextIO:
    """sys.stdin or sys.stdout (`name`), which Python sets to None in a process started with it closed
    (`>&-`, `<&-`): refused in one line naming `user`, what needs it, not an AttributeError at its first use."""
    stream = getattr(sys, name)
    if stream is None:
        shown, closing = {"stdin": ("input", "<&-"), "stdout": ("output", ">&-")}[name]
        raise CharLMError(f"{user}: standard {shown} is closed ({closing}); {fix}")
    return stream


def unnamed_write(error: OSError) -> str:
    """The message of an OSError that names no file. Every file charlm writes itself is named where its write
    fails (`files.cannot_write`): one found without room is a stream, standard output (`> /dev/full`, a full
    disk under `> out.txt`; a full stderr could not show the message), where "file: No space left" named nothing.
    Not files.write_remedy's words: a device (/dev/full) has no disk to free, and only a file a size limit."""
    if error.errno in files.NO_ROOM:
        remedy = "raise the file size limit (ulimit -f)" if error.errno == errno.EFBIG else "free space where it goes"
        return (
            f"standard output: {error.strerror}; {remedy}, or send it elsewhere (--output FILE where a command has it)"
        )
    return f"file: {error.strerror or error}"


TERMINAL_GONE = (errno.EIO,)  # a terminal hung up (closed, an ssh session dropped)
# or a pipe's reader exited (`| tee log` closed with the terminal, `| head` done)
READER_GONE = (*TERMINAL_GONE, errno.EPIPE)


def to_nowhere(stream: TextIO) -> None:
    """Point `stream`'s file descriptor at /dev/null, its reader gone: what is still written, or still
    buffered and flushed at exit, is dropped instead of failing again."""
    nowhere = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(nowhere, stream.fileno())
    finally:
        os.close(nowhere)


class NowhereOnceGone(io.TextIOWrapper):
    """A standard stream whose writes, once its reader is gone (`gone_errors`: how its writes then fail), go to
    /dev/null (`to_nowhere`) and succeed."""

    gone_errors = READER_GONE

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError as error:
            self.gone(error)
            return len(text)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as error:
            self.gone(error)

    def gone(self, error: OSError) -> None:
        if error.errno not in self.gone_errors:
            raise error
        to_nowhere(self)
        super().flush()  # what the failed write left buffered: to /dev/null now, not at exit (status 120)


def outlive_readers(gone: tuple[int, ...] = READER_GONE) -> None:
    """Make stdout and stderr write on into /dev/null once their reader is gone (their writes fail with `gone`),
    for the rest of the process. A training run's terminal closed (or its `| tee` gone) under it: its next line
    raised EIO (EPIPE), and the run exited 1 mid-stop, its final scoring and best.pt skipped, or died mid-run at
    a sample line (`disown`, unsignalled). It now trains or stops as with a reader. A stream that is no file (a
    test runner's, a notebook's) is left as it is."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, NowhereOnceGone):  # made so by `outlive_terminal`: now for these readers too
            stream.gone_errors = gone
            continue
        if type(stream) is not io.TextIOWrapper:  # closed at start (None), or replaced
            continue
        if not isinstance(getattr(stream.buffer, "raw", stream.buffer), io.FileIO):
            continue  # Windows' console (_WindowsConsoleIO): as a plain file its UTF-8 shows in the code page
        stream.flush()
        # a buffer of its own: the old one's answer to seekable() may be of another file once on this descriptor
        # (a forked child's), and a new wrapper asks a seekable one where it is: "Illegal seek" at a terminal
        raw = io.FileIO(stream.fileno(), "w", closefd=False)
        buffer = raw if isinstance(stream.buffer, io.RawIOBase) else io.BufferedWriter(raw)  # raw: python -u
        options = {"line_buffering": stream.line_buffering, "write_through": stream.write_through}
        nowhere = NowhereOnceGone(buffer, stream.encoding, stream.errors, **options)
        nowhere.gone_errors = gone
        setattr(sys, name, nowhere)


@contextlib.contextmanager
def outlive_terminal() -> Iterator[None]:
    """Every command but a server (`cli.main`) ends on a hang-up as on SIGTERM, exit 129, what it was writing kept
    or removed as then, its lines going nowhere once the terminal is gone (`outlive_readers`): killed by it,
    `charlm sample --output` lost the text still buffered, or an earlier file's new text and left its temporary
    beside it, as a page, picture or corpus cache being written did. A pipe's reader gone (`| head` done) still
    ends a command at once: a sample wrote its whole --length into /dev/null. A server ends at once as before."""
    outlive_readers(TERMINAL_GONE)
    with stopping.unwind_on_hang_up():
        yield
