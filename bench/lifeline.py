"""Processes that end with this one, however it ends: also when it is killed (SIGKILL, the OOM killer, a
CI timeout, `kill -9`) and so runs no cleanup of its own.

    lifeline = Lifeline()
    subprocess.Popen(command, **lifeline.joining())  # that process, and what it starts in turn
    ...
    lifeline.end()  # whatever of them is left: killed

chromedriver and Chromium do not die with their parent (Chromium outlives a killed chromedriver too): a
killed test run left them spinning with parent pid 1. So the processes share a process group whose first
member is a watchdog: it waits for the end of a pipe from this process, which comes when this process
closes it (`end`) or ends, however, and then kills its group, itself with it.

POSIX (Linux, macOS): a process group and a pipe. Not prctl's PR_SET_PDEATHSIG, which is Linux's only
and fires when the *thread* that started the process ends (tests start browsers in threads), and
would need setting again in each process that process starts. A process that leaves the group (setsid,
setpgid) is beyond its reach; Chromium's do not. A child forked from this process without an exec (not
subprocess's) holds the pipe too: the group then ends with that child as well.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

# Reads its standard input, the pipe, to its end; then SIGKILL to every process in its group, itself too.
WATCHDOG = "import os, signal, sys\nsys.stdin.buffer.read()\nos.killpg(0, signal.SIGKILL)"


class Lifeline:
    """A process group that is killed when `end` is called or this process ends (see the module's docstring)."""

    def __init__(self) -> None:
        # -I -S: the watchdog imports nothing of this environment's (a few milliseconds to start). In a
        # group of its own but this session, where the processes that join it must be.
        watchdog = [sys.executable, "-I", "-S", "-c", WATCHDOG]
        self.watchdog = subprocess.Popen(watchdog, stdin=subprocess.PIPE, **in_group(0))
        self.group = self.watchdog.pid

    def joining(self) -> dict:
        """subprocess.Popen's keyword arguments that start a process in the group."""
        return in_group(self.group)

    def end(self) -> None:
        """Every process of the group killed, once the watchdog has done it; called again, nothing."""
        self.watchdog.stdin.close()
        self.watchdog.wait()


def in_group(group: int) -> dict:
    """subprocess.Popen's keyword arguments that start a process in process group `group` (0: a new one,
    its own). Python 3.10 has no process_group: setpgid in preexec_fn, which is unsafe where a thread
    holds a lock the function takes; setpgid takes none."""
    if sys.version_info >= (3, 11):
        return {"process_group": group}
    return {"preexec_fn": functools.partial(os.setpgid, 0, group)}
