"""What a run shows and records as it trains: the progress bar, `metrics.jsonl` and TensorBoard.

The loss is read from its tensor (a host sync) only when the bar redraws, about once a second, or a
row is written: every LOG_SECONDS and at every evaluation. `metrics.jsonl` is one JSON object a
line, append-only; a resumed run appends `{"resume": STEP}` and goes on from its checkpoint's step,
and rows an earlier process wrote past that step (after its last checkpoint, before it was killed)
are dropped on read; a new run starts it afresh. `charlm plot` and `charlm runs` read it.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch
from tqdm.auto import tqdm

from . import files
from .bars import redraw_seconds, sized
from .checkpoint import Progress
from .config import Config
from .errors import CharLMError
from .fields import said
from .run_lock import RunLock
from .runs import METRICS
from .scoring import LOG2E

LOG_SECONDS = 10.0  # a metrics.jsonl row at least this often, and at every evaluation
SPEED_SECONDS = 10.0  # the progress bar's speed (and a --max-time run's step total) averages about this long
MEASURE_SECONDS = 1.0  # the bar's speed is measured this often (a moving average, SPEED_SECONDS)


class BestEffortLog:
    """A run's log file that a full disk must not stop (checkpoints decide that): each entry is appended
    whole or not at all (`append_line`), and one that cannot be written is a warning, said once."""

    def __init__(self, path: Path, what: str = ""):
        self.path, self.what = Path(path), what  # what: "metrics", named in the warning
        self.warned = False

    def append(self, entry: str | bytes) -> None:
        """A line of text (`append_line`), or a binary record (`append_whole`)."""
        try:
            if isinstance(entry, str):
                append_line(self.path, entry)
            else:
                append_whole(self.path, entry)
        except OSError as e:
            self.warn(e)

    def warn(self, error: OSError) -> None:
        if not self.warned:
            message = f"warning: {files.cannot_write(self.path, error, self.what)}; training goes on"
            tqdm.write(message, file=sys.stderr)
            self.warned = True


class MetricsLog:
    """metrics.jsonl, best effort (`BestEffortLog`). But a run whose folder was removed (`lock` lost)
    stops: its rows would recreate the folder, or land in another run's that took its place."""

    def __init__(self, run_dir: Path, lock: RunLock | None = None):
        self.file = BestEffortLog(Path(run_dir) / METRICS, "metrics")
        self.lock = lock

    @property
    def path(self) -> Path:
        return self.file.path

    def append(self, row: dict) -> None:
        if self.lock:
            self.lock.check(row.get("step", row.get("resume", 0)))
        self.file.append(files.json_text(row) + "\n")

    def start_afresh(self) -> None:
        """A new run's log starts empty. Rows already there are a run's that stopped in this folder
        before its first checkpoint (a new run is refused where one was saved): not this run's."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as e:
            self.file.warn(e)


def append_line(path: Path, line: str) -> None:
    """Append `line` whole or not at all: a full disk cut a row short, and the next row, once there was
    room, was glued onto it and lost with it. A line a crash cut short (a power cut, a disk that failed
    mid-write) is ended first: a resumed run's `{"resume": STEP}` was glued onto one, and lost with it."""
    data = line.encode("utf-8")
    with open(path, "ab+", buffering=0) as f:
        start = f.seek(0, 2)
        if start and (f.seek(start - 1), f.read(1))[1] != b"\n":
            data = b"\n" + data
        write_whole(f, start, data)


def append_whole(path: Path, data: bytes) -> None:
    """Append `data` (a binary record) whole or not at all."""
    with open(path, "ab", buffering=0) as f:
        write_whole(f, f.seek(0, 2), data)


def write_whole(file: BinaryIO, start: int, data: bytes) -> None:
    """Write `data` at the end (`start`) of unbuffered `file`; a write that fails partway (a full disk)
    takes back what it wrote, and raises."""
    view = memoryview(data)
    try:
        while view:
            view = view[file.write(view) :]
    except OSError:
        file.truncate(start)
        raise


