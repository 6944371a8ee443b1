"""A run's text after the run: where it is now, how it is read, and what a command is told where the
files are not it, for `charlm eval RUN`, `charlm inspect RUN`, `--eval-also RUN` and a resume.

A checkpoint records its corpus (`TokenCorpus.record`: name, sources, the cache key, and the digest of
the text as read). Since the run, the text may have moved (a resume given its new path writes that path
to run.json before its next checkpoint), been saved again in other bytes (CRLF line ends, a byte order
mark, a UTF-16 file as UTF-8, whose --encoding the resume writes to run.json too), or changed. sources.py
tells whether files are the run's text (`same_text`, `files_changed`); this module finds
them, reads them as the run last did, and words the refusals.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import checkpoint, files, hub, path_names, runs
from .checkpoint_advice import remedy
from .config import Config
from .corpus import dangling_link, read_texts, source_files, text_codec
from .decode_errors import Undecodable, is_utf8
from .errors import CharLMError, callers_stacklevel
from .export import is_model_export
from .fields import about_option, call, paths_given, said
from .locales import cannot_name
from .scoring import check_scored, scored_ids
from .sources import CorpusChanged, catalog_name, files_changed, recorded_sources, same_text, source_parts
from .tokens import TokenCorpus, cache_key, corpus_options, load_corpus, prepared_files, text_digest
from .unseen_notes import unseen_note
from .vocab import UNSEEN, Vocabulary

EVAL_ALSO_TOKENS = 50_000  # of the --eval-also text, which a fine-tuning run scores every few seconds


def held_out_ids(
    corpus: dict, config: Config, run_dir: Path, base: Vocabulary | None = None, quiet: bool = False
) -> np.ndarray:
    """The held-out ids (validation split, memory-mapped) of the run in `run_dir` that trained on `corpus`
    (a checkpoint's: name, sources, cache key) with `config`: those its validation scored, not decoded into
    a text (a 30M-character split decoded through a Python list of its ids would peak at 745 MB)."""
    instead = f"; give FILES to score instead ({call('eval', 'FILES', path=run_dir)})"
    return run_corpus(corpus, config, base, quiet, instead, run_dir).val_ids


def names_text(path: str) -> bool:
    """Whether `path` is text to score rather than a RUN: a file other than a .pt checkpoint or a model
    export, a pipe or device (no run is one; reading it as a text says what it is and to save the text to
    a file), or a folder that is no run (not even one still training), holds no runs and no exported model
    (nor is one, though damaged: its config.json is charlm's, so `runs.resolve` says what it lacks).
    `charlm eval`'s first argument, and --eval-also (a FILE that exists wins over a run of its name)."""
    found = Path(path)
    if found.is_file():
        return not runs.is_checkpoint_name(found) and not is_model_export(found)
    if found.exists() and not found.is_dir():
        return True
    run_like = runs.is_run_folder(found) or runs.run_folders(found) or runs.names_a_run(path)
    run_like = run_like or (found.is_dir() and hub.has_charlm_config(found))
    return found.is_dir() and not run_like


def eval_also_run(value: str) -> Path | None:
    """The checkpoint of the run --eval-also names (a run name or folder, a corpus name, a .pt file or an
    exported model folder), whose held-out text it scores; None where it names a text: a file, or a folder
    that is no run (a FILE that exists wins over a run of its name), or a link to nothing, which reading it
    names. A name that is neither is refused as `charlm eval NAME` refuses one (`runs.resolve`'s words),
    not said to be a missing file alone; so is a run folder with no checkpoint yet (training now, or
    killed before its first)."""
    path_names.check_nameable(value)  # before names_text looks it up
    if names_text(value) or (Path(value).is_symlink() and not Path(value).exists()):
        return None
    return runs.resolve(value)


def eval_also_kept(value: str) -> str:
    """--eval-also as the run keeps it (`files.recorded_path`): the text's path, or the folder of the run it
    names (its .pt file where that is all it is), so that a resume finds the same text from any working
    directory, named as the user named it. What names nothing to score is refused here, as typed and before
    the corpus is read (minutes for a big one): a name that is neither text nor run, a run folder with no
    checkpoint, a pipe, a device, a folder of no .txt files, a link to nothing (not named as its target, a
    path the user never gave)."""
    try:
        run = eval_also_run(value)
        dangling = run is None and Path(value).is_symlink() and not Path(value).exists()
        if run is None and not dangling:
            source_files([value])  # what kind of text it is, not yet the text
    except CharLMError as e:  # a run folder with no checkpoint, a folder of runs, a pipe
        raise about_option("eval_also", value, e) from None
    if dangling:  # kept as its target: "no such file", unlinked
        raise about_option("eval_also", value, CharLMError(dangling_link(Path(value))))
    if run is None:
        return files.recorded_path(value)
    kept = runs.recorded_checkpoint(run)
    return str(kept.parent if runs.found_in_folder(run) else kept)


def read_eval_also(config: Config, vocab: Vocabulary, tell: bool = False) -> torch.Tensor | None:
    """The ids of the --eval-also text that each evaluation scores (its first `EVAL_ALSO_TOKENS`), read
    and checked before training starts: the plan refuses a bad one, the trainer scores it. A file is read
    as `charlm eval` reads one; a run gives the held-out text `charlm eval RUN` scores (its first tokens,
    as characters), a cache's val.txt that no glob can mistake for a second corpus. Characters the model
    never saw (Tang poems beside a novel) are left out of the score, the same ones at every evaluation,
    with a warning, if `tell`, that says how many."""
    value = config.eval_also
    if not value:
        return None
    what = said("eval_also", value)
    try:
        run = eval_also_run(value)
        if run is None:
            text = read_texts([value], config.encoding, vocab.normalize)
        else:
            text = held_out_text(run, quiet=config.quiet or not tell)
            what = f"the held-out text of {what}"
    except CharLMError as e:
        raise about_option("eval_also", value, e) from None
    ids = scored_ids(vocab, text, what)[0][: EVAL_ALSO_TOKENS + 1]
    if not (ids[1:] != UNSEEN).any():
        check_scored(what, characters=len(ids), scored=0)
    if tell and (note := unseen_note(vocab, [text[: EVAL_ALSO_TOKENS + 1]])):  # "" for sentencepiece, which spells any
        warnings.warn(f"{what}: {note}", stacklevel=callers_stacklevel())
    return ids


def held_out_text(
    path: Path,
    quiet: bool,
    tokens: int | None = EVAL_ALSO_TOKENS,
    instead: str = "",
    as_in: Callable[[Path], str] | None = None,
) -> str:
    """The held-out text of the run whose checkpoint is `path`, of its first `tokens` + 1 tokens (None: all
    of it), as characters (a sentencepiece run's pieces spelled out), which the model scoring them reads
    in its own tokens. `instead`: what a refusal of the run's text says to give in its place (--eval-also's FILE);
    `as_in`: a damaged checkpoint's other file where its caller gave this one (`checkpoint_advice.remedy`), not
    as the command's model: --eval-also's by default."""
    as_in = as_in or functools.partial(said, "eval_also")
    saved = checkpoint.read(path, advice=functools.partial(remedy, as_in=as_in))
    instead = instead or f"; give its text as a FILE instead ({said('eval_also', 'FILE')})"
    corpus = run_corpus(saved.corpus, saved.config, saved.base_vocab(), quiet, instead, path.parent)
    return saved.vocab.decode(corpus.val_ids[: None if tokens is None else tokens + 1])


def names_held_out(value: str) -> bool:
    """Whether one of `charlm eval`'s FILES names a run (a run folder or name, a corpus name, a .pt file or an
    exported model folder) rather than a text, whose held-out text it scores, as --eval-also RUN does: a
    FILE that exists wins over a run of its name; a path to nothing that names no run stays a missing file, a
    pipe or device a file that is none (`corpus.source_files` names either)."""
    found = Path(value)
    under_root = not found.exists() and runs.is_run_folder(runs.CHECKPOINT_ROOT / found)  # resolve says what it lacks
    return not names_text(value) and (found.is_dir() or under_root or runs.names_a_run(value))


def run_corpus(
    corpus: dict, config: Config, base: Vocabulary | None, quiet: bool, instead: str, run_dir: Path
) -> TokenCorpus:
    """The corpus the run in `run_dir` trained on (a checkpoint's `corpus`: name, sources, cache key) with
    `config`, over a fine-tune's `base` vocabulary: prepared again from its sources where they are now
    (`run_sources`), which the cache makes quick. A source changed since splits into other text: refused,
    as a run resumed on it is, with `instead`, what the caller may do without it. A text saved as UTF-8 in
    place (what charlm's errors ask of a file in another encoding) is read so where it is the run's text (its
    digest): the command reading it has no --encoding for it, eval's reading its FILES only."""
    sources = run_sources(corpus, run_dir, instead)
    config = with_recorded_encoding(corpus, config, sources, run_dir)
    try:
        return load_run_text(sources, config, quiet=quiet, base=base, run=corpus)[0]
    except CorpusChanged as changed:
        raise CharLMError(f"{changed}{instead}") from None
    except CharLMError as e:
        error = e
    record = ""
    if "text" in corpus and isinstance(error, Undecodable):  # a resume takes another --encoding, and records it
        resume = call(
            "train",
            paths_given(sources),
            said("resume", run_dir),
            said("encoding", metavar="ENC"),
            said("max_steps", 1),
        )
        record = f" (in another encoding, a resume that trains nothing records the one that reads it: {resume})"
    raise CharLMError(f"{error}; the run's corpus is needed{record}{instead}") from None


def load_run_text(
    sources: list[str], config: Config, *, quiet: bool, base: Vocabulary | None, run: dict
) -> tuple[TokenCorpus, Config]:
    """The run's text (`run`, its checkpoint's corpus record) from `sources`, read as `config` says, and the config
    it was read with. Where that reading fails (the bytes do not decode, or decode into other text) and the
    record keeps the text's digest, the files are read as UTF-8, what charlm's errors ask a file in another
    encoding be saved as: the run's text there is taken, in its new encoding, which the caller records (a
    resume's run.json). Else the first reading's error."""
    try:
        return load_corpus(sources, config, quiet=quiet, base=base, run=run), config
    except CharLMError as e:
        if "text" not in run or is_utf8(config.encoding):
            raise
        error = e
    as_utf8 = dataclasses.replace(config, encoding="utf-8")
    try:
        return load_corpus(sources, as_utf8, quiet=quiet, base=base, run=run), as_utf8
    except CorpusChanged:
        raise  # other text in UTF-8 as well: a text edited as well as converted
    except CharLMError:
        raise error from None  # no UTF-8 text: the run's own reading says what is wrong


def run_sources(corpus: dict, run_dir: Path, instead: str = "") -> list[str]:
    """Where the corpus of the run in `run_dir` is now (`corpus`: a checkpoint's record of it): the sources
    it records, or, where one of those is gone, those the run's run.json records for the same digest: a
    resume on the text at a new path writes them there first (a checkpoint it does not replace, such as
    best.pt, keeps the old path). Where neither is there, refuses naming the missing file, and says how to
    give the text's new path, or `instead`, what the caller may do without it."""
    recorded = corpus["sources"]
    if not (gone := missing(recorded)):
        return recorded
    moved = runs_record(corpus, run_dir).get("sources")  # a hand edit: anything
    if isinstance(moved, list) and moved and all(isinstance(s, str) for s in moved) and not missing(moved):
        return moved
    if unnamed := cannot_name(gone[0]):  # there, but not to be asked for in this locale
        raise CharLMError(f"{gone[0]}: {unnamed}")
    resume = call("train", "NEW", said("resume", run_dir))
    raise CharLMError(
        f"{gone[0]}: no such file or folder, where {run_dir} read its corpus; if the text moved, resume on it "
        f"at its new path, which the run then records: {resume}{instead}"
    )


def runs_record(corpus: dict, run_dir: Path) -> dict:
    """The run's run.json where it records the text of `corpus` (a checkpoint's record of it), else {}: a
    resume writes there where the text is now and the --encoding that reads it before its next checkpoint,
    and a checkpoint it does not replace (best.pt) keeps where it was and how it was read."""
    info = runs.read_run_info(run_dir) or {}
    return info if same_text(corpus, info.get("digest"), lambda: info.get("text")) else {}


def with_recorded_encoding(corpus: dict, config: Config, sources: list[str], run_dir: Path) -> Config:
    """`config`, the run's checkpoint's, with the --encoding that reads `sources`, the run's text where it is
    now: the one run.json records with them, where a resume read them in another encoding than the
    checkpoint's (a UTF-16 file saved as UTF-8 in place, resumed with --encoding utf-8). One hand-edited to
    no text encoding is lost, not taken for an --encoding the user never gave."""
    info = runs_record(corpus, run_dir)
    encoding = info["config"].get("encoding") if isinstance(info.get("config"), dict) else None
    if (
        info.get("sources") != recorded_sources(sources, corpus["sources"])
        or not isinstance(encoding, str)
        or encoding == config.encoding
    ):
        return config
    if text_codec(encoding) is None:
        return config
    return dataclasses.replace(config, encoding=encoding)


def misread(
    sources: list[str], corpus: dict, config: Config, runs_config: Config, run_dir: Path, base: Vocabulary | None
) -> str | None:
    """Why a resume given `config`'s --encoding cannot read the run's text from `sources` where only that
    --encoding is to blame: the files are the run's text as the run read them (`runs_config`, the checkpoint's,
    with the encoding run.json records, `with_recorded_encoding`; over a fine-tune's `base` vocabulary), which another
    --encoding reads as other text (Chinese UTF-8 read as latin-1), or not at all. The error's text; None
    where the files are not the run's."""
    runs_reading = with_recorded_encoding(corpus, runs_config, sources, run_dir)
    if runs_reading.encoding == config.encoding:
        return None
    try:
        parts, _ = source_parts(sources, quiet=True, recorded=corpus["sources"])
        options = corpus_options(runs_reading, base)
        if not same_text(corpus, cache_key(parts, options), lambda: text_digest(parts, runs_reading)):
            return None
    except CharLMError:  # a file gone or unreadable: its own error says so
        return None
    return (
        f"{said('encoding', config.encoding)} does not read from {paths_given(sources)} the text {run_dir} trained "
        f"on, though they are the run's own files, which it read as {runs_reading.encoding}: only the encoding "
        f"differs; resume without {said('encoding')}, which reads them as the run did"
    )


def missing(sources: list[str]) -> list[str]:
    """The sources of a run's record that are no longer there (a catalog name is fetched again: never)."""
    return [source for source in sources if not Path(source).exists() and not catalog_name(source, sources)]


def not_the_runs_text(given: list[str], corpus: dict, run_dir: Path) -> CharLMError:
    """The error for a resume given `given`, which is not the text its run trained on (`corpus`, its
    checkpoint's record): only the same text, its files in the order the run read them, gives the same token
    stream and held-out split (as read where the record keeps the text's digest, `sources.same_text`; else
    byte for byte); another text starts a new run from the run's weights."""
    recorded = " ".join(corpus["sources"]) or f"the built-in {corpus['name']}"
    try:
        changed = files_changed(prepared_files(corpus["digest"]), [source_files(given)])
    except CharLMError:  # a catalog name, a path gone: nothing to compare
        changed = ""
    changes = f": {changed}" if changed else ""
    same = (
        f"the same text, from files in the order the run read them (their line ends and {said('encoding')} may differ)"
        if "text" in corpus
        else "the same files, byte for byte, in the order the run read them"
    )
    return CharLMError(
        f"{' '.join(given)} is not the text {run_dir} trained on ({recorded}{changes}): a resume needs {same}; a new "
        f"text is a fine-tune, a new run from this one's weights: {fine_tune_command(given, run_dir)}"
    )


def fine_tune_on(sources: list[str], run_dir: Path) -> str:
    """What to do with a run's text changed since it trained (a resume needs the text as it was), as a clause:
    train on the new text from the run's weights, a fine-tune (`--out` names no resume's folder)."""
    return (
        "put it back as it was to resume, or train on it as it is now from this run's weights: "
        f"{fine_tune_command(sources, run_dir)}"
    )


def fine_tune_command(sources: list[str], run_dir: Path) -> str:
    """The command (or call) that trains on `sources` from the weights of the run in `run_dir`."""
    return call("train", paths_given(sources), said("init_from", run_dir))
