"""A checkpoint file's first two lines, read without torch: what `charlm runs` needs to tell a damaged
checkpoint from a sound one in a glance, for every run it lists, without reading any file whole.

Layout (checkpoint_file.py writes it): one line `charlm-checkpoint`, one JSON header line (format
version, payload length and its sha256), then the payload, a zip archive as torch.save writes one. The
glance checks the header, the file's size against the length it gives and the archive's directory (at
the file's end): a file cut short or grown, or a torn archive. Bits flipped within the payload show only
to the full read (checkpoint_file.verified, which checks the sha256).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from . import files

MAGIC = b"charlm-checkpoint\n"
MAX_HEADER = 2048  # bytes of the header line, its newline included: a longer one is damage


def header_fields(line: bytes) -> tuple[object, int, object]:
    """The (version, bytes, sha256) of a header line; ValueError where it is no header charlm wrote."""
    try:
        header = files.parse_json(line)
        fields = header["version"], header["bytes"], header["sha256"]
    except (KeyError, TypeError):
        raise ValueError("not a checkpoint header") from None
    if type(fields[1]) is not int:  # null, "12", true, 12.0: no count of bytes to compare the file with
        raise ValueError("no count of bytes")
    return fields


class HeaderProblem(ValueError):
    """Why a file's first bytes hold no checkpoint header: TRUNCATED, NOT_A_CHECKPOINT or DAMAGED."""


TRUNCATED, NOT_A_CHECKPOINT, DAMAGED = "truncated", "not a checkpoint", "damaged"


def parsed_header(head: bytes) -> tuple[object, int, object, int]:
    """The (version, bytes, sha256) of a checkpoint's header and where its payload starts, from the file's
    first len(MAGIC) + MAX_HEADER bytes or more (the whole file, where it is shorter); HeaderProblem where
    they hold none. One reading for the full read (`checkpoint_file.verified`) and the glance."""
    if MAGIC.startswith(head):
        raise HeaderProblem(TRUNCATED)
    if not head.startswith(MAGIC):
        raise HeaderProblem(NOT_A_CHECKPOINT)
    newline = head.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER)
    if newline < 0 and len(head) >= len(MAGIC) + MAX_HEADER:
        raise HeaderProblem(DAMAGED)  # a header line longer than any charlm writes
    end = newline + 1 or len(head)
    try:
        return (*header_fields(head[len(MAGIC) : end]), end)
    except ValueError:
        raise HeaderProblem(TRUNCATED if newline < 0 else DAMAGED) from None  # no newline: it ends in the header


def glance(path: Path) -> str:
    """What is wrong with the checkpoint file at `path` as far as its header, size and archive directory
    tell, in a word or two ("truncated", "damaged", ...), or "" where they are sound."""
    try:
        with open(path, "rb") as file:
            _, size, _, end = parsed_header(file.read(len(MAGIC) + MAX_HEADER))
            actual, whole = os.fstat(file.fileno()).st_size, end + size
            if actual != whole:
                return TRUNCATED if actual < whole else DAMAGED
            with zipfile.ZipFile(file):  # reads the directory at the file's end, not the records
                return ""
    except HeaderProblem as problem:
        return str(problem)
    except (zipfile.BadZipFile, ValueError, EOFError):
        return DAMAGED
    except OSError:
        return "unreadable"
