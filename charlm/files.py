"""Files written whole or not at all, a failed write or read said in one line with what to do, and a
path the user gave recorded as they named it (`recorded_path`).

Each file goes to a hidden temporary file beside its target, is fsynced, then renamed over the
target. A full disk, a file size limit, Ctrl-C or a crash mid-write leaves the old file (or none),
never the first half of a checkpoint, page or model that a reader (charlm, a browser, onnxruntime)
would take for a whole one, and no temporary file. A target that is a symbolic link is written
through (`written_through`), as `>`, cp and editors write one: the file it names is replaced, the
link stays.

A temporary is named by the process that writes it (`processes.process_name`: PID-START), so what a
writer killed mid-write left is told from a live writer's (`processes.process_alive`) and removed
(`remove_leftovers`). Also here: a lock taken with a word on stderr while it waits (`take_lock`), and
JSON a person may have edited read safely (`parse_json`, `is_number`); a path no file can have is
refused before it is looked up by path_names.py.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePath

import filelock

from . import processes
from .errors import CharLMError, one_line, one_line_path
from .fields import said

NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a full quota, a file size limit (ulimit -f)
WINDOWS_IN_USE = (32, 33)  # ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION: another program has the file open
NO_SYNC = (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)  # a file system without fsync
# How long to wait, in turn, before trying a refused rename again (1.5 s in all): on Windows a file that
# another process holds open (charlm sample reading best.pt, an antivirus scan) cannot be replaced.
REPLACE_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8)
OWNER_MARK = ".tmp-"  # what precedes the process that made a temporary in its name (`owner_alive`)
TEMPORARY_PREFIX = ".{}" + OWNER_MARK  # a file's temporary is `.NAME.tmp-PID-START` (`temporary`)
# An empty folder of a temporary's name that names no process (`.probe.tmp-RANDOM`, what charlm's write
# probes were named before they named their process) is removed once untouched this long: no probe takes
# a second, and a fresh one may be another version's run probing now
UNNAMED_STALE_SECONDS = 3600.0
# A temporary's lock while a thread writes it (`temporaries_in_turn`), for as long as a thread holds or waits for it
_temporary_turns: weakref.WeakValueDictionary[Path, threading.Lock] = weakref.WeakValueDictionary()
_temporary_turns_lock = threading.Lock()


def write_remedy(error: OSError) -> str:
    """What to do about a failed write, as a clause to append to its message ('' when unknown)."""
    if error.errno == errno.EIO:
        return "; its disk or network share failed: check it, or write elsewhere"
    if getattr(error, "winerror", None) in WINDOWS_IN_USE:
        return "; close the program that has it open (an editor, a viewer, charlm serve), then try again"
    if error.errno in NO_ROOM:
        return "; free space on its disk (or raise the file size limit, ulimit -f)"
    if error.errno in (errno.EACCES, errno.EPERM) and write_protected_in_writable_folder(error.filename):
        return "; make it writable (chmod u+w), or write elsewhere"
    if error.errno == errno.EROFS:  # a read-only mount (a CD, a snapshot, `mount -o ro`): no chmod makes it writable
        return (
            f"; {refusing_folder(error.filename)} is on a read-only file system, where no chmod helps: write elsewhere"
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"; make {refusing_folder(error.filename)} writable, or write elsewhere"
    if error.errno == errno.EISDIR:  # a folder by the file's name: a run's best.pt, its .lock
        return "; a folder stands where the file goes: move it, or write elsewhere"
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        return "; a file is in the way of its folder: move it, or write elsewhere"
    if error.errno == errno.ENOENT:  # a folder missing (sample --output), or one that cannot be made (/proc/x)
        return "; no folder there can hold it: write into a folder that exists and is writable"
    if error.errno == errno.ELOOP:  # --output a link whose links lead back to it (`written_through`)
        return "; it is a link that leads round a loop of links: remove it, or write elsewhere"
    if isinstance(error, NotAFile):  # renamed over, a pipe or device node would be a plain file
        return "; give the name of a file: charlm writes a file whole and puts it in its place"
    if error.errno == errno.ENAMETOOLONG:  # a run folder named after a corpus file with a long name
        return f"; give a shorter name (a run folder: {said('out', metavar='NAME')})"
    return ""


def write_protected_in_writable_folder(filename: str | bytes | None) -> bool:
    """Whether a refused write was the file's own permissions (a run's metrics.jsonl or .lock chmod a-w),
    not its folder's: the folder takes new files, so making it writable would change nothing."""
    if filename is None or not os.path.isfile(filename):
        return False
    return os.access(os.path.dirname(os.path.abspath(filename)), os.W_OK | os.X_OK)


