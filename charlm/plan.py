"""Plan a run once, then train it plainly.

`plan` decides a run before it starts: it turns the options a user gave into a `RunPlan` with nothing
left unset, and the trainer builds exactly what the plan says and never sizes anything.

What it decides: the batch (16, but measured on a CUDA GPU given --max-time), the hidden size (fitted
to --max-time or --max-steps, sizing.py), dropout and the evaluation cadence (from the passes the run
will make over its text), the head, and the run folder.

Why: `reasons` says why each value was chosen, and what `--head auto` and `--precision auto` choose
on this text and device. run.json keeps them in the command line's words whoever started the run, so
a resume from the CLI or from Python carries on one record; charlm.train says them as Python keywords
(`fields.as_said`): a flag turns into a keyword mechanically, where a keyword could not be told from a
word of the text the other way round.

Several processes (ranks): rank 0 decides; where it measures, every rank times the same steps at once
(sizing.Probe: the job's speed, not one process's), and every rank takes rank 0's plan as one object.

The rules:
- dropout follows the passes over the training text: a text read a few times is underfitted and
  wants little (the English sweeps chose 0.1), a short one read dozens of times is memorized unless
  dropout is strong (alice.txt, 46 passes: 0.5 beat 0.3 and 0.1); in between, log-linear
  (docs/benchmarks.md, "Dropout and the passes over the text");
- evaluation once per pass, so a short text's best weights are caught before it is overfitted, at a
  cost of about 4% of training (the held-out tenth, forward only) whatever the text's size, however
  small the text (a 200-step floor let tangshi300 run 3 passes between evaluations and past its best
  in two: docs/benchmarks.md, "Small texts"), but not less often than every 2000 steps;
- a fine-tuning run's cadence follows the passes over its new text like any run's; its dropout is the
  base's unless given: on tangshi300 dropout fitted to the passes (0.33, 0.5) was 0.02-0.03 bpc worse
  than the base's 0.1, and the early stop (--patience) is what ends the memorizing (docs/benchmarks.md,
  "Small texts"); its learning rate is finetune.DEFAULTS' gentler one unless given, said and kept with
  its reason as a fitted option is;
- the hidden size and the GPU's batch: sizing.py; the size fits the characters the run will really
  see: --max-time's at the probed speed or --max-steps', whichever are fewer.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import checkpoint, run_claim, runs, sizing, write_checks
from .checkpoint import Base, Checkpoint, Progress
from .config import PLANNED, UNRECORDED, Config, refuse_added_limits
from .device import auto_precision_reason, resolve_device
from .distributed import SINGLE, Ranks
from .errors import CharLMError, one_line_path
from .fields import as_said, option_name, said
from .finetune import ARCHITECTURE, DEFAULTS, Start, warn_if_little_known
from .model import ADAPTIVE_FEWEST_IDS, CORES, HEAD_DIVISION, auto_head_reason, head_cutoffs, narrowest_hidden
from .run_notes import limits_raised_note
from .runtext import eval_also_kept, read_eval_also
from .tokens import TokenCorpus
from .train_state import check_data

DROPOUT_RULE = ((12.0, 0.1), (40.0, 0.5))  # (passes, dropout): 0.1 up to 12 passes, rising to 0.5 at 40
EVAL_EVERY_RANGE = (1, 2000)  # steps between evaluations: once per pass, within these
GIVEN = "given"


@dataclass(frozen=True)
class RunPlan:
    """A run, decided: its options with none of `PLANNED` unset, its folder, why each planned value
    is what it is, the training chars/s the size probe measured (None: not probed), for a
    fine-tuning run the base it starts from, and the head its model is built with (`planned_head`)."""

    config: Config
    run_dir: Path
    reasons: dict[str, str] = field(default_factory=dict)
    probed_chars_per_second: float | None = None
    base: Base | None = None
    # the adaptive head's cluster edges; (): a full head. Always given: one left out would be a full head unsaid
    head_cutoffs: tuple[int, ...] = field(kw_only=True)

    def __post_init__(self) -> None:
        unset = [name for name in PLANNED if getattr(self.config, name) is None]
        if unset:
            raise CharLMError(f"a run's plan leaves {', '.join(unset)} unset")


def plan(
    config: Config, corpus: TokenCorpus, ranks: Ranks = SINGLE, start: Start | None = None, out: str | None = None
) -> RunPlan:
    """A new run's plan: rank 0 decides (see `decide`) while the others time the sizes it probes
    together with it (`sizing.follow`); every rank gets the same plan."""
    if not ranks.leader:
        return sizing.follow(corpus, ranks)
    decided = decide(config, corpus, ranks, start, out)
    with run_claim.released_on_failure(decided.run_dir):  # the others wait for it: Ctrl-C may come meanwhile
        return ranks.broadcast_object(decided)


def decide(config: Config, corpus: TokenCorpus, ranks: Ranks, start: Start | None, out: str | None) -> RunPlan:
    """Every unset option resolved once, in the order each rule needs (the batch, the size at that
    batch, then dropout and cadence from the passes at that size's speed); then every check a run
    must pass, before a run folder is named or claimed. Every choice keeps its reason; a GPU's batch,
    a fitted size and dropout are also said on stderr (not with --quiet)."""
    as_given, config = config, with_absolute_eval_also(config)
    check_before_measuring(as_given, corpus, out)  # its refusals name --eval-also as typed, not as the run keeps it
    reasons = {name: GIVEN for name in PLANNED if getattr(config, name) is not None}

    def say(line: str) -> str:  # the reason kept in the command line's words, said in the caller's (`as_said`)
        if not config.quiet:
            tqdm.write(as_said(line, Config), file=sys.stderr)
        return line

    if start is not None:
        config = taken_from_base(config, start, reasons, say)
        warn_if_little_known(corpus, len(start.checkpoint.vocab))

    head, reasons["head"] = planned_head(config, corpus, start)
    probe = sizing.Probe(config, corpus, ranks, head_cutoffs=head)  # times the head the run will train
    device = resolve_device(config.device, ranks.local_rank, ranks.world)
    if config.batch_size is None:
        batch, reasons["batch_size"] = planned_batch(config, device, probe, ranks.world, say)
        config = dataclasses.replace(config, batch_size=batch)

    probed = None  # the training chars/s at the planned size, where the probe timed it
    if config.hidden is None:
        hidden, reasons["hidden"], probed = planned_hidden(config, corpus, ranks, probe, say)
        config = dataclasses.replace(config, hidden=hidden)
    elif config.dropout is None and config.max_seconds():  # a time budget is read as passes at the run's speed
        probed = probe.speed(config.hidden, config.batch_size)

    config, fitted = fitted_to_passes(config, corpus, probed, say)
    reasons.update(fitted)
    # --precision auto stays in the run's config: a resume on another device decides again there
    reasons["precision"] = auto_precision_reason(device, CORES[config.cell]) if config.precision == "auto" else GIVEN

    check_data(config, corpus)  # every check passed before a run folder is named or claimed
    run_dir, reasons["run_dir"] = new_run_folder(out, corpus.name)
    return RunPlan(config, run_dir, reasons, probed, None if start is None else start.record, head_cutoffs=head)


def check_before_measuring(config: Config, corpus: TokenCorpus, out: str | None) -> None:
    """Refuse now, not after seconds of measuring sizes, a run that could not start anyway: a bad
    --eval-also, or an --out taken since `check_out`."""
    read_eval_also(config, corpus.vocab, tell=True)
    check_out(out)


def check_out(out: str | None) -> None:
    """Refuse before the corpus is read (minutes for a big one) a new run whose folder cannot be: an --out
    that holds a run, a name or path too long, a file where the run folder goes."""
    if out is not None:
        free_out_folder(out)
    write_checks.check_can_make(runs.CHECKPOINT_ROOT if out is None else runs.run_folder(out))


def taken_from_base(config: Config, start: Start, reasons: dict[str, str], say: Callable[[str], str]) -> Config:
    """A fine-tuning run's options that come from starting on a trained model, each with its reason in
    `reasons`: the base's architecture, finetune.DEFAULTS' gentler values where not given, said as a
    fitted option is, and the base's dropout where unset (measured better than fitting it: the module
    docstring)."""
    reasons.update({name: f"as in {start.named()}" for name in ARCHITECTURE if name in PLANNED})
    for name in DEFAULTS:
        value, new_runs = getattr(config, name), getattr(Config, name)
        taken = f"--{option_name(name)} {value:g}: fine-tuning's default, gentler than a new run's {new_runs:g}"
        reasons[name] = say(taken) if name in start.defaulted else GIVEN
    if config.dropout is None and start.checkpoint.config.dropout is not None:  # else fitted, as a new run's
        config = dataclasses.replace(config, dropout=start.checkpoint.config.dropout)
        reasons["dropout"] = say(f"--dropout {config.dropout:g}: as in {start.named()}")
    return config


def planned_head(config: Config, corpus: TokenCorpus, start: Start | None) -> tuple[tuple[int, ...], str]:
    """The run's head (its adaptive clusters' edges; (): a full head) and why: its base's, as given, or what
    `--head auto` chooses for this vocabulary. Decided once, here: the size probe and every rank's model are
    built with this head, so the reason run.json keeps is the head the checkpoint holds."""
    if start is not None:
        return start.checkpoint.model_config.head_cutoffs, f"as in {start.named()}"
    if config.head == "adaptive" and len(corpus.vocab) < ADAPTIVE_FEWEST_IDS:  # a given value is kept or refused
        raise CharLMError(
            f"{said('head', 'adaptive')} needs {ADAPTIVE_FEWEST_IDS} ids or more; this text's vocabulary has "
            f"{len(corpus.vocab)}: give {said('head', 'full')}"
        )
    cutoffs = head_cutoffs(config.head, torch.from_numpy(corpus.train_counts))
    narrowest = narrowest_hidden(cutoffs)
    too_narrow = config.hidden is not None and config.hidden < narrowest  # unset: fitted, from sizing.CANDIDATES
    if too_narrow and config.head == "adaptive":
        raise CharLMError(
            f"{said('head', 'adaptive')} needs {said('hidden', narrowest)} or more on this text: each of its "
            f"{len(cutoffs)} rare clusters is {HEAD_DIVISION} times narrower than the one before, so at "
            f"{said('hidden', config.hidden)} the rarest is 0 wide; give {said('hidden', narrowest)} or more, "
            f"or {said('head', 'full')}"
        )
    if config.head != "auto":
        return cutoffs, GIVEN
    unit = "characters" if corpus.vocab.one_char_per_id else "tokens"
    if too_narrow:
        return (), (
            f"{auto_head_reason((), len(corpus.vocab), unit)}, but at --hidden {config.hidden} the rarest of its "
            f"clusters would be 0 wide (adaptive from --hidden {narrowest})"
        )
    return cutoffs, auto_head_reason(cutoffs, len(corpus.vocab), unit)


def planned_batch(
    config: Config, device: torch.device, probe: sizing.Probe, world: int, say: Callable[[str], str]
) -> tuple[int, str]:
    """The batch for a run that left it unset, and why: sizing.DEFAULT_BATCH_SIZE, but on a CUDA GPU
    with a time budget the streams that still raise the measured speed (`sizing.choose_batch`), timed
    at the given size or, when the size is fitted too, at the default one; that choice is said."""
    if device.type != "cuda":
        return (
            sizing.DEFAULT_BATCH_SIZE,
            f"the default on a {device.type}: more streams did not train better in equal time",
        )
    if not config.max_seconds():
        return sizing.DEFAULT_BATCH_SIZE, "the default: no --max-time to measure the streams' speed against"
    candidates = tuple(b for b in sizing.BATCH_CANDIDATES if b % world == 0) or (sizing.DEFAULT_BATCH_SIZE,)
    hidden = config.hidden or sizing.BATCH_PROBE_HIDDEN
    batch, measured = sizing.choose_batch(lambda streams: probe(hidden, streams), candidates)
    together = sizing.measured_together(world)
    return batch, say(sizing.describe_batch(batch, measured, f" at --hidden {hidden} on {device}{together}"))


def planned_hidden(
    config: Config, corpus: TokenCorpus, ranks: Ranks, probe: sizing.Probe, say: Callable[[str], str]
) -> tuple[int, str, float | None]:
    """The hidden size for a run that left it unset, why, and the chars/s the probe measured at it
    (None: not timed). With --max-steps alone the steps say what the run will see, so nothing is timed;
    with --max-time the sizes are timed (sizing.measure_sizes). The choice is said. A run has one limit
    or both: `api.start_run` refuses one without before its text is read."""
    if config.max_seconds() is None:
        hidden, reason = sizing.fit_to_chars(sizing.step_chars(config, corpus), sizing.parameters_of(config, corpus))
        return hidden, say(reason), None
    hidden, measured = sizing.measure_sizes(config, corpus, probe)
    probed = next((c.chars_per_second for c in measured if c.hidden == hidden), None)
    return hidden, say(sizing.describe(hidden, measured, ranks.world)), probed


def fitted_to_passes(
    config: Config, corpus: TokenCorpus, probed: float | None, say: Callable[[str], str]
) -> tuple[Config, dict[str, str]]:
    """--dropout and --eval-every where unset, and why: both follow the passes the run will make over
    its training text, its --max-steps' or its --max-time's at the `probed` chars/s (`planned_tokens`)."""
    reasons = {}
    train_tokens = len(corpus.train_ids)
    planned = planned_tokens(config, probed and probed / corpus.chars_per_token)
    passes = (planned or 0.0) / max(train_tokens, 1)
    if config.dropout is None:
        config = dataclasses.replace(config, dropout=fitted_dropout(passes))
        reasons["dropout"] = say(f"--dropout {config.dropout:g} fits {passes_said(passes)} over the training text")
    if config.eval_every is None:
        config = dataclasses.replace(config, eval_every=eval_cadence(config, train_tokens))
        reasons["eval_every"] = (
            f"--eval-every {config.eval_every}: once per pass over the training text, at most "
            f"{EVAL_EVERY_RANGE[1]} steps apart"
        )
    return config, reasons


def planned_tokens(config: Config, tokens_per_second: float | None) -> float | None:
    """Tokens the run's limits let it train on: --max-steps' worth or --max-time's at the given
    speed, whichever is fewer (None: no limit it can be told from)."""
    limits = [config.max_steps * config.batch_size * config.seq_len] if config.max_steps else []
    if config.max_seconds() and tokens_per_second:
        limits.append(config.max_seconds() * tokens_per_second)
    return min(limits, default=None)


def fitted_dropout(passes: float) -> float:
    """Dropout for a run that reads its training text `passes` times (`DROPOUT_RULE`)."""
    (few, low), (many, high) = DROPOUT_RULE
    share = min(max(math.log(max(passes, 1e-9) / few) / math.log(many / few), 0.0), 1.0)
    return round(low + share * (high - low), 2)


def eval_cadence(config: Config, train_tokens: int) -> int:
    """Steps between evaluations: once per pass over the training text, within `EVAL_EVERY_RANGE`."""
    steps_per_pass = train_tokens / (config.batch_size * config.seq_len)
    return int(min(max(steps_per_pass, EVAL_EVERY_RANGE[0]), EVAL_EVERY_RANGE[1]))


def passes_said(passes: float) -> str:
    """The passes a reason names, to a tenth: below a tenth of a pass dropout is at its floor whatever the
    figure, and "about 0.0" would read as none."""
    return "under a tenth of a pass" if passes < 0.1 else f"about {passes:.1f} passes"


def new_run_folder(out: str | None, corpus_name: str) -> tuple[Path, str]:
    """The new run's folder and how it was named: `--out`'s, refused when it holds a run already,
    or a new name claimed now (runs started in the same second each get their own)."""
    if out is not None:
        return free_out_folder(out), "--out"
    folder = runs.default_run_folder(corpus_name, *run_claim.claim_run_folder(corpus_name))
    return folder, "the corpus's name and the start time"


def free_out_folder(out: str) -> Path:
    """`--out`'s folder, refused when it holds a run already, or something else where a checkpoint goes
    (a folder of a run given `--out x/best.pt`): the run's first save would fail on it."""
    run_dir = runs.run_folder(out)
    if runs.holds_checkpoint(run_dir):
        raise already_held(run_dir, training=runs.training_pid(run_dir))
    for name in (runs.BEST, runs.LATEST):
        if os.path.exists(in_the_way := run_dir / name):
            kind = "a folder" if os.path.isdir(in_the_way) else "not a file"
            raise CharLMError(
                f"{one_line_path(in_the_way)} is {kind}, where the run saves a checkpoint; move it, "
                f"or pick another {said('out')}"
            )
    return run_dir


