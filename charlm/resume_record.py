"""What a resume changed from the checkpoint it goes on from: the options given anew and the hardware it
trains on. Its start line says them, and run.json's `resumes` keeps them with the step and time, as the
checkpoint keeps only the options its steps were last trained with: a kink in the loss curve, and speed
figures of another machine, need them said. Built once by `Trainer.restore` from the checkpoint, the
resume's options, its run folder and what it trains on now, so the record needs no trainer.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import runs
from .config import UNRECORDED, Config
from .device import hardware_change_said
from .fields import changes_said

if TYPE_CHECKING:
    from .checkpoint import Checkpoint


@dataclasses.dataclass(frozen=True)
class ResumeRecord:
    """A run's resumes as run.json keeps them, and what this one changed (none for a new run)."""

    changes: dict[str, tuple[object, object]] = dataclasses.field(default_factory=dict)  # option: (old, new)
    hardware: tuple[str, str] | None = None  # (what trained the checkpoint, this), where they differ
    records: list[dict] = dataclasses.field(default_factory=list)  # run.json's `resumes`: those that changed something

    def said(self) -> str:
        """The start line's end: ` with --lr 0.001 (was 0.002); on other hardware: ...`, or ''."""
        changes = f" with {changes_said(self.changes)}" if self.changes else ""
        if not self.hardware:
            return changes
        return f"{changes}{';' if changes else ''} {hardware_change_said(*self.hardware)}"


def record_resume(checkpoint: Checkpoint, config: Config, run_dir: Path, hardware_now: str) -> ResumeRecord:
    """What this resume (`config`, on `hardware_now`, said as `checkpoint.hardware()` says the checkpoint's)
    changed from `checkpoint`, added to `run_dir`'s record of resumes. A record from the checkpoint's step on
    is dropped: a resume from there whose steps no checkpoint kept (killed, or it trained nothing)."""
    changed = checkpoint.config.changed_options(config)
    changes = {name: change for name, change in changed.items() if name not in UNRECORDED}
    step, was = checkpoint.progress.step, checkpoint.hardware()
    hardware = (was, hardware_now) if was != hardware_now else None
    records = [record for record in runs.read_resumes(run_dir) if record["step"] < step]
    if changes or hardware:
        elapsed, when = round(checkpoint.progress.elapsed, 1), time.strftime("%Y-%m-%d %H:%M:%S")
        changed_record = {name: {"was": old, "now": new} for name, (old, new) in changes.items()}
        record = {"step": step, "elapsed": elapsed, "time": when, "changed": changed_record}
        records.append(record | ({"hardware": {"was": was, "now": hardware_now}} if hardware else {}))
    return ResumeRecord(changes, hardware, records)
