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


def glance(path: Path) -> str:
    """What is wrong with the checkpoint file at `path` as far as its header, size and archive directory
    tell, in a word or two ("truncated", "damaged", ...), or "" where they are sound."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(MAGIC) + MAX_HEADER)
            if MAGIC.startswith(head):
                return "truncated"
            if not head.startswith(MAGIC):
                return "not a checkpoint"
            newline = head.find(b"\n", len(MAGIC))
            if newline < 0:
                return "truncated" if len(head) < len(MAGIC) + MAX_HEADER else "damaged"
            try:
                size = header_fields(head[len(MAGIC) : newline])[1]
            except ValueError:
                return "damaged"
            whole = newline + 1 + size
            actual = os.fstat(file.fileno()).st_size
            if actual != whole:
                return "truncated" if actual < whole else "damaged"
            with zipfile.ZipFile(file):  # reads the directory at the file's end, not the records
                return ""
    except (zipfile.BadZipFile, ValueError, EOFError):
        return "damaged"
    except OSError:
        return "unreadable"
