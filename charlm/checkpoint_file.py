"""A checkpoint file on disk: its bytes, written whole or not at all, and read back without running code.

Layout: one line `charlm-checkpoint`, one JSON header line (format version, payload length and its
sha256), then the payload as written by `torch.save`: a dict of tensors and plain values only, read
back with `torch.load(..., weights_only=True)`, so a crafted file cannot run code. The checksum
catches truncated and bit-flipped files before torch parses a byte of them.

Writes go to a temporary file in the same folder, are flushed and fsynced, then renamed over the old
file: a crash at any moment leaves either the old or the new checkpoint, never half of one.

A file refused ends its error in what to do instead, which its caller gives (`advice`): what a run
folder offers in its place is checkpoint_advice.py's.

What the payload holds, the `Checkpoint` it becomes and how an older format is upgraded are
checkpoint.py's: this module writes format VERSION and reads back any of READS, as it finds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from . import files
from .checkpoint_header import MAGIC, NOT_A_CHECKPOINT, TRUNCATED, HeaderProblem, parsed_header
from .errors import CharLMError, one_line_path
from .fields import SHOWN
from .runs import pending, resume_command

VERSION = 3
READS = (2, 3)  # format 2 (before the model/run/training split) is upgraded on read


def serialize(payload: dict) -> bytes:
    """A checkpoint file's bytes: MAGIC, the header line (version, length, sha256), the payload."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    header = {"version": VERSION, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    return MAGIC + json.dumps(header).encode() + b"\n" + body


def write_atomic(
    path: Path, data: bytes, beside: Path | None = None, before_rename: Callable[[], None] | None = None
) -> Path | None:
    """Replace the checkpoint file at `path` with `data`, whole or not at all (files.py). While `path`
    cannot be replaced (on Windows, another process holds it open longer than `files.replace` waits),
    the checkpoint goes to `pending(path)` instead, which is returned (else None): the training's work
    is kept, and the next write that replaces `path` removes the older file aside. `beside`: a file the
    same checkpoint was written to just before (best.pt), which a failure says is kept; `before_rename`:
    `files.replace_files`'."""
    had_one = path.is_file()
    try:
        files.replace_files({path: data}, before_rename)
    except PermissionError as e:
        if had_one and write_aside(path, data):
            return pending(path)
        raise cannot_write_checkpoint(path, e, had_one, beside) from None
    except OSError as e:
        raise cannot_write_checkpoint(path, e, had_one, beside) from None
    with contextlib.suppress(OSError):  # best effort: a stale file aside is older than `path`
        pending(path).unlink(missing_ok=True)
    return None


def write_aside(path: Path, data: bytes) -> bool:
    """Whether `data` could be written to `pending(path)`."""
    try:
        files.replace_files({pending(path): data})
    except OSError:
        return False
    return True


def cannot_write_checkpoint(path: Path, error: OSError, had_one: bool, beside: Path | None = None) -> CharLMError:
    """The error of a failed write, saying that nothing was lost: the previous checkpoint, if any, is
    intact; where there was none, the same checkpoint written `beside` it, if any, holds the step."""
    if had_one:
        kept = "the previous one is intact"
    elif beside is not None:
        kept = f"{beside.name} holds this step"
    else:
        kept = "no checkpoint was written"
    return CharLMError(
        f"{one_line_path(path)}: could not write checkpoint ({error.strerror}); {kept}{files.write_remedy(error)}"
    )


def aside_note(path: Path, step: int) -> str:
    """What a run says when its checkpoint at step `step` went to `pending(path)` (one line). The run
    folder names it from then on (`runs.resolve` takes the newer of the two), so it resumes as usual."""
    return (
        f"{one_line_path(path)} is held open by another process and cannot be replaced (Windows refuses while it "
        f"is open); step {step} is saved as {one_line_path(pending(path))} until it can be (if the run ends first, "
        f"{resume_command(path.parent)} goes on from it)"
    )


def read_bytes(path: Path) -> bytes:
    """The file's bytes; only its first len(MAGIC) when they are not MAGIC (a big file of another kind stays unread)."""
    path = Path(path)
    if not path.is_file():
        raise CharLMError(f"{one_line_path(path)}: no such checkpoint file")
    try:
        with open(path, "rb") as f:
            data = f.read(len(MAGIC))
            return data + f.read() if data == MAGIC else data
    except OSError as e:
        raise files.cannot_read(path, e) from None


def readable(path: Path) -> bool:
    """Whether the checkpoint file at `path` reads back whole. Its refusal is never said, so no advice is
    made for it: advice asks this of the run's other checkpoint, and advising on that would ask it back."""
    try:
        verified(read_bytes(path), path, advice=lambda _: "")
    except CharLMError:
        return False
    return True


