"""The Python API: `train(paths, **options)` and `load(path)`, built on the same Config as the CLI."""

from __future__ import annotations

from pathlib import Path

from . import trainer
from .checkpoint import load
from .config import Config, from_options
from .model import CharLM

__all__ = ["load", "train"]


def train(
    paths: str | Path | list[str | Path] | None = None,
    out: str | Path | None = None,
    resume: bool | str | Path = False,
    **options,
) -> CharLM:
    """Train on text files or folders (None: built-in Shakespeare) and return the trained model.

    `options` are `Config` fields (hidden=512, max_time="5m", ...). `resume=True` continues the most
    recent run, `resume="checkpoints/run"` that run; then only limits may be given.
    """
    sources = [str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths or []]
    if resume is not False:
        from_options(Config, options)  # rejects unknown names before touching the run
        run = trainer.resume(None if resume is True else str(resume), options, sources)
    else:
        run = trainer.start(from_options(Config, options), sources, None if out is None else str(out))
    return run.fit()
