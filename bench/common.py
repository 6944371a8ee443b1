"""What the bench/ scripts share: their errors as one line, the text as charlm reads it, `name=value`
settings, busy cores, the timing loops, and the one door into charlm's trainer and size rule.

Every script runs from the repository root as `python -m bench.NAME`. Only the last section below
(`training_step`, `probe_sizes`, `default_eval_every`, `trained_parameters`) touches charlm's Trainer,
size rule and run planning, which change with the way a run is planned and built; the scripts use the
public API (`charlm.train`, `charlm.load`, ...) for the rest.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import torch

from bench.lifeline import Lifeline
from charlm import api, files, finetune, plan, sizing, train_state
from charlm.config import Config
from charlm.device import synchronize
from charlm.errors import CharLMError
from charlm.fields import from_options
from charlm.model import CharLM
from charlm.tokens import TokenCorpus, load_corpus

VAL_FRACTION = 0.1  # charlm's default val_fraction: the held-out text is the same characters


# -- errors, text and settings ----------------------------------------------------------------------


@contextmanager
def errors_in_one_line() -> Iterator[None]:
    """A script's `__main__`: a run, corpus or page that is not there said in the one line charlm's own
    commands say it in (cli.py), status 1, not under a traceback that tells the user nothing more."""
    try:
        yield
    except CharLMError as e:
        raise SystemExit(str(e)) from None
    except click.ClickException as e:  # a charlm command run in this process (bench.export_formats)
        raise SystemExit(e.format_message()) from None
    except (FileNotFoundError, IsADirectoryError) as e:  # a text the script reads itself (read_corpus)
        raise SystemExit(str(files.cannot_read(Path(e.filename or "file"), e))) from None


def read_corpus(path: str | Path) -> str:
    """The file's characters as charlm's training sees them: UTF-8 without a BOM, `\\r\\n` -> `\\n`,
    NFC, ending with a newline (charlm adds one to a file without)."""
    text = Path(path).read_bytes().decode("utf-8").lstrip("\ufeff").replace("\r\n", "\n")
    text = unicodedata.normalize("NFC", text)
    return text if text.endswith("\n") else text + "\n"


def split_at(text: str) -> int:
    """Where the held-out text starts: charlm's rule, the last int(n * val_fraction) characters."""
    return len(text) - int(len(text) * VAL_FRACTION)


def parse(spec: str) -> dict:
    """`name=value[,name=value...]` as options (values read as Python literals, else strings); `-`: none."""
    if spec == "-":
        return {}
    options = {}
    for item in spec.split(","):
        name, value = item.split("=", 1)
        try:
            options[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[name] = value
    return options


@contextmanager
def busy_processes(count: int):
    """`count` processes spinning on a core each while the block runs, ended (by their ids) after it, and
    with this process where it is killed (a spinner left behind takes a core for ever: bench.lifeline)."""
    lifeline = Lifeline()
    spin = [sys.executable, "-c", "while True: pass"]
    processes = [subprocess.Popen(spin, **lifeline.joining()) for _ in range(count)]
    try:
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait()
        lifeline.end()


# -- servers ---------------------------------------------------------------------------------------
def served_url(first_line: str | bytes) -> str:
    """The base URL in `charlm serve --port 0`'s first line (`charlm serve: http://HOST:PORT/  models: ...`):
    the port the server bound. A port found free here and then given to the server could be taken by
    another process between the two; port 0 cannot be. The line as read: bytes from a binary pipe (the
    tests' forked processes), text from a text one."""
    first_line = first_line.decode() if isinstance(first_line, bytes) else first_line
    found = re.match(r"charlm serve: (http://\S+?)/ ", first_line)
    if found is None:
        raise RuntimeError(f"charlm serve did not print its address first: {first_line!r}")
    return found.group(1)


def wait_healthy(url: str, process: subprocess.Popen | None = None, timeout: float = 120) -> None:
    """Until the server at `url` answers /health with 200; raises RuntimeError if `process` (the
    server's, when it runs in one) exits first or `timeout` seconds pass."""
    import httpx  # the serve extra: only the scripts and tests that start a server need it

    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            error = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"the server exited ({process.returncode}): {error}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server at {url} never became healthy in {timeout:g} s")


# -- timing ----------------------------------------------------------------------------------------
def seconds_per_call(
    step: Callable[[], object],
    *,
    calls: int | None = None,
    seconds: float | None = None,
    warmup: int = 2,
    device: torch.device | None = None,
) -> float:
    """Mean wall seconds of one step() after `warmup` untimed calls: `calls` calls, or as many as fit
    in `seconds` (at least 2). With a GPU `device`, the queued work is waited for before the clock
    reads (and every 4 calls, so the queue cannot run far ahead of the clock)."""
    if (calls is None) == (seconds is None):
        raise ValueError("give calls or seconds")
    wait = (lambda: synchronize(device)) if device is not None else (lambda: None)
    for _ in range(warmup):
        step()
    wait()
    start, done = time.perf_counter(), 0
    while done < (calls or 2) or (seconds is not None and time.perf_counter() - start < seconds):
        step()
        done += 1
        if done % 4 == 0:
            wait()
    wait()
    return (time.perf_counter() - start) / done


