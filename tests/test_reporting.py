"""What a run records: metrics.jsonl rows across resumes, TensorBoard."""

import fcntl
import io
import itertools
import json
import os
import pty
import re
import struct
import sys
import termios

import pytest
import torch
import tqdm.std

import charlm
from charlm import bars, reporting, scoring, tokens
from charlm.bars import PIPE_REDRAW_SECONDS
from charlm.checkpoint import Progress
from charlm.config import Config
from charlm.corpus import source_files
from charlm.errors import CharLMError
from charlm.reporting import LOG_SECONDS, MetricsLog, Reporter
from charlm.runs import read_metrics

from .conftest import block_import, file_size_limit, make_model

KEYS = {"step", "elapsed", "chars", "train_bpc", "val_bpc", "lr", "chars_per_s"}


def test_metrics_rows_continue_across_a_resume(fox_file, tiny):
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 20})
    charlm.train(resume="run", max_steps=40)
    lines = (fox_file.parent / "checkpoints/run/metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[2]) == {"resume": 20}
    rows = read_metrics("checkpoints/run")
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    assert all(set(r) == KEYS for r in rows)
    assert [r["chars"] for r in rows] == [10 * 4 * 8 * k for k in (1, 2, 3, 4)]
    assert all(r["val_bpc"] > 0 and r["train_bpc"] > 0 and r["lr"] > 0 for r in rows)
    assert rows[-1]["val_bpc"] < rows[0]["val_bpc"]


def test_a_new_run_in_a_folder_a_dead_run_left_keeps_only_its_own_rows(fox_file, tiny):
    """A run stopped by two quick Ctrl-Cs before its first checkpoint leaves metrics.jsonl (and
    samples.txt) and no checkpoint; a new run with that --out appended to them, and plot and runs mixed
    the two runs."""
    folder = fox_file.parent / "checkpoints/run"
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 529, "train_bpc": 7.48}) + "\n")
    (folder / "samples.txt").write_text("--- sample at step 500 (val 7.480 bpc) ---\nthe dead run's\n")
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 20, "sample_every": 1})
    assert [r["step"] for r in read_metrics(folder)] == [10, 20]
    samples = (folder / "samples.txt").read_text()
    assert "dead run" not in samples and samples.count("--- sample at step") == 2, samples


def test_rows_written_after_the_last_checkpoint_are_superseded_by_a_resume(tmp_path):
    lines = [{"step": 10}, {"step": 20}, {"step": 25}, {"resume": 20}, {"step": 30}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)) + '\n{"step": 3')  # cut by a kill
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20, 30]


def test_a_resume_after_a_row_cut_short_by_a_crash_still_supersedes_the_rows_past_its_step(tmp_path):
    """A crash cut the last row short (no newline); the resumed run's `{"resume": 20}` was glued onto it,
    unreadable, so the rows the crashed process wrote after its last checkpoint (step 25) stayed in the
    curves, out of order with the resumed run's."""
    lines = [{"step": 10}, {"step": 20}, {"step": 25}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)) + '\n{"step": 27, "train')
    log = MetricsLog(tmp_path)
    log.append({"resume": 20})
    log.append({"step": 30})
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20, 30]


def test_tensorboard_missing_is_a_clear_error_before_the_run_starts(fox_file, tiny, monkeypatch):
    """The package was first asked for once the run had planned its size and written its folder: a
    user without the extra waited through the size probe, then was left a run folder holding only a
    run.json, which neither `charlm runs` nor --resume could use."""
    block_import(monkeypatch, "torch.utils.tensorboard")
    needs = r"^tensorboard=True needs the tensorboard package: pip install 'charlm\[tensorboard\]'$"
    with pytest.raises(CharLMError, match=needs):
        charlm.train(fox_file, out="tb", **{**tiny, "tensorboard": True})
    assert not (fox_file.parent / "checkpoints" / "tb").exists()