def verified(data: bytes, path: Path, advice: Callable[[Path], str]) -> tuple[int, dict]:
    """The format version and payload of a checkpoint file's bytes, verified (header, length, checksum,
    no code); `path` names the file in errors, which end in `advice(path)`: what to do instead
    (checkpoint_advice.remedy, the run folder's other checkpoint or what is left of the run)."""
    try:
        version, size, digest, end = parsed_header(data)
    except HeaderProblem as problem:
        if str(problem) == TRUNCATED:  # empty, or cut within its first two lines: truncated, not damaged
            raise CharLMError(
                f"{one_line_path(path)}: truncated checkpoint ({len(data):,} bytes, no whole header); {advice(path)}"
            ) from None
        if str(problem) == NOT_A_CHECKPOINT:  # often an html or onnx export, which charlm does not read back
            raise CharLMError(
                f"{one_line_path(path)}: not a charlm checkpoint; give a run folder, a .pt checkpoint or a safetensors "
                "model folder"
            ) from None
        raise CharLMError(f"{one_line_path(path)}: damaged checkpoint header; {advice(path)}") from None
    body = data[end:]
    if version not in READS:
        newer = isinstance(version, int) and version > VERSION
        raise CharLMError(
            f"{one_line_path(path)}: checkpoint format {SHOWN.repr(version)} is not supported by this charlm (reads "
            f"{', '.join(map(str, READS))}); "
            + ("a newer charlm wrote it: update this charlm to read it" if newer else advice(path))
        )
    whole = end + size  # sizes of the file, as `ls -l` shows them, not of the body after the header
    if len(body) < size:
        raise CharLMError(
            f"{one_line_path(path)}: truncated checkpoint ({len(data):,} of {whole:,} bytes); {advice(path)}"
        )
    if len(body) > size:
        raise damaged_checkpoint(path, f"{len(data):,} bytes, not {whole:,}", advice)
    if hashlib.sha256(body).hexdigest() != digest:
        raise damaged_checkpoint(path, "checksum mismatch", advice)
    if hazard := _memory_hazard(body):  # before torch.load, which would allocate it
        raise CharLMError(f"{one_line_path(path)}: refused: {hazard}; {advice(path)}")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # the weights-only unpickler refused it: a global (code) or worse
        raise CharLMError(f"{one_line_path(path)}: refused: {_refusal(str(e))}; {advice(path)}") from None
    except Exception as e:  # noqa: BLE001 -- read, but malformed: torch >= 2.14 checks a sparse tensor's indices here
        raise damaged_checkpoint(path, _first_line(str(e)), advice) from None
    if not isinstance(payload, dict):  # our header over a body that is not ours: damage, as above
        raise damaged_checkpoint(path, "its body holds no checkpoint", advice)
    return version, payload


def damaged_checkpoint(path: Path, why: str, advice: Callable[[Path], str]) -> CharLMError:
    """The one wording of a checkpoint file that reads but is not what charlm wrote, whichever check
    found it (here, or checkpoint.py's of the payload and the model), ending in what to do instead."""
    return CharLMError(f"{one_line_path(path)}: damaged checkpoint ({why}); {advice(path)}")


def _memory_hazard(body: bytes) -> str:
    """Why torch.load of a payload could need far more memory than the file ("" where it cannot): only what
    torch.save writes, a zip archive of uncompressed records (`serialize`), is read without holding more
    than the file. A record compressed (a zip bomb: a few MB of the file unpacked to tens of GB) or of a
    size it does not have, or a body of torch's legacy format (storages of any size its header claims),
    would be allocated whole first."""
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return "its body is not an archive as torch.save writes one"
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED or record.file_size != record.compress_size:
            return (
                f"its record {record.filename[:120]!r} unpacks {record.compress_size:,} bytes to {record.file_size:,}, "
                "which torch.save never writes (a file made to fill memory)"
            )
    return ""


def _refusal(message: str) -> str:
    """Why torch's weights-only unpickler refused a payload, without its paragraphs of advice on
    loading untrusted files anyway."""
    # any global not allowed ("Unsupported global: GLOBAL x") or of a module torch blocks (os, posix, nt,
    # sys: "unsupported GLOBAL posix.system whose module posix is blocked", told amid paragraphs of advice)
    code = re.search(r"GLOBAL (\S+)", message)
    if code:  # a builtin by its bare name: torch >= 2.7 gives it so, 2.4 to 2.6 as builtins.getattr
        name = code.group(1).removeprefix("builtins.")
        return f"the checkpoint holds code ({name}), not only tensors and plain values"
    after = message.partition("WeightsUnpickler error:")[2] or message
    return f"the checkpoint holds more than tensors and plain values ({_first_line(after)})"


def _first_line(message: str) -> str:
    """The first line of torch's `message` that says something, cut short: it goes inside charlm's one line."""
    return next((line.strip() for line in message.splitlines() if line.strip()), "unreadable")[:120]
