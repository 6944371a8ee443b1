"""The Python API, and the two ways a run begins that the CLI shares with it.

    import charlm
    model = charlm.train("novel.txt", max_time="10m")
    print(charlm.generate(model, "It was", length=200, temperature=0.8))
    model = charlm.load("checkpoints/novel-20260101-120000")

`start_run`, `start_finetune` and `resume_run` build a `Trainer` from options: they prepare the
corpus, fit the model's size to the budget when `--hidden` is unset (or take a base run's model), and
pick (or find) the run folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from . import checkpoint, finetune, runs, sampler, sizing, threads
from .checkpoint import load
from .config import Config, from_options
from .device import resolve_device
from .distributed import SINGLE, Ranks
from .errors import CharLMError
from .model import CharLM
from .tokens import load_corpus
from .trainer import Trainer

__all__ = ["generate", "load", "stream", "train"]


def start_run(
    config: Config,
    sources: list[str],
    out: str | None = None,
    ranks: Ranks = SINGLE,
    base: finetune.Start | None = None,
) -> Trainer:
    """A new run: refuses to overwrite a folder that already holds one. From `base`, its weights start
    from the base's, over the base's vocabulary extended with the text's new characters."""
    device = resolve_device(config.device, ranks.local_rank, ranks.world)
    base_vocab = None if base is None else base.checkpoint.vocab
    with ranks.leader_first():  # one process prepares the corpus cache, the others read it
        corpus = load_corpus(sources, config, quiet=config.quiet or not ranks.leader, base=base_vocab)
    threads.configure(config.threads, device)
    probed = None
    if ranks.leader:  # every rank must build the same model: rank 0 measures, the others take what it chose
        config, probed = sizing.fit(config, corpus, ranks.world)
    hidden, dropout, eval_every = ranks.from_leader(
        [config.hidden or 0, config.dropout or 0.0, config.eval_every or 0], device
    )
    config = dataclasses.replace(config, hidden=int(hidden), dropout=dropout, eval_every=int(eval_every))
    model = None if base is None else base.model(corpus.vocab, config.dropout)
    record = None if base is None else base.record
    trainer = Trainer(config, corpus, ranks, model=model, base=record, probed_chars_per_second=probed)
    config.require_limit()  # every check passed before a run folder is named or claimed
    if out is not None:
        trainer.run_dir = runs.run_folder(out, corpus.name)
        if (trainer.run_dir / runs.LATEST).exists():
            raise CharLMError(
                f"{trainer.run_dir} already holds a run; continue it with --resume {trainer.run_dir}, "
                "or pick another --out"
            )
        return trainer
    # A new name, claimed by rank 0 (runs started in the same second each get their own); the others take it.
    claimed = runs.claim_run_folder(corpus.name) if ranks.leader else (0.0, 0)
    stamp, number = ranks.from_leader(list(claimed), device)
    trainer.run_dir = runs.run_name(corpus.name, stamp, int(number))
    return trainer


def start_finetune(
    init_from: str | Path, options: dict, sources: list[str], out: str | None = None, ranks: Ranks = SINGLE
) -> Trainer:
    """A new run on `sources` whose weights start from run `init_from`'s (see finetune.py). The base is
    read and the options checked before anything is written."""
    base = finetune.read_base(init_from)
    return start_run(finetune.run_config(base, options), sources, out, ranks, base)


def resume_run(target: str | None, overrides: dict, sources: list[str] | None = None, ranks: Ranks = SINGLE) -> Trainer:
    """Continue the run in folder `target` (None: the most recent). Only `config.RESUMABLE` options may change;
    the world size may: the checkpoint holds every stream's state, re-sharded here."""
    path = runs.resolve(target, prefer=runs.LATEST)
    saved = checkpoint.read(path)
    config = Config.from_dict({**saved.config.to_dict(), **overrides})
    changed = saved.config.model_differences(config)
    if changed:
        raise CharLMError(f"{path.parent}: cannot resume with changed options ({'; '.join(changed)}); drop them")
    saved_sources = saved.corpus["sources"]
    if sources and list(sources) != saved_sources:
        raise CharLMError(f"{path.parent} trained on {saved_sources or 'the built-in corpus'}; resume without a corpus")
    base_vocab = None if saved.base is None else saved.vocab.first(saved.base.vocab_size)
    with ranks.leader_first():
        corpus = load_corpus(saved_sources, config, quiet=config.quiet or not ranks.leader, base=base_vocab)
    trainer = Trainer(config, corpus, ranks, path.parent, saved.model(), saved.base)
    trainer.restore(saved)
    return trainer


def train(
    paths: str | Path | list[str | Path] | None = None,
    out: str | Path | None = None,
    resume: bool | str | Path = False,
    init_from: str | Path | None = None,
    **options,
) -> CharLM:
    """Train on text files or folders (None: built-in Shakespeare) and return the trained model, in eval mode.

    `options` are `Config` fields (hidden=512, max_time="5m", ...). `resume=True` continues the most
    recent run, `resume="checkpoints/run"` that run; then only limits may be given. `init_from=RUN`
    starts a new run from RUN's weights (fine-tuning: see finetune.py).
    """
    sources = [str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths or []]
    if resume is not False and init_from is not None:
        raise CharLMError(finetune.WITH_RESUME)
    if init_from is not None:
        trainer = start_finetune(init_from, options, sources, None if out is None else str(out))
    elif resume is not False:
        from_options(Config, options)  # rejects unknown names before touching the run
        trainer = resume_run(None if resume is True else str(resume), options, sources)
    else:
        trainer = start_run(from_options(Config, options), sources, None if out is None else str(out))
    return trainer.fit().eval()  # ready for inference, as `load` returns it


def generate(model: CharLM, seed: str = "", **options) -> str:
    """The seed and `length` new characters. Options: those of `charlm.SampleConfig` (length,
    temperature, top_k, top_p, greedy, repetition_penalty, stop, random_seed, precision)."""
    return sampler.generate(model, seed, **options)[0]


def stream(model: CharLM, seed: str = "", **options) -> Iterator[str]:
    """Like `generate`, but yields the text in pieces as it is made."""
    return sampler.stream(model, seed, **options)