def best_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """The best of `repeats` wall times of fn()."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# -- charlm's trainer, size rule and run planning (the only place bench/ reaches into them) --------
def bare_config(**settings) -> Config:
    """charlm's defaults for a trainer that only steps: no time or step limit, no evaluation or
    checkpoint on the way, quiet; `settings` override them (a size, a batch, a precision...)."""
    quiet = {"max_steps": 10**9, "max_time": None, "eval_every": 10**9, "checkpoint_every": 10**9, "quiet": True}
    return Config(**{**quiet, **settings})


class TrainingStep:
    """A charlm run's training step, callable (one step at a fixed half of the schedule), and what the
    benches read of its run. Built by `training_step`."""

    def __init__(self, trainer):
        self._trainer = trainer
        trainer.model.train()

    def __call__(self) -> torch.Tensor:
        return train_state.train_step(self._trainer.state, 0.5)

    @property
    def model(self):
        return self._trainer.model

    @property
    def device(self) -> torch.device:
        return self._trainer.device

    @property
    def precision(self) -> str:
        return self._trainer.precision

    @property
    def val_ids(self):
        return self._trainer.corpus.val_ids

    @property
    def run_dir(self) -> Path:
        return Path(self._trainer.run_dir)

    @property
    def chars(self) -> int:
        """Characters one step trains on."""
        return self._trainer.config.batch_size * self._trainer.config.seq_len

    def chars_per_second(self, calls: int, warmup: int = 3) -> float:
        """Chars/s of `calls` steps (after `warmup`), the device waited for."""
        return self.chars / seconds_per_call(self, calls=calls, warmup=warmup, device=self.device)

    def fit(self) -> float:
        """The whole training loop (`charlm train`'s, to the config's limit); chars/s of the loop's own
        time (the final evaluation and save come after it)."""
        self._trainer.fit()
        progress = self._trainer.progress
        return progress.chars / progress.elapsed


def training_step(
    config: Config | dict,
    sources: list[str],
    out: str | Path,
    init_from: str | Path | None = None,
    build: api.ModelBuilder | None = None,
) -> TrainingStep:
    """A new run of `config` on `sources` in folder `out`, ready to step; with `init_from` (a run),
    from that run's weights, `config` then being the fine-tuning options (`charlm train --init-from`'s).
    `build`: an experiment's own model in place of charlm's (`default_model` is charlm's)."""
    texts = [str(s) for s in sources]
    if init_from is not None:
        return TrainingStep(api.start_finetune(init_from, dict(config), texts, str(out), build=build))
    config = config if isinstance(config, Config) else from_options(Config, config)
    return TrainingStep(api.start_run(config, texts, out=str(out), build=build))


def default_model(
    config: Config, corpus: TokenCorpus, base: finetune.Start | None, head_cutoffs: tuple[int, ...]
) -> CharLM:
    """charlm's own model for a planned run (a `ModelBuilder`): new, with the plan's head, or the base's
    grown over the corpus."""
    if base is None:
        return train_state.new_model(config, corpus, head_cutoffs)
    return base.model(corpus.vocab, config.dropout)


def probe_sizes(config: Config, sources: list[str]) -> tuple[int, dict[int, float]]:
    """The size rule as `charlm train` applies it without --hidden: the hidden size it chooses for
    `config`'s budget on `sources`, and the chars/s its probe measured at each size it tried."""
    prepared = load_corpus([str(s) for s in sources], config, quiet=True)
    head = plan.planned_head(config, prepared, None)[0]  # the head the run would train, as its plan times it
    hidden, measured = sizing.measure_sizes(config, prepared, sizing.Probe(config, prepared, head_cutoffs=head))
    return hidden, {c.hidden: c.chars_per_second for c in measured}


def default_eval_every(sources: list[str]) -> int:
    """The --eval-every a run from scratch on `sources` gets by default (once per pass over the text)."""
    config = Config(batch_size=sizing.DEFAULT_BATCH_SIZE)
    return plan.eval_cadence(config, len(load_corpus([str(s) for s in sources], config, quiet=True).train_ids))


def trained_parameters(config: Config, sources: list[str]) -> int:
    """The parameters a run of `config` on `sources` trains (the count the size rule divides by)."""
    prepared = load_corpus([str(s) for s in sources], config, quiet=True)
    return sizing.trained_parameters(config.cell, config.layers, config.hidden, sizing.head_rows(prepared))
