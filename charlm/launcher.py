"""What torchrun tells a process (its rank, in environment variables) and what a process tells torchrun
(its error, in a file), without torch: a usage error (`charlm sample --bogus`), said by rank 0 alone under torchrun,
answers as fast as --help (importing distributed.py for this would load torch first, about a second)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path


def first_rank() -> bool:
    """Whether this process is rank 0 of a torchrun job, or no rank of one (RANK read as
    `distributed.Ranks.from_env` reads it)."""
    return os.environ.get("RANK", "0").strip() in ("0", "") or "WORLD_SIZE" not in os.environ


def by_torchrun() -> bool:
    """Whether torchrun's agent started this process (its run id, or the store it shares with its ranks):
    every rank's output then meets in torchrun's one terminal, so an error every rank meets alike (an
    option) is rank 0's to say. Each rank started by hand is watched in a terminal of its own, and says it."""
    return "TORCHELASTIC_RUN_ID" in os.environ or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"


def rank_name() -> str:
    """How a rank names itself in an error of its own: `process 1 of 2` (`process ? of 2` without a RANK)."""
    return f"process {os.environ.get('RANK', '').strip() or '?'} of {os.environ.get('WORLD_SIZE', '?').strip()}"


# Seconds a rank that leaves the error to rank 0 waits before it exits: torchrun stops every rank as
# soon as one exits, and rank 0, started a moment later on a loaded machine, must live to say it.
QUIET_GRACE = 2.0


def leave_quietly(status: int) -> None:
    """Exit with `status` and no word, as a rank whose error rank 0 says (`first_rank`); a moment later
    under torchrun (QUIET_GRACE), else at once. Rank 0 ignores torchrun's stop once it has told it the
    error (`tell_launcher`), and ends the job itself."""
    if "WORLD_SIZE" in os.environ:
        time.sleep(QUIET_GRACE)
    raise SystemExit(status)


def tell_launcher(message: str) -> None:
    """Under torchrun, the error this rank says for the job: torchrun's closing summary shows it as the
    failure's 'traceback', in place of a pointer to its docs, so the user's line is also the last one
    printed. Dated a second early: torchrun dates the quiet ranks' failures when it sees them, in whole
    seconds, and takes the earliest as the root cause. torchrun's SIGTERM, sent as soon as a quiet rank
    has exited, is ignored from here on, so this rank lives to print the line."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    when = str(int(time.time()) - 1)
    record = {"message": {"message": message, "extraInfo": {"py_callstack": message, "timestamp": when}}}
    with contextlib.suppress(OSError):
        Path(path).write_text(json.dumps(record), encoding="utf-8")
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