def refusing_folder(filename: str | bytes | None) -> str:
    """The folder that refused to take `filename` (the file or folder a failed write was making in it),
    as the user named it, absolute or relative: "its folder" of a message naming a folder (`corpora/cache:
    cannot write the corpus cache`) read as the one above, which was not the one to make writable. A
    lock's error names the lock as it was named (`lock_named`), not as filelock's absolute path."""
    if filename is None:
        return "its folder"
    folder = Path(os.fsdecode(filename)).parent
    if folder == Path("."):
        try:
            return f"the current folder ({Path.cwd()})"
        except OSError:  # the current folder was removed
            return "the current folder"
    return str(folder)


def lock_named(error: OSError, lock: filelock.BaseFileLock) -> OSError:
    """`error`, a refusal of `lock`'s file, naming it as the lock was named (`checkpoints/run/.lock`):
    filelock names it by its absolute path, which the user never typed."""
    if error.filename is not None and os.path.abspath(os.fsdecode(error.filename)) == os.path.abspath(lock.lock_file):
        error.filename = lock.lock_file
    return error


def cannot_write(name: str | Path, error: OSError, what: str = "") -> CharLMError:
    """The one-line error for a write of `name` (a file, or the option that named it) that failed;
    `what`: what was being written, when `name` does not say. A Path is shown as `one_line_path` shows it;
    a str is the option's words (`output='a/b '`), said as written."""
    return CharLMError(
        f"{shown_subject(name)}: cannot write{' ' + what if what else ''} ({error.strerror or error})"
        + write_remedy(error)
    )


def shown_subject(name: str | Path) -> str:
    """`name` as a message opens with it: a path as `one_line_path` shows it (`checkpoints/'run '`), words
    that name it (`output='a/b '`) as written, not split at their '/'."""
    return one_line_path(name) if isinstance(name, PurePath) else name


def take_lock(lock: filelock.BaseFileLock, waiting_for: str, after: float = 0.0, quiet: bool = False) -> None:
    """Take `lock`, waiting for as long as the process that holds it does; if that is longer than `after`
    seconds, say once on stderr what it waits for (`waiting for another export into DIR ...`), so that
    a wait is not taken for a hang. Raises the OSError of a lock the OS refuses (`cannot_lock`).

    A `.lock` deleted as it is taken reads as held (run_lock.RunLock): with `after` > 0 filelock tries again
    until then; `after=0` suits a lock file nobody deletes (the fetch lock), or it says a wait it never had."""
    try:
        try:
            lock.acquire(timeout=after)
        except filelock.Timeout:
            if not quiet:
                print(one_line(f"waiting for {waiting_for} ..."), file=sys.stderr, flush=True)
            lock.acquire()
    except OSError as e:
        raise lock_named(e, lock) from None


def cannot_lock(path: str | Path, error: OSError, what: str, instead: str) -> CharLMError:
    """The one-line error for a lock on `path` that the OS refused though the folder takes writes (see
    `write_remedy` for those that refuse them): flock(2) fails with ENOLCK ('No locks available') on an NFS
    mount without its lock service. `what`: what the lock guards; `instead`: where to write instead."""
    return CharLMError(
        f"{shown_subject(path)}: cannot lock {what} ({error.strerror or error}): its file system does not lock files; "
        f"{instead}"
    )


def utf8(text: str) -> bytes:
    """`text` in UTF-8, for a file. A lone surrogate, which is how Python holds a byte of a file name that
    is not UTF-8 (a corpus named caf\\xe9.txt gives its run name and paths one), has no UTF-8 form: it is
    written as its escape, \\udce9, which JSON reads back as the same string and a page shows as text."""
    return text.encode("utf-8", "backslashreplace")


def json_text(value: object, indent: int | None = None) -> str:
    """`value` as JSON a person can read: Chinese as text, not \\u escapes (a Chinese corpus's run.json
    was unreadable), a lone surrogate as its escape (`utf8`), and the line separators JSON leaves
    unescaped (U+2028, U+2029, U+0085, which occur only inside its strings) escaped, so that
    `str.splitlines` finds one object a line of a .jsonl file."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")
    return utf8(text).decode("utf-8")


def parse_json(text: str | bytes) -> object:
    """`json.loads`, but a text nested deeper than Python's parser goes (about a thousand brackets, which
    only a hostile file holds) raises the ValueError any malformed JSON does, not a RecursionError: every
    reader of a file charlm loads already turns a ValueError into its one line, or skips the line."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def is_number(value: object) -> bool:
    """A finite int or float as `parse_json` gives them (not a bool, not NaN): a field of a file a person
    may have edited is checked with it before it is read as a figure."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def cannot_read(name: str | Path, error: OSError) -> CharLMError:
    """The one-line error for a read of `name` (a Path, or the words naming it: `cannot_write`) that failed,
    with what to do where the cause says."""
    return CharLMError(f"{shown_subject(name)}: cannot read ({error.strerror or error}){read_remedy(error)}")


class NotAFile(OSError):
    """A named pipe, device or other special file where a file was to be read (`read_regular`)."""


def read_regular(path: Path) -> bytes:
    """The bytes of the regular file at `path`. A named pipe (or a device) in its place raises NotAFile
    rather than being read: a pipe's read waits for a writer forever, a device's may never end. It is
    opened without waiting for one (O_NONBLOCK, which a regular file ignores), then looked at."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        raise not_a_file(path, mode)
    with open(fd, "rb") as file:
        return file.read()


