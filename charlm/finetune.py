"""Fine-tuning: a new run whose weights start from another run's (`charlm train small.txt --init-from RUN`).

The base decides the architecture: the options that shape its weights and its vocabulary
(`ARCHITECTURE`) come from its checkpoint, and a given one that differs is refused. Everything else
is the new run's own, with `DEFAULTS` in place of `Config`'s: a trained model needs a gentler start
than a random one (docs/benchmarks.md, "Fine-tuning"). The evaluation cadence is planned as for any
run, once per pass over the new text: a small one is read many times and overfitted within a few
hundred steps; dropout is the base's unless given, which measured better than fitting it to those
passes (plan.py; docs/benchmarks.md, "Small texts").

The vocabulary grows: characters of the new text the base does not know are appended after the base's
ids (`Vocab.extended`) and get new rows that start as rare characters (`model.grow_vocab`); known
characters keep their ids and weights. A SentencePiece base keeps its tokenizer: byte fallback spells
any new character.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import checkpoint, hub, runs
from .checkpoint import Base, Checkpoint
from .config import Config
from .errors import CharLMError, callers_stacklevel, counted
from .fields import about_option, from_options, said
from .model import CharLM, grow_vocab
from .unseen import with_hint
from .vocab import UNKNOWN, Vocabulary

if TYPE_CHECKING:
    from .tokens import TokenCorpus

# Config fields that shape the model's weights and the vocabulary: a fine-tuning run takes the base's.
ARCHITECTURE = ("cell", "layers", "hidden", "head", "tokenizer", "spm_model", "vocab_size", "normalize")
DEFAULTS = {"lr": 1e-3}  # in place of Config's, unless given; every other default is Config's
LET_DECIDE = {"head": ("auto",)}  # an option's value that leaves the choice to charlm, here the base's
PIECES_ONLY = ("spm_model", "vocab_size")  # a sentencepiece tokenizer's: nothing of a char base's
CHAR_POLICY = ("min_count", "coverage")  # which new characters get ids: a kept sentencepiece tokenizer adds none
SHOWN_NEW = 10  # new characters a fine-tune's start line names; the rest are counted
LITTLE_KNOWN = 0.5  # new characters past this share of a text: the base knows little of it (warned of)


@dataclass
class Start:
    """What a fine-tuning run starts from: the base's checkpoint, the record of it the run keeps, and
    which of `DEFAULTS` the run takes (those not given: its plan says why they are what they are)."""

    checkpoint: Checkpoint
    record: Base
    defaulted: tuple[str, ...] = ()

    def named(self) -> str:
        """The base as the run's reasons name it: a run, or, where the weights came from an exported model
        folder (no run of its own) or a lone .pt file, what that is."""
        path = Path(self.record.path)
        if (runs.kept_aside(path) or path).name in (runs.BEST, runs.LATEST):
            return f"base run {self.record.run}"
        if path.name != hub.WEIGHTS:
            return f"base checkpoint {path.name}"
        if path.parent.name == self.record.run:  # a model folder of its own (`runs.run_name_of`)
            return f"base model folder {self.record.run}"
        return f"base run {self.record.run}'s exported model"

    def model(self, vocab: Vocabulary, dropout: float) -> CharLM:
        """The base's model with the run's dropout, grown over `vocab` (the base's, extended)."""
        saved = self.checkpoint
        model = CharLM(dataclasses.replace(saved.model_config, dropout=dropout), saved.vocab)
        model.load_state_dict(saved.weights)
        return grow_vocab(model, vocab)


def with_resume() -> str:
    """Why a run cannot both start from another run's weights and continue a run, and, for the user who
    gave the command of an interrupted fine-tune again with --resume added, that --resume alone goes on."""
    return (
        f"{said('init_from')} starts a new run from another run's weights, {said('resume')} continues a run: give "
        f"one of them (a fine-tune resumes from its own checkpoint, its base kept: {said('resume')} alone continues one)"
    )


def read_base(target: str | Path, charlm_model: bool = True) -> Start:
    """The run (its best.pt) or checkpoint file `target`, with the sha256 of the bytes it was read from.
    Anything but a sound charlm checkpoint is one line naming --init-from; so is an experiment's
    checkpoint when the run builds charlm's model (`charlm_model`), which cannot take its weights."""
    try:
        path = runs.resolve(target)
        saved, digest, source = checkpoint.read_with_digest(path, charlm_model)  # the run of these weights too
    except CharLMError as e:
        raise about_option("init_from", target, e) from None
    recorded = runs.recorded_checkpoint(path)  # named as given: `--init-from .` by the folder's own name
    name = runs.run_name_of(recorded) if source is None else source["run"]  # the run, not the folder
    return Start(saved, Base(name, str(recorded), digest, len(saved.vocab)))


def resolved(start: Start, name: str) -> str | int | None:
    """The base's real value where its option may not say it: the head `auto` chose (so `--head
    adaptive` matches an adaptive base whichever option built it), the pieces of its sentencepiece
    tokenizer (its --vocab-size may be unset); None for every other option."""
    saved = start.checkpoint
    if name == "head":
        return "adaptive" if saved.model_config.head_cutoffs else "full"
    if name == "vocab_size" and not saved.vocab.one_char_per_id:
        return len(saved.vocab)
    return None


def base_setting(start: Start, name: str) -> str:
    """The base's option as a conflict names it: `auto, which chose full`, not `auto` alone, which left
    `--head adaptive (the base has auto)` unexplained; an unset one as what it came to."""
    value, real = getattr(start.checkpoint.config, name), resolved(start, name)
    if name in PIECES_ONLY and start.checkpoint.vocab.one_char_per_id:  # not "None", Config's unused default
        return f"{said('tokenizer', 'char')}: no pieces"
    if real is None or real == value:
        return str(value)
    return str(real) if value is None else f"{value}, which chose {real}"


def alone(options: dict) -> Config:
    """A fine-tuning run's options checked before the base is read, all but the architecture's: those
    are compared with the base's (`run_config`), not with Config's defaults (`--vocab-size` on a
    sentencepiece base was refused as needing `--tokenizer sentencepiece`)."""
    return Config(**{name: value for name, value in options.items() if name not in ARCHITECTURE})


def taking_defaults(start: Start, options: dict) -> Start:
    """`start`, knowing which of `DEFAULTS` the run takes: those `options` do not give."""
    return dataclasses.replace(start, defaulted=tuple(name for name in DEFAULTS if name not in options))


def run_config(start: Start, options: dict) -> Config:
    """The new run's options: the base's architecture, `DEFAULTS`, then `options` (which may not
    contradict the architecture)."""
    base = start.checkpoint.config
    conflicts = [
        f"{said(name, options[name])} (the base has {base_setting(start, name)})"
        for name in ARCHITECTURE
        if options.get(name) not in (None, getattr(base, name), resolved(start, name), *LET_DECIDE.get(name, ()))
    ]
    if not start.checkpoint.vocab.one_char_per_id:  # else taken silently (--coverage) or blamed on --tokenizer
        conflicts += [
            f"{said(name, options[name])} (the base's sentencepiece tokenizer is kept: new characters are spelled as bytes)"
            for name in CHAR_POLICY
            if options.get(name) not in (None, getattr(Config, name))
        ]
    if conflicts:
        raise CharLMError(
            f"{said('init_from', start.record.run)}: {'; '.join(conflicts)}: the architecture comes from the base; "
            "drop these options or train from scratch"
        )
    architecture = {name: getattr(base, name) for name in ARCHITECTURE}
    return from_options(Config, {**DEFAULTS, **options, **architecture})


def new_characters_note(corpus: TokenCorpus, base_size: int, config: Config) -> str:
    """What a fine-tune's start line says its text adds to the base's `base_size` ids: the new characters,
    the first few named as an error names a character, so a stray one (a BOM, a full-width comma) is seen
    before it is learned; the unknown symbol --min-count or --coverage adds for those it leaves out is
    said apart, as it is no character of the text. A sentencepiece base adds no ids: its new characters
    are those its tokenizer spells as bytes, which the prepared corpus names."""
    vocab = corpus.vocab
    if not vocab.one_char_per_id:
        spelled = corpus.meta.get("unknown_chars")  # None in a cache prepared before they were named
        note = named(spelled, corpus.meta["unknown_distinct"], ", spelled as bytes")
        return f"its sentencepiece tokenizer kept; {note}"
    added = vocab.chars[base_size:]
    new = [char for char in added if char != UNKNOWN]
    note = named(new, len(new), base=vocab.first(base_size))
    if UNKNOWN in added:
        policy = [said("min_count", config.min_count)] * (config.min_count > 1)
        policy += [said("coverage", config.coverage)] * (config.coverage < 1)
        if policy:
            note += f"; rarer ones ({', '.join(policy)}) read as the unknown symbol"
        else:  # no policy left any out: the text holds the symbol itself, which no option explains
            note += f"; the text's {UNKNOWN!r} (U+FFFD, a decoder's mark for unreadable bytes) is the unknown symbol"
    return note


def named(chars: list[str] | None, count: int, how: str = "", base: Vocabulary | None = None) -> str:
    """`count` new characters, `how` the model reads them, the first SHOWN_NEW of `chars` named (none
    when `chars` is None): `19 new characters: '!' '.' '?' ...` (ten named), each with the forms of it
    the `base` vocabulary writes, so a stray form is told from a new letter: `',' (the base writes '，')`."""
    if not count:
        return "no new characters"
    note = counted(count, "new character") + how
    if not chars:
        return note
    shown = [with_forms(char, base) for char in chars[:SHOWN_NEW]]
    return note + ": " + " ".join(shown) + (" ..." if count > SHOWN_NEW else "")


def with_forms(char: str, base: Vocabulary | None) -> str:
    """A new character as the start line names it: with the other forms of it (`Vocab.known_forms`)
    that the base writes, where it writes any."""
    known = base.known_forms(char) if base is not None and base.one_char_per_id else []
    return with_hint(char, f"the base writes {' or '.join(map(repr, known))}" if known else "")


def warn_if_little_known(corpus: TokenCorpus, base_size: int) -> None:
    """Warn, before a fine-tune trains, when most of its training text (`LITTLE_KNOWN`) is characters
    the base's `base_size` ids never held (Tang poems under an English base): their rows start untrained,
    so the run is a fresh one in all but name, with the base's architecture."""
    counts = corpus.train_counts
    share = counts[base_size:].sum() / max(counts.sum(), 1)
    if share > LITTLE_KNOWN:
        warnings.warn(
            f"the base never saw {share:.0%} of the characters of {corpus.name}: their rows start untrained, so "
            f"it knows little of this text; fine-tune a base that knows them (`charlm eval BASE FILE` counts "
            f"those a base lacks), or train from scratch (no {said('init_from')})",
            stacklevel=callers_stacklevel(),
        )
