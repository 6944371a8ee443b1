"""What a refused checkpoint file's error ends with: what to do instead, as its run folder allows.

The run's other checkpoint where it reads back, named with the command its user ran; else what is
left of the run (an export, or training anew); so that a user is never sent from one damaged file to
another. The file's bytes and why they are refused are checkpoint_file.py's, which ends its errors in
the advice its caller gives (`remedy`, here).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import hub
from .checkpoint_file import readable
from .errors import one_line_path
from .fields import call, command_run, flags_said, said, written
from .runs import BEST, EXPORTS, LATEST, kept_aside, resume_command


def remedy(path: Path, as_in: Callable[[Path], str] | None = None) -> str:
    """What to do about a damaged checkpoint file: use the run's other one, named with the command that
    reads it (latest.pt in the one its user ran, a resume from best.pt), or, for one kept aside (which a
    run folder names while it is the newer), delete it so that the one it stands for is used. Where the
    other is damaged or gone too, pointing at it would send the user from one to the other: what is left
    is said instead. A file of another name is a copy (`copy_remedy`). `as_in`: the other file where its
    caller gave this one, for a file the command reads as other than its model (`--eval-also RUN`'s
    held-out text); else `reading`."""
    path, as_in = Path(path), as_in or reading
    if (original := kept_aside(path)) is not None:
        return f"it was kept aside for {original.name}: delete it to use {one_line_path(original)}"
    other_name = {BEST: LATEST, LATEST: BEST}.get(path.name)
    if other_name is None:  # a name no run writes: a copy, renamed or moved, perhaps in no run at all
        return copy_remedy(path, as_in)
    if readable(other := path.with_name(other_name)):
        shown = one_line_path(other)
        if other_name == BEST:  # latest.pt is what a resume reads: resuming from best.pt is the way back
            return f"use the run's other checkpoint, {shown}, in its place (to resume: {resume_command(other)})"
        return f"use the run's other checkpoint, {shown}, in its place (as in {as_in(other)})"
    lost = f"{other.name} is damaged too" if other.exists() else f"the run has no {other.name}"
    return f"{lost}: {whats_left(path.parent)}"


def copy_remedy(path: Path, as_in: Callable[[Path], str]) -> str:
    """What to do about a damaged checkpoint of a name no run writes (a run writes best.pt and
    latest.pt): use the run's checkpoint beside it where one reads back (`as_in`: where its caller gave
    the copy), else fetch the file again."""
    for beside in (path.with_name(BEST), path.with_name(LATEST)):
        if readable(beside):
            return f"use {one_line_path(beside)}, beside it, in its place (as in {as_in(beside)})"
    return (
        "no run's checkpoint is beside it (a run writes best.pt and latest.pt): copy it again from where "
        "it came, or use the run it came from"
    )


def reading(path: Path) -> str:
    """How its caller reads the checkpoint at `path` in what they ran, to paste: the command
    (`charlm serve FILE`; inspect's text after it, a fine-tune's --init-from), a sample for one that
    shows a file rather than uses it (`charlm info`, whose damaged row is a sample's refusal);
    `charlm.load(FILE)` in Python."""
    if not flags_said():
        return f"charlm.load({written(path)})"
    command = command_run()
    if command == "train":  # a fine-tune's base: a resume reads latest.pt, and is told `resume_command`
        return said("init_from", path)
    if command == "inspect":  # the text to inspect follows the model
        return call(command, "FILE", path=path)
    return call(command if command in ("eval", "serve", "export") else "sample", path=path)


def whats_left(run: Path) -> str:
    """What is left of a run whose checkpoints are both lost: a model exported from it (RUN/exports/),
    to sample from or start a new run from; else training anew."""
    exported = sorted(run.glob(f"{EXPORTS}/*/{hub.WEIGHTS}"))
    if exported:
        folder = exported[-1].parent
        return (
            f"its export {one_line_path(folder)} is what is left: sample from it, or start a new run from it with "
            f"{said('init_from', folder)}"
        )
    return (
        "nothing of this run can be read back; train anew, or from a model exported from it elsewhere with "
        f"{said('init_from', 'FOLDER')}"
    )