def not_a_file(path: Path, mode: int) -> NotAFile:
    """The NotAFile of the special file of `mode` at `path`, saying which kind it is."""
    return NotAFile(errno.EINVAL, not_a_file_kind(mode), str(path))


def not_a_file_kind(mode: int) -> str:
    """What a special file of `mode` is, in the words of every message that names one, whichever option
    it was given to: a pipe (a named one, `<(cat a b)`, /dev/stdin under a pipe), a device, a socket."""
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "a special file"


def read_remedy(error: OSError) -> str:
    """What to do about a failed read, as a clause to append to its message ('' when unknown)."""
    if error.errno == errno.EIO:  # a failing disk, a network share that dropped mid-read
        return "; its disk or network share failed: check it (or copy the file to a sound disk) and try again"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "; make it readable, or copy it somewhere it is"
    if error.errno == errno.ENOENT:  # gone since it was listed, or never there (a seed file)
        return missing_path_remedy(error.filename)
    return ""


def missing_path_remedy(path: str | Path | None) -> str:
    """What to do about a path that names nothing, as a clause: check it, and for a relative one, the
    folder it was looked for in, which the user may not have had in mind."""
    relative = path is not None and not Path(os.fsdecode(path)).is_absolute()
    return f"; check the path{f' (relative to {Path.cwd()})' if relative else ''}"


def recorded_path(path: str | Path) -> str:
    """`path` as charlm records it, and later shows it (a corpus, --eval-also, --init-from's base, an
    export): absolute, so it holds from any working directory; its folders resolved, so `a/../b.txt` is the
    file read though `a` is a link; its own name kept, so a link (唐诗三百首.txt -> tangshi300.txt) is named
    as the user named it, as it names the run. A name of dots (`.`, `..`) is resolved: it names no file of its own."""
    path = Path(path).absolute()
    return str(path.resolve() if path.name in ("", "..") else path.parent.resolve() / path.name)


def replace_files(files: dict[Path, bytes], before_rename: Callable[[], None] | None = None) -> None:
    """Write every file of `files` (path -> bytes) beside its target (a link's: `written_through`), then
    rename each into place in order: a write that fails leaves every target as it was, and removes what it
    wrote. Raises the OSError; a named pipe or device as a target, before anything is written (`check_replaceable`).
    What earlier writers of these files left when killed mid-write goes first (`remove_leftovers`).
    `before_rename` may refuse (raise) once all is written: a run's look at its lock, as late as it can be."""
    targets = {written_through(path): data for path, data in files.items()}
    for path in targets:
        check_replaceable(path)
    written: list[tuple[Path, Path]] = []
    with temporaries_in_turn(targets):
        try:
            for path, data in targets.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                remove_leftovers(path)
                tmp = temporary(path)
                written.append((tmp, path))
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    sync_file(f.fileno())
            if before_rename is not None:
                before_rename()
            for tmp, path in written:
                replace(tmp, path)
        except BaseException:  # a full disk, or a second Ctrl-C mid-write: never leave a stray file
            for tmp, _ in written:
                tmp.unlink(missing_ok=True)
            raise
    for folder in dict.fromkeys(path.parent for path in targets):
        sync_folder(folder)


def written_through(path: Path) -> Path:
    """Where a write of `path` lands: `path`, or the file a symbolic link at `path` names, resolved, so
    that its temporary is renamed onto that file in that file's folder and the link stays a link (a page
    linked into a website's folder was replaced by a copy, and the website kept the old page). A link to
    nothing names the file to make there. A loop of links names none: ELOOP, as open(2) says it."""
    path = Path(path)
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    if target.is_symlink():  # realpath stops where the links go round
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
    return target


def check_replaceable(path: Path) -> None:
    """Raise NotAFile where a named pipe or a device is at `path` (`--output /dev/full`): renamed over, it
    would be gone (as root, from /dev), and a reader waiting on the pipe never get the file."""
    try:
        mode = path.stat().st_mode
    except OSError:  # nothing there yet: a file to make
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # a folder is said where the rename fails
        raise not_a_file(path, mode)


