"""What a training run says of where it is kept and how to go on: the lines it ends with, stops with, or
is stopped by (a checkpoint it could not write among them), and its warning that it trains slower than
planned. Kept apart from the loop (trainer.py) so `fit` reads as the steps it takes; each note takes the
few values it words (the run folder, the last checkpoint's step), so the CLI, the Python API and a lost
peer's handler word a run alike, with or without its trainer.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import runs
from .config import Config
from .errors import one_line_path
from .fields import said

if TYPE_CHECKING:
    from .checkpoint import Progress

# how a run whose limits are spent goes on, in one wording: its stop line, a resume that trains nothing, one refused
LARGER_LIMIT = "give a larger limit to go on"


def kept_note(run_dir: Path, saved_step: int | None, *options: str) -> str:
    """What a stopped run keeps, and how to go on from it (with `options`, `said`): its last checkpoint, at
    `saved_step` (None: a step this process cannot tell, as a lost peer's or a moved folder's)."""
    kept = "its last checkpoint" if saved_step is None else f"step {saved_step}"
    return f"{one_line_path(run_dir)} holds {kept}: resume with {runs.resume_command(run_dir, *options)}"


def unsaved_note(run_dir: Path) -> str:
    """What a run stopped before its first checkpoint keeps: nothing; its folder takes a new run."""
    return f"nothing was saved: train again ({said('out', run_dir)} is still free)"


def failed_save_note(save_error: str) -> str:
    """Why the run's last checkpoint is not its last step's (--save-errors warn)."""
    return f"not saved: the last checkpoint could not be written ({save_error})"


def not_saved_warning(error: str, ending: bool = False) -> str:
    """Said as a checkpoint could not be written (`error`) and --save-errors warn lets the run go on, or
    end at its last step (`ending`: its limits or --patience spent, or a signal stops it): its `done:` or
    stop line then says what the folder holds."""
    goes_on = "the run stops without this step's checkpoint" if ending else "training goes on"
    return f"warning: {error}; {goes_on} ({said('save_errors', 'warn')})"


def not_saved_message(error: str, step: int, run_dir: Path, saved_step: int | None) -> str:
    """Why the run stops at `step`: its checkpoint could not be written (`error`); and how to go on, in the
    stop line's words (`stopped_note`): a first checkpoint not written leaves the folder to a new run."""
    kept = unsaved_note(run_dir) if saved_step is None else kept_note(run_dir, saved_step)
    return f"{error}; training stopped at step {step}; {kept}"


def saved_note(run_dir: Path, saved_step: int | None, save_error: str | None) -> str:
    """Where the run's checkpoints are, or why the last could not be written (--save-errors warn): what
    the folder keeps, in the stop line's words where none was written (`stopped_note`)."""
    if not save_error:
        return f"saved in {one_line_path(run_dir)}"
    kept = unsaved_note(run_dir) if saved_step is None else holds_step(run_dir, saved_step)
    return f"{failed_save_note(save_error)}; {kept}"


def done_note(progress: Progress, run_dir: Path, saved_step: int | None, save_error: str | None) -> str:
    """The line a finished run ends with: its last and best validation bpc, and where it is kept."""
    best_bpc = "none saved" if progress.best_bpc is None else f"{progress.best_bpc:.3f}"  # every save failed (warn)
    return (
        f"done: step {progress.step}, {progress.elapsed:.0f}s, validation {progress.val_bpc:.3f} bpc "
        f"(best {best_bpc}); {saved_note(run_dir, saved_step, save_error)}"
    )


def lost_note(run_dir: Path, saved: bool) -> str:
    """What a run a lost peer stopped goes on from (`distributed.peer_note`): its last checkpoint, where one
    was written (`saved`: the ranks agreed it was, or the run resumed from one; a rank on another machine
    may not see the run folder) or is on disk (rank 0 writes it before the ranks agree that it was written).
    None written is a run stopped before its first checkpoint (`unsaved_note`): torchrun ends every rank, the
    lock goes with rank 0, and a folder with no checkpoint takes a new run."""
    if not saved and not runs.holds_checkpoint(run_dir):
        return f"; {unsaved_note(run_dir)}"
    return f"; {kept_note(run_dir, None)}"  # the ranks' last agreed step may be behind the one on disk


def not_started_note(resuming: bool) -> str:
    """What Ctrl-C before training began (its text read, its run planned) leaves: a resumed run as it was; of a
    new run, nothing at all. `charlm train` and charlm.train's KeyboardInterrupt say it alike."""
    if resuming:
        return "interrupted before training resumed; the run's checkpoints are as they were"
    return "interrupted before training started; no run folder or checkpoint was written, so nothing needs cleaning up"


