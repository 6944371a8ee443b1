"""Training: TBPTT over the streams with AdamW, gradient clipping and a cosine schedule that decays
over the run's budget (steps or wall time), periodic validation in bits per character, checkpoints.

The hot loop does no host sync per step: the loss is summed as a tensor and read only when the
progress bar refreshes (about once a second).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import checkpoint
from .batches import Windows, make_streams, min_chars
from .config import Config
from .corpus import Corpus, load_corpus
from .errors import CharLMError
from .model import CharLM, State, detach_state
from .vocab import Vocab

EVAL_STREAMS = 16  # validation streams; each starts cold, so few and long is more faithful
EVAL_WINDOW = 250  # validation window: longer windows, same result, fewer calls
EVAL_CHARS = 150_000  # validation during training scores at most this much of the split's start
LOG2E = 1.0 / math.log(2.0)


def bits_per_char(model: CharLM, ids: torch.Tensor, max_chars: int | None = None) -> float:
    """Mean bits per character of `ids` under the model, the state carried across each stream."""
    if max_chars is not None:
        ids = ids[: max_chars + 1]
    streams = make_streams(ids, max(1, min(EVAL_STREAMS, ids.numel() // (EVAL_WINDOW + 1))))
    was_training = model.training
    model.eval()
    total_nats, count = torch.zeros((), dtype=torch.float64), 0
    with torch.inference_mode():
        state = None
        for inputs, targets in Windows(streams, EVAL_WINDOW):
            logits, state = model(inputs, state)
            total_nats += F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1), reduction="sum").double()
            count += targets.numel()
    model.train(was_training)
    return total_nats.item() / count * LOG2E


def learning_rate(config: Config, step: int, progress: float) -> float:
    """Linear warm-up, then cosine decay from lr to lr * min_lr_ratio as progress goes 0 -> 1."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


def make_optimizer(model: CharLM, config: Config) -> torch.optim.AdamW:
    """Weight decay on matrices only; biases stay free. Fused AdamW where this torch has it."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    free = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": free, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=config.lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=config.lr)


@dataclass
class RunState:
    """Everything besides weights and optimizer that decides how a run continues."""

    step: int = 0
    elapsed: float = 0.0
    best_bpc: float | None = None
    val_bpc: float | None = None
    hidden: State | None = None


class StopFlag:
    """Ctrl-C / SIGTERM ask the loop to stop at the next step boundary; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self):
        try:
            previous = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: no signal handling
            yield self
            return
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


