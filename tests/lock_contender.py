"""One contender of test_runs' lock race, in a module of its own: a spawned process imports only this
and charlm.run_lock (under a second), not the test module with its conftest and torch (seconds each)."""

import os
import threading
import time
from pathlib import Path

from charlm import run_lock
from charlm.errors import CharLMError

NAMED = "is in use by process "  # a refusal that names the lock's owner

HOLD_SECONDS, TRIAL_SECONDS = 0.06, 0.08  # contenders start together: each tries within the hold (ms apart)


def take_lock_in_each_trial(folders: list[str], ready, start_time) -> None:
    """One contender: at each trial's start time (the same for all contenders) it tries to take that
    trial folder's lock; if it gets it, it holds it HOLD_SECONDS and writes down when."""
    ready.wait()
    while not start_time.value:
        time.sleep(0.001)
    held = []
    for i, folder in enumerate(folders):
        begin = start_time.value + i * TRIAL_SECONDS
        time.sleep(max(0.0, begin - time.monotonic()))
        try:
            with run_lock.RunLock(Path(folder)):
                began = time.monotonic()
                time.sleep(HOLD_SECONDS)
                held.append(f"{folder} {began} {time.monotonic()}")
        except CharLMError:
            pass
    Path(folders[0]).parent.joinpath(f"held-{os.getpid()}").write_text("\n".join(held))


def take_and_release_in_rounds(folder: str, rounds: int, together, refusals) -> None:
    """One contender of a race of zero-length holds: each round, released with the others by `together` (a
    Barrier), it takes `folder`'s lock and lets it go at once. It puts its PID and the refusals it got on
    `refusals` (a Queue). A refusal that names no owner ends the race for all (the barrier broken): one is
    enough to fail, and each waited a second for an owner to name itself."""
    refused = []
    try:
        for _ in range(rounds):
            together.wait(timeout=60)
            try:
                with run_lock.RunLock(Path(folder)):
                    pass
            except CharLMError as e:
                refused.append(str(e))
                if NAMED not in str(e):
                    together.abort()
    except threading.BrokenBarrierError:
        pass
    refusals.put((os.getpid(), refused))