def stopping_note(step: int, signum: int | None, run_dir: Path, saved_step: int | None, scoring: bool = True) -> str:
    """Said as a signal stops the run at `step` (`Trainer.say_stopping`): whether the step is saved, whether its
    held-out text is being scored (`scoring`: seconds of silence), and, for Ctrl-C, what a second one keeps
    meanwhile. A save that failed (--save-errors warn) is tried again after the scoring; with nothing to score,
    the step stays unsaved, as its warning said."""
    shown_dir = one_line_path(run_dir)
    if saved_step == step:
        note, kept = f"stopping at step {step}: saved it ({shown_dir})", "it"
        note += "; scoring the held-out text" if scoring else ""
    elif not scoring:  # a stop on an evaluation step whose save failed (--save-errors warn): nothing more to do
        return f"stopping at step {step}: not saved"
    else:
        note = f"stopping at step {step}: scoring the held-out text and saving"
        kept = "nothing" if saved_step is None else f"step {saved_step} ({shown_dir})"
    if signum not in (None, signal.SIGINT) or not scoring:
        return note
    return f"{note}; Ctrl-C again stops at once, keeping {kept}"


@dataclass(frozen=True)
class Kept:
    """What a run's folder holds as a signal stops it (`Trainer.kept`), as `stopped_note` words it: the step
    saved (None: nothing), why the last save failed (--save-errors warn), whether the step saved is the run's
    `last` (its limits spent) and was `scored` (a second Ctrl-C may cut the scoring short), and the
    `worse_evaluations` after which --patience ran out there (0: it did not)."""

    run_dir: Path
    saved_step: int | None
    save_error: str | None = None
    last: bool = False
    scored: bool = True
    worse_evaluations: int = 0

    @property
    def finished(self) -> bool:
        """Whether a resume of the step saved does nothing: its limits or --patience are spent, its score made."""
        return (self.last and self.scored) or bool(self.worse_evaluations)


def stopped_note(kept: Kept, stopped_at: int | None) -> str:
    """What a run a signal stopped at step `stopped_at` (None: at once, a second Ctrl-C) keeps in its folder,
    and how to go on: the CLI's last line and charlm.train's KeyboardInterrupt say it alike. A `finished`
    step leaves a resume nothing to train, in the words a resume that trains nothing says it with."""
    stopped = "interrupted" if stopped_at is None else f"stopped at step {stopped_at}"
    not_saved = f"{failed_save_note(kept.save_error)}; " if kept.save_error else ""
    run_dir, saved_step, worse = kept.run_dir, kept.saved_step, kept.worse_evaluations
    if saved_step is None:
        holds = unsaved_note(run_dir)
    elif kept.finished:
        last = ", the run's last" if kept.last else ""
        ran_out = f", where {said('patience')} ran out" if worse else ""
        go_on = limits_raised_note(worse) if kept.last else patience_raised_note(worse)
        holds = f"{holds_step(run_dir, saved_step)}{last}{ran_out}: nothing to train; {go_on}"
    elif not kept.last:
        holds = kept_note(run_dir, saved_step)
    else:
        holds = f"{unscored_last_note(run_dir, saved_step)}: resume with {runs.resume_command(run_dir)} to score it"
    return f"{stopped}; {not_saved}{holds}"


def holds_step(run_dir: Path, step: int) -> str:
    """The folder and the step it keeps, as every line about a stopped or spent run begins what it holds."""
    return f"{one_line_path(run_dir)} holds step {step}"


def unscored_last_note(run_dir: Path, step: int) -> str:
    """A run whose last step a stop saved before scoring it, and cut the scoring short (a second Ctrl-C, a
    kill): its stop line and the resume that scores it, training nothing (`scoring_resumed_note`), say it alike."""
    return f"{holds_step(run_dir, step)}, the run's last, its score not finished"


def diverged_message(why: str, lr: float, run_dir: Path, saved_step: int | None) -> str:
    """Why the run stops (`why` it diverged at learning rate `lr`), and how to go on: from the last good
    checkpoint at a lower --lr, a quarter of this one's, or the default where that is lower (an absurd
    rate's quarter diverges too)."""
    lower = f"{min(lr / 4, Config.lr):.2g}"
    if saved_step is None:
        return f"training diverged ({why}); start again with a lower {said('lr')}, e.g. {lower}"
    return (
        f"training diverged ({why} after step {saved_step}): lower the learning rate; "
        f"{kept_note(run_dir, saved_step, said('lr', metavar=lower))}"
    )