def already_held(run_dir: Path, since: str = "", training: int | None = None) -> CharLMError:
    """A new run's folder that holds a run (taken `since`): go on with that run, or start elsewhere. A run
    that process `training` trains now would refuse the resume as in use: wait for it or stop it first."""
    now, wait = (
        ("", "") if training is None else (f" training now (process {training})", "wait for it or stop it, then ")
    )
    return CharLMError(
        f"{one_line_path(run_dir)} already holds a run{since}{now}; {wait}continue it with {said('resume', run_dir)}, "
        f"or pick another {said('out')}"
    )


def resumed(saved: Checkpoint, overrides: dict, path: Path, ranks: Ranks = SINGLE, text_given: bool = False) -> RunPlan:
    """A resumed run's plan: the checkpoint at `path`, with the options a resume may change
    (`config.RESUMABLE`, and an --encoding that reads the run's text) overridden; nothing is fitted again.
    The reasons are the run's, from its run.json, but for those given now and `--precision auto`'s, which
    is chosen again on this resume's device.
    `text_given`: the resume names the run's text (at a new path, which it records), so a run whose limits
    are spent is taken up, to record it and train nothing (`Trainer.say_nothing_to_train`), not refused; so is
    one whose last step a stop saved unscored, to score it."""
    run_dir = path.parent
    check_not_behind(saved, path)
    refuse_added_limits(overrides, saved.progress.step, saved.progress.elapsed, run_dir)
    # How much a run says is this command's to choose, not the run's (`UNRECORDED`): a run started --quiet
    # from a script speaks when resumed by hand, and the command line has no --no-quiet.
    this_command = {f.name: f.default for f in dataclasses.fields(Config) if f.name in UNRECORDED}
    config = Config.from_dict({**saved.config.to_dict(), **this_command, **overrides})
    # another --encoding may read the run's text in other bytes (a UTF-16 file saved as UTF-8): `tokens.prepare`
    # checks it is the text the run read, which only a record keeping the text's digest can tell
    changed = saved.config.unresumable_changes(config, also=("encoding",) if "text" in saved.corpus else ())
    if changed:
        raise CharLMError(
            f"{one_line_path(run_dir)}: cannot resume with changed options ({'; '.join(changed)}); drop them"
        )
    config.require_limit()  # --max-time none on a run that had no --max-steps: before its text is read
    if "eval_also" not in overrides:
        check_kept_eval_also(config, run_dir)
    as_given, config = config, with_absolute_eval_also(config)
    if not text_given and saved.progress.step_scored and (spent := limits_spent(config, saved.progress, run_dir)):
        go_on = limits_raised_note(patience_spent(config, saved.progress))
        raise CharLMError(f"{spent}; {go_on} (limits count the whole run)")
    write_checks.check_run_info_readable(run_dir)  # first: one chmod 000 is unreadable before it is write-protected
    write_checks.check_resumable(run_dir)
    if "eval_also" in overrides and ranks.leader:  # as a new run's plan: its refusals name it as typed, not as kept
        read_eval_also(as_given, saved.vocab)
    reasons = runs.read_reasons(run_dir)
    given_now = [name for name in overrides if name in (*PLANNED, "precision") or name in reasons]  # a fine-tune's lr
    reasons = {**reasons, **{name: "given when resumed" for name in given_now}}
    if config.precision == "auto":  # the run's first device chose before; a resume moved to a GPU may not agree
        device = resolve_device(config.device, ranks.local_rank, ranks.world)
        reasons["precision"] = auto_precision_reason(device, CORES[config.cell])
    return RunPlan(config, run_dir, reasons, None, saved.base, head_cutoffs=saved.model_config.head_cutoffs)


