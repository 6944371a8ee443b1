"""Fine-tuning: a new run whose weights start from another run's (`charlm train small.txt --init-from RUN`).

The base decides the architecture: the options that make its model and its vocabulary (`ARCHITECTURE`)
come from its checkpoint, and a given one that differs is refused. Everything else is the new run's
own, with `DEFAULTS` for the step size and the evaluation cadence in place of `Config`'s: a trained
model needs a gentler start than a random one, and a small text is overfitted within a few hundred
steps, so it is scored often enough for best.pt to catch the turn (docs/benchmarks.md, "Fine-tuning").

The vocabulary grows: characters of the new text the base does not know are appended after the base's
ids (`Vocab.extended`) and get new rows that start as rare characters (`model.grow_vocab`); known
characters keep their ids and weights. A SentencePiece base keeps its tokenizer: byte fallback spells
any new character.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import checkpoint, runs
from .checkpoint import Base, Checkpoint
from .config import Config, from_options, option_name
from .errors import CharLMError

# Config fields that make the model (ModelConfig) and the vocabulary: a fine-tuning run takes the base's.
ARCHITECTURE = ("cell", "layers", "hidden", "dropout", "head", "tokenizer", "spm_model", "vocab_size", "normalize")
DEFAULTS = {"lr": 1e-3, "warmup_steps": 100, "eval_every": 200}  # in place of Config's, unless given
WITH_RESUME = "--init-from starts a new run from another run's weights, --resume continues a run: give one of them"


@dataclass
class Start:
    """What a fine-tuning run starts from: the base's checkpoint, and the record of it the run keeps."""

    checkpoint: Checkpoint
    record: Base


def read_base(target: str | Path) -> Start:
    """The run (its best.pt) or checkpoint file `target`, with the sha256 of the bytes it was read from.
    Anything but a sound charlm checkpoint is one line naming --init-from."""
    try:
        path = runs.resolve(target)
        saved, digest = checkpoint.read_with_digest(path)
    except CharLMError as e:
        raise CharLMError(f"--init-from: {e}") from None
    name = path.parent.name if path.name in (runs.BEST, runs.LATEST) else path.stem
    return Start(saved, Base(name, str(path.resolve()), digest, len(saved.vocab)))


def run_config(start: Start, options: dict) -> Config:
    """The new run's options: the base's architecture, `DEFAULTS`, then `options` (which may not
    contradict the architecture)."""
    base = start.checkpoint.config
    conflicts = [
        f"--{option_name(name)} {options[name]} (the base has {getattr(base, name)})"
        for name in ARCHITECTURE
        if options.get(name) is not None and options[name] != getattr(base, name)
    ]
    if conflicts:
        raise CharLMError(
            f"--init-from {start.record.run}: {'; '.join(conflicts)}: the architecture comes from the base; "
            "drop these options or train from scratch"
        )
    return from_options(Config, {**DEFAULTS, **options, **{name: getattr(base, name) for name in ARCHITECTURE}})
