"""Training: TBPTT over the streams with AdamW, gradient clipping and a cosine schedule that decays
over the run's budget (steps or wall time), periodic validation in bits per character, checkpoints.

The hot loop does no host sync per step: the loss is summed as a tensor and read only when the
progress bar redraws or a metrics row is written. On a GPU, forward and loss run under autocast
(`--precision`); validation is always scored in fp32, so bpc figures compare across precisions.
Under torchrun the trainer is one rank of a data-parallel job: see `distributed.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import checkpoint, sizing
from .average import WeightAverage
from .batches import Windows, as_ids, make_streams, min_chars
from .config import Config
from .device import autocast, grad_scaler, resolve_device, resolve_precision, to_device
from .distributed import SINGLE, SYNC_EVERY, Ranks
from .errors import CharLMError
from .metrics import MetricsLog, write_run_info
from .model import CharLM, State, detach_state, inference, map_state
from .sampler import generate
from .tokens import TokenCorpus, load_corpus

EVAL_STREAMS = 16  # validation streams; each starts cold, so few and long is more faithful
EVAL_WINDOW = 250  # validation window: longer windows, same result, fewer calls
EVAL_TOKENS = 150_000  # validation during training scores at most this much of the split's start
NAN_CHECK_EVERY = 100  # steps between looks at the loss for NaN (each look is a host sync)
LOG_SECONDS = 10.0  # a metrics.jsonl row at least this often, and at every evaluation
SAMPLE_CHARS = 200  # length of the samples --sample-every shows
LOG2E = 1.0 / math.log(2.0)


def bits_per_char(model: CharLM, ids: torch.Tensor | np.ndarray, max_tokens: int | None = None) -> float:
    """Bits per character of `ids` under the model, the state carried across each stream: total nats
    over the characters the scored tokens spell (one each for a char vocabulary), so tokenizers compare."""
    if max_tokens is not None:
        ids = ids[: max_tokens + 1]
    streams = make_streams(as_ids(ids), max(1, min(EVAL_STREAMS, len(ids) // (EVAL_WINDOW + 1))))
    device = model.head.weight.device
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    chars = torch.zeros((), dtype=torch.int64, device=device)
    lengths = model.vocab.char_lengths().to(device)
    with inference(model):
        state = None
        for inputs, targets in Windows(streams, EVAL_WINDOW):
            inputs, targets = to_device(inputs, device), to_device(targets, device)
            logits, state = model(inputs, state)
            total_nats += F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1), reduction="sum").double()
            chars += lengths[targets].sum()
    return total_nats.item() / max(chars.item(), 1) * LOG2E


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
    elapsed: float = 0.0  # this process's training time (rank 0's is the one saved)
    clock: float = 0.0  # the training time all ranks agree on: the schedule's and the checkpoints' time
    best_bpc: float | None = None
    val_bpc: float | None = None
    hidden: State | None = None
    chars: int = 0  # training tokens seen (targets scored): characters, with a char vocabulary
    lr: float = 0.0


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
    def __init__(self, config: Config, corpus: TokenCorpus, sources: list[str], run_dir: Path, ranks: Ranks = SINGLE):
        self.config, self.corpus, self.sources, self.run_dir = config, corpus, sources, run_dir
        self.ranks, self.shard = ranks, ranks.shard(config.batch_size)
        self.device = resolve_device(config.device, ranks.local_rank, ranks.world)
        self.precision = resolve_precision(config.precision, self.device)
        self.vocab = corpus.vocab
        train_ids, self.val_ids = corpus.train_ids, corpus.val_ids
        need = min_chars(config.batch_size, config.seq_len)
        if len(train_ids) < need:
            total = math.ceil(need / (1.0 - config.val_fraction)) if corpus.name != "shakespeare" else need
            raise CharLMError(
                f"corpus {corpus.name!r} too short: {len(train_ids)} training characters, need at least "
                f"{need} (--batch-size x (--seq-len + 1)), so a text of at least {total} characters; "
                "use a longer text or lower --batch-size / --seq-len"
            )
        if len(self.val_ids) < 2:
            raise CharLMError(f"corpus {corpus.name!r}: validation split is empty; raise --val-fraction")
        # Every rank lays out the same global streams and takes its own rows of them.
        self.windows = Windows(make_streams(train_ids, config.batch_size)[self.shard], config.seq_len)
        torch.manual_seed(config.random_seed)
        self.model = CharLM(config, self.vocab).to(self.device)
        if ranks.rank:  # the same initial weights everywhere, but each rank its own dropout masks
            torch.manual_seed(config.random_seed + ranks.rank)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.net = DistributedDataParallel(self.model, device_ids) if ranks.active else self.model
        self.optimizer = make_optimizer(self.model, config)
        self.average = WeightAverage(self.model, config.weight_average) if config.weight_average else None
        self.scaler = grad_scaler(self.device, self.precision)
        self.run = RunState()
        self.stopped_early = False
        self.checkpoint_interval = config.checkpoint_interval()
        # set once a loss is NaN/inf; read at checks only. The loss is averaged over ranks, so all agree.
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self.saved_step: int | None = None
        self.saved_at = 0.0

    # -- checkpoints -------------------------------------------------------------------------
    def payload(self) -> dict:
        """The checkpoint's contents: every rank takes part (the hidden states and RNG states are
        gathered), rank 0 writes it. The hidden state has the single-process layout (layers, B, hidden)."""
        run = self.run
        return {
            "config": self.config.to_dict(),
            "vocab": self.vocab.to_dict(),
            "corpus": {"name": self.corpus.name, "sources": self.sources, "digest": self.corpus.key},
            "model": self.result.state_dict(),  # what a sampler loads
            "raw_model": self.model.state_dict() if self.average else None,  # what training goes on from
            "optimizer": self.optimizer.state_dict(),
            "step": run.step,
            "elapsed": run.elapsed,
            "chars": run.chars,
            "best_bpc": run.best_bpc,
            "val_bpc": run.val_bpc,
            "data": {"position": self.windows.position, "epoch": self.windows.epoch},
            "hidden": self.ranks.gather_state(run.hidden),
            "rng": torch.get_rng_state(),
            "rank_rngs": self.ranks.gather(torch.get_rng_state().unsqueeze(0)),
            "scaler": self.scaler.state_dict(),
        }

    def save(self, improved: bool = False) -> None:
        """Write latest.pt (and best.pt); a failed write keeps the old files and stops or warns."""
        if self.nonfinite.item():
            raise CharLMError(self.diverged_message())
        payload, error = self.payload(), None
        if self.ranks.leader:
            data = checkpoint.serialize(payload)
            try:
                checkpoint.write_atomic(self.run_dir / checkpoint.LATEST, data)
                if improved:
                    checkpoint.write_atomic(self.run_dir / checkpoint.BEST, data)
            except CharLMError as e:
                error = str(e)
        (failed,) = self.ranks.from_leader([float(error is not None)], self.device)
        if failed:
            error = error or "rank 0 could not write the checkpoint"
            if self.config.save_errors == "warn":
                if self.ranks.leader:
                    tqdm.write(f"warning: {error}; training goes on (--save-errors warn)", file=sys.stderr)
                self.saved_at = self.run.clock  # try again at the next checkpoint time, not every step
                return
            raise CharLMError(f"{error}; training stopped at step {self.run.step}")
        self.saved_step, self.saved_at = self.run.step, self.run.clock

    def diverged_message(self) -> str:
        lower = f"{self.config.lr / 4:.2g}"
        if self.saved_step is None:
            return f"training diverged (the loss became NaN or infinite); start again with a lower --lr, e.g. {lower}"
        return (
            f"training diverged (the loss became NaN or infinite after step {self.saved_step}); the last good "
            f"checkpoint is kept: resume it with a lower learning rate: "
            f"charlm train --resume {self.run_dir} --lr {lower}"
        )

    def restore(self, payload: dict) -> None:
        if payload["corpus"]["digest"] != self.corpus.key:
            raise CharLMError(
                f"the corpus {payload['corpus']['sources'] or payload['corpus']['name']} changed since this run "
                "started; start a new run with --out NEW"
            )
        self.model.load_state_dict(payload.get("raw_model") or payload["model"])
        if self.average:  # a run saved without an average starts one from its weights
            self.average.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if payload.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(payload["scaler"])
        self.windows.position, self.windows.epoch = payload["data"]["position"], payload["data"]["epoch"]
        self.run = RunState(
            step=payload["step"],
            elapsed=payload["elapsed"],
            clock=payload["elapsed"],
            chars=payload["chars"],
            best_bpc=payload["best_bpc"],
            val_bpc=payload["val_bpc"],
            hidden=map_state(lambda s: s[:, self.shard].contiguous().to(self.device), payload["hidden"]),
        )
        # Dropout continues exactly under the same world size; under another one each rank reseeds.
        rngs = payload.get("rank_rngs")
        if rngs is not None and len(rngs) == self.ranks.world:
            torch.set_rng_state(rngs[self.ranks.rank])
        elif self.ranks.leader:
            torch.set_rng_state(payload["rng"])
        else:
            torch.manual_seed(self.config.random_seed + self.ranks.rank + payload["step"])
        self.saved_step, self.saved_at = payload["step"], payload["elapsed"]

    # -- the loop ------------------------------------------------------------------------------
    def evaluate_and_save(self) -> None:
        """Rank 0 scores the validation text on the unwrapped model; the other ranks wait in save()."""
        run, improved = self.run, False
        if self.ranks.leader:
            run.val_bpc = bits_per_char(self.result, self.val_ids, EVAL_TOKENS)
            improved = run.best_bpc is None or run.val_bpc < run.best_bpc
            if improved:
                run.best_bpc = run.val_bpc
        self.save(improved)
        if not self.ranks.leader:
            return
        self.reporter.write_row(val_bpc=run.val_bpc)
        evaluations = -(-run.step // self.config.eval_every)
        if self.config.sample_every and evaluations % self.config.sample_every == 0:
            self.show_sample()

    def show_sample(self) -> None:
        """A short sample under the progress bar and in samples.txt. It draws from its own generator,
        so the training run is the same with or without samples."""
        text = generate(self.result, "", length=SAMPLE_CHARS, temperature=0.8, random_seed=self.run.step)[0]
        block = f"--- sample at step {self.run.step} (val {self.run.val_bpc:.3f} bpc) ---\n{text.strip()}\n"
        tqdm.write(block)
        with open(self.run_dir / "samples.txt", "a", encoding="utf-8") as f:
            f.write(block + "\n")

    def describe(self) -> dict:
        """What `charlm runs` shows about this run (run.json)."""
        return {
            "corpus": self.corpus.name,
            "sources": self.sources,
            "parameters": self.model.num_parameters(),
            "vocabulary": len(self.vocab),
            "config": self.config.to_dict(),
        }

    def fit(self) -> CharLM:
        """Train until the budget is spent or a signal asks to stop; checkpoints on the way."""
        config, run = self.config, self.run
        max_seconds = config.max_seconds()
        if not config.max_steps and not max_seconds:
            raise CharLMError("give the run a limit: --max-steps N or --max-time DURATION")

        def progress() -> float:
            """How much of the budget is spent: steps or time, whichever runs out first."""
            by_steps = run.step / config.max_steps if config.max_steps else 0.0
            by_time = run.clock / max_seconds if max_seconds else 0.0
            return max(by_steps, by_time)

        with contextlib.ExitStack() as stack:
            if self.ranks.leader:
                stack.enter_context(checkpoint.RunLock(self.run_dir))
                write_run_info(self.run_dir, self.describe())
            stop = stack.enter_context(StopFlag().installed())
            if config.detect_anomaly:
                stack.enter_context(torch.autograd.detect_anomaly())
            reporter = Reporter(self, max_seconds) if self.ranks.leader else SilentReporter()
            self.reporter = stack.enter_context(contextlib.closing(reporter))
            self.model.train()
            started, stopping = time.perf_counter() - run.elapsed, False
            while (spent := progress()) < 1.0 and not stopping:
                loss = self.train_step(spent)
                stopping = self.keep_time(time.perf_counter() - started, stop.requested)
                self.checkpoint_if_due()
                self.reporter.step(loss)
            stopping = self.keep_time(time.perf_counter() - started, stop.requested, now=True) or stopping
            if self.saved_step != run.step:
                self.evaluate_and_save()
        self.stopped_early = stopping
        return self.result

    @property
    def result(self) -> CharLM:
        """The weights that are scored, saved for sampling and returned: the average, if kept."""
        return self.average.model if self.average else self.model

    def keep_time(self, elapsed: float, stop_requested: bool, now: bool = False) -> bool:
        """Set the run's clock and say whether to stop. One process reads its own clock every step;
        under torchrun every rank takes rank 0's clock and stop request, broadcast every SYNC_EVERY
        steps, so the schedule, the checkpoint times and the stop step agree everywhere."""
        run = self.run
        run.elapsed = elapsed
        if not self.ranks.active:
            run.clock = elapsed
            return stop_requested
        if not now and run.step % SYNC_EVERY:
            return False
        run.clock, stop = self.ranks.from_leader([elapsed, float(stop_requested)], self.device)
        return bool(stop)

    def train_step(self, progress: float) -> torch.Tensor:
        """One TBPTT step on the next window of every stream; returns the loss (not synced to host)."""
        run, config = self.run, self.config
        inputs, targets, fresh = self.windows.next()
        inputs, targets = to_device(inputs, self.device), to_device(targets, self.device)
        run.lr = learning_rate(config, run.step, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = run.lr
        with autocast(self.device, self.precision):
            logits, state = self.net(inputs, None if fresh else run.hidden)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # DDP averages the gradients over ranks here
        if config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip, foreach=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        run.hidden = detach_state(state)
        run.step += 1
        if self.average:
            self.average.update(run.step)
        run.chars += targets.numel() * self.ranks.world
        loss = self.ranks.mean(loss.detach().float())
        self.nonfinite |= ~torch.isfinite(loss)
        return loss

    def checkpoint_if_due(self) -> None:
        run = self.run
        every_steps, every_seconds = self.checkpoint_interval
        if run.step % self.config.eval_every == 0:
            self.evaluate_and_save()
        elif (every_steps and run.step % every_steps == 0) or (
            every_seconds and run.clock - self.saved_at >= every_seconds
        ):
            self.save()
        elif run.step % NAN_CHECK_EVERY == 0 and self.nonfinite.item():
            raise CharLMError(self.diverged_message())


class SilentReporter:
    """What ranks other than 0 report: nothing."""

    def step(self, loss: torch.Tensor) -> None:
        pass

    def write_row(self, val_bpc: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class Reporter:
    """The progress bar and the metrics log. The loss is read from the tensor (a host sync) only when
    the bar redraws, about once a second, or a row is written: every LOG_SECONDS and at evaluations."""

    def __init__(self, trainer: Trainer, max_seconds: float | None):
        self.config, self.run, self.max_seconds = trainer.config, trainer.run, max_seconds
        # Shown per character whatever the tokenizer: a sentencepiece token spells several.
        self.chars_per_token = trainer.corpus.chars_per_token
        self.log = MetricsLog(trainer.run_dir)
        if self.run.step:
            self.log.append({"resume": self.run.step})
        self.tensorboard = None
        if self.config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise CharLMError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.tensorboard = SummaryWriter(str(trainer.run_dir / "tensorboard"))
        self.bar = tqdm(
            total=self.config.max_steps or None,
            initial=self.run.step,
            disable=self.config.quiet,
            unit="step",
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
        )
        self.loss_sum, self.losses, self.train_bpc = torch.zeros((), device=trainer.device), 0, None
        now = time.perf_counter()
        self.bar_time, self.bar_step, self.steps_per_second = now, self.run.step, None
        self.row_time, self.row_chars = now, self.run.chars

    def step(self, loss: torch.Tensor) -> None:
        self.bar.update(1)
        self.loss_sum += loss
        self.losses += 1
        now = time.perf_counter()
        if now - self.row_time >= LOG_SECONDS:
            self.write_row()
        elif now - self.bar_time >= 1.0 and not self.config.quiet:
            self.redraw(now)

    def redraw(self, now: float, measure: bool = True) -> None:
        """Refresh the bar; `measure=False` right after an evaluation keeps the previous speed, so the
        pause does not show as a slump in chars/s and a jump in the time left."""
        run, config = self.run, self.config
        if measure or self.steps_per_second is None:
            self.steps_per_second = (run.step - self.bar_step) / max(now - self.bar_time, 1e-9)
        steps_per_second = self.steps_per_second
        self.bar_time, self.bar_step = now, run.step
        if self.max_seconds:  # with a time budget the step total is an estimate, refreshed as we go
            estimate = run.step + max(0, int((self.max_seconds - run.elapsed) * steps_per_second))
            self.bar.total = min(estimate, config.max_steps) if config.max_steps else estimate
        train = self.mean_bpc() if self.losses else self.train_bpc
        shown = [f"train {train:.3f} bpc" if train is not None else "train -"]
        shown.append(f"val {run.val_bpc:.3f} bpc" if run.val_bpc is not None else "val -")
        shown.append(f"{steps_per_second * config.batch_size * config.seq_len * self.chars_per_token:,.0f} chars/s")
        self.bar.set_postfix_str(", ".join(shown), refresh=False)

    def mean_bpc(self) -> float:
        """Training bits per character since the last row (a host sync)."""
        return self.loss_sum.item() / self.losses * LOG2E / self.chars_per_token

    def write_row(self, val_bpc: float | None = None) -> None:
        """One line of metrics.jsonl: the training bpc is the mean since the previous line."""
        run, now = self.run, time.perf_counter()
        if self.losses:
            self.train_bpc = self.mean_bpc()
        row = {
            "step": run.step,
            "elapsed": round(run.elapsed, 3),
            "chars": round(run.chars * self.chars_per_token),
            "train_bpc": self.train_bpc,
            "val_bpc": val_bpc,
            "lr": run.lr,
            "chars_per_s": round(
                (run.chars - self.row_chars) * self.chars_per_token / max(now - self.row_time, 1e-9), 1
            ),
        }
        self.log.append(row)
        if self.tensorboard:
            for key in ("train_bpc", "val_bpc", "lr", "chars_per_s"):
                if row[key] is not None:
                    self.tensorboard.add_scalar(key, row[key], run.step)
        self.loss_sum.zero_()
        self.losses, self.row_time, self.row_chars = 0, now, run.chars
        if not self.config.quiet:
            self.redraw(now, measure=val_bpc is None)

    def close(self) -> None:
        self.bar.close()
        if self.tensorboard:
            self.tensorboard.close()


def run_folder(out: str | None, corpus_name: str) -> Path:
    """`--out NAME` -> checkpoints/NAME; a path with a folder part is used as given."""
    if out is None:
        return checkpoint.CHECKPOINT_ROOT / f"{corpus_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(out)
    return path if len(path.parts) > 1 or path.is_absolute() else checkpoint.CHECKPOINT_ROOT / path


PROBE_WARMUP, PROBE_STEPS = 2, 4  # untimed and timed steps per size tried by fit_hidden


def probe_speed(config: Config, corpus: TokenCorpus, hidden: int) -> float:
    """Training characters per second of a `hidden`-sized model on the corpus's own batches."""
    trial = Trainer(dataclasses.replace(config, hidden=hidden), corpus, [], Path("unused"))
    for _ in range(PROBE_WARMUP):
        trial.train_step(0.0)
    started = time.perf_counter()
    for _ in range(PROBE_STEPS):
        trial.train_step(0.0)
    return PROBE_STEPS * config.batch_size * config.seq_len * corpus.chars_per_token / (time.perf_counter() - started)


