"""`charlm inspect`'s inputs: the model of a run or checkpoint, the text to inspect (a file, or the run's
held-out text) and the text the n-gram baseline is fitted on (a file, or the run's training split)."""

from __future__ import annotations

from pathlib import Path

from .. import checkpoint, runs
from ..corpus import read_texts
from ..device import resolve_device
from ..device_names import STEP_DEVICE
from ..fields import said, typed
from ..ngram import MAX_TRAIN_CHARS
from ..runtext import run_corpus
from . import MAX_CHARS
from .analysis import BEHIND_ADVICE, Inspection, analyse, check_inspectable


def inspect_run(
    target: str | None,
    file: str | None,
    held_out: bool = False,
    train_text: str | None = None,
    max_chars: int = MAX_CHARS,
    device: str = STEP_DEVICE,
    quiet: bool = True,
    encoding: str = "utf-8",
) -> tuple[Inspection, str]:
    """Inspect the model of a run or checkpoint (None: the latest run) on the first `max_chars`
    characters of `file`, or of the run's held-out text; the n-gram is fitted on the first
    MAX_TRAIN_CHARS characters of the run's training split, or of `train_text`'s file. Files are read in `encoding`, not the run's: as `charlm
    eval` reads them, so a GBK run inspects a UTF-8 chapter. Returns the inspection and a title for the page."""
    where = resolve_device(device)  # named before any run is looked for, as `checkpoint.load` does
    path = runs.resolve(target)
    saved = checkpoint.read(path, charlm_model=True)
    model = saved.model().to(where)
    check_inspectable(model, str(path))  # before its files and corpus are read, which may take minutes
    normalize = model.vocab.normalize
    # The files first: a missing or unreadable one is said at once, not after the corpus is prepared
    text, name = (None, "") if held_out else (read_texts([file], encoding, normalize, limit=max_chars), file)
    # Read one character past the cap, to know whether the file was cut
    training = read_texts([train_text], encoding, normalize, limit=MAX_TRAIN_CHARS + 1) if train_text else None
    training_chars = None if training is None else len(training)
    if held_out or training is None:
        instead = "; pass --train-text FILE and a FILE to inspect" if held_out else "; pass --train-text FILE"
        corpus = run_corpus(saved.corpus, saved.config, saved.base_vocab(), quiet, instead, path.parent)
        if held_out:
            text, name = corpus.vocab.decode(corpus.val_ids[:max_chars]), f"{saved.corpus['name']} (held out)"
        if training is None:  # the first MAX_TRAIN_CHARS characters decoded, not the whole split
            training = corpus.vocab.decode(corpus.train_ids[:MAX_TRAIN_CHARS])
            training_chars = len(corpus.train_ids)
    fitted_on = train_text or "the run's training split"
    if training_chars > MAX_TRAIN_CHARS:
        of = f"{train_text}" if train_text else f"the run's training split ({training_chars:,} characters)"
        fitted_on = f"the first {MAX_TRAIN_CHARS:,} characters of {of}"
    run = target or str(path.parent)
    inspection = analyse(
        model,
        text,
        training[:MAX_TRAIN_CHARS],
        quiet=quiet,
        what=name,
        fitted_on=fitted_on,
        run=run,
        seen_advice=seen_advice(run, held_out, train_text),
        behind_advice=behind_advice(saved, path, run),
    )
    return inspection, f"{name}, {path.parent.name}/{path.name}"


def seen_advice(run: str, held_out: bool, train_text: str | None) -> str:
    """What to inspect instead of a text the n-gram was fitted on. Not the n-gram fitted without it: the
    model trained on the run's split too, and only text neither saw compares them (docs/inspect.md)."""
    if train_text:
        instead = "" if held_out else f", or inspect the run's held-out text (charlm inspect {typed(run)} --held-out)"
        return f"fit the n-gram on a text without this one (--train-text FILE){instead}"
    if held_out:
        return "the run's held-out text repeats its training text, so neither figure is a prediction"
    return (
        f"the model trained on it too: inspect the run's held-out text instead (charlm inspect {typed(run)} --held-out)"
    )


def behind_advice(saved: checkpoint.Checkpoint, path: Path, run: str) -> str:
    """What to do with a model that loses to the n-gram on a new text, from its checkpoint's record: where
    its training got to, and the command that trains the run on (a checkpoint in a run's folder)."""
    progress = saved.progress
    scored = progress.val_bpc is not None and progress.val_step in (None, progress.step)  # these weights' bpc
    reached = f"this checkpoint: step {progress.step:,}"
    if scored:
        reached += f", {progress.val_bpc:.3f} bpc on validation"
    if runs.is_run_folder(path.parent):
        folder = str(path.parent) if Path(run).is_file() else run  # a .pt file given: its run
        limit = said("max_steps", metavar="N") if saved.config.max_steps else said("max_time", metavar="DURATION")
        reached += f"; to go on: {runs.resume_command(folder, limit)}"
    return f"{BEHIND_ADVICE} ({reached})"
