"""Training: TBPTT over the streams with AdamW, gradient clipping and a cosine schedule that decays
over the run's budget (steps or wall time), periodic validation in bits per character, checkpoints.

The hot loop does no host sync per step: the loss is summed as a tensor and read only when the
progress bar redraws or a metrics row is written. Forward and loss run under autocast
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
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import runs, threads
from .average import WeightAverage
from .batches import Windows, make_streams, min_chars
from .checkpoint import Base, Checkpoint, Progress, TrainingState, save
from .config import Config
from .corpus import read_texts
from .device import (
    accelerator_rng_state,
    autocast,
    grad_scaler,
    resolve_device,
    resolve_precision,
    set_accelerator_rng_state,
    to_device,
)
from .distributed import SINGLE, SYNC_EVERY, Ranks
from .errors import CharLMError
from .evaluate import bits_per_char
from .model import CharLM, ModelConfig, State, detach_state, head_cutoffs, map_state
from .optim import learning_rate, make_optimizer
from .reporting import Reporter, SilentReporter
from .sampler import generate
from .tokens import TokenCorpus

EVAL_TOKENS = 150_000  # validation during training scores at most this much of the split's start
EVAL_ALSO_TOKENS = 50_000  # and of the --eval-also text, which a fine-tuning run scores every few seconds
NAN_CHECK_EVERY = 100  # steps between looks at the loss for NaN (each look is a host sync)
SETTLED = (30.0, 0.1)  # the speed is compared with the size probe's once this many seconds, or this share
SLOW_SHARE = 0.7  # of the budget, have passed; below this share of the probe's speed the run says so
SAMPLE_CHARS = 200  # length of the samples shown while training (--sample-every) and at its end (cli.py)


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
    """A model, its optimizer and the corpus's windows: `train_step` advances them one window, `fit`
    runs the loop in the run folder until the budget is spent. (A trainer without a run folder only
    steps: the size probe's.) The model is new, built from the config, unless one is given: a
    fine-tuning run's, grown from its `base`, or a resumed run's."""

    def __init__(
        self,
        config: Config,
        corpus: TokenCorpus,
        ranks: Ranks = SINGLE,
        run_dir: Path | None = None,
        model: CharLM | None = None,
        base: Base | None = None,
        probed_chars_per_second: float | None = None,
    ):
        if config.eval_also:  # absolute, so a resumed run finds it from any working directory
            config = dataclasses.replace(config, eval_also=str(Path(config.eval_also).resolve()))
        if config.hidden is None:
            raise CharLMError("the hidden size is not set; give --hidden or let sizing.fit_hidden choose it")
        # Unset only for the size probe's throwaway trainers: api.start_run fits both before training.
        if config.dropout is None or config.eval_every is None:
            speed = probed_chars_per_second and probed_chars_per_second / corpus.chars_per_token
            config = config.fitted(len(corpus.train_ids), config.planned_tokens(speed))
        self.config, self.corpus = config, corpus
        self.ranks, self.shard = ranks, ranks.shard(config.batch_size)
        self.device = resolve_device(config.device, ranks.local_rank, ranks.world)
        self.precision = resolve_precision(config.precision, self.device)
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
        self.model = (model or self.new_model()).to(self.device)
        self.base = base
        self.eval_also_ids = self.read_eval_also() if ranks.leader else None
        if ranks.rank:  # the same initial weights everywhere, but each rank its own dropout masks
            torch.manual_seed(config.random_seed + ranks.rank)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # An adaptive head leaves a rare cluster without gradient in a step whose targets are all frequent.
        unused = bool(self.model.config.head_cutoffs)
        self.net = (
            DistributedDataParallel(self.model, device_ids, find_unused_parameters=unused)
            if ranks.active
            else self.model
        )
        self.optimizer = make_optimizer(self.model, config)
        self.average = WeightAverage(self.model, config.weight_average) if config.weight_average else None
        self.scaler = grad_scaler(self.device, self.precision)
        self.progress = Progress()
        self.clock = 0.0  # the training time all ranks agree on (rank 0's, broadcast)
        self.hidden: State | None = None  # this rank's streams' state, carried from window to window
        self.stopped_early = False
        self.checkpoint_interval = config.checkpoint_interval()
        # set once a loss is NaN/inf; read at checks only. The loss is averaged over ranks, so all agree.
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self.saved_step: int | None = None  # the step of the last checkpoint written
        self.save_error: str | None = None  # why the last checkpoint could not be written (--save-errors warn)
        self.saved_at = 0.0
        self.run_dir = run_dir
        self.probed_chars_per_second = probed_chars_per_second  # what the size probe measured for this size
        self.probe_check: tuple[float, float, int] | None = None  # (when, elapsed and chars at the start)
        self.reporter: Reporter | SilentReporter = SilentReporter()

    def new_model(self) -> CharLM:
        """A model of the config's architecture over the corpus's vocabulary, its head fitted to the
        training text's character frequencies."""
        config, corpus = self.config, self.corpus
        counts = torch.from_numpy(corpus.train_counts)
        cutoffs = head_cutoffs(config.head, counts)
        model_config = ModelConfig(config.cell, config.layers, config.hidden, config.dropout, len(counts), cutoffs)
        model = CharLM(model_config, corpus.vocab)
        if cutoffs:
            model.head.set_frequencies(counts)
        return model

    def read_eval_also(self) -> torch.Tensor | None:
        """The ids of the --eval-also text, read and checked before training starts."""
        path = self.config.eval_also
        if not path:
            return None
        text = read_texts([path], self.config.encoding, self.corpus.vocab.normalize)
        ids = self.corpus.vocab.encode(text, what=f"--eval-also {path}")
        if len(ids) < 2:
            raise CharLMError(f"--eval-also {path}: need at least 2 characters to score")
        return ids

    @property
    def result(self) -> CharLM:
        """The weights that are scored, saved for sampling and returned: the average, if kept."""
        return self.average.model if self.average else self.model

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """Every rank takes part (the hidden states and RNG states are gathered); rank 0 writes it."""
        device_rng = accelerator_rng_state(self.device)
        training = TrainingState(
            optimizer=self.optimizer.state_dict(),
            position=self.windows.position,
            epoch=self.windows.epoch,
            hidden=self.ranks.gather_state(self.hidden),
            rng=torch.get_rng_state(),
            rank_rngs=self.ranks.gather(torch.get_rng_state().unsqueeze(0)),
            scaler=self.scaler.state_dict(),
            raw_weights=self.model.state_dict() if self.average else None,
            device_rngs=None if device_rng is None else self.ranks.gather(device_rng.unsqueeze(0)),
        )
        return Checkpoint(
            model_config=self.model.config,
            vocab=self.corpus.vocab,
            weights=self.result.state_dict(),
            config=self.config,
            corpus={"name": self.corpus.name, "sources": self.corpus.sources, "digest": self.corpus.key},
            progress=self.progress,
            device=str(self.device),
            precision=self.precision,
            training=training,
            base=self.base,
        )

    def save(self, improved: bool = False) -> None:
        """Write latest.pt (and best.pt); a failed write keeps the old files and stops or warns."""
        if self.nonfinite.item():
            raise CharLMError(self.diverged_message())
        checkpoint, error = self.checkpoint(), None
        if self.ranks.leader:
            names = [runs.LATEST, runs.BEST] if improved else [runs.LATEST]
            try:
                save(checkpoint, [self.run_dir / name for name in names])
            except CharLMError as e:
                error = str(e)
        (failed,) = self.ranks.from_leader([float(error is not None)], self.device)
        if failed:
            error = error or "rank 0 could not write the checkpoint"
            if self.config.save_errors == "warn":
                if self.ranks.leader:
                    tqdm.write(f"warning: {error}; training goes on (--save-errors warn)", file=sys.stderr)
                self.saved_at, self.save_error = self.clock, error  # try again at the next checkpoint time
                return
            raise CharLMError(f"{error}; training stopped at step {self.progress.step}")
        self.saved_step, self.saved_at, self.save_error = self.progress.step, self.clock, None

    def diverged_message(self) -> str:
        lower = f"{self.config.lr / 4:.2g}"
        if self.saved_step is None:
            return f"training diverged (the loss became NaN or infinite); start again with a lower --lr, e.g. {lower}"
        return (
            f"training diverged (the loss became NaN or infinite after step {self.saved_step}); the last good "
            f"checkpoint is kept: resume it with a lower learning rate: "
            f"charlm train --resume {self.run_dir} --lr {lower}"
        )

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from a checkpoint of this run: weights, optimizer, data position, states, RNGs."""
        if checkpoint.corpus["digest"] != self.corpus.key:
            raise CharLMError(
                f"the corpus {checkpoint.corpus['sources'] or checkpoint.corpus['name']} changed since this run "
                "started; start a new run with --out NEW"
            )
        training = checkpoint.training
        self.model.load_state_dict(training.raw_weights or checkpoint.weights)
        if self.average:  # a run saved without an average starts one from its weights
            self.average.model.load_state_dict(checkpoint.weights)
        self.optimizer.load_state_dict(training.optimizer)
        if training.scaler and self.scaler.is_enabled():
            self.scaler.load_state_dict(training.scaler)
        self.windows.position, self.windows.epoch = training.position, training.epoch
        self.progress = checkpoint.progress
        self.clock = checkpoint.progress.elapsed
        self.hidden = map_state(lambda s: s[:, self.shard].contiguous().to(self.device), training.hidden)
        # Dropout continues exactly under the same world size (on a GPU, from the GPU's generator);
        # under another world size, or on a device the run did not save, each rank reseeds.
        same_world = training.rank_rngs is not None and len(training.rank_rngs) == self.ranks.world
        if same_world:
            torch.set_rng_state(training.rank_rngs[self.ranks.rank].clone())  # a row view at an offset crashes torch
        elif self.ranks.leader:
            torch.set_rng_state(training.rng)
        else:
            torch.manual_seed(self.config.random_seed + self.ranks.rank + checkpoint.progress.step)
        if training.device_rngs is not None and same_world and accelerator_rng_state(self.device) is not None:
            set_accelerator_rng_state(training.device_rngs[self.ranks.rank].clone(), self.device)
        elif self.device.type == "cuda":
            torch.cuda.manual_seed(self.config.random_seed + self.ranks.rank + checkpoint.progress.step)
        self.saved_step, self.saved_at = checkpoint.progress.step, checkpoint.progress.elapsed

    # -- the loop ------------------------------------------------------------------------------
    def evaluate_and_save(self) -> None:
        """Rank 0 scores the validation text on the unwrapped model; the other ranks wait in save()."""
        progress, improved, also = self.progress, False, None
        if self.ranks.leader:
            progress.val_bpc = bits_per_char(self.result, self.val_ids, EVAL_TOKENS)
            if self.eval_also_ids is not None:
                also = bits_per_char(self.result, self.eval_also_ids, EVAL_ALSO_TOKENS)
            improved = progress.best_bpc is None or progress.val_bpc < progress.best_bpc
            if improved:
                progress.best_bpc = progress.val_bpc
        progress.val_step = progress.step
        self.save(improved)
        if not self.ranks.leader:
            return
        self.reporter.write_row(val_bpc=progress.val_bpc, eval_also_bpc=also)
        evaluations = -(-progress.step // self.config.eval_every)
        if self.config.sample_every and evaluations % self.config.sample_every == 0:
            self.show_sample()

    def show_sample(self) -> None:
        """A short sample under the progress bar and in samples.txt. It draws from its own generator,
        so the training run is the same with or without samples."""
        text = generate(self.result, "", length=SAMPLE_CHARS, temperature=0.8, random_seed=self.progress.step)[0]
        block = f"--- sample at step {self.progress.step} (val {self.progress.val_bpc:.3f} bpc) ---\n{text.strip()}\n"
        tqdm.write(block)
        with open(self.run_dir / runs.SAMPLES, "a", encoding="utf-8") as f:
            f.write(block + "\n")

    def describe(self) -> dict:
        """What `charlm runs` shows about this run (run.json)."""
        return {
            "corpus": self.corpus.name,
            "sources": self.corpus.sources,
            "parameters": self.model.num_parameters(),
            "vocabulary": len(self.corpus.vocab),
            "config": self.config.to_dict(),
            **({"base": dataclasses.asdict(self.base)} if self.base else {}),
        }

    def fit(self) -> CharLM:
        """Train until the budget is spent or a signal asks to stop; checkpoints on the way."""
        config, progress = self.config, self.progress
        config.require_limit()
        max_seconds = config.max_seconds()

        def spent() -> float:
            """How much of the budget is spent: steps or time, whichever runs out first."""
            by_steps = progress.step / config.max_steps if config.max_steps else 0.0
            by_time = self.clock / max_seconds if max_seconds else 0.0
            return max(by_steps, by_time)

        with contextlib.ExitStack() as stack:
            if self.ranks.leader:
                stack.enter_context(runs.RunLock(self.run_dir))
                runs.write_run_info(self.run_dir, self.describe())
                reporter = Reporter(
                    self.run_dir, config, progress, self.corpus.chars_per_token, self.device, max_seconds
                )
                self.reporter = stack.enter_context(contextlib.closing(reporter))
            stop = stack.enter_context(StopFlag().installed())
            if config.detect_anomaly:
                stack.enter_context(torch.autograd.detect_anomaly())
            self.model.train()
            threads.configure(config.threads, self.device)
            tokens_per_step = self.windows.streams.shape[0] * config.seq_len
            started, stopping = time.perf_counter() - progress.elapsed, False
            if max_seconds:  # the speed is compared with the size probe's once the run has settled
                settled = max(SETTLED[0], SETTLED[1] * max_seconds)
                self.probe_check = (progress.elapsed + settled, progress.elapsed, progress.chars)
            while (share := spent()) < 1.0 and not stopping:
                stepped = time.perf_counter()
                loss = self.train_step(share)
                threads.record(time.perf_counter() - stepped, tokens_per_step)
                stopping = self.keep_time(time.perf_counter() - started, stop.requested)
                self.checkpoint_if_due()
                self.reporter.step(loss)
                self.compare_with_probe()
            stopping = self.keep_time(time.perf_counter() - started, stop.requested, now=True) or stopping
            if progress.val_step != progress.step:  # the final weights are always scored (and best.pt kept)
                self.evaluate_and_save()
        self.stopped_early = stopping
        return self.result

    def compare_with_probe(self) -> None:
        """Once, when the run has settled: say so if it trains well below the speed its size was chosen
        for (the machine got busier after the probe; the model will see fewer characters per parameter
        than planned)."""
        if self.probe_check is None or self.progress.elapsed < self.probe_check[0]:
            return
        _, since_elapsed, since_chars = self.probe_check
        self.probe_check = None
        if not self.probed_chars_per_second or not self.ranks.leader:
            return
        seconds, chars = self.progress.elapsed - since_elapsed, self.progress.chars - since_chars
        speed = chars * self.corpus.chars_per_token / max(seconds, 1e-9)
        if speed < SLOW_SHARE * self.probed_chars_per_second:
            tqdm.write(
                f"warning: training at {speed:,.0f} chars/s, {speed / self.probed_chars_per_second:.0%} of the "
                f"{self.probed_chars_per_second:,.0f} the size probe measured for --hidden {self.config.hidden}: "
                "the machine is busier than when the run started, so the model will see fewer characters per "
                "parameter than the size rule planned (give --hidden to choose yourself)",
                file=sys.stderr,
            )

    def keep_time(self, elapsed: float, stop_requested: bool, now: bool = False) -> bool:
        """Set the run's clock and say whether to stop. One process reads its own clock every step;
        under torchrun every rank takes rank 0's clock and stop request, broadcast every SYNC_EVERY
        steps, so the schedule, the checkpoint times and the stop step agree everywhere."""
        self.progress.elapsed = elapsed
        if not self.ranks.active:
            self.clock = elapsed
            return stop_requested
        if not now and self.progress.step % SYNC_EVERY:
            return False
        self.clock, stop = self.ranks.from_leader([elapsed, float(stop_requested)], self.device)
        return bool(stop)

    def train_step(self, spent: float) -> torch.Tensor:
        """One TBPTT step on the next window of every stream; returns the loss (not synced to host).
        `spent` is the share of the budget used so far, which sets the learning rate."""
        progress, config = self.progress, self.config
        inputs, targets, fresh = self.windows.next()
        inputs, targets = to_device(inputs, self.device), to_device(targets, self.device)
        progress.lr = learning_rate(config, progress.step, spent)
        for group in self.optimizer.param_groups:
            group["lr"] = progress.lr
        with autocast(self.device, self.precision):
            nats, state = self.net(inputs, None if fresh else self.hidden, targets)
            loss = nats.mean()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # DDP averages the gradients over ranks here
        if config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip, foreach=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.hidden = detach_state(state)
        progress.step += 1
        if self.average:
            self.average.update(progress.step)
        progress.chars += targets.numel() * self.ranks.world
        loss = self.ranks.mean(loss.detach().float())
        self.nonfinite |= ~torch.isfinite(loss)
        return loss

    def checkpoint_if_due(self) -> None:
        step = self.progress.step
        every_steps, every_seconds = self.checkpoint_interval
        if step % self.config.eval_every == 0:
            self.evaluate_and_save()
        elif (every_steps and step % every_steps == 0) or (
            every_seconds and self.clock - self.saved_at >= every_seconds
        ):
            self.save()
        elif step % NAN_CHECK_EVERY == 0 and self.nonfinite.item():
            raise CharLMError(self.diverged_message())