def check_not_behind(saved: Checkpoint, path: Path) -> None:
    """Refuse to resume from a checkpoint (best.pt, a copy) behind its folder's latest.pt: the resumed
    run writes latest.pt, and the steps it held past this checkpoint would be lost without a word. A
    latest.pt that cannot be read holds nothing to lose: resuming from the other file is the way back."""
    latest = path.parent / runs.LATEST
    if path.name == runs.LATEST or not latest.is_file() or latest.samefile(path):
        return
    try:
        ahead = checkpoint.read(latest).progress.step
    except CharLMError:
        return
    if ahead > saved.progress.step:
        raise CharLMError(
            f"{one_line_path(path)} is at step {saved.progress.step}, behind its run's {runs.LATEST} at step "
            f"{ahead}, which resuming from it would overwrite: resume the run with {said('resume', path.parent)}, "
            f"or start a new run from these weights with {said('init_from', path)}"
        )


def check_kept_eval_also(config: Config, run_dir: Path) -> None:
    """Refuse a resume whose --eval-also, kept from the run's start (not given now), is no longer there: a
    text or a run moved or deleted since. The resume may give it again at its new path, or '' to score no
    second text. Said here, naming the run that kept it: this resume never typed the path."""
    kept = config.eval_also
    if kept and not Path(kept).exists():
        raise CharLMError(
            f"{said('eval_also', kept)}, which {one_line_path(run_dir)} scores at each evaluation, is gone (moved or "
            f"deleted); resume with its new path, {said('eval_also', metavar='NEW')}, or with "
            f"{said('eval_also', '')} to score it no more"
        )


