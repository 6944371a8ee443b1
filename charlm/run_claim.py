"""A new run's default folder before it holds a checkpoint: claimed as checkpoints/.NAME.claim
(`claim_run_folder`), so two runs started at once never get one name, and renamed to NAME once run.json
is in it (`move_into_place`), so a run killed before leaves no folder that looks like a run; a killed
run's claim is removed by the next run that claims one (`remove_dead_claims`)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from . import files, processes
from .errors import CharLMError, one_line_path
from .fields import said
from .runs import CHECKPOINT_ROOT, CLAIM, default_run_folder, make_folder, write_run_info

CLAIMER = ".claimer"  # in a claim: the claiming process (processes.process_name), so a dead one's claim is removed


def claim_run_folder(corpus_name: str) -> tuple[float, int]:
    """Claim the first free `default_run_folder(corpus_name, now, number)` and return (now, number). The
    claim is the folder's `claim_of`, made by os.mkdir, which fails on an existing one, so two runs started
    at once never get the same name; the run's folder appears under its name only with run.json in it
    (`move_into_place`), so a run killed before that leaves no folder without one."""
    stamp, number = time.time(), 1
    make_folder(CHECKPOINT_ROOT)
    remove_dead_claims(CHECKPOINT_ROOT)
    while True:
        folder = default_run_folder(corpus_name, stamp, number)
        try:
            if make_claim(claim_of(folder)):
                if not (folder.exists() or folder.is_symlink()):
                    return stamp, number
                release_claim(folder)  # claimed and moved into place since: taken
        except OSError as e:
            raise files.cannot_write(claim_of(folder), e, "the run folder") from None
        number += 1


def make_claim(claim: Path) -> bool:
    """Make `claim` with its claimer (this process) in it, in one step; False where another process holds
    it. The claimer is written into a folder of this process's own (`files.temporary`: named by it), then
    renamed to the claim: a rename fails onto a claim, which holds its claimer. A claim made by mkdir and
    then named was, killed between the two, a claim naming no claimer, which no run could tell from one
    made a moment ago; a process killed here leaves its own folder, which `remove_dead_claims` removes.
    That folder is the process's, not the thread's: one another thread is making this claim in is left to
    it (removed, that thread's run failed), and only what this call made is removed."""
    own = files.temporary(claim)
    try:
        own.mkdir()
    except FileExistsError:  # another thread of this process is making this very claim: it is theirs
        return False
    renamed = False
    try:
        (own / CLAIMER).write_text(processes.process_name(), encoding="ascii")
        os.rename(own, claim)
        renamed = True
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):  # held (ENOTDIR: a file of its name)
            raise
    finally:
        if not renamed:  # once renamed, a folder of its name is another thread's
            shutil.rmtree(own, ignore_errors=True)
    return renamed


def claim_of(folder: Path) -> Path:
    """Where a new run's default `folder` is made, hidden, until run.json is in it: checkpoints/.NAME.claim."""
    return Path(folder).with_name(CLAIM.format(Path(folder).name))


def claimed(folder: Path) -> bool:
    """Whether this process claimed `folder` (`claim_run_folder`) and has not moved it into place yet."""
    try:
        return (claim_of(folder) / CLAIMER).read_text(encoding="ascii") == processes.process_name()
    except (OSError, ValueError):
        return False


def move_into_place(folder: Path, info: dict) -> None:
    """Write run.json (`info`) into `folder`'s claim, then rename the claim to `folder`: one step, so the
    folder is never seen without run.json. A folder of that name made meanwhile by hand (or by an --out
    naming it) and holding anything is not replaced (rename fails on a folder that is not empty)."""
    claim = claim_of(folder)
    write_run_info(claim, info)
    try:
        files.replace(claim, folder)
    except OSError as e:
        if folder.is_dir():
            raise CharLMError(
                f"{one_line_path(folder)} was made by another process while this run started; start the run again "
                f"(it gets a new name) or give a folder of its own ({said('out')})"
            ) from None
        raise files.cannot_write(folder, e, "the run folder") from None
    with contextlib.suppress(OSError):  # only now: a claim killed before is still its dead claimer's to remove
        (folder / CLAIMER).unlink()


def release_claim(folder: Path) -> None:
    """Remove the claim `claim_run_folder` made for `folder`: its run stopped before writing anything
    (Ctrl-C while the model was built), and leaves nothing behind."""
    with contextlib.suppress(OSError):  # already gone, or something else was written into it
        (claim_of(folder) / CLAIMER).unlink(missing_ok=True)
        claim_of(folder).rmdir()


@contextlib.contextmanager
def released_on_failure(folder: Path) -> Iterator[None]:
    """Until the run starts: Ctrl-C, SIGTERM or an error inside releases the claim this process made for
    `folder` (`release_claim`; none: an --out folder, another rank's), so an unstarted run leaves nothing.
    Needed wherever the claim is held, from its making to its trainer: torchrun's rank 0 waits for the
    others as it hands them the plan, and its claim was left behind when Ctrl-C came then."""
    try:
        yield
    except BaseException:
        if claimed(folder):
            release_claim(folder)
        raise


def remove_dead_claims(root: Path) -> None:
    """Remove the claims under `root` of runs killed (SIGKILL, a power cut) before their folder was moved
    into place, and the folders of those killed as they made one (`make_claim`); a live claimer's stay."""
    being_made = files.TEMPORARY_PREFIX.format(CLAIM.format("*"))  # ..NAME.claim.tmp-PID-START
    files.remove_orphans(Path(root).glob(f"{being_made}*"))
    for claim in Path(root).glob(CLAIM.format("*")):
        try:
            claimer = (claim / CLAIMER).read_text(encoding="ascii").strip()
        except FileNotFoundError:  # every claim is made holding its claimer: one killed as an older charlm made it
            claimer = None
        except (OSError, ValueError):
            continue
        if claimer is None or processes.named_process_alive(claimer) is False:  # holds its claimer, run.json at most
            shutil.rmtree(claim, ignore_errors=True)  # another run may be removing it too
