"""Run folders: where a run lives, how it is named and found, and that one process trains in it.

checkpoints/<corpus>-<date>-<time>/
    latest.pt      the last checkpoint (checkpoint.py writes it)
    best.pt        the checkpoint with the lowest validation bpc
    metrics.jsonl  one row per log interval (reporting.py)
    run.json       what the run is: corpus, size, config
    samples.txt    samples shown during training (--sample-every)
    .lock          held by the training process
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .errors import CharLMError

CHECKPOINT_ROOT = Path("checkpoints")
LATEST, BEST = "latest.pt", "best.pt"
RUN_INFO, SAMPLES = "run.json", "samples.txt"


def run_folder(out: str | None, corpus_name: str) -> Path:
    """`--out NAME` -> checkpoints/NAME; a path with a folder part is used as given; none: a new name."""
    if out is None:
        return CHECKPOINT_ROOT / f"{corpus_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(out)
    return path if len(path.parts) > 1 or path.is_absolute() else CHECKPOINT_ROOT / path


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


def run_folders(root: Path = CHECKPOINT_ROOT) -> list[Path]:
    """The run folders under `root` that hold a checkpoint, sorted by name."""
    return sorted(p.parent for p in Path(root).glob(f"*/{LATEST}"))


def latest_run(root: Path = CHECKPOINT_ROOT) -> Path:
    runs = run_folders(root)
    if not runs:
        raise CharLMError(f"no runs under {root}/; train one with `charlm train`, or pass --checkpoint")
    return max(runs, key=lambda run: (run / LATEST).stat().st_mtime)


def write_run_info(run_dir: Path, info: dict) -> None:
    """run.json, replaced atomically; best effort (a full disk is a warning, not the end of the run)."""
    path = Path(run_dir) / RUN_INFO
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({**info, "updated": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1), encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        print(f"warning: {path}: cannot write ({e.strerror}); training goes on", file=sys.stderr)


def read_run_info(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