def patience_note(patience: int, progress: Progress) -> str:
    """Why the run stops before its limits: validation has not improved for `patience` evaluations in a row,
    so the text is being memorized, and best.pt already holds the best weights (where one could be written)."""
    keeps = "" if progress.best_bpc is None else ", best.pt keeps the best"
    return (
        f"validation has not improved for {patience} evaluations (best {best_note(progress)}, now "
        f"{progress.val_bpc:.3f}): the text is being memorized; stopping early{keeps} ({said('patience', 0)} trains on)"
    )


def best_note(progress: Progress) -> str:
    """The run's best validation score and its step, or that none was saved (every save failed, --save-errors warn)."""
    if progress.best_bpc is None:
        return "none saved"
    return f"{progress.best_bpc:.3f} bpc at step {progress.best_step}"


def patience_resumed_note(progress: Progress, run_dir: Path, moved_to: list[str] | None) -> str:
    """Why a resume of a run --patience stopped trains nothing, and how it trains on; `moved_to`: its text's
    new path, recorded all the same (None: where it was)."""
    worse = progress.worse_evaluations
    return (
        f"{one_line_path(run_dir)} stopped early at step {progress.step}: validation has not improved for "
        f"{worse} evaluations (best {best_note(progress)}); nothing to train{moved_note(moved_to)}: {patience_raised_note(worse)}"
    )


def patience_raised_note(worse: int, larger_limit: bool = False) -> str:
    """How a run --patience stopped after `worse` evaluations without a better one trains on: its stop line and
    its resume that trains nothing say it alike; with `larger_limit` where its limits ran out too, each alone
    a resume that trains nothing."""
    limit = "a larger limit and " if larger_limit else ""
    return f"to train on, resume with {limit}{said('patience', 0)} or a {said('patience')} above {worse}"


def slow_note(speed: float, probed: float, hidden: int, dropout: float, hidden_given: bool) -> str:
    """A run training at `speed` chars/s, well below the `probed` its plan was made for: the machine got
    busier, so a size the probe chose sees fewer characters per parameter than planned, and a size given
    (`hidden_given`, timed for the passes --dropout was fitted to) makes fewer passes than fitted."""
    if hidden_given:
        probe, fitted = "speed probe", "dropout"
        planned = f"run will make fewer passes over its text than {said('dropout', dropout)} was fitted to"
    else:
        probe, fitted = "size probe", "hidden"
        planned = "model will see fewer characters per parameter than the size rule planned"
    return (
        f"warning: training at {speed:,.0f} chars/s, {speed / probed:.0%} of the {probed:,.0f} the {probe} "
        f"measured for {said('hidden', hidden)}: the machine is busier than when the run started, so the "
        f"{planned} (give {said(fitted)} to choose yourself)"
    )


def scoring_resumed_note(run_dir: Path, step: int, moved_to: list[str] | None) -> str:
    """What a resume of a run whose last step a stop left unscored does (`unscored_last_note`): train nothing,
    score it; `moved_to`: its text's new path, recorded all the same (None: where it was)."""
    return f"{unscored_last_note(run_dir, step)}: nothing to train{moved_note(moved_to)}; scoring it"


def nothing_to_train_note(spent: str, sources: list[str], worse: int = 0) -> str:
    """Why a resume whose limits were spent before it started (`spent`: `plan.limits_spent`'s words) trains
    nothing, what it did all the same: record its text's new path (`sources`), and how it goes on
    (`limits_raised_note`)."""
    return f"{spent}: nothing to train{moved_note(sources)}; {limits_raised_note(worse)}"


def limits_raised_note(worse: int) -> str:
    """How a run whose limits are spent goes on: a larger limit, and --patience raised too where it ran out at that
    step (after `worse` evaluations without a better one; 0: it did not), as a larger limit alone trains nothing."""
    return patience_raised_note(worse, larger_limit=True) if worse else LARGER_LIMIT


def moved_note(sources: list[str] | None) -> str:
    """What a resume that trains nothing did all the same: record its text's new path in run.json
    (`Trainer.open_run`), where charlm eval and later resumes read it ("": None, the text where it was)."""
    if not sources:
        return ""
    return f"; its text's path is recorded ({' '.join(sources)}), where charlm eval and later resumes read it"
