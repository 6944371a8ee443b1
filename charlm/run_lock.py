"""One training process per run folder: the lock (`RunLock`) a run takes on its folder's `.lock`, and what
a run that lost it (its folder moved or removed mid-run) says as it stops."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import filelock

from . import files, processes
from .errors import CharLMError, one_line_path
from .fields import call, said, together
from .run_notes import kept_note, unsaved_note
from .runs import BEST, LATEST, LOCK, LOCK_PID, holds_checkpoint, lock_owner, make_folder, pending

OWNER_NAMED_WITHIN = 1.0  # seconds a refused run waits for the lock's new owner to name itself
RETRY_EVERY = 0.01  # seconds between a refused run's tries at the lock while it waits for the owner's name
MAXPATHLEN = 1024  # macOS's longest path, the buffer F_GETPATH writes into


class RunLock:
    """One training process per run folder: an OS lock (flock, through filelock) on `.lock`.

    Taking it is one atomic step, so of several processes starting at once exactly one wins; the OS
    drops it when its owner dies (killed, crashed, machine rebooted), so a dead run's folder is taken
    over. `.lock.pid` names the owner for the message the others get (filelock may truncate `.lock`).
    On release both files go: `.lock` before the unlock, so a process that opened it meanwhile finds
    its lock on a deleted file and filelock (>= 3.20.4) does not count it as taken (Windows refuses to
    delete a file held open: there filelock deletes it after the unlock). With timeout 0 filelock then
    says the lock is held though it is free, so a refused run tries again until an owner names itself
    (or OWNER_NAMED_WITHIN passes), and is never told of an owner that is not there.

    A lock on a file that was deleted (the run folder removed mid-run) guards nothing: another process
    may have taken a new `.lock` there. `check` says so, and the owner stops writing; on release it
    then leaves the files alone, as they may be the new owner's."""

    def __init__(self, run_dir: Path, resuming: bool = False):
        self.path = Path(run_dir) / LOCK
        self.resuming = resuming  # a resume's refusal by another thread says what a resume can do instead
        self.pid_path = Path(run_dir) / LOCK_PID
        self.lock = filelock.FileLock(self.path, timeout=0)
        self.identity: tuple[int, int] | None = None  # (device, inode) of the .lock we hold
        self.folder_fd: int | None = None  # the run folder, held open to tell where it went if moved

    def __enter__(self) -> None:
        make_folder(self.path.parent)
        deadline = time.monotonic() + OWNER_NAMED_WITHIN
        # refused: by an owner that names itself just after taking the lock (two runs started at once meet
        # in that moment), or by a `.lock` a release removed as this run opened it, free once tried again
        while not self.taken():
            owner = self.live_owner()
            if owner is not None or time.monotonic() >= deadline:
                raise self.refused(owner)
            time.sleep(RETRY_EVERY)
        scratch = self.pid_path.with_name(".lock.pid.tmp")
        try:  # whole or absent, so a reader never sees half a PID; best effort: the lock is already ours
            scratch.write_text(f"{processes.process_name()}\n", encoding="ascii")
            files.replace(scratch, self.pid_path)
        except OSError:
            scratch.unlink(missing_ok=True)
        self.identity = self.file_identity()
        self.remove_leftovers()
        try:
            self.folder_fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            self.folder_fd = None

    def taken(self) -> bool:
        """One try at the lock: False where filelock says it is held, as it also says of a `.lock` it locked
        just after a release removed it (a lock on a removed file guards nothing, so filelock drops it)."""
        try:
            self.lock.acquire()
        except filelock.Timeout:
            return False
        except OSError as e:  # flock(2) ENOLCK: an NFS mount without its lock service
            e = files.lock_named(e, self.lock)
            if files.write_remedy(e):  # a folder that refuses writes (read-only, not the user's, full): not the locks
                raise files.cannot_write(self.path, e) from None
            with contextlib.suppress(OSError):  # a lock refused by the file system guards nothing, for any run
                self.path.unlink()
            raise files.cannot_lock(
                self.path, e, "the run folder", f"train into a folder on a local disk ({said('out')})"
            ) from None
        return True

    def refused(self, owner: int | None) -> CharLMError:
        """What a run refused the folder is told: which process holds it (`owner`), if one named itself."""
        if owner == os.getpid():  # not a process to stop: the caller's own
            return CharLMError(
                f"{self.shown_dir} is in use by another thread of this process (its charlm.train); "
                f"wait for that call to return, or {self.elsewhere()}"
            )
        who = f"process {owner}" if owner is not None else "another process"
        return CharLMError(f"{self.shown_dir} is in use by {who} (another charlm train); wait for it or stop it")

    @property
    def shown_dir(self) -> str:
        """The run folder as messages show it (`one_line_path`): one renamed to end in a space, quoted."""
        return one_line_path(self.path.parent)

    def elsewhere(self) -> str:
        """What a run refused the folder can do instead of waiting: a new run trains into another folder;
        a resume, which `out` refuses, starts a new run from this run's weights there."""
        folder = said("out", metavar="FOLDER")
        if not self.resuming:
            return f"train into another folder ({folder})"
        return f"start a new run from its weights ({together(said('init_from', self.path.parent), folder)})"

    def remove_leftovers(self) -> None:
        """The checkpoints' temporary files that processes killed mid-write left (`files.remove_leftovers`):
        one a kill, each a checkpoint's size, they would fill the disk of a run killed and resumed often. Only
        the lock's owner writes checkpoints, so none is being written."""
        for name in (LATEST, BEST):
            for path in (self.path.parent / name, pending(self.path.parent / name)):
                files.remove_leftovers(path, sole_writer=True)

    def __exit__(self, *exc) -> None:
        if self.lost() is None:  # else the files there, if any, are another process's
            # best effort: a folder made read-only mid-run keeps them (the next owner replaces .lock.pid), and
            # the run's own error (a checkpoint it could not write) is the one to say; Windows refuses
            # to delete .lock while open, and filelock deletes it once unlocked
            for path in (self.pid_path, self.path):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        self.lock.release()
        self.identity = None
        if self.folder_fd is not None:
            os.close(self.folder_fd)
            self.folder_fd = None

    def file_identity(self) -> tuple[int, int] | None:
        """Which file `.lock` is now, (device, inode), or None where none is there: one that differs from
        the `identity` taken was removed or replaced (`lost`)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def lost(self) -> str | None:
        """Why the lock no longer guards the run folder (it or `.lock` was removed or replaced), or None."""
        if self.identity is None:
            return None  # not taken
        if not self.path.parent.is_dir():
            if self.folder_now() is None:  # the OS does not say where the folder is
                return (
                    f"the run folder {self.shown_dir} was moved or removed (one moved resumes where it is "
                    f"now: {call('train', said('resume', metavar='FOLDER'))})"
                )
            moved = self.moved_to()
            gone = "removed" if moved is None else f"moved to {one_line_path(moved)}"
            return f"the run folder {self.shown_dir} was {gone}"
        if self.file_identity() != self.identity:
            return (
                f"{one_line_path(self.path)} was removed or replaced, so another process may train in {self.shown_dir}"
            )
        return None

    def moved_to(self) -> Path | None:
        """Where the run folder is now if it was moved (not removed) while held, where the OS says."""
        now = self.folder_now()
        return now if now is not None and now.is_dir() and now != self.path.parent.resolve() else None

    def folder_now(self) -> Path | None:
        """The path of the run folder held open, as the OS says it now (a removed one's may be anything
        but a folder), or None where it cannot say: no folder held (Windows refuses to open one), or no
        way to ask (neither /proc nor F_GETPATH, e.g. FreeBSD)."""
        return None if self.folder_fd is None else open_path(self.folder_fd)

    def check(self, step: int) -> None:
        """Refuse to write anything more once the lock is `lost`."""
        if reason := self.lost():
            raise CharLMError(stopped_message(reason, step, self.moved_to()))

    def live_owner(self) -> int | None:
        """The PID of the last owner, if it still runs (`lock_owner`)."""
        return lock_owner(self.path.parent)


def open_path(fd: int) -> Path | None:
    """Where the file or folder open as `fd` is now: Linux's /proc/self/fd link (a removed one reads
    "PATH (deleted)"), macOS's fcntl F_GETPATH (fcntl(2): the path, into a buffer of MAXPATHLEN bytes);
    None where the OS does not say."""
    try:
        if sys.platform == "darwin":
            import fcntl  # POSIX only

            return Path(os.fsdecode(fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(MAXPATHLEN)).partition(b"\0")[0]))
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except (OSError, AttributeError):
        return None


def stopped_message(reason: str, step: int, moved_to: Path | None = None) -> str:
    """What a run that lost its folder says as it stops (`RunLock.lost` gives the reason): a folder
    moved elsewhere still holds its checkpoints, and resumes where it is now; one moved before the
    first checkpoint holds none to resume (the lock does not know the run's saved step: its files do)."""
    if moved_to is None:
        what_to_do = f"start a new run, or train into another {said('out')}"
    else:
        what_to_do = kept_note(moved_to, None) if holds_checkpoint(moved_to) else unsaved_note(moved_to)
    return f"{reason} while training; training stopped at step {step} without writing anything more; {what_to_do}"
