"""The `charlm` command, and `python -m charlm`."""

import contextlib
import os
import signal
import sys

from .stopping import handle, hang_up_signal, leave_unwinding, leaving_at_once


def main() -> None:
    """Ctrl-C while the command line's modules are still loading exits as it does later: status 130, no
    traceback (`stopping.leaving_at_once`; a command that runs a model loads torch, seconds, the same way).
    Hence the import here and not at the top.

    SIGTERM (kill, a scheduler, systemd) then unwinds as an exit with status 143, so that what a command
    was writing is removed as on Ctrl-C: it died at once and left its hidden temporary files (a corpus
    cache folder, a page) behind. Training handles its own (stopping.py). A signal the caller ignores
    (nohup, a background job) stays ignored."""
    check_working_folder()
    with leaving_at_once():
        from .cli import main as command_line

    handle(signal.SIGTERM, leave_unwinding)
    try:
        command_line(complete_var="_CHARLM_COMPLETE")  # Tab completion under `python -m charlm` too
    finally:  # the command is done: a signal while the interpreter shuts down has nothing left to stop
        for signum in (signal.SIGINT, signal.SIGTERM, hang_up_signal()):  # a writing command unwinds on SIGHUP
            handle(signum, leave_done)


def check_working_folder() -> None:
    """A shell still in a folder removed since (`rm -r` from another terminal) starts charlm with none:
    relative paths mean nothing there, and torch's MKL dies loading ("Intel oneMKL FATAL ERROR"). Said first."""
    try:
        os.getcwd()
    except FileNotFoundError:
        sys.exit("Error: the current folder was removed; cd to a folder that exists and run charlm again")


def leave_done(signum: int, frame: object) -> None:
    """Exit now with the shell's status for the signal, what was printed written out first. Raised as
    KeyboardInterrupt or SystemExit during the interpreter's shutdown (torch's atexit finalizers) it was
    "Exception ignored in atexit callback" and a traceback, and the exit status the command's own."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # closed, or a reader gone
            stream.flush()
    os._exit(128 + signum)


if __name__ == "__main__":
    main()
