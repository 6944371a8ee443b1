"""The checks a run folder must pass before a run writes into it, each refused in one line at once, not
after minutes of planning: a new run's folder that cannot be made, a resume's folder or files it cannot
write as it means to, a run.json a resume would rewrite without having read it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from . import files
from .errors import CharLMError, one_line_path
from .fields import said, typed
from .runs import BEST, LATEST, LOCK, METRICS, RUN_INFO


def check_can_make(folder: Path) -> None:
    """Refuse at once, not after minutes of planning and measuring, a run folder that a file stands in
    the way of (`--out notes.txt/run`, or a file named `checkpoints`), or that its nearest folder that
    exists cannot hold (`--out /proc/run`, a read-only disk): a folder made there and removed says."""
    for place in (Path(folder), *Path(folder).parents):
        if place.is_symlink() and not place.exists():  # a loop of links, or one whose target is gone
            raise CharLMError(
                f"{place} is a symbolic link that leads to no folder (its target is missing, or the links loop); "
                f"create its target, remove the link, or write the run elsewhere ({said('out')})"
            )
        if place.exists() or place.is_symlink():
            if not place.is_dir():
                where = (
                    "where the run folder goes" if place == Path(folder) else f"in the way of {one_line_path(folder)}"
                )
                raise CharLMError(
                    f"{one_line_path(place)} is a file {where}; move it, or write the run elsewhere ({said('out')})"
                )
            try:  # as runs.make_folder would fail, before it has to
                probe_new_files(place)
            except OSError as e:
                raise files.cannot_write(folder, e, "the run folder") from None
            return


def probe_new_files(place: Path) -> None:
    """Raise the OSError of a folder that takes no new files (chmod a-w, a read-only mount, /proc): a folder
    is made there and removed, as `.probe.tmp-PID-START` (one a run killed here left, the next removes)."""
    probe = Path(place) / "probe"
    files.remove_leftovers(probe, unnamed_folders=True)  # and an old `.probe.tmp-RANDOM`
    try:
        os.mkdir(made := files.temporary(probe))
        os.rmdir(made)
    except FileExistsError:  # this process's own, another thread's probing now: the place can hold one
        pass


def check_resumable(run_dir: Path) -> None:
    """Refuse, in one line and before a resume says or prepares anything, a run folder it cannot write as
    it means to: one that takes no new files (chmod a-w), whose `.lock` was refused only after the run said
    it resumed; a checkpoint or run.json its owner write-protected (chmod a-w: "keep this"), which the
    resume's renames would replace all the same, a rename ignoring the file's own permissions (`sample
    --output` refuses such a file too); or a write-protected metrics.jsonl or `.lock`, which it writes into
    (a warning once it trained, its rows lost; an error after its start line)."""
    try:
        probe_new_files(run_dir)
    except OSError as e:
        writable = (
            "it is on a read-only file system, where no chmod helps: copy"
            if e.errno == errno.EROFS
            else f"make it writable (chmod u+w {typed(run_dir)}), or copy"
        )
        raise CharLMError(
            f"{one_line_path(run_dir)}: cannot resume its run: the folder takes no new files ({e.strerror or e}), and "
            f"a resume writes its checkpoints there; {writable} the run to a writable folder and resume the copy"
        ) from None
    for name in (LATEST, BEST, RUN_INFO, METRICS, LOCK):
        path = Path(run_dir) / name
        if path.is_file() and not os.access(path, os.W_OK):
            done = "would replace it" if name in (LATEST, BEST, RUN_INFO) else "writes to it"
            raise CharLMError(
                f"{one_line_path(path)}: is write-protected, and resuming the run {done}; make it writable (chmod u+w "
                f"{typed(path)}) to go on with the run, or start a new run from this one ({said('init_from', run_dir)})"
            )


def check_run_info_readable(run_dir: Path) -> None:
    """Refuse, in one line, a run.json that is there but cannot be read (chmod a-r): a resume rewrites it
    from what it read, and one read as missing is replaced without the run's reasons."""
    path = Path(run_dir) / RUN_INFO
    try:
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))  # a named pipe: no wait for a writer
    except PermissionError as e:
        raise files.cannot_read(path, e) from None
    except OSError:  # missing, or what `read_run_info` reads as none: nothing readable to lose
        pass