class Trainer:
    def __init__(self, config: Config, corpus: Corpus, sources: list[str], run_dir: Path):
        self.config, self.corpus, self.sources, self.run_dir = config, corpus, sources, run_dir
        self.vocab = Vocab.from_text(corpus.train_text + corpus.val_text)
        train_ids = self.vocab.encode(corpus.train_text)
        self.val_ids = self.vocab.encode(corpus.val_text)
        need = min_chars(config.batch_size, config.seq_len)
        if train_ids.numel() < need:
            total = math.ceil(need / (1.0 - config.val_fraction)) if corpus.name != "shakespeare" else need
            raise CharLMError(
                f"corpus {corpus.name!r} too short: {train_ids.numel()} training characters, need at least "
                f"{need} (--batch-size x (--seq-len + 1)), so a text of at least {total} characters; "
                "use a longer text or lower --batch-size / --seq-len"
            )
        if self.val_ids.numel() < 2:
            raise CharLMError(f"corpus {corpus.name!r}: validation split is empty; raise --val-fraction")
        self.windows = Windows(make_streams(train_ids, config.batch_size), config.seq_len)
        torch.manual_seed(config.random_seed)
        self.model = CharLM(config, self.vocab)
        self.optimizer = make_optimizer(self.model, config)
        self.run = RunState()

    # -- checkpoints -------------------------------------------------------------------------
    def payload(self) -> dict:
        run = self.run
        return {
            "config": self.config.to_dict(),
            "vocab": self.vocab.to_string(),
            "corpus": {"name": self.corpus.name, "sources": self.sources, "digest": self.corpus.digest},
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": run.step,
            "elapsed": run.elapsed,
            "best_bpc": run.best_bpc,
            "val_bpc": run.val_bpc,
            "data": {"position": self.windows.position, "epoch": self.windows.epoch},
            "hidden": run.hidden,
            "rng": torch.get_rng_state(),
        }

    def save(self, improved: bool) -> None:
        data = checkpoint.serialize(self.payload())
        checkpoint.write_atomic(self.run_dir / checkpoint.LATEST, data)
        if improved:
            checkpoint.write_atomic(self.run_dir / checkpoint.BEST, data)

    def restore(self, payload: dict) -> None:
        if payload["corpus"]["digest"] != self.corpus.digest:
            raise CharLMError(
                f"the corpus {payload['corpus']['sources'] or payload['corpus']['name']} changed since this run "
                "started; start a new run with --out NEW"
            )
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.windows.position, self.windows.epoch = payload["data"]["position"], payload["data"]["epoch"]
        self.run = RunState(
            step=payload["step"],
            elapsed=payload["elapsed"],
            best_bpc=payload["best_bpc"],
            val_bpc=payload["val_bpc"],
            hidden=payload["hidden"],
        )
        torch.set_rng_state(payload["rng"])

    # -- the loop ------------------------------------------------------------------------------
    def evaluate_and_save(self) -> None:
        run = self.run
        run.val_bpc = bits_per_char(self.model, self.val_ids, EVAL_CHARS)
        improved = run.best_bpc is None or run.val_bpc < run.best_bpc
        if improved:
            run.best_bpc = run.val_bpc
        self.save(improved)

    def fit(self) -> CharLM:
        config, run, model = self.config, self.run, self.model
        max_seconds = config.max_seconds()
        chars_per_step = config.batch_size * config.seq_len

        def progress() -> float:
            by_steps = run.step / config.max_steps if config.max_steps else 0.0
            by_time = run.elapsed / max_seconds if max_seconds else 0.0
            return max(by_steps, by_time)

        if not config.max_steps and not max_seconds:
            raise CharLMError("give the run a limit: --max-steps N or --max-time DURATION")
        model.train()
        state = run.hidden
        bar = tqdm(
            total=config.max_steps or None,
            initial=run.step,
            disable=config.quiet,
            unit="step",
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
        )
        loss_sum, loss_count = torch.zeros(()), 0
        last_refresh, refresh_step = time.perf_counter(), run.step
        started = time.perf_counter() - run.elapsed
        last_eval_step = run.step
        with StopFlag().installed() as stop:
            while progress() < 1.0 and not stop.requested:
                inputs, targets, fresh = self.windows.next()
                if fresh:
                    state = None
                for group in self.optimizer.param_groups:
                    group["lr"] = learning_rate(config, run.step, progress())
                logits, state = model(inputs, state)
                loss = F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
                self.optimizer.step()
                state = detach_state(state)
                loss_sum += loss.detach()
                loss_count += 1
                run.step += 1
                run.elapsed = time.perf_counter() - started
                if run.step % config.eval_every == 0:
                    run.hidden = state
                    self.evaluate_and_save()
                    last_eval_step = run.step
                now = time.perf_counter()
                if now - last_refresh >= 1.0 and not config.quiet:
                    rate = (run.step - refresh_step) * chars_per_step / (now - last_refresh)
                    if max_seconds:  # with a time budget the step total is an estimate, refreshed as we go
                        steps_left = (max_seconds - run.elapsed) * (run.step - refresh_step) / (now - last_refresh)
                        estimate = run.step + max(0, int(steps_left))
                        bar.total = min(estimate, config.max_steps) if config.max_steps else estimate
                    val = f"{run.val_bpc:.3f}" if run.val_bpc is not None else "-"
                    bar.set_postfix_str(
                        f"train {loss_sum.item() / loss_count * LOG2E:.3f} bpc, val {val} bpc, {rate:,.0f} chars/s",
                        refresh=False,
                    )
                    loss_sum.zero_()
                    loss_count, last_refresh, refresh_step = 0, now, run.step
                bar.update(1)
            run.hidden = state
            if run.step > last_eval_step:
                self.evaluate_and_save()
        bar.close()
        self.stopped_early = stop.requested
        return model


def run_folder(out: str | None, corpus_name: str) -> Path:
    """`--out NAME` -> checkpoints/NAME; a path with a folder part is used as given."""
    if out is None:
        return checkpoint.CHECKPOINT_ROOT / f"{corpus_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(out)
    return path if len(path.parts) > 1 or path.is_absolute() else checkpoint.CHECKPOINT_ROOT / path


def start(config: Config, sources: list[str], out: str | None = None) -> Trainer:
    """A new run: refuses to overwrite a folder that already holds one."""
    corpus = load_corpus(sources, config.val_fraction, config.encoding)
    run_dir = run_folder(out, corpus.name)
    if (run_dir / checkpoint.LATEST).exists():
        raise CharLMError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or pick another --out")
    # Absolute paths, so `--resume` finds the corpus from any working directory.
    return Trainer(config, corpus, [str(Path(s).resolve()) for s in sources], run_dir)


def resume(target: str | None, overrides: dict, sources: list[str] | None = None) -> Trainer:
    """Continue the run in folder `target` (None: the most recent). Only limits may change."""
    path = checkpoint.resolve(target, prefer=checkpoint.LATEST)
    payload = checkpoint.read_checkpoint(path)
    saved = Config.from_dict(payload["config"])
    config = Config.from_dict({**saved.to_dict(), **overrides})
    changed = saved.model_differences(config)
    if changed:
        raise CharLMError(f"{path.parent}: cannot resume with changed options ({'; '.join(changed)}); drop them")
    saved_sources = payload["corpus"]["sources"]
    if sources and list(sources) != saved_sources:
        raise CharLMError(f"{path.parent} trained on {saved_sources or 'the built-in corpus'}; resume without a corpus")
    corpus = load_corpus(saved_sources, config.val_fraction, config.encoding)
    trainer = Trainer(config, corpus, saved_sources, path.parent)
    trainer.restore(payload)
    return trainer