@contextlib.contextmanager
def temporaries_in_turn(paths: Iterable[Path]) -> Iterator[None]:
    """This thread's turn at the temporaries of `paths`: they are named by the process (`temporary`), not
    the thread, so two threads writing one file at once would write into one. Taken in one order: no deadlock."""
    with _temporary_turns_lock:
        turns = [_temporary_turns.setdefault(temporary(path), threading.Lock()) for path in sorted(set(paths))]
    with contextlib.ExitStack() as held:
        for turn in turns:
            held.enter_context(turn)
        yield


def temporary(path: Path) -> Path:
    """Where `replace_files` writes `path` before renaming it into place: hidden, beside it, named by
    this process, so that two writers never share one."""
    return path.with_name(f"{TEMPORARY_PREFIX.format(path.name)}{processes.process_name()}")


def remove_leftovers(path: Path, sole_writer: bool = False, unnamed_folders: bool = False) -> None:
    """Remove what writers of `path` killed mid-write (SIGKILL, a power cut) left beside it: their
    temporary files, one per process and each as big as the file (a checkpoint, a page, a model), which
    nothing else removes. A writer still running keeps its own (`processes.process_alive`), unless the caller is
    the only process that writes `path` (`sole_writer`: a run's lock owner; Windows cannot tell).
    `unnamed_folders`: also an empty folder whose name names no process, once UNNAMED_STALE_SECONDS old
    (the write probes of earlier versions, `.probe.tmp-RANDOM`)."""
    leftovers = list(path.parent.glob(f"{TEMPORARY_PREFIX.format(path.name)}*"))
    remove_orphans(leftovers, sole_writer)
    if unnamed_folders:
        remove_stale_unnamed_folders(leftovers)


def remove_stale_unnamed_folders(leftovers: Iterable[Path]) -> None:
    """Remove each of `leftovers` that is an empty folder, named by no process (`owner_alive`), and
    untouched for UNNAMED_STALE_SECONDS: only an empty one, so nothing anyone wrote is lost."""
    for leftover in leftovers:
        with contextlib.suppress(OSError):  # gone meanwhile, not empty, not a folder: kept, or removed already
            if owner_alive(leftover) is None and time.time() - leftover.lstat().st_mtime > UNNAMED_STALE_SECONDS:
                leftover.rmdir()


def remove_orphans(leftovers: Iterable[Path], sole_writer: bool = False) -> None:
    """Remove each of `leftovers`, temporaries named by the process that made them (`temporary`), whose
    process has ended (`owner_alive`; all named by a process, with `sole_writer`); a folder (a claim
    being made, a write probe) with what it holds. A name that names no process is not charlm's: kept."""
    for leftover in leftovers:
        alive = owner_alive(leftover)
        if alive is None or alive and not sole_writer:
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)  # another run may be removing it too
        else:
            with contextlib.suppress(OSError):  # best effort: one left is removed next time
                leftover.unlink()


def owner_alive(leftover: Path) -> bool | None:
    """Whether the process that made the temporary `leftover` (`.NAME.tmp-PID-START`, `temporary`) still
    runs; None: its name names no process."""
    return processes.named_process_alive(leftover.name.rpartition(OWNER_MARK)[2])


def identity(path: Path) -> tuple[int, ...] | None:
    """Which file `path` is now (None: none): a file replaced (renamed over, as `replace_files` writes
    every checkpoint) is another, so two equal identities are one unchanged file."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def sync_file(fd: int) -> None:
    """fsync, where the filesystem can: one that cannot sync a file (fsync(2): EINVAL; some FUSE and
    network mounts) still gets it whole and renamed into place, as durable as it makes anything."""
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in NO_SYNC:
            raise


def replace(source: Path, target: Path) -> None:
    """os.replace, tried again for a moment while it is refused (PermissionError): Windows refuses to
    replace a file that another process holds open, as Python's open does not share delete access, and
    a reader (charlm sample, serve, inspect, an antivirus scan) holds a checkpoint only while it reads
    it. A refusal that outlasts the waits is raised."""
    for wait in REPLACE_WAITS:
        try:
            os.replace(source, target)
            return
        except PermissionError:
            time.sleep(wait)
    os.replace(source, target)


def sync_folder(folder: Path) -> None:
    """Make the renames into `folder` survive a crash, where the OS lets a folder be opened and synced
    (POSIX). On Windows opening a folder is refused: the files are in place by then, so a write that
    worked is not reported as failed (every checkpoint was, there)."""
    try:
        folder_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder_fd)
    except OSError:
        pass
    finally:
        os.close(folder_fd)


def write_files(files: dict[Path, bytes], name: str | Path | None = None) -> None:
    """`replace_files`, a failure as the one-line error naming `name` (default: the first file)."""
    try:
        replace_files(files)
    except OSError as e:
        raise cannot_write(name or next(iter(files)), e) from None
