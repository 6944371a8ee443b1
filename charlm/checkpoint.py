"""Checkpoints: written atomically, checked on load, read without ever executing code from the file.

File layout: one line `charlm-checkpoint`, one JSON header line (format version, payload length and
its sha256), then the payload as written by `torch.save`: a dict of tensors and plain values only,
read back with `torch.load(..., weights_only=True)`, so a crafted file cannot run code. The checksum
catches truncated and bit-flipped files before torch parses a byte of them.

Writes go to a temporary file in the same folder, are flushed and fsynced, then renamed over the old
file: a crash at any moment leaves either the old or the new checkpoint, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import torch

from .config import Config
from .device import resolve_device
from .errors import CharLMError
from .model import CharLM
from .vocab import Vocab

MAGIC = b"charlm-checkpoint\n"
VERSION = 2
CHECKPOINT_ROOT = Path("checkpoints")
LATEST, BEST = "latest.pt", "best.pt"


def serialize(payload: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    header = {"version": VERSION, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    return MAGIC + json.dumps(header).encode() + b"\n" + body


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # a full disk, or a second Ctrl-C mid-write: never leave a stray file
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CharLMError(
                f"{path}: could not write checkpoint ({e.strerror}); the previous one is intact"
            ) from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_checkpoint(path: Path) -> dict:
    """Load and verify a checkpoint file; any damage is a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CharLMError(f"{path}: no such checkpoint file")
    try:
        with open(path, "rb") as f:
            magic, header_line, body = f.readline(), f.readline(2048), f.read()
    except OSError as e:
        raise CharLMError(f"{path}: cannot read ({e.strerror})") from None
    if magic != MAGIC:
        raise CharLMError(f"{path}: not a charlm checkpoint")
    try:
        header = json.loads(header_line)
        version, size, digest = header["version"], header["bytes"], header["sha256"]
    except (ValueError, KeyError, TypeError):
        raise CharLMError(f"{path}: damaged checkpoint header") from None
    if version != VERSION:
        raise CharLMError(f"{path}: checkpoint format {version} is not supported by this charlm (reads {VERSION})")
    if len(body) != size:
        raise CharLMError(f"{path}: truncated checkpoint ({len(body)} of {size} bytes); use the run's other checkpoint")
    if hashlib.sha256(body).hexdigest() != digest:
        raise CharLMError(f"{path}: damaged checkpoint (checksum mismatch); use the run's other checkpoint")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- a refused global (code in the pickle) or a malformed body
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CharLMError(
            f"{path}: refused: the checkpoint holds more than tensors and plain values ({reason})"
        ) from None
    if not isinstance(payload, dict):
        raise CharLMError(f"{path}: not a charlm checkpoint")
    return payload


class RunLock:
    """One training process per run folder. `.lock` holds the owner's PID; if that process is gone
    (killed, crashed, machine rebooted), the lock is stale and the next run takes it over."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self.owner()
                if owner is not None and owner != os.getpid() and _alive(owner):
                    raise CharLMError(
                        f"{self.path.parent} is in use by process {owner} (another charlm train); wait for it or "
                        f"stop it (if {owner} is not charlm, delete {self.path})"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its owner is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return
        raise CharLMError(f"{self.path}: could not take the run lock; another process keeps taking it")

    def __exit__(self, *exc) -> None:
        if self.owner() == os.getpid():
            self.path.unlink(missing_ok=True)

    def owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve(target: str | Path | None, prefer: str = BEST, root: Path = CHECKPOINT_ROOT) -> Path:
    """A `.pt` file, a run folder (its `prefer` file, else the other), a run name under `root`,
    or None for the most recently updated run."""
    if target is None:
        return resolve(latest_run(root), prefer, root)
    path = Path(target)
    if not path.exists() and (root / path).exists():
        path = root / path
    if path.is_dir():
        for name in (prefer, LATEST if prefer == BEST else BEST):
            if (path / name).is_file():
                return path / name
        raise CharLMError(f"{path}: run folder holds no checkpoint ({BEST} or {LATEST})")
    if not path.is_file():
        raise CharLMError(f"{target}: no such checkpoint file or run folder")
    return path


def latest_run(root: Path = CHECKPOINT_ROOT) -> Path:
    runs = [p.parent for p in root.glob(f"*/{LATEST}")]
    if not runs:
        raise CharLMError(f"no runs under {root}/; train one with `charlm train`, or pass --checkpoint")
    return max(runs, key=lambda run: (run / LATEST).stat().st_mtime)


def model_from_payload(payload: dict) -> CharLM:
    model = CharLM(Config.from_dict(payload["config"]), Vocab.from_dict(payload["vocab"]))
    model.load_state_dict(payload["model"])
    return model


def load(target: str | Path | None = None, device: str = "cpu") -> CharLM:
    """The model of a checkpoint file or run folder (its best checkpoint), ready to generate on `device`
    (wherever it was trained: the file is read onto the CPU, then moved)."""
    where = resolve_device(device)
    path = resolve(target)
    payload = read_checkpoint(path)
    try:
        model = model_from_payload(payload)
    except (KeyError, RuntimeError, TypeError) as e:
        raise CharLMError(f"{path}: checkpoint is damaged ({type(e).__name__})") from None
    return model.to(where).eval()