def test_tensorboard_logging_writes_event_files(fox_file, tiny):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    charlm.train(fox_file, out="tb", **{**tiny, "tensorboard": True})
    events = list((fox_file.parent / "checkpoints/tb/tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 100
    read = EventAccumulator(str(events[0]))
    read.Reload()
    rows = [row for row in read_metrics(fox_file.parent / "checkpoints/tb") if row.get("val_bpc") is not None]
    assert [(event.step, event.value) for event in read.Scalars("val_bpc")] == [
        (row["step"], pytest.approx(row["val_bpc"])) for row in rows
    ]


def test_a_full_disk_is_a_warning_for_tensorboard_events_as_for_metrics(tmp_path, capsys):
    """With --tensorboard a full disk printed a traceback from SummaryWriter's own thread, then stopped
    the run at its next row (`Error: file: No space left on device`), though metrics.jsonl only warns:
    checkpoints decide that."""
    config = Config(tensorboard=True, batch_size=4, hidden=8, max_steps=30, quiet=True)
    progress = Progress(step=10, elapsed=1.0)
    reporter = Reporter(tmp_path, config, progress, 1.0, torch.device("cpu"), None)
    reporter.write_row(val_bpc=3.0)
    with file_size_limit(max(path.stat().st_size for path in tmp_path.rglob("*.0")) + 10):
        for step in (20, 30):
            progress.step = step
            reporter.write_row(val_bpc=2.0)
        reporter.close()
    said = capsys.readouterr().err
    assert "Traceback" not in said
    assert said.count("cannot write TensorBoard events (File too large); free space on its disk") == 1, said


def test_one_slow_second_does_not_swing_a_timed_runs_step_total(tmp_path):
    """The bar's total for a --max-time run is the steps the time left allows at the measured speed;
    measured over the last second alone it jumped (5% 362/6936 -> 76% 811/1070) whenever the speed dipped."""
    config = Config(max_time="100s", batch_size=4, hidden=8, eval_every=10, dropout=0.0)
    progress = Progress()
    reporter = Reporter(tmp_path, config, progress, 1.0, torch.device("cpu"), 100.0)
    now = reporter.bar_time
    for second in range(1, 21):  # 100 steps a second for 20 seconds, then one second at 10
        progress.step, progress.elapsed = 100 * second, float(second)
        reporter.redraw(now + second)
    steady = reporter.bar.total  # 2,000 done + 80 s x 100
    progress.step, progress.elapsed = 2010, 21.0
    reporter.redraw(now + 21)
    assert steady == 10_000 and reporter.bar.total > 0.85 * steady
    reporter.close()


def test_rows_and_fields_that_are_not_numbers_are_left_out(tmp_path):
    """A hand-edited metrics.jsonl: a reader gets dicts with a numeric step and numeric (or null) fields only."""
    lines = ["NaN", "[1, 2]", '"text"', '{"step": "x", "val_bpc": "y"}', '{"step": true}', '{"resume": "x"}']
    lines += ['{"step": 10, "val_bpc": NaN, "train_bpc": null, "elapsed": "soon", "lr": 0.1}', '{"step": Infinity}']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert read_metrics(tmp_path) == [{"step": 10, "train_bpc": None, "lr": 0.1}]


def test_a_timed_runs_bar_never_runs_past_its_total(tmp_path):
    """A run that sped up (another program letting go of a core) passed the total its last redraw
    estimated, and for up to a second the bar read `3869/?`: no percentage, no time left."""
    config = Config(max_time="100s", batch_size=4, hidden=8, eval_every=10, dropout=0.0)
    progress = Progress()
    reporter = Reporter(tmp_path, config, progress, 1.0, torch.device("cpu"), 100.0)
    progress.step, progress.elapsed = 100, 99.0
    reporter.redraw(reporter.bar_time + 1.0)  # 100 steps a second, 1 s left: about 200 steps in all
    reporter.bar.n = progress.step
    for _ in range(300):  # faster now: the steps come before the next redraw is due
        progress.step += 1
        reporter.step(torch.tensor(1.0), 0.001)
        assert reporter.bar.n <= reporter.bar.total
    reporter.close()


def test_a_rows_chars_per_second_leaves_out_the_evaluation_and_checkpoint_before_it(tmp_path):
    """A row written after an evaluation and a checkpoint write measured its chars/s over the wall time
    since the previous row, theirs included: a run training at 26,000 chars/s logged 18,279 (python -m charlm train BIG.txt --max-time 40s)."""
    config = Config(batch_size=4, hidden=8, seq_len=25, max_steps=1000, quiet=True, dropout=0.0)
    progress = Progress()
    reporter = Reporter(tmp_path, config, progress, 1.0, torch.device("cpu"), None)
    for _ in range(10):  # 10 steps of 100 characters, 0.01 s each: 10,000 chars/s
        progress.step, progress.tokens = progress.step + 1, progress.tokens + 100
        reporter.step(torch.tensor(1.0), 0.01)
    reporter.row_time -= 60.0  # an evaluation and a checkpoint write took a minute since the previous row
    reporter.write_row(val_bpc=2.0)
    reporter.close()
    (row,) = read_metrics(tmp_path)
    assert row["chars_per_s"] == pytest.approx(10_000.0)


def test_the_bar_shows_the_eval_also_texts_score_beside_validations(tmp_path):
    """--eval-also scored a second text at each evaluation (what fine-tuning forgets) but the bar showed
    train and val only: the figure a user asked for to watch was in metrics.jsonl alone."""
    config = Config(batch_size=4, hidden=8, seq_len=25, max_steps=1000, dropout=0.0, eval_also="base.txt")
    progress = Progress()
    reporter = Reporter(tmp_path, config, progress, 1.0, torch.device("cpu"), None)
    progress.step, progress.tokens = 1, 100
    reporter.step(torch.tensor(1.0), 0.01)
    reporter.write_row()
    assert "eval-also -" in reporter.bar.postfix  # not scored yet
    progress.val_bpc = 2.0
    reporter.write_row(val_bpc=2.0, eval_also_bpc=7.5)
    assert "val 2.000 bpc, eval-also 7.500 bpc" in reporter.bar.postfix
    reporter.close()


def test_a_timed_runs_bar_has_a_total_from_its_first_step(tmp_path):
    """Until its first redraw a second in, a --max-time run's bar read `13/?`: it starts from the
    size probe's speed (here 5,000 chars/s of 4 x 25 windows: 50 steps a second for 100 s)."""
    config = Config(max_time="100s", batch_size=4, hidden=8, eval_every=10, dropout=0.0)
    reporter = Reporter(tmp_path, config, Progress(), 1.0, torch.device("cpu"), 100.0, probed_chars_per_second=5_000.0)
    assert reporter.bar.total == 5_000
    reporter.close()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    """The time the Reporter (perf_counter) and tqdm (time) read, moved by hand: seconds of a run in none."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(reporting, "time", clock)
    monkeypatch.setattr(tqdm.std, "time", clock.time)
    return clock


@pytest.mark.parametrize("terminal", [False, True])
def test_a_timed_run_with_no_speed_to_go_by_draws_its_bar_once_it_has_a_total(tmp_path, monkeypatch, clock, terminal):
    """A fine-tuning run (no size probe) with --max-time, the default, drew `0/?` with no time left
    until its first redraw a second in; into a log that line stayed."""
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    config = Config(max_time="100s", batch_size=4, hidden=8, eval_every=10_000, dropout=0.0)
    progress = Progress()
    reporter = Reporter(tmp_path, config, progress, 1.0, torch.device("cpu"), 100.0)
    for _ in range(1_100):  # 100 steps a second for 11 s: into a log, one draw at 10 s
        clock.now += 0.01
        progress.step, progress.elapsed = progress.step + 1, progress.elapsed + 0.01
        reporter.step(torch.tensor(1.0), 0.001)
    frames = [frame for frame in stderr.getvalue().split("\r") if frame]
    assert frames and "?" not in frames[0] and "%" in frames[0], frames[:2]
    assert int(frames[0].split("/")[1].split()[0]) > 9_000  # 100 s at 100 steps a second
    reporter.close()


def test_a_run_over_before_its_bar_was_drawn_shows_where_it_ended(tmp_path, monkeypatch, clock):
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    config = Config(max_time="1s", batch_size=4, hidden=8, eval_every=1000, dropout=0.0)
    progress = Progress()
    reporter = Reporter(tmp_path, config, progress, 1.0, torch.device("cpu"), 0.5)
    for _ in range(5):
        clock.now += 0.1
        progress.step, progress.elapsed = progress.step + 1, progress.elapsed + 0.1
        reporter.step(torch.tensor(1.0), 0.001)
    reporter.write_row(val_bpc=3.0)
    reporter.close()
    assert "100%" in stderr.getvalue() and " 5/5 " in stderr.getvalue(), stderr.getvalue()


def test_the_speed_is_measured_between_evaluations_less_than_a_second_apart(tmp_path, clock):
    """Each evaluation restarted the second the speed is measured over: evaluating more often, the
    speed was never measured again, and a resumed run's bar read 161 chars/s and 22 minutes left
    while it trained at 55,000 chars/s."""
    config = Config(max_steps=100_000, max_time=None, batch_size=4, hidden=8, eval_every=25, dropout=0.0)
    progress = Progress()
    reporter = Reporter(tmp_path, config, progress, 1.0, torch.device("cpu"), None)
    for steps, seconds in ((25, 0.1), (4000, 0.01)):  # a slow start at 10 steps a second, then 100
        for _ in range(steps):
            clock.now += seconds
            progress.step += 1
            reporter.step(torch.tensor(1.0), 0.001)
            if progress.step % config.eval_every == 0:
                clock.now += 0.1  # evaluating: a pause the speed leaves out
                reporter.write_row(val_bpc=3.0)
    assert reporter.steps_per_second == pytest.approx(100, rel=0.05)
    reporter.close()


def test_a_resumed_runs_time_left_is_the_budget_left(tmp_path):
    """After a resume tqdm's own rate (counted from the bar's start, no update yet) left the time left
    unknown or above the --max-time left; it is read at the run's measured speed."""
    config = Config(max_time="100s", batch_size=4, hidden=8, eval_every=10, dropout=0.0)
    progress = Progress(step=1_000, elapsed=49.0)
    reporter = Reporter(tmp_path, config, progress, 1.0, torch.device("cpu"), 100.0)
    progress.step, progress.elapsed = 1_100, 50.0
    reporter.redraw(reporter.bar_time + 1.0)  # 100 steps a second, 50 s left
    reporter.bar.n = progress.step
    assert reporter.bar.total == 6_100 and "<00:50" in str(reporter.bar)
    reporter.close()


def test_a_row_the_disk_had_no_room_for_leaves_no_half_line_to_glue_the_next_onto(tmp_path, capsys):
    """A full disk cut a metrics row short; the next row, once there was room, was appended to that half
    line and lost with it (a reader skips a line that is not JSON)."""
    log = MetricsLog(tmp_path)
    log.append({"step": 1, "train_bpc": 4.0})
    with file_size_limit(log.path.stat().st_size + 10):
        log.append({"step": 2, "train_bpc": 3.9})  # does not fit: a warning, training goes on
    log.append({"step": 3, "train_bpc": 3.8})
    assert [row["step"] for row in read_metrics(tmp_path)] == [1, 3]
    said = capsys.readouterr().err
    assert said.count("cannot write metrics (File too large); free space on its disk (or raise the file size") == 1
    assert said.count("; training goes on") == 1


@pytest.mark.parametrize("terminal", [False, True])
def test_the_bar_redraws_in_place_often_and_into_a_log_now_and_then(tmp_path, monkeypatch, terminal):
    """Into a pipe or file (a notebook's log, CI, nohup) the bar redrew 10 times a second: 6,000 kept
    redraws in a 10-minute run, a line each where a viewer breaks at a carriage return. Steps here come
    every 0.2 s of a fake clock, for 60 s."""
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    config = Config(max_steps=300, max_time=None, batch_size=4, hidden=8, eval_every=100, dropout=0.0)
    reporter = Reporter(tmp_path, config, Progress(), 1.0, torch.device("cpu"), None)
    clock = itertools.count(reporter.bar.last_print_t + 0.2, 0.2)
    reporter.bar._time = lambda: next(clock)
    for _ in range(300):
        reporter.bar.update(1)
    redraws = stderr.getvalue().count("\r")
    if terminal:
        assert redraws >= 250  # in place, every step
    else:
        assert redraws <= 60 / LOG_SECONDS + 2
    reporter.close()


def prepare_a_corpus(tmp_path, monkeypatch) -> None:
    """Preparation's bars: 60 files, so each pass over their bytes updates its bar 60 times."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(60):
        (folder / f"{i:02}.txt").write_text(f"line {i} of the quick brown fox\n", encoding="utf-8")
    tokens.prepare([source_files([str(folder)])], root=tmp_path / "cache")


def score_a_text(tmp_path, monkeypatch) -> None:
    """Scoring's bar: a window of 5 tokens at a time, so 748 characters update it 150 times."""
    monkeypatch.setattr(scoring, "EVAL_WINDOW", 5)
    text = "the quick brown fox jumps over the lazy dog\n" * 17
    scoring.text_bits(make_model("".join(sorted(set(text))), layers=1, hidden=8), text, progress=True)


@pytest.mark.parametrize("work", [prepare_a_corpus, score_a_text])
@pytest.mark.parametrize("terminal", [False, True])
def test_every_bar_redraws_into_a_log_now_and_then(tmp_path, monkeypatch, work, terminal):
    """Corpus preparation's and scoring's bars redrew 10 times a second into a pipe or file, as the
    training bar did (above): a log of a big corpus filled with bars. Each update here takes 0.2 s of a
    fake clock; hundreds of updates, a handful of redraws into a log, one an update on a terminal."""
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    clock = itertools.count(1000.0, 0.2)
    monkeypatch.setattr(tqdm.std, "time", lambda: next(clock))
    work(tmp_path, monkeypatch)
    seconds = next(clock) - 1000.0
    redraws = stderr.getvalue().count("\r")
    if terminal:
        assert redraws >= 100, stderr.getvalue()
    else:
        bars = 2  # preparation: counting, then encoding; scoring: encoding, then scoring
        assert redraws <= bars * 3 + seconds / PIPE_REDRAW_SECONDS, (redraws, seconds)


def time_shown(frame: str) -> tuple[int, int] | None:
    """A bar frame's `[elapsed<remaining` in seconds."""
    if not (found := re.search(r"\[(\d+):(\d+)<(\d+):(\d+)", frame)):
        return None
    minutes, seconds, left_minutes, left_seconds = map(int, found.groups())
    return 60 * minutes + seconds, 60 * left_minutes + left_seconds


@pytest.mark.parametrize("resumed_at", [0.0, 20.0])
def test_a_timed_runs_time_left_never_exceeds_what_is_left_of_its_budget(tmp_path, monkeypatch, clock, resumed_at):
    """The bar's speed leaves evaluations out and its last frame, after Ctrl-C, read tqdm's own rate over
    all the seconds since it started, evaluations and saves included: `[00:23<05:30]` on a 2m run. Its time
    left is what the run's clock (which counts every second) leaves of --max-time, or less."""
    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    config = Config(max_time="60s", batch_size=4, hidden=8, eval_every=50, dropout=0.0)
    progress = Progress(step=int(10 * resumed_at), elapsed=resumed_at)
    reporter = Reporter(tmp_path, config, progress, 1.0, torch.device("cpu"), 60.0, probed_chars_per_second=4_000.0)
    started = clock.now - resumed_at
    while progress.step < 10 * resumed_at + 230 and progress.elapsed < 60:  # 10 steps a second: Ctrl-C or the end
        clock.now += 0.1
        progress.step, progress.elapsed = progress.step + 1, clock.now - started
        if progress.step % config.eval_every == 0:
            clock.now += 5.0  # evaluating and saving
            reporter.write_row(val_bpc=3.0)
        reporter.step(torch.tensor(1.0), 0.1)
    reporter.close()
    shown = [time_shown(frame) for frame in stderr.getvalue().split("\r")]
    shown = [times for times in shown if times]
    assert len(shown) > 20
    for elapsed, left in shown:
        assert resumed_at + elapsed + left <= 60 + 1, (elapsed, left)


def bar_counts(frame: str) -> tuple[int, int] | None:
    """A bar frame's `N/TOTAL`."""
    found = re.search(r"\| (\d+)/(\d+) \[", frame)
    return (int(found[1]), int(found[2])) if found else None


def test_a_timed_runs_total_counts_the_seconds_its_evaluations_take(tmp_path, monkeypatch, clock):
    """The step total was estimated from training speed alone: a run that spends half its time evaluating
    and saving read `8% 50/600` after its first evaluation, and ended near 300. Evaluations are paused
    seconds per step in the estimate, as they are in the run; the chars/s shown stays training's."""
    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    config = Config(max_time="60s", batch_size=4, hidden=8, eval_every=50, dropout=0.0)
    progress = Progress()
    reporter = Reporter(tmp_path, config, progress, 1.0, torch.device("cpu"), 60.0, probed_chars_per_second=1_000.0)
    started = clock.now

    def evaluate() -> None:
        clock.now += 5.0
        progress.val_bpc = 3.0
        reporter.write_row(val_bpc=3.0)

    while progress.elapsed < 60:  # the trainer's loop: 10 steps a second, 5 s evaluating every 50 steps
        clock.now += 0.1
        progress.step, progress.elapsed = progress.step + 1, clock.now - started
        if progress.step % config.eval_every == 0:
            evaluate()
        reporter.step(torch.tensor(1.0), 0.1)
    progress.elapsed = clock.now - started
    if progress.step % config.eval_every:  # the final weights are scored
        evaluate()
    reporter.close()
    frames = [frame for frame in stderr.getvalue().split("\r") if "val 3.000" in frame]  # from the first evaluation
    counts = [bar_counts(frame) for frame in frames]
    assert len(counts) > 10 and counts[-1] == (progress.step, progress.step), frames[-1]
    for _, total in counts:
        assert abs(total - progress.step) <= 0.1 * progress.step, (total, progress.step)
    chars_per_second = int(re.search(r"([\d,]+) chars/s", frames[-1])[1].replace(",", ""))
    assert 950 <= chars_per_second <= 1_050 and "<00:00" in frames[-1], frames[-1]  # training's: 1,000


@pytest.mark.parametrize("make", ["progress_bar", "StepBar"])
def test_a_terminal_that_says_it_is_0_by_0_gets_a_bar_80_columns_wide(make):
    """A fresh pseudo-terminal (some CI's) says it has 0 columns and 0 rows: tqdm read -1 of each and drew no
    bar at all, its row taken for one below the screen (or, 0 columns alone, a bar one column wide). It gets
    tqdm's usual line on an 80-column terminal: 79 characters, the bar filling what the numbers leave."""
    screen, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    with open(terminal, "w", encoding="utf-8") as stream:
        maker = bars.progress_bar if make == "progress_bar" else reporting.StepBar
        for _ in maker(range(3), file=stream, dynamic_ncols=True):
            pass
    try:
        frames = os.read(screen, 1 << 16).decode().replace("\n", "").split("\r")
    finally:
        os.close(screen)
    assert [len(frame) for frame in frames if "3/3" in frame] == [79]
