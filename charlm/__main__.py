"""The `charlm` command, and `python -m charlm`."""

import os
import signal
import sys


def main() -> None:
    """Ctrl-C while the command's modules are still loading (torch takes seconds) exits as it does later:
    status 130, no traceback. Hence the import here and not at the top, and no KeyboardInterrupt while it
    runs: raised inside numpy's or torch's C initialisation it became an ImportError traceback ("cannot
    load module more than once") or an abort in pybind11. Nothing is written yet, so leaving is all there is.

    SIGTERM (kill, a scheduler, systemd) then unwinds as an exit with status 143, so that what a command
    was writing is removed as on Ctrl-C: it died at once and left its hidden temporary files (a corpus
    cache folder, a page) behind. Training handles its own (stopping.py). A signal the caller ignores
    (nohup, a background job) stays ignored."""
    loading = handle(signal.SIGINT, leave_at_once)
    from .cli import main as command_line

    handle(signal.SIGINT, loading)
    handle(signal.SIGTERM, leave_unwinding)
    command_line(complete_var="_CHARLM_COMPLETE")  # Tab completion under `python -m charlm` too


def handle(signum: int, handler: object) -> object:
    """Install `handler` for `signum` unless the signal is ignored; returns the handler it replaced."""
    previous = signal.getsignal(signum)
    if previous is not signal.SIG_IGN:
        signal.signal(signum, handler)
    return previous


def leave_at_once(signum: int, frame: object) -> None:
    """Exit now with the shell's status for the signal: while modules load there is nothing to clean up."""
    os._exit(128 + signum)


def leave_unwinding(signum: int, frame: object) -> None:
    """Exit with the shell's status for the signal, running `finally` blocks and removing temporaries on the way."""
    sys.exit(128 + signum)


if __name__ == "__main__":
    main()