def tensorboard_writer() -> tuple:
    """The parts --tensorboard writes its events with, or the one line saying which extra installs them.
    A run asks first (`api.check_start`), before it probes sizes, reads its corpus or makes its folder."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.record_writer import RecordWriter
        from torch.utils.tensorboard.summary import scalar
    except ImportError:
        raise CharLMError(
            f"{said('tensorboard', True)} needs the tensorboard package: pip install 'charlm[tensorboard]'"
        ) from None
    return Event, RecordWriter, scalar


class TensorBoardLog:
    """--tensorboard's event file, best effort as metrics.jsonl is (`BestEffortLog`): each row's scalars
    appended whole, in this thread. torch's SummaryWriter wrote from a thread of its own: a full disk
    printed that thread's traceback, then stopped the run at its next row (`Error: file: No space left
    on device`), though checkpoints, not logs, decide that."""

    SCALARS = ("train_bpc", "val_bpc", "eval_also_bpc", "lr", "chars_per_s")

    def __init__(self, folder: Path):
        self.event, self.record_writer, self.scalar = tensorboard_writer()
        # A file per process, named as TensorBoard looks for them (SummaryWriter's names).
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.0"
        self.file = BestEffortLog(folder / name, "TensorBoard events")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self.file.warn(e)
        self.write([self.event(wall_time=time.time(), file_version="brain.Event:2")])

    def append(self, row: dict) -> None:
        """A metrics row's scalars, at its step, in one append."""
        now, step = time.time(), row["step"]
        self.write(
            [
                self.event(wall_time=now, step=step, summary=self.scalar(key, row[key]))
                for key in self.SCALARS
                if row.get(key) is not None
            ]
        )

    def write(self, events: list) -> None:
        records = io.BytesIO()
        writer = self.record_writer(records)
        for event in events:
            writer.write(event.SerializeToString())  # length, checksums and the event
        self.file.append(records.getvalue())


class SilentReporter:
    """What ranks other than 0 report: nothing."""

    def step(self, loss: torch.Tensor, seconds: float) -> None:
        pass

    def write_row(self, val_bpc: float | None = None, eval_also_bpc: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class StepBar(tqdm):
    """tqdm, its time left read at the speed the Reporter estimates and never past what the run's clock
    leaves of --max-time (`seconds_left`). tqdm's own rate counts from the bar's start, evaluations and
    saves included, and its last frame (after Ctrl-C too) reads it: `[00:23<05:30]` on a 2m run."""

    def __init__(
        self,
        *args,
        steps_per_second: float | None = None,
        seconds_left: Callable[[], float] | None = None,
        **kwargs,
    ) -> None:
        self.steps_per_second = steps_per_second  # before tqdm's first draw
        self.seconds_left = seconds_left
        super().__init__(*args, **sized(kwargs))

    @property
    def format_dict(self) -> dict:
        shown = super().format_dict
        if self.steps_per_second:
            shown["rate"] = self.steps_per_second
        if self.seconds_left:
            left, rate, total = max(self.seconds_left(), 0.0), shown.get("rate"), shown.get("total")
            if rate and total and shown["n"] < total:
                left = min(left, (total - shown["n"]) / rate)
            shown["remaining"] = self.format_interval(left)  # tqdm's format_meter takes it over its own
        return shown


class Reporter:
    """The progress bar and the metrics log of rank 0 (the only rank that reports); no bar `with_bar=False`
    (a resume that takes no step)."""

    def __init__(
        self,
        run_dir: Path,
        config: Config,
        progress: Progress,
        chars_per_token: float,
        device: torch.device,
        max_seconds: float | None,
        lock: RunLock | None = None,
        probed_chars_per_second: float | None = None,
        with_bar: bool = True,
    ):
        self.config, self.progress, self.max_seconds = config, progress, max_seconds
        # Shown per character whatever the tokenizer: a sentencepiece token spells several.
        self.chars_per_token = chars_per_token
        self.chars_per_step = config.batch_size * config.seq_len * chars_per_token
        self.log = MetricsLog(run_dir, lock)
        if progress.step:
            self.log.append({"resume": progress.step})
        else:
            self.log.start_afresh()
        self.tensorboard = TensorBoardLog(Path(run_dir) / "tensorboard") if config.tensorboard else None
        # Until the run has measured its own speed (a second in), a --max-time run's bar reads the size
        # probe's or, resumed, the run's average so far.
        if probed_chars_per_second:
            expected = probed_chars_per_second / self.chars_per_step
        else:
            expected = progress.step / progress.elapsed if progress.elapsed else None
        now = time.perf_counter()  # before the bar starts: its first redraw is due no later than its first draw
        # The run's clock, which counts every second, evaluations and saves too (trainer.fit's `started`,
        # a moment later: the time left shown is never more than the run's).
        self.clock_start = now - progress.elapsed
        self.pause_seconds, self.pauses = 0.0, 0  # the evaluations' (and their saves') seconds, and how many
        total = self.step_total(expected, now) if max_seconds and expected else config.max_steps or None
        self.bar = StepBar(
            total=total,
            initial=progress.step,
            disable=config.quiet or not with_bar,
            unit="step",
            dynamic_ncols=True,
            mininterval=redraw_seconds(),
            # Nothing to estimate a --max-time run's steps from (a fine-tuning run, or --hidden and
            # --dropout given: no size probe): drawn at once it would read `0/?`, with no time left,
            # until the first redraw; it waits for that redraw, which measures the speed.
            delay=0 if total else MEASURE_SECONDS,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
            steps_per_second=expected,
            seconds_left=self.seconds_left if max_seconds else None,
        )
        self.loss_sum, self.losses, self.train_bpc = torch.zeros((), device=device), 0, None
        self.bar_time, self.bar_step, self.steps_per_second = now, progress.step, None
        self.step_time = now  # when the last step was reported: what follows until a redraw is a pause
        self.row_time, self.row_tokens = now, progress.tokens
        self.row_seconds = 0.0  # seconds spent in training steps since the last row: its chars/s is over these
        self.eval_also_bpc: float | None = None  # the --eval-also text's latest score, shown beside val's

    def step(self, loss: torch.Tensor, seconds: float) -> None:
        """A training step done, its `loss` and the `seconds` it took (not counting evaluations,
        checkpoint writes or samples between steps)."""
        self.loss_sum += loss
        self.losses += 1
        self.row_seconds += seconds
        now = self.step_time = time.perf_counter()
        if now - self.row_time >= LOG_SECONDS:
            self.write_row()
        elif (now - self.bar_time >= MEASURE_SECONDS or self.past_total()) and not self.config.quiet:
            self.redraw(now)
        self.bar.update(1)  # after the redraw, so that a bar drawn for the first time has its total

    def seconds_left(self) -> float:
        """What the run's clock leaves of --max-time now."""
        return self.max_seconds - (time.perf_counter() - self.clock_start)

    def past_total(self) -> bool:
        """Whether this step passes the bar's estimated total (a run speeding up): tqdm would show
        `N/?`, without percentage or time left, until the estimate is redone."""
        return self.bar.total is not None and self.progress.step > self.bar.total

    def redraw(self, now: float, measure: bool = True) -> None:
        """Refresh the bar; `measure=False` right after an evaluation leaves its pause out of the speed,
        so that it does not show as a slump in chars/s and a jump in the time left. Restarting the
        measuring instead would, with evaluations less than a second apart, never measure the speed
        again: the bar would keep its first speed and time left however fast the run trains."""
        progress = self.progress
        if not measure:
            pause = max(now - self.step_time, 0.0)
            self.bar_time += pause  # the measuring goes on, the pause left out
            self.pause_seconds, self.pauses = self.pause_seconds + pause, self.pauses + 1
        if measure or self.steps_per_second is None:
            # A moving average over about SPEED_SECONDS: one slow second (a thread trial, another
            # program) would otherwise swing the step total and the time left of a --max-time run.
            seconds = max(now - self.bar_time, 1e-9)
            measured = (progress.step - self.bar_step) / seconds
            weight = min(seconds / SPEED_SECONDS, 1.0) if self.steps_per_second is not None else 1.0
            self.steps_per_second = (1 - weight) * (self.steps_per_second or 0.0) + weight * measured
            self.bar_time, self.bar_step = now, progress.step
        steps_per_second = self.steps_per_second
        self.bar.steps_per_second = self.run_steps_per_second(steps_per_second)
        if self.max_seconds:  # with a time budget the step total is an estimate, refreshed as we go
            self.bar.total = self.step_total(steps_per_second, now)
        train = self.mean_bpc() if self.losses else self.train_bpc
        shown = [f"train {train:.3f} bpc" if train is not None else "train -"]
        shown.append(f"val {progress.val_bpc:.3f} bpc" if progress.val_bpc is not None else "val -")
        if self.config.eval_also:  # what fine-tuning forgets, watched as it trains
            also = self.eval_also_bpc
            shown.append(f"eval-also {also:.3f} bpc" if also is not None else "eval-also -")
        shown.append(f"{steps_per_second * self.chars_per_step:,.0f} chars/s")
        self.bar.set_postfix_str(", ".join(shown), refresh=False)

    def run_steps_per_second(self, steps_per_second: float) -> float:
        """The steps the run makes a second, its evaluations' pauses included (those so far, on average,
        spread over the --eval-every steps between them): what the time left and a --max-time run's total
        go by. Training's speed alone made a run that spent half its time evaluating read `8% 50/600`, to
        end near 300."""
        every = self.config.eval_every
        pause_per_step = self.pause_seconds / self.pauses / every if self.pauses and every else 0.0
        return steps_per_second / (1.0 + steps_per_second * pause_per_step)

    def step_total(self, steps_per_second: float, now: float) -> int:
        """A --max-time run's steps: those done and those the run's clock leaves time for at this speed,
        evaluations included. The bar reads steps, so a run that speeds up gets a larger total and its
        percentage steps back a little: a total that may only shrink (a percentage that never falls) would
        read 100% before the end."""
        max_steps = self.config.max_steps
        seconds_left = self.max_seconds - (now - self.clock_start)
        estimate = self.progress.step + max(0, int(seconds_left * self.run_steps_per_second(steps_per_second)))
        return min(estimate, max_steps) if max_steps else estimate

    def mean_bpc(self) -> float:
        """Training bits per character since the last row (a host sync)."""
        return self.loss_sum.item() / self.losses * LOG2E / self.chars_per_token

    def write_row(self, val_bpc: float | None = None, eval_also_bpc: float | None = None) -> None:
        """One line of metrics.jsonl: the training bpc is the mean since the previous line; at an
        evaluation, the validation bpc and (with --eval-also) that text's bpc. Its chars/s is over the
        training steps' own seconds: over the wall time since the previous line, a row written after an
        evaluation and a checkpoint counted their seconds as training's (18,279 chars/s in a run training
        at 26,000)."""
        progress, now = self.progress, time.perf_counter()
        if self.losses:
            self.train_bpc = self.mean_bpc()
        row = {
            "step": progress.step,
            "elapsed": round(progress.elapsed, 3),
            "chars": round(progress.tokens * self.chars_per_token),
            "train_bpc": self.train_bpc,
            "val_bpc": val_bpc,
            "lr": progress.lr,
            # None where no step was trained (a resume that only scores the last step): 0 would read as a stalled run
            "chars_per_s": round((progress.tokens - self.row_tokens) * self.chars_per_token / self.row_seconds, 1)
            if self.row_seconds
            else None,
        }
        if eval_also_bpc is not None:
            row["eval_also_bpc"] = self.eval_also_bpc = eval_also_bpc
        self.log.append(row)
        if self.tensorboard:
            self.tensorboard.append(row)
        self.loss_sum.zero_()
        self.losses, self.row_time, self.row_tokens, self.row_seconds = 0, now, progress.tokens, 0.0
        if not self.config.quiet:
            self.redraw(now, measure=val_bpc is None)

    def close(self) -> None:
        self.bar.delay = 0  # a run over before the bar's first draw still shows where it ended
        self.bar.close()
