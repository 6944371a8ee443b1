"""The Python API, and the three ways a run begins that the CLI shares with it.

    import charlm
    model = charlm.train("novel.txt", max_time="10m")
    print(charlm.generate(model, "It was", length=200, temperature=0.8))
    model = charlm.load("checkpoints/novel-20260101-120000")

`start_run`, `start_finetune` and `resume_run` turn options into a `Trainer`: they prepare the corpus,
plan the run (plan.py: every unset option resolved once, the run folder named) or read a resumed
run's plan from its checkpoint, and build the trainer from the plan. `start_trainer` picks one of them
for `charlm train` and `charlm.train` alike.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import signal
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import torch

from . import checkpoint, files, finetune, hub, path_names, plan, reporting, run_claim, runs, sampler, scoring, threads
from .arguments import check_file_name, check_model_and_seed, config_hint, home, is_path, reading_text, refuse
from .config import PLANNED, Config, SampleConfig, added_limits, check_greedy_alone
from .corpus import check_not_cached
from .device import resolve_device
from .device_names import DEVICE_FORMS, STEP_DEVICE
from .distributed import SINGLE, Ranks, peer_note
from .errors import CharLMError, callers_stacklevel, one_line, one_line_path
from .fields import (
    about_option,
    check_arguments,
    check_keywords,
    check_names,
    plain,
    python_help,
    said,
    together,
    unset_dropped,
)
from .model import CharLM
from .run_notes import Kept, done_note, lost_note, not_started_note, stopped_note
from .runtext import fine_tune_on, load_run_text, misread, not_the_runs_text, run_sources, with_recorded_encoding
from .sources import CorpusChanged
from .tokens import TokenCorpus, load_corpus
from .trainer import Trainer
from .unseen_notes import unseen_note

# A model of one's own for a planned run (a benchmark's experiment): the planned config, the corpus, the
# fine-tuning start if any (its base) and the plan's head (`RunPlan.head_cutoffs`) -> the model to train,
# in place of charlm's.
ModelBuilder = Callable[[Config, TokenCorpus, "finetune.Start | None", tuple[int, ...]], CharLM]

__all__ = ["bits_per_char", "generate", "load", "next_probs", "stream", "train"]

Function = TypeVar("Function", bound=Callable)


def lists_options(config_class: type) -> Callable[[Function], Function]:
    """Ends a function's docstring with `config_class`'s fields, each with its default and help, so that
    `help(charlm.train)` shows every option from the one place that defines them (not a copy that drifts)."""

    def listed(function: Function) -> Function:
        if function.__doc__ is None:  # python -OO drops docstrings
            return function
        lines = [f"\n\nOptions (`charlm.{config_class.__name__}`'s fields) and their defaults:"]
        helps = python_help(config_class)
        for f in dataclasses.fields(config_class):
            entry = f"{f.name}={default_of(f)!r}: {helps[f.name]}"
            lines.append(textwrap.fill(entry, 100, initial_indent="    ", subsequent_indent="        "))
        function.__doc__ = inspect.cleandoc(function.__doc__) + "\n".join(lines)
        return function

    return listed


def keywords_checked(function: Function) -> Function:
    """A keyword `function` does not take is refused as train's and generate's mistyped options are, named
    with what it was likely meant to be, where charlm.load(devcie="cpu") would meet Python's bare TypeError;
    so are arguments too many or missing (charlm.bits_per_char(model)), saying what the call takes."""
    signature = inspect.signature(function)
    names = list(signature.parameters)

    @functools.wraps(function)
    def checked(*args: object, **keywords: object) -> object:
        check_keywords(names, keywords, f"charlm.{function.__name__} argument")
        check_arguments(signature, args, keywords, f"charlm.{function.__name__}")
        return function(*args, **keywords)

    return checked


def sampling_call(function: Function) -> Function:
    """`function(model, seed, **options)` answers an option given by position, such as the length in
    charlm.generate(model, "It was", 200), with a CharLMError that says to name it (Python's TypeError,
    "takes from 1 to 2 positional arguments but 3 were given", says neither); a seed or option given as
    None, Python's "not given", is left unset (`fields.unset_dropped`), where None is not one of its values;
    greedy=True with a temperature (0.8, the default's, too), top_k or top_p given is refused, as `charlm sample`
    refuses it."""

    @functools.wraps(function)
    def checked(model: object = None, seed: object = "", *misplaced: object, **options: object) -> object:
        if misplaced:
            refuse(
                function.__name__,
                "options are given by name, after the model and the seed",
                misplaced[0],
                config_hint(function.__name__, misplaced[0], seed)
                or f"; e.g. charlm.{function.__name__}(model, {seed!r}, length=200)",
            )
        options = unset_dropped(SampleConfig, options)
        check_greedy_alone(options)  # temperature=0.8 too: a SampleConfig(greedy=True) holds no temperature
        return function(model, "" if seed is None else seed, **options)

    return checked


def default_of(field: dataclasses.Field) -> object:
    """A field's default, made by its factory where it has one (a dict or list default)."""
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def check_start(
    out: str | Path | None, resuming: bool, init_from: str | Path | None, tensorboard: bool | None = None
) -> None:
    """Refuses a run begun two ways at once, before anything is read or written: `--out` and
    `--init-from` begin a new run, `--resume` continues one in its own folder (an `--out` beside it
    would be ignored: the run resumed, most often the latest one, would not be the one named). So is a run asked
    for `--tensorboard` without its package."""
    if tensorboard:
        reporting.tensorboard_writer()
    if resuming and init_from is not None:
        raise CharLMError(finetune.with_resume())
    if resuming and out is not None:
        new_run = together(said("init_from", metavar="RUN"), said("out", out))
        raise CharLMError(
            f"{said('out', out)} names a new run's folder, {said('resume')} continues a run in its own: to continue "
            f"that run give it to {said('resume')} ({said('resume', out)}); to start a new run from a run's weights, "
            f"{new_run}"
        )


def start_run(
    config: Config,
    sources: list[str],
    out: str | None = None,
    ranks: Ranks = SINGLE,
    start: finetune.Start | None = None,
    build: ModelBuilder | None = None,
) -> Trainer:
    """A new run: refuses to overwrite a folder that already holds one. From a fine-tuning `start`, its
    weights start from the base's, over the base's vocabulary extended with the text's new characters.
    `build`: an experiment's model in place of charlm's, made after planning."""
    # Resolved (a pure function of --device and the rank) here for the threads the size probe times, in the plan
    # for rank 0's rules (batch, precision), and in train_state.build for each rank's own GPU, which the plan,
    # rank 0's and broadcast, cannot carry; Trainer.start sets the threads again for a resume, which skips this.
    device = resolve_device(config.device, ranks.local_rank, ranks.world)
    base_vocab = None if start is None else start.checkpoint.vocab
    plan.check_eval_also(config)  # a value given: checked before the run folder and the limit, kept as typed
    plan.check_out(out)
    check_not_cached(sources)
    config.require_limit()  # the last check of what was given, before the text is read: minutes for a big one
    with ranks.leader_first():  # one process prepares the corpus cache, the others read it
        corpus = load_corpus(sources, config, quiet=config.quiet or not ranks.leader, base=base_vocab)
    threads.configure(config.threads, device)
    decided = plan.plan(config, corpus, ranks, start, out)
    with run_claim.released_on_failure(decided.run_dir):  # Ctrl-C, or an error, as the model is built
        if build is not None:
            model = build(decided.config, corpus, start, decided.head_cutoffs)
        else:
            model = None if start is None else start.model(corpus.vocab, decided.config.dropout)
        return Trainer(decided, corpus, ranks, model)


def start_finetune(
    init_from: str | Path,
    options: dict,
    sources: list[str],
    out: str | None = None,
    ranks: Ranks = SINGLE,
    build: ModelBuilder | None = None,
) -> Trainer:
    """A new run on `sources` whose weights start from run `init_from`'s (see finetune.py). The base is
    read and the options checked before anything is written."""
    start = finetune.taking_defaults(finetune.read_base(init_from, charlm_model=build is None), options)
    return start_run(finetune.run_config(start, options), sources, out, ranks, start, build)


def start_trainer(
    sources: list[str],
    options: dict,
    out: str | None = None,
    resume: bool | str = False,
    init_from: str | Path | None = None,
    ranks: Ranks = SINGLE,
) -> Trainer:
    """The run `charlm train` or `charlm.train` asks for, one rule for both: fine-tuned from `init_from`,
    resumed (`resume`: True for the most recent run, or the run to continue) or new."""
    if init_from is not None:
        return start_finetune(init_from, options, sources, out, ranks)
    if resume is not False:
        return resume_run(None if resume is True else str(resume), options, sources, ranks)
    return start_run(Config(**options), sources, out, ranks)


RESUME_AGAIN = "; the run was not changed: run the same command again"


def resumed_path(target: str | None) -> Path:
    """The checkpoint `resume` names (None: the most recent run's); one that cannot be found is an error
    naming --resume, as `init_from`'s names --init-from (`finetune.read_base`)."""
    if target is None:
        return runs.resolve(runs.run_to_resume(), prefer=runs.LATEST)
    try:
        return runs.resolve(target, prefer=runs.LATEST)
    except CharLMError as e:
        raise about_option("resume", target, e) from None


def resume_run(target: str | None, overrides: dict, sources: list[str] | None = None, ranks: Ranks = SINGLE) -> Trainer:
    """Continue the run in folder `target` (None: the most recent). Only `config.RESUMABLE` options may change;
    the world size may: the checkpoint holds every stream's state, re-sharded here. Rank 0 alone finds the
    run ("the most recent" may change while ranks look: a run saved in between), and the others take its answer.
    The options given are checked first (a --device too, here), before any run is looked for."""
    added = added_limits(overrides)  # `plan.resumed` refuses these, with the run's own figures
    Config(**{name: value for name, value in overrides.items() if name not in added})
    if "device" in overrides:
        resolve_device(overrides["device"], ranks.local_rank, ranks.world)
    found = resumed_path(target) if ranks.leader else None
    with peer_note(lambda: RESUME_AGAIN):  # a peer lost before the ranks agree on the run: nothing was read
        path = ranks.broadcast_object(found)
    read_from = files.identity(path)  # before reading: a file replaced after this is then never taken for it
    saved = checkpoint.read(path, charlm_model=True)
    if saved.training is None:  # an exported model folder: the model, not its optimizer or data position
        where = path.parent if path.name == hub.WEIGHTS else path
        raise CharLMError(
            f"{one_line_path(where)}: a model folder holds no training state and cannot be resumed; "
            f"start a new run from its weights with {said('init_from', where)}"
        )
    resumed = plan.resumed(saved, overrides, path, ranks, text_given=bool(sources))
    check_world(resumed, ranks)
    # the run's text where it is now, or where the user gives it (moved, renamed, re-encoded): the run's text
    where = list(sources) if sources else run_sources(saved.corpus, path.parent)
    base_vocab = saved.base_vocab()
    if "encoding" not in overrides:  # as a resume read it last, where that resume saved no checkpoint yet
        resumed = dataclasses.replace(
            resumed, config=with_recorded_encoding(saved.corpus, resumed.config, where, path.parent)
        )
    config = resumed.config
    with peer_note(lambda: lost_note(resumed.run_dir, saved=True)):  # a peer lost now: resume again
        with ranks.leader_first():
            try:
                quiet, given = config.quiet or not ranks.leader, "encoding" in overrides
                if given:
                    corpus = load_corpus(where, config, quiet=quiet, base=base_vocab, run=saved.corpus)
                else:  # a text saved as UTF-8 since is read so, and its encoding recorded
                    corpus, config = load_run_text(where, config, quiet=quiet, base=base_vocab, run=saved.corpus)
            except CharLMError as e:  # another text, or one that does not decode
                if given and (why := misread(where, saved.corpus, config, saved.config, path.parent, base_vocab)):
                    raise CharLMError(why) from None
                if not isinstance(e, CorpusChanged):
                    raise
                if sources:
                    raise not_the_runs_text(where, saved.corpus, path.parent) from None
                raise CharLMError(f"{e}; {fine_tune_on(where, path.parent)}") from None
        resumed = dataclasses.replace(resumed, config=config)  # its encoding as the text was read
        trainer = Trainer(resumed, corpus, ranks, saved.model())
        trainer.restore(saved, read_from)
    return trainer


def check_world(resumed: plan.RunPlan, ranks: Ranks) -> None:
    """A resumed run keeps its --batch-size, so under torchrun only a number of processes that divides
    it can take the run up (`Ranks.shard`'s advice, to change the batch, cannot be followed)."""
    batch = resumed.config.batch_size
    if batch % ranks.world:
        worlds = [str(n) for n in range(1, batch + 1) if batch % n == 0]
        raise CharLMError(
            f"{resumed.run_dir} trains {batch} streams ({said('batch_size', batch)}, fixed for the run), which do not "
            f"split over {ranks.world} processes; resume it under a number of processes that divides {batch} "
            f"({', '.join(worlds)}: torchrun --nproc_per_node N)"
        )


# charlm.train's own arguments, which a mistyped keyword may have meant as well as an option.
TRAIN_ARGUMENTS = ("paths", "out", "resume", "init_from")
# Keywords a Python caller may bring, and what does their job (a Config built by hand is given as its fields).
TRAIN_INSTEAD = {
    "seed": "did you mean random_seed?",
    "config": "a Config's fields are the options: **dataclasses.asdict(config)",
}


@lists_options(Config)
def train(
    paths: str | Path | Iterable[str | Path] | None = None,
    out: str | Path | None = None,
    resume: bool | str | Path | None = False,
    init_from: str | Path | None = None,
    **options,
) -> CharLM:
    """Train a model on text files or folders, as `charlm train` does, and return it.

    `paths`: a path, a list of them or a glob's matches (None: the built-in Shakespeare). The run's folder,
    under checkpoints/ (or `out`), keeps the model and `best.pt`, the lowest validation bpc
    (`charlm.load(RUN)` loads that one). A run given by name (`out`, `resume`, `init_from`, `charlm.load`'s)
    is the one under checkpoints/; by path (a pathlib.Path, or text with a separator: "./x"), the path as
    given. `options` are `charlm.Config`'s fields (hidden=512, max_time="5m", quiet=True, ...; listed
    below). `resume=True` continues the most recent run, `resume="checkpoints/run"` that run; then only
    limits, cadence, reporting, the learning rate, device and precision may change, and `paths` only give
    the run's own text at a new path (moved or renamed) or saved in another encoding, given as `encoding`
    (a UTF-16 text saved as UTF-8: encoding="utf-8"): the digest of its text is checked, and the run
    records the path and encoding. An option or argument given as None is left unset, as if not given,
    unless None is one of its values (max_time=None: no time limit). `init_from=RUN` fine-tunes: a new run
    from RUN's weights (a run, .pt file or exported model folder), in its architecture, with the new text's
    characters added, lr=0.001 and its dropout unless given (the README's "Fine-tune on a small text").
    Unless quiet, it starts and ends as `charlm train` does, on stderr: a line naming the model,
    its text and the run's folder (fine-tuning: the base and the characters the text adds to it), and a
    done: line naming the folder and the charlm.load call that reads it.

    Ctrl-C (a notebook's stop button) stops the run at the next step, saves it and raises
    KeyboardInterrupt saying how to go on with it; a second Ctrl-C stops at once, keeping the last
    checkpoint. Called from a thread other than the main one, the run cannot hear Ctrl-C.

    The run seeds torch's global generator (weights, dropout) and puts the caller's state back when it
    returns, so a seeded torch.rand after the call draws what it would have drawn without it. That
    generator is the process's: another thread drawing from it while the run trains takes numbers from
    the run's stream (and the run's dropout, so the run is not reproducible), and after the call draws
    again the numbers the state held when the call began. Give such a thread a generator of its own
    (torch.Generator().manual_seed(N), passed to its torch.rand calls). Two charlm.train calls running
    at once in one process both draw from it, so neither run is reproducible: train them in two
    processes.

    Returns the model as it is at the end of the run (not best.pt's), in eval mode.

    Raises CharLMError, one line naming the keyword, for an unknown option, a value of the wrong type
    or out of range, a file it cannot read, or an `out` folder that already holds a run; and
    KeyboardInterrupt once Ctrl-C has saved the run, naming the call that goes on with it.
    """
    if isinstance(paths, (Iterator, set, frozenset)):  # Path("texts").glob("*.txt"), as given, in its order
        paths = list(paths)
    resume = False if resume is None else resume
    check_names(Config, options, arguments=TRAIN_ARGUMENTS, instead=TRAIN_INSTEAD)
    # a resumed run keeps its plan: None for a planned option (hidden=None: "fit it") leaves it as it is
    options = unset_dropped(Config, options, PLANNED if resume is not False else ())
    if isinstance(options.get("device"), torch.device):  # as charlm.load takes it
        options["device"] = str(options["device"])
    check_train_arguments(paths, out, resume, init_from, options.get("eval_also"))
    check_start(out, resume is not False, init_from, options.get("tensorboard"))
    paths, out, resume, init_from = map(home, (paths, out, resume, init_from))
    out, resume, init_from = (path_names.as_typed(v) if is_path(v) else v for v in (out, resume, init_from))
    sources = [str(paths)] if is_path(paths) else [str(home(p)) for p in paths or []]
    # Training seeds torch's generators and tunes its thread count: the caller's process gets its own back.
    with torch.random.fork_rng(devices=callers_gpus(options.get("device"))), threads.as_found():
        try:
            trainer = start_trainer(sources, options, out, resume, init_from)
        except KeyboardInterrupt:  # the text read, the run planned: nothing of this start written yet
            raise KeyboardInterrupt(f"charlm.train {not_started_note(resume is not False)}") from None
        try:
            model = trainer.fit()
        except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
            raise KeyboardInterrupt(interrupted_note(trainer.kept(), stopped_at=None)) from None
    if trainer.stop_signal is not None:
        pass_on_signal(trainer)
    if not trainer.config.quiet:  # where the run is kept: out=None names a folder the caller has not seen
        load = "" if trainer.save_error else f": charlm.load({str(trainer.run_dir)!r}) loads its best"
        done = done_note(trainer.progress, trainer.run_dir, trainer.saved_step, trainer.save_error)
        print(one_line(f"{done}{load}"), file=sys.stderr)
    return model.eval()  # ready for inference, as `load` returns it


def interrupted_note(kept: Kept, stopped_at: int | None = None) -> str:
    """What charlm.train stopped by a signal keeps (`Kept`), at step `stopped_at` or at once (None: a second
    Ctrl-C), and the calls that go on with it (none where it is `finished`) or sample it."""
    note = stopped_note(kept, stopped_at)
    if kept.saved_step is None:
        return f"charlm.train {note}"
    sample = "; sample" if kept.finished else ", or sample"
    return f"charlm.train {note}{sample} from its best with charlm.load({str(kept.run_dir)!r})"


def pass_on_signal(trainer: Trainer) -> None:
    """A run stopped by a signal has saved; the signal then does what it would have done to the caller,
    so a script stops rather than goes on as if training had finished: Ctrl-C raises KeyboardInterrupt
    (saying how to go on); another signal, or Ctrl-C where the caller handles it, reaches the caller's
    handler (SIGTERM's default ends the process)."""
    note = interrupted_note(trainer.kept(), stopped_at=trainer.progress.step)
    if signal.getsignal(trainer.stop_signal) is signal.default_int_handler:
        raise KeyboardInterrupt(note)
    print(note, file=sys.stderr)
    signal.raise_signal(trainer.stop_signal)


def callers_gpus(device: object) -> list[int]:
    """The CUDA devices whose generators training may change under the caller: every GPU once CUDA has
    started, or where this run may start it (`device` cuda, or auto or unset on a GPU machine: a resume's
    own device is not read yet). Asking for their state starts CUDA, which applies a seed the caller gave
    torch before (torch keeps it until then), so that state is the caller's; a run on the CPU leaves
    CUDA unstarted."""
    if not torch.cuda.is_available():
        return []
    on_cpu = str(device or "auto").strip().lower() in ("cpu", "mps")
    return [] if on_cpu and not torch.cuda.is_initialized() else list(range(torch.cuda.device_count()))


@lists_options(SampleConfig)
@sampling_call
def generate(model: CharLM, seed: str = "", **options) -> str | list[str]:
    """Write text with a model: the seed, then `length` new characters drawn one at a time.

    `options` are `charlm.SampleConfig`'s fields (listed below): temperature, top_k, top_p, stop, ...;
    form, template and acrostic write into a poem form or template, ending at its end (a seed that
    began the poem gets the rest of it, its half-width marks read as the form's: '，' for ','; one whose
    last line breaks the form is refused: docs/forms.md); logit_bias, {character or token id: -100 to
    100}, is added to their logits, -100 a ban: a str key is a character ('3' the digit 3), an int key a
    token id (3), where OpenAI's JSON keys, and `charlm serve`'s, are ids ("3" id 3). random_seed makes
    the text reproducible; left out, each call draws its own and tells no one, so to be able to write a
    text again draw the seed yourself and pass it: random_seed=random.getrandbits(32), every seed that
    counts (sample i of num_samples is random_seed + i's text alone).

    On a CPU it uses as many torch threads as run fastest under the machine's load (measured over your
    calls of generate, stream and bits_per_char), at most your thread's count, and gives your count
    back when it returns. torch.set_num_threads(1) keeps it on one thread (and a seeded text the same
    under any load). A thread you start while charlm trains or samples in another starts from your
    count, not charlm's choice of the moment.

    Returns one string, the seed included; with num_samples N above 1, a list of N such texts drawn
    in one batch (sample i with random_seed + i).

    Raises CharLMError for an unknown option, one given by position rather than by name, a value out
    of range, a seed that is not a string or holds characters the model cannot read, a form the
    model cannot write or a seed whose last line breaks it, a model given a vocabulary of another size than its own (another run's), or
    one whose weights hold NaN, infinities or values past 1e12 (a run that diverged), naming the weight.
    """
    check_model_and_seed("generate", model, seed)
    with threads.for_python_caller(model.device):
        texts = sampler.generate(model, seed, **options)
    return texts if len(texts) > 1 else texts[0]


@lists_options(SampleConfig)
@sampling_call
def stream(model: CharLM, seed: str = "", **options) -> Iterator[str]:
    """Like `generate`, but yields the text of one sample in pieces as it is made: the seed, then a
    character at a time, to show it as it is written. Its steps run on threads as `generate`'s do, your
    code between pieces on your own count.

    Returns an iterator of strings; joined, they are the text `generate` returns for the same options.

    Raises CharLMError as `generate` does, at the call, before the first piece; num_samples must be 1.
    """
    check_model_and_seed("stream", model, seed)
    if (samples := sampler.sample_config(options).num_samples) != 1:
        refuse("stream", "num_samples must be 1", samples, "; charlm.generate(..., num_samples=N) returns N samples")
    with threads.for_python_caller(model.device):  # the seed is read here, at the call
        pieces = sampler.stream(model, seed, **options)
    streamed = threads.governed_pieces(pieces, model.device)
    streamed.__qualname__ = "charlm.stream"  # shown `<generator object charlm.stream at 0x...>`, not by a helper's name
    return streamed


@keywords_checked
def bits_per_char(model: CharLM, text: str) -> float:
    """How well the model predicts `text`: its bits per character, as `charlm eval` scores a file
    (lower: the model predicts it better).

    The first character is read, every one after it scored; characters the model never saw are left
    out of the score (or scored as its unknown symbol), with a warning that says so. `text` is the text
    itself: a file's, read first (Path("chapter.txt").read_text(encoding="utf-8"); a GBK file's
    encoding="gb18030", which the message for its Path, bytes or name says). On a CPU it runs on threads
    as `generate` does.

    Returns the bits per character, a float.

    Raises CharLMError for a text of fewer than 2 characters, or one that is not a string (bytes, a
    Path, an open file: the message says how to read it), or a model given another run's vocabulary or
    NaN weights (as `generate`); warns where `text` looks like a file's name (an error says so instead).
    """
    check_model_and_seed("bits_per_char", model, text, "text")
    with threads.for_python_caller(model.device), reading_text("bits_per_char", text):
        bits, chars = scoring.text_bits(model, text)
    if note := unseen_note(model.vocab, [text]):
        warnings.warn(note, stacklevel=callers_stacklevel())
    return bits / chars


@keywords_checked
def next_probs(model: CharLM, prefix: str | None = "", top: int | None = 10) -> list[tuple[str, float]]:
    """What the model expects after `prefix`: the `top` likeliest next characters (a sentencepiece
    model's pieces) and their probabilities, likeliest first (`top=None`: all).

    It is the model's own prediction, before temperature or any other sampling option. An empty
    prefix (or None) is the start of a line, as for `generate`; a character the model never saw is
    read with a warning.

    Returns a list of (text, probability) tuples: [('s', 0.91), ('n', 0.04), ...].

    Raises CharLMError for a `top` that is not a positive integer or None, a prefix that is not a
    string, or a model given another run's vocabulary or NaN weights (as `generate`).
    """
    prefix = "" if prefix is None else prefix
    check_model_and_seed("next_probs", model, prefix, "prefix")
    top = plain(top)  # np.int64(3), as the sampling options take it
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top < 1):
        refuse("next_probs", "top must be a positive integer or None", top)
    with threads.for_python_caller(model.device):
        return scoring.next_probs(model, prefix, top)


