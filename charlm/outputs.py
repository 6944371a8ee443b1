"""Where a command may write its --output: never over a charlm checkpoint or a run's own records, never
into a run folder. A mistyped `--output checkpoints/RUN/best.pt` replaced the run's weights with an
HTML page and said `wrote` (export, sample, inspect and plot all write where they are told)."""

from __future__ import annotations

from pathlib import Path

from . import runs
from .checkpoint_file import MAGIC
from .errors import CharLMError
from .fields import said
from .reporting import METRICS

# What a run folder holds of its own (runs.py): a file of these names in one is the run's.
RUN_RECORDS = (runs.LATEST, runs.BEST, runs.RUN_INFO, runs.SAMPLES, METRICS, runs.EXPORTS_LOG, runs.LOCK, runs.LOCK_PID)


def is_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a charlm checkpoint file (it starts with the checkpoint's first line). Only a
    regular file is read: opening `--output /dev/stdout` (a pipe) or a FIFO to look took the reader's
    bytes, or waited forever for some (`charlm sample --output /dev/stdout | less` hung)."""
    if not Path(path).is_file():
        return False
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:  # absent, a folder, unreadable: nothing of a checkpoint to lose
        return False


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` is a run's folder: it holds a checkpoint or a run.json."""
    return any((Path(path) / name).is_file() for name in (runs.LATEST, runs.BEST, runs.RUN_INFO))


def output_file(output: str | Path) -> Path:
    """`output` as a file a command may replace; a folder, a checkpoint or a run's own record is refused."""
    path, named = Path(output), said("output", output)
    if not str(output):  # `--output "$FILE"` with FILE unset: Path("") is ".", the current folder
        raise CharLMError(f"{said('output')} is empty; give a file name")
    if path.is_dir():
        raise CharLMError(f"{named}: is a folder; give a file name")
    if is_checkpoint(path):
        raise CharLMError(f"{named}: is a charlm checkpoint, which this would overwrite; give another file")
    if path.name in RUN_RECORDS and is_run_folder(path.parent):
        raise CharLMError(f"{named}: is a record of the run in {path.parent}; give another file")
    return path


def replacing_note(output: str | Path) -> str:
    """What a command adds to its `wrote` line when `output` is there already (asked before writing):
    replaced, as every command replaces its --output, but not unsaid: `charlm inspect a.txt`, then b.txt,
    lost a.txt's report.html without a word."""
    return (
        f", replacing the earlier {output} (give --output another name to keep both)" if Path(output).exists() else ""
    )


def output_folder(output: str | Path) -> Path:
    """`output` as a folder a command may write files into; a run's folder is refused."""
    path = Path(output)
    if is_run_folder(path):
        raise CharLMError(
            f"{said('output', output)}: is a run folder; give a folder of its own, e.g. {path / runs.EXPORTS / 'model'}"
        )
    return path
