"""Compute threads that fit the CPU the process actually gets.

torch splits each large operation over its intra-op threads (one per core by default) and waits for
all of them. When another process holds a core, the thread on it runs only in its scheduler slices
and every operation waits for it: measured on 2 cores with one core busy, a 2x256 training step took
3.5x as long as on the quiet machine with 2 threads and only 1.2x with 1 (docs/benchmarks.md, "A busy
machine: threads"). No
setting is right for both a quiet and a busy machine, and the load changes during a run, so the
`Governor` keeps measuring: the work done per second at the current thread count over a short window,
and now and then the same at a neighbouring count, half or twice as many, taking turns; it keeps the
faster. A drop in speed triggers a new comparison at once; comparisons that change nothing are made
less and less often.

Training, evaluation and sampling report their work with `record(seconds, tokens, work)`: characters,
or a sentencepiece model's pieces. Speeds are only compared within one kind of work, each measured in
windows of its own: an evaluation token costs a fraction of a training one, and a step of 8 samples'
tokens an eighth of a lone sample's, so a window of the cheaper work would otherwise look like a
machine that got faster, and the work after it like one that slowed down: a kind names its rows
("sample 8 rows", "score 16 pieces"). No speed is compared with a characters-per-second figure.
`--threads N` pins the count instead. GPUs are left alone (their work does not run on these threads).

A Python caller's sampling and scoring (`charlm.generate`, `charlm.stream`, `charlm.bits_per_char`,
`charlm.next_probs`) run under a governor of their own, one per Python thread (`for_python_caller`),
kept from call to call: a notebook's calls, each shorter than a window, add up to windows, and the
count it settled on is where its next call starts. Each call gives torch's count back as it found it.

torch also makes each count set the one every thread starts from that has not run its parallel work
yet: a thread the caller starts while charlm trains or samples in another would take charlm's choice
of the moment as its own. While a Python caller's call runs, `set_count` sets that back to the
caller's count at once, from a thread of charlm's own.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import warnings
from collections.abc import Callable, Iterator

import torch

from .errors import CharLMError, callers_stacklevel
from .fields import said

WINDOW_SECONDS = 1.0  # each measurement covers at least this much work time
EXPLORE_AFTER = (2.0, 160.0)  # seconds between comparisons: first, and at most (doubling in between)
SLOWDOWN = 0.7  # a window below this share of the best recent speed triggers a comparison at once
GAIN = 1.05  # a neighbouring count must be this much faster to be kept


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under taskset or a container)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Governor:
    """Chooses torch's intra-op thread count from measured speed; see the module's docstring."""

    def __init__(
        self,
        most: int,
        set_threads: Callable[[int], None] = torch.set_num_threads,
        threads: int | None = None,
    ):
        self.most, self.set_threads = most, set_threads
        self.threads = threads or most
        self.set_threads(self.threads)
        self.windows: dict[str, list[float]] = {}  # per kind of work, the window being measured: seconds, tokens
        self.since_comparison = 0.0  # work seconds since the last comparison ended
        self.explore_after = EXPLORE_AFTER[0]
        self.best_recent: dict[str, float] = {}  # per kind of work, the best speed at the current count
        self.trial: tuple[int, float, str] | None = None  # (count being tried, the current count's speed, work)
        self.upward = False  # which neighbour the next comparison tries

    def record(self, seconds: float, tokens: float, work: str = "train") -> None:
        """`tokens` (characters, or sentencepiece pieces) of kind `work` took `seconds` at the current
        thread count."""
        window = self.windows.setdefault(work, [0.0, 0.0])
        window[0] += seconds
        window[1] += tokens
        if window[0] < WINDOW_SECONDS:
            return
        speed = window[1] / window[0]
        self.since_comparison += window[0]
        del self.windows[work]
        best = self.best_recent.get(work, 0.0)
        if self.trial is not None:  # a trial's verdict compares two windows of the same kind of work
            if self.trial[2] == work:
                self.finish_trial(speed)
        elif speed < SLOWDOWN * best or self.since_comparison >= self.explore_after:
            self.start_trial(speed, work)
        else:
            self.best_recent[work] = max(best, speed)

    def calibrate(self, measure: Callable[[], float]) -> list[float]:
        """Before work whose speed must be known (the size probe), take the faster of the current count
        and its neighbour right away; `measure()` runs a short timed stretch and returns its speed.
        Returns the two speeds measured at the count kept: the caller's timing of that work, not to redo.
        They are in `measure`'s unit (the probe's chars/s), so the recorded windows start again after."""
        speeds: dict[int, list[float]] = {}
        for count in (self.threads, self.neighbour()):
            self.set_threads(count)
            speeds[count] = [measure(), measure()]
        self.threads = max(speeds, key=lambda count: max(speeds[count]))
        self.set_threads(self.threads)
        self.best_recent, self.since_comparison, self.windows = {}, 0.0, {}
        return speeds[self.threads]

    @property
    def counting(self) -> int:
        """The count being measured now: a comparison's, while one is under way, else the one kept."""
        return self.trial[0] if self.trial is not None else self.threads

    def neighbour(self) -> int:
        """The count to compare with: half as many and twice as many (at most every core) take turns;
        where only one exists, that one."""
        fewer, more = max(1, self.threads // 2), min(self.most, 2 * self.threads)
        self.upward = not self.upward
        if fewer == self.threads or (self.upward and more != self.threads):
            return more
        return fewer

    def start_trial(self, speed: float, work: str) -> None:
        candidate = self.neighbour()
        if candidate == self.threads:  # one core: nothing to compare
            self.since_comparison = 0.0
            return
        self.trial = (candidate, speed, work)
        self.set_threads(candidate)
        self.windows = {}  # other kinds' windows so far were at the other count

    def finish_trial(self, trial_speed: float) -> None:
        candidate, current_speed, work = self.trial
        self.trial, self.since_comparison, self.windows = None, 0.0, {}
        if trial_speed > GAIN * current_speed:
            self.threads, self.best_recent = candidate, {work: trial_speed}
            self.explore_after = EXPLORE_AFTER[0]  # things changed: look again soon
            return
        self.set_threads(self.threads)
        self.best_recent = {work: current_speed}
        self.explore_after = min(2 * self.explore_after, EXPLORE_AFTER[1])


class CommandRule(threading.local):
    """What `configure` set, per Python thread, as torch keeps its count per thread: a command's governor
    or the count `--threads` pinned (said once: a run configures before and after planning). Two
    charlm.train calls in two threads each train under their own, and each finds its own again after."""

    governor: Governor | None = None
    pinned: int | None = None


class CallerRule(threading.local):
    """Per Python thread too: the governor of its Python caller's calls (`for_python_caller`), the
    caller's count it was made for, the governor again as `active` while a call runs, while any charlm
    call runs (charlm.train's too) the caller's count, which `set_count` keeps for new threads, and
    whether this thread's count was read (torch fixes it at a thread's first read)."""

    governor: Governor | None = None
    found: int = 0
    active: Governor | None = None
    callers_count: int | None = None
    count_read: bool = False


class CountKeeper:
    """A thread of charlm's own that sets the count torch gives new threads back to the caller's
    (`set_count`), so that the caller's thread never waits for it (on a busy core it may wait for a
    slice). It runs no torch work: its own count does not matter. A forked child starts a new one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held from a count set to its request to set it back
        self.requests: queue.SimpleQueue[tuple[int, threading.Event]] = queue.SimpleQueue()
        self.last: threading.Event | None = None  # the last request's, done once every request is
        self.thread: threading.Thread | None = None

    def set_back(self, count: int) -> None:
        """Asks for `count` as the count new threads start from; called with `lock` held."""
        if self.thread is None:
            self.thread = threading.Thread(target=self.serve, name="charlm-threads", daemon=True)
            self.thread.start()
        self.last = threading.Event()
        self.requests.put((count, self.last))

    def serve(self) -> None:
        while True:
            count, done = self.requests.get()
            _torch_set_num_threads(count)
            done.set()


_command = CommandRule()
_callers = CallerRule()
_keeper = CountKeeper()
_torch_set_num_threads = torch.set_num_threads  # the keeper's: a test recording the caller's sets sees only those
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_keeper.__init__)


def set_count(count: int) -> None:
    """torch.set_num_threads(count) for the calling thread's work. torch also makes `count` the count of
    every thread that has not run its parallel work yet: a thread the caller starts while charlm.train
    pins 1 in another would take that 1 as its own, charlm.generate there would read it as the caller's
    pin, and the thread would keep 1 for good. While a charlm call runs in this thread, that count is set
    back to the caller's at once (`CountKeeper`)."""
    with _keeper.lock:
        torch.set_num_threads(count)
        if (callers := _callers.callers_count) is not None and callers != count:
            _keeper.set_back(callers)


def callers_count() -> int:
    """The calling thread's torch count. A thread's first read fixes it, from the count new threads
    start with: that read waits until `set_count` has set it back to the caller's."""
    if _callers.count_read:
        return torch.get_num_threads()
    with _keeper.lock:
        if _keeper.last is not None:
            _keeper.last.wait()
        _callers.count_read = True
        return torch.get_num_threads()


@contextlib.contextmanager
def keeping_callers_count(count: int) -> Iterator[None]:
    """While a call runs, threads started meanwhile start from `count`, the caller's (`set_count`)."""
    outer, _callers.callers_count = _callers.callers_count, count
    try:
        yield
    finally:
        _callers.callers_count = outer


def configure(threads: int | None, device: torch.device | None = None) -> None:
    """`--threads N`: pin N threads; None: adapt (on a CPU), sharing the cores with the other processes
    torchrun started on this machine. Call before the work starts; a governor already adapting keeps
    what it learned."""
    if threads is not None:
        if threads != _command.pinned:
            warn_if_too_many(threads)
        set_count(threads)
        _command.governor, _command.pinned = None, threads
    elif device is not None and device.type != "cpu":
        _command.governor = None
    elif _command.governor is None:
        _command.governor = Governor(share_of_cores(), set_count)


@contextlib.contextmanager
def as_found() -> Iterator[None]:
    """Puts back the thread count, and the governor or pinned count, that a library call found: after
    `charlm.train` the caller's thread keeps its own count, and no governor left running goes on
    changing it while the caller samples or scores."""
    count, governor, pinned = callers_count(), _command.governor, _command.pinned
    try:
        with keeping_callers_count(count):
            yield
    finally:
        _command.governor, _command.pinned = governor, pinned
        torch.set_num_threads(count)


@contextlib.contextmanager
def for_python_caller(device: torch.device) -> Iterator[None]:
    """A Python caller's sampling or scoring under a governor, torch's thread count the caller's again
    when it returns (a notebook's own torch work must not inherit charlm's choice).

    The count the caller's thread has is the most the call uses: torch's default (one per core), or
    what the caller set (torch.set_num_threads(N), OMP_NUM_THREADS=N), though fewer run faster on a
    busy machine; a count of 1 is kept as it is. The governor lives on between calls, so a notebook's
    calls, each shorter than a window, add up to windows, and the next call starts at the count it
    settled on; a count the caller changed in between starts a new one. A process a command governs
    or pins (`configure`: `charlm train`'s closing sample) keeps its rule in the thread that runs the
    command (`command_governor`); a GPU's work does not run on these threads."""
    found = callers_count()
    governed = command_governor() is not None or _command.pinned is not None or _callers.active is not None
    if device.type != "cpu" or found == 1 or governed:
        yield
        return
    with keeping_callers_count(found):
        governor = _callers.governor
        if governor is None or _callers.found != found:
            governor = _callers.governor = Governor(min(found, share_of_cores()), set_count)
            _callers.found = found
        elif governor.counting != found:
            governor.set_threads(governor.counting)
        _callers.active = governor
        try:
            yield
        finally:
            _callers.active = None
            if torch.get_num_threads() != found:
                torch.set_num_threads(found)


def governed_pieces(pieces: Iterator[str], device: torch.device) -> Iterator[str]:
    """`pieces` made each under `for_python_caller`: `charlm.stream`'s caller runs its own code between
    pieces on its own count. Closed early, `pieces` is closed too."""
    try:
        while True:
            with for_python_caller(device):
                try:
                    piece = next(pieces)
                except StopIteration:
                    return
            yield piece
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


def share_of_cores() -> int:
    """The cores this process may use, shared with the other processes torchrun started on this machine
    (LOCAL_WORLD_SIZE, which torchrun sets: one set by hand to junk is one line, not a traceback)."""
    local = os.environ.get("LOCAL_WORLD_SIZE", "1")
    if not (local.strip().isascii() and local.strip().isdigit() and int(local) >= 1):
        raise CharLMError(
            f"LOCAL_WORLD_SIZE={local!r}: the number of charlm processes on this machine, a whole number of at "
            "least 1 (torchrun sets it); unset it, or start charlm with torchrun"
        )
    return max(1, available_cores() // int(local))


def warn_if_too_many(threads: int) -> None:
    """`--threads N` over the cores this process gets only slows every operation down: a warning."""
    if threads > (cores := share_of_cores()):
        shared = (
            " (its share of this machine's, beside torchrun's other processes)" if cores < available_cores() else ""
        )
        warnings.warn(
            f"{said('threads', threads)} is more than the {cores} cores this process may use{shared}; every "
            f"operation waits for its slowest thread, so {said('threads', cores)} or fewer runs faster",
            stacklevel=callers_stacklevel(),
        )


def pin_this_thread(count: int) -> None:
    """`count` torch threads for the calling thread's work, whatever the process's other threads use.

    With OpenMP (torch's CPU backend) the count belongs to the calling thread, and every thread that
    runs parallel work keeps a team of OpenMP threads of its own for as long as it lives. Two such
    threads on two cores oversubscribe them, and OpenMP then puts its waiting threads to sleep and
    wakes them at every operation: `charlm serve --threads 2` read prompts 20x slower than with one
    thread (docs/benchmarks.md). torch sets a thread's count from the process's the first time the
    thread asks for it, over any count set before, so it is asked for first."""
    torch.get_num_threads()
    torch.set_num_threads(count)


def command_governor() -> Governor | None:
    """The governor `configure` started, to the thread that started it (the command's, charlm.train's);
    None to any other. It sets the count of the thread that reports to it, and torch keeps a count per
    thread: a notebook's thread sampling while charlm.train runs in another would have its own count
    set by the training's comparisons, and its steps' speeds taken for the training's."""
    return _command.governor


def calibrate(measure: Callable[[], float]) -> list[float]:
    """Settle the thread count now, when the work about to be timed needs the right one (see Governor);
    returns the speeds `measure` gave at the count kept (none where nothing adapts: a pinned count, a GPU)."""
    governor = command_governor()
    return [] if governor is None else governor.calibrate(measure)


def record(seconds: float, tokens: float, work: str = "train") -> None:
    """Report `tokens` done (of kind `work`: train, or score or sample with their rows), so the thread count
    can follow the CPU this process gets: to the governor of a Python caller's call while it runs
    (`for_python_caller`), else to the one `configure` started in this thread (`command_governor`)."""
    governor = _callers.active or command_governor()
    if governor is not None:
        governor.record(seconds, tokens, work)