@keywords_checked
def load(target: str | Path | None = None, device: str | torch.device | None = STEP_DEVICE) -> CharLM:
    """Load a trained model to sample from or score with: a run folder or run name (its best.pt), a
    corpus name (its latest run's), a .pt file or an exported model folder; None: the most recently
    updated run's.

    `device`: auto, cpu, cuda, cuda:N or mps (None: the default, cpu). A checkpoint is read as data
    only (torch.load's weights_only): loading one never runs code from it.

    Returns a `charlm.CharLM` in eval mode on `device`, with `.vocab` (`.encode`, `.decode`), `.config`
    and `.device`.

    Raises CharLMError when nothing of that name is found, the file is not a charlm checkpoint or is
    damaged, or `device` is not one this machine has.
    """
    device = STEP_DEVICE if device is None else device
    if not (target is None or is_path(target)):
        refuse("load", "the checkpoint must be a run folder, run name, corpus name or .pt file (str or Path)", target)
    check_file_name("load", "target", target)
    if not isinstance(device, (str, torch.device)):
        refuse("load", f"device must be {DEVICE_FORMS}", device)
    with torch.random.fork_rng(devices=[]):  # building the model draws initial weights from the caller's generator
        return checkpoint.load(None if target is None else path_names.as_typed(home(target)), str(device))


def check_train_arguments(
    paths: object, out: object, resume: object, init_from: object, eval_also: object = None
) -> None:
    if not (paths is None or is_path(paths) or isinstance(paths, (list, tuple)) and all(map(is_path, paths))):
        refuse(
            "train",
            "paths must be a file or folder path (str or Path), a list of them or None",
            paths,
            config_hint("train", paths),
        )
    if isinstance(paths, (list, tuple)) and not paths:  # a glob that matched nothing: not the built-in corpus
        refuse("train", "paths must name at least one file or folder (None: the built-in Shakespeare)", paths)
    if not (out is None or is_path(out)):
        refuse("train", "out must be a folder path (str or Path) or None", out)
    if not (init_from is None or is_path(init_from)):
        refuse("train", "init_from must be a run folder, run name or .pt file path (str or Path) or None", init_from)
    if not (isinstance(resume, bool) or is_path(resume)):
        refuse("train", "resume must be True, False, None or a run folder (str or Path)", resume)
    for argument, value in {"paths": paths, "init_from": init_from, "resume": resume, "eval_also": eval_also}.items():
        for path in value if isinstance(value, (list, tuple)) else [value]:
            check_file_name("train", argument, path)
