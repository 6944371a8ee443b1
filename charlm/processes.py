"""Which process made a file: a process named as its files name it (`process_name`: PID-START), and
whether the process a name names still runs (`named_process_alive`), so that what a killed process left
(a temporary, a claim, a lock's owner) is told from a live one's, even once the OS gave its PID to another."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

PID_MAX = 2**31 - 1  # a PID is a pid_t, a C int wherever charlm runs: os.kill overflows on a larger one


def process_name() -> str:
    """This process as the files it owns name it: `PID`, or `PID-START` where the OS says when it
    started (`process_started`), so that a process given the PID of a killed one is not taken for it."""
    return _process_name(os.getpid())


@functools.cache  # /proc read once, not for every temporary file; by PID, as a forked child is another process
def _process_name(pid: int) -> str:
    started = process_started(pid)
    return str(pid) if started is None else f"{pid}-{started}"


def named_process_alive(name: str) -> bool | None:
    """Whether the process that `process_name` named `name` still runs; None: `name` names none."""
    pid, _, started = name.partition("-")
    pid_number, started_number = named_number(pid), named_number(started)
    if not pid_number or pid_number > PID_MAX or (started and started_number is None):
        return None
    return process_alive(pid_number, started_number)


def named_number(text: str) -> int | None:
    """`text` as a name's number: ASCII digits that fit a C long, else None. isdigit() takes '²', which
    int() cannot read, and 20 digits overflow os.kill: a file so named would be a traceback at every write."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def process_alive(pid: int, started: int | None = None) -> bool:
    """Whether process `pid` runs. On Windows os.kill(pid, 0) is no probe: signal 0 is CTRL_C_EVENT, a
    Ctrl-C to processes of the console (the training run itself). There every process is taken to live,
    so what a killed one left stays.

    `started`: when the process meant started (`process_started`, as it recorded it). The OS gives a dead
    process's PID to the next process it starts: one of that PID that started at another time is not
    the one meant (a run killed days ago read as still training while an editor held its PID).

    A zombie (dead, its parent has not yet waited for it: right after `kill -9` from a shell) answers
    os.kill and keeps its PID and start time, yet runs nothing and holds no lock: it is dead here."""
    if sys.platform == "win32":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = process_stat(pid)
    if stat is None:  # the OS does not say (no /proc: macOS), or the process is gone since
        return True
    state, now = stat
    return state not in DEAD_STATES and (started is None or now is None or now == started)


DEAD_STATES = (b"Z", b"X")  # /proc/PID/stat's state of a process that has exited: zombie, dead


def process_started(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux: /proc/PID/stat's 22nd field); None
    where the OS does not say (no /proc: macOS, Windows) or the process is gone. With the PID it names
    one process: no two processes of one PID start at the same tick."""
    stat = process_stat(pid)
    return None if stat is None else stat[1]


def process_stat(pid: int) -> tuple[bytes, int | None] | None:
    """Process `pid`'s state (/proc/PID/stat's 3rd field: b"R", b"S", b"Z" ...) and start (its 22nd, see
    `process_started`); None where the OS does not say or the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat.rpartition(b")")[2].split()  # after the command's name, which may hold spaces and ")": the 3rd on
    if not fields:
        return None
    try:
        return fields[0], int(fields[22 - 3])
    except (ValueError, IndexError):
        return fields[0], None
