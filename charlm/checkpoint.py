"""Checkpoints: written atomically, read without ever executing code from the file.

A checkpoint is a dict of tensors and plain values (str, int, float, list, dict): everything
`torch.load(..., weights_only=True)` accepts, so a crafted file cannot run code on load. Writes go to
a temporary file in the same folder, are flushed to disk, then renamed over the old file: a crash at
any moment leaves either the old or the new checkpoint, never half of one.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from .config import Config
from .errors import CharLMError
from .model import CharLM
from .vocab import Vocab

FORMAT = "charlm-checkpoint"
VERSION = 1
CHECKPOINT_ROOT = Path("checkpoints")
LATEST, BEST = "latest.pt", "best.pt"


def serialize(payload: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CharLMError(f"{path}: could not write checkpoint ({e.strerror}); the previous one is intact") from None
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_checkpoint(path: Path) -> dict:
    """Load and check a checkpoint file; any damage is a one-line error naming the file."""
    if not path.is_file():
        raise CharLMError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- truncated zip, foreign pickle, refused globals: all mean "not ours"
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise CharLMError(f"{path}: not a readable charlm checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CharLMError(f"{path}: not a charlm checkpoint")
    if payload.get("version") != VERSION:
        raise CharLMError(f"{path}: checkpoint format {payload.get('version')} is not supported (need {VERSION})")
    return payload


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
    model = CharLM(Config.from_dict(payload["config"]), Vocab.from_string(payload["vocab"]))
    model.load_state_dict(payload["model"])
    return model


def load(target: str | Path | None = None) -> CharLM:
    """The model of a checkpoint file or run folder (its best checkpoint), ready to generate."""
    path = resolve(target)
    payload = read_checkpoint(path)
    try:
        model = model_from_payload(payload)
    except (KeyError, RuntimeError, TypeError) as e:
        raise CharLMError(f"{path}: checkpoint is damaged ({type(e).__name__})") from None
    return model.eval()