def limits_spent(config: Config, progress: Progress, run_dir: Path) -> str:
    """What a run its limits have already stopped has trained, and its limits, or "" where they are not
    spent: limits count the whole run, so a resume of such a run would train nothing."""
    max_seconds = config.max_seconds()
    if not (config.max_steps and progress.step >= config.max_steps) and not (
        max_seconds and progress.elapsed >= max_seconds
    ):
        return ""
    limits = [said("max_steps", config.max_steps)] * bool(config.max_steps)
    limits += [said("max_time", config.max_time)] * bool(max_seconds)
    return (
        f"{one_line_path(run_dir)} has already trained {progress.step} steps in {progress.elapsed:.0f}s, "
        f"its {' and '.join(limits)}"
    )


def patience_spent(config: Config, progress: Progress) -> int:
    """The evaluations without a better one after which --patience ran out (0: it did not), so that a resume of
    the run trains nothing unless --patience is raised past them."""
    ran_out = config.patience and progress.step and progress.worse_evaluations >= config.patience
    return progress.worse_evaluations if ran_out else 0


def check_eval_also(config: Config) -> None:
    """Refuse an --eval-also that names nothing to score before a new run's folder is claimed and its corpus
    read, leaving it as typed: the plan reads it so, and a damaged run's advice (`--eval-also RUN/latest.pt`)
    repeats the path the user gave, as every command's does, not the absolute one a resume needs."""
    if config.eval_also:
        eval_also_kept(config.eval_also)


def with_absolute_eval_also(config: Config) -> Config:
    """--eval-also as an absolute path (a text's, or the run's whose held-out text it scores), so a resumed
    run finds it from any working directory; '' (a resume that scores it no more) as None, none given."""
    if not config.eval_also:
        return dataclasses.replace(config, eval_also=None)
    return dataclasses.replace(config, eval_also=eval_also_kept(config.eval_also))
