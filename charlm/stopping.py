"""How a training run is asked to stop: at the next step boundary, so that it saves and says where it
stopped, rather than dying between checkpoints. The trainer installs a `StopFlag` for its loop and
reads it once a step; nothing here knows what a step is. Before any of that, while a command's
modules load, the command leaves at once (`leaving_at_once`).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator


def hang_up_signal() -> int:
    """SIGHUP; on Windows, which has none, SIGTERM."""
    return getattr(signal, "SIGHUP", signal.SIGTERM)


def handle(signum: int, handler: object) -> object:
    """Install `handler` for `signum` unless the signal is ignored (meant for someone else: a background job
    inherits Ctrl-C ignored, `nohup` the hang-up); returns the handler it found."""
    previous = signal.getsignal(signum)
    if previous is not signal.SIG_IGN:
        signal.signal(signum, handler)
    return previous


@contextlib.contextmanager
def handling(signals: tuple[int, ...], handler: object) -> Iterator[None]:
    """`handler` for each of `signals` (`handle`; Windows' hang-up is SIGTERM again) while the block runs, the
    handlers found put back after; outside the main thread, where no handler can be set, nothing changes."""
    try:
        previous = {signum: handle(signum, handler) for signum in dict.fromkeys(signals)}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield
    finally:
        for signum, found in previous.items():
            if found is not signal.SIG_IGN:
                signal.signal(signum, found)


class StopFlag:
    """Ctrl-C / SIGTERM / SIGHUP (a closed terminal, a dropped ssh session) ask the loop to stop at the next
    step boundary, saved; a second Ctrl-C stops at once. Under torchrun its death (`launcher` gone) asks as a
    hang-up does: its workers run in sessions of their own, which nothing else of it reaches."""

    def __init__(self, launcher: int | None = None) -> None:
        self.asked = False
        self.signum: int | None = None  # the signal that asked first
        self.launcher = launcher  # the parent process whose death asks to stop (None: none)

    @property
    def requested(self) -> bool:
        """Whether a stop was asked; a launcher that is gone asks now (its death sends no signal, so it is looked for)."""
        if not self.asked and self.launcher is not None and os.getppid() != self.launcher:
            self.asked, self.signum = True, hang_up_signal()  # orphaned: torchrun is gone
        return self.asked

    def __call__(self, signum: int, frame: object) -> None:
        """The signal handler (`installed`)."""
        if self.asked and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.ask(signum)

    def ask(self, signum: int) -> None:
        """Stop as though `signum` came: a signal's, or under torchrun another rank's (`Trainer.stop_asked`)."""
        self.asked, self.signum = True, self.signum or signum

    @contextlib.contextmanager
    def installed(self, only: tuple[int, ...] | None = None) -> Iterator[StopFlag]:
        """The flag as the handler of its signals while the loop runs, the previous handlers put back after.
        A signal the caller ignores stays ignored, meant for someone else: a background job (`python train.py &`)
        inherits Ctrl-C ignored, `nohup` the hang-up. `only`: these signals instead (co-writing's Ctrl-C stops a
        continuation, and SIGTERM still ends the command)."""
        with handling(only or (signal.SIGINT, signal.SIGTERM, hang_up_signal()), self):
            yield self


class Terminated(SystemExit):
    """SIGTERM, or a hang-up, outside training's loop (`charlm.__main__`, `unwind_on_hang_up`): an exit with the shell's status for the signal that
    unwinds, so what was being written is removed, and a run not started yet can say so as Ctrl-C's does."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)


def leave_unwinding(signum: int, frame: object) -> None:
    """Exit with the shell's status for the signal, running `finally` blocks and removing temporaries on the way."""
    raise Terminated(signum)


@contextlib.contextmanager
def unwind_on_hang_up() -> Iterator[None]:
    """While a command runs, a hang-up (a terminal closed) unwinds as SIGTERM does (`leave_unwinding`, exit 129)
    until training's own handlers take over (`StopFlag.installed`): while the text was read and the run planned
    it killed the process, leaving the run folder claimed for it, and saying nothing. For commands that write
    files (`console.outlive_terminal`): a command that writes nothing to keep (a server) ends at once as before.
    Ignored (nohup), it stays ignored; the handler before is given back (a process that runs the command line
    in-process, a script's, goes on with its own)."""
    with handling((hang_up_signal(),), leave_unwinding):
        yield


@contextlib.contextmanager
def leaving_at_once() -> Iterator[None]:
    """While a command's modules load (torch takes seconds), Ctrl-C, SIGTERM and a hang-up exit at once with
    the shell's status for the signal (130, 143, 129), no traceback, and raise nothing: a KeyboardInterrupt
    raised inside numpy's or torch's C initialisation became an ImportError traceback ("cannot load module
    more than once") or an abort in pybind11. Nothing is written yet, so leaving is all there is. A signal the
    caller ignores (nohup, a background job) stays ignored; outside the main thread nothing changes."""
    with handling((signal.SIGINT, signal.SIGTERM, hang_up_signal()), leave_at_once):
        yield


def leave_at_once(signum: int, frame: object) -> None:
    """Exit now with the shell's status for the signal: while modules load there is nothing to clean up."""
    os._exit(128 + signum)