def fit_hidden(config: Config, corpus: TokenCorpus) -> int:
    """The hidden size for a run whose user left it unset: fitted to its time budget (sizing.py)."""
    seconds = config.max_seconds()
    if seconds is None:
        return sizing.NO_BUDGET_HIDDEN
    hidden, measured = sizing.choose_hidden(
        seconds,
        lambda h: probe_speed(config, corpus, h),
        lambda h: sizing.trained_parameters(config.cell, config.layers, h, len(corpus.vocab)),
    )
    if not config.quiet:
        tqdm.write(sizing.describe(hidden, measured), file=sys.stderr)
    return hidden


def start(config: Config, sources: list[str], out: str | None = None, ranks: Ranks = SINGLE) -> Trainer:
    """A new run: refuses to overwrite a folder that already holds one."""
    with ranks.leader_first():  # one process prepares the corpus cache, the others read it
        corpus = load_corpus(sources, config, quiet=config.quiet or not ranks.leader)
    if config.hidden is None:  # every rank must build the same model: rank 0 measures, the others take its size
        hidden = fit_hidden(config, corpus) if ranks.leader else 0
        (hidden,) = ranks.from_leader([hidden], resolve_device(config.device, ranks.local_rank, ranks.world))
        config = dataclasses.replace(config, hidden=int(hidden))
    run_dir = run_folder(out, corpus.name)
    if (run_dir / checkpoint.LATEST).exists():
        raise CharLMError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or pick another --out")
    # Absolute paths, so `--resume` finds the corpus from any working directory.
    sources = [str(Path(s).resolve()) if Path(s).exists() else s for s in sources]
    return Trainer(config, corpus, sources, run_dir, ranks)


def resume(target: str | None, overrides: dict, sources: list[str] | None = None, ranks: Ranks = SINGLE) -> Trainer:
    """Continue the run in folder `target` (None: the most recent). Only `config.RESUMABLE` options may change;
    the world size may: the checkpoint holds every stream's state, re-sharded here."""
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
    with ranks.leader_first():
        corpus = load_corpus(saved_sources, config, quiet=config.quiet or not ranks.leader)
    trainer = Trainer(config, corpus, saved_sources, path.parent, ranks)
    trainer.restore(payload)
    return trainer
