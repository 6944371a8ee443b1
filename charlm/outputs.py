"""Where a command may write its --output: never over a charlm checkpoint or a run's own records, never
into a run folder. A mistyped `--output checkpoints/RUN/best.pt` replaced the run's weights with an
HTML page and said `wrote` (export, sample, inspect and plot all write where they are told)."""

from __future__ import annotations

import os
from pathlib import Path

from . import files, hub, path_names, runs
from .checkpoint_file import MAGIC
from .errors import CharLMError, one_line_path
from .fields import about_option, said

# What a run folder holds of its own (runs.py): a file of these names in one is the run's.
RUN_RECORDS = (
    runs.LATEST,
    runs.BEST,
    runs.RUN_INFO,
    runs.SAMPLES,
    runs.METRICS,
    runs.EXPORTS_LOG,
    runs.LOCK,
    runs.LOCK_PID,
)


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


def is_run_record(path: Path) -> bool:
    """Whether `path` names one of a run folder's own records (RUN_RECORDS)."""
    return path.name in RUN_RECORDS and runs.is_run_folder(path.parent)


def not_empty(output: str | Path, kind: str) -> str | Path:
    """`output`, refused when empty: `--output "$FILE"` with FILE unset, where Path("") is ".", the
    current folder (a sample would say nothing and keep no copy; an export would go to its default place);
    or too long to be a path (`path_names.check_nameable`)."""
    if not str(output):
        raise CharLMError(f"{said('output')} is empty; give a {kind} name")
    try:
        path_names.check_nameable(output)
    except CharLMError as e:
        raise about_option("output", output, e) from None
    return output


def output_file(output: str | Path) -> Path:
    """`output` as a file a command may replace; a folder, a checkpoint, a run's own record (or a link
    to one: a write goes through a link) or a write-protected file is refused."""
    path, named = Path(not_empty(output, "file")), said("output", output)
    try:
        if path.is_dir():
            raise CharLMError(f"{named}: is a folder; give a file name")
        if is_checkpoint(path):
            raise CharLMError(f"{named}: is a charlm checkpoint, which this would overwrite; give another file")
        if is_run_record(path):
            raise CharLMError(f"{named}: is a record of the run in {one_line_path(path.parent)}; give another file")
        target = files.written_through(path)  # what a write replaces: a link's file (files.py)
        if target != path and is_run_record(target):
            raise CharLMError(
                f"{named}: links to a record of the run in {one_line_path(target.parent)}; give another file"
            )
        # A rename over a file ignores the file's own permissions: a write-protected one would be
        # replaced silently, where `>` refuses it.
        if path.exists() and not os.access(path, os.W_OK):
            raise CharLMError(f"{named}: is write-protected; make it writable (chmod u+w), or give another file")
    except OSError as e:  # a name too long for the file system: `NAME: File name too long`, or a traceback
        raise files.cannot_write(named, e) from None
    return path


def replacing_note(output: str | Path) -> str:
    """What a command adds to its `wrote` line when `output` is there already (asked before writing):
    replaced, as every command replaces its --output, but not unsaid: `charlm inspect a.txt`, then b.txt,
    lost a.txt's report.html without a word."""
    path = Path(output)
    try:  # a folder of no files but hidden ones replaces nothing of the user's (`users_files`)
        there = path.exists() and not (path.is_dir() and not users_files(path))
    except OSError:  # a name too long for the file system: nothing there, and the write says why it cannot be
        there = False
    return f", replacing the earlier {one_line_path(output)} (give --output another name to keep both)" if there else ""


def output_folder(output: str | Path) -> Path:
    """`output` as the model folder an export writes: new, empty, or an earlier export, which it replaces.
    A run's folder is refused, and so is a folder of other files: `--output ~/project` wrote the model
    among them, over the project's own config.json. Hidden files do not count, as none is written over:
    an export under way keeps its lock and temporary files there (hub.py), which a second export into the
    new folder must wait for, not be refused by; nor are a git clone's .git and macOS's .DS_Store others
    (`users_files`)."""
    path, named = Path(not_empty(output, "folder")), said("output", output)
    try:
        if runs.is_run_folder(path):
            raise CharLMError(
                f"{named}: is a run folder; give a folder of its own, e.g. "
                f"{one_line_path(path / runs.EXPORTS / 'model')}"
            )
        others = users_files(path) if path.is_dir() and not hub.holds_model(path) else []
    except OSError as e:  # a name too long for the file system, as `output_file`
        raise files.cannot_write(named, e) from None
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise CharLMError(
            f"{named}: holds other files ({shown}) and no model; give a new or empty folder, or an earlier export's"
        )
    return path


def users_files(folder: Path) -> list[str]:
    """The names in `folder` that a command writing there may replace of the user's, sorted: not hidden
    ones, which none writes over (an export's lock and temporary files, .git, .DS_Store). `output_folder`
    refuses a folder of such files and `replacing_note` says they are replaced: one rule for both."""
    return sorted(p.name for p in Path(folder).iterdir() if not p.name.startswith("."))
