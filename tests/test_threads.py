"""The thread governor, on a simulated CPU whose load changes: it must find the faster thread count
and follow the load both ways."""

import threading
import warnings

import pytest
import torch

import charlm
from charlm import threads
from charlm.threads import EXPLORE_AFTER, Governor

# Characters per second of a training step on 2 cores, by threads, quiet and with one core busy
# (shaped like the measurements: 2,871 / 367 / 1,696 steps in 40 s).
QUIET = {1: 0.59, 2: 1.0}
BUSY = {1: 0.59, 2: 0.13}


class SimulatedCPU:
    def __init__(self):
        self.threads, self.load, self.clock, self.trace = 2, QUIET, 0.0, []

    def set_threads(self, n: int) -> None:
        self.threads = n

    def run(self, governor: Governor, seconds: float, load: dict) -> float:
        """Steps of 0.05 s of work for `seconds`; returns the share of the time spent at the best count."""
        self.load, best, spent = load, max(load, key=load.get), 0.0
        for _ in range(int(seconds / 0.05)):
            governor.record(0.05, 0.05 * 10_000 * load[self.threads])
            spent += 0.05 * (self.threads == best)
            self.trace.append(self.threads)
        return spent / seconds


def test_on_a_quiet_machine_it_keeps_every_core_most_of_the_time():
    cpu = SimulatedCPU()
    governor = Governor(2, cpu.set_threads)
    assert cpu.run(governor, 600, QUIET) > 0.97  # the comparisons with 1 thread cost under 3%


def test_it_drops_to_one_thread_when_a_core_gets_busy_and_comes_back_when_it_is_free():
    cpu = SimulatedCPU()
    governor = Governor(2, cpu.set_threads)
    cpu.run(governor, 120, QUIET)
    assert governor.threads == 2
    cpu.run(governor, 5, BUSY)  # a slowdown triggers a comparison at once
    assert governor.threads == 1
    assert cpu.run(governor, 300, BUSY) > 0.97
    cpu.run(governor, EXPLORE_AFTER[1] + 5, QUIET)  # nothing slows down: found by the next comparison
    assert governor.threads == 2


def test_one_core_has_nothing_to_compare():
    cpu = SimulatedCPU()
    governor = Governor(1, cpu.set_threads)
    cpu.run(governor, 60, {1: 1.0})
    assert set(cpu.trace) == {1}


def test_threads_can_be_pinned(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    threads.configure(1)
    threads.record(5.0, 100.0)  # pinned: nothing adapts
    assert calls == [1]
    threads.configure(None, torch.device("cuda", 0))  # GPU work does not run on these threads
    threads.record(5.0, 100.0)
    assert calls == [1]


@pytest.mark.parametrize("value", [0, 5000])
def test_a_thread_count_out_of_range_is_refused(value):
    from charlm import Config
    from charlm.errors import CharLMError

    with pytest.raises(CharLMError, match="threads must be between 1 and"):
        Config(threads=value)


def test_calibration_takes_the_faster_count_at_once():
    cpu = SimulatedCPU()
    governor = Governor(2, cpu.set_threads)
    cpu.load = BUSY
    governor.calibrate(lambda: BUSY[cpu.threads])
    assert governor.threads == cpu.threads == 1
    cpu.load = QUIET
    governor.calibrate(lambda: QUIET[cpu.threads])
    assert governor.threads == cpu.threads == 2


def test_it_climbs_back_to_every_core_when_every_core_becomes_fastest():
    """On 8 cores, once at 4 threads it must still try 8: halving alone would keep it at 4 for good."""
    cpu = SimulatedCPU()
    cpu.threads = 8
    governor = Governor(8, cpu.set_threads)
    cpu.run(governor, 30, {1: 0.2, 2: 0.35, 4: 0.45, 8: 0.1})  # four cores busy: 4 threads are fastest
    assert governor.threads == 4
    assert cpu.run(governor, 3000, {1: 0.2, 2: 0.35, 4: 0.45, 8: 0.8}) > 0.9  # the cores are free again
    assert governor.threads == 8


def test_cheaper_evaluation_characters_do_not_trigger_comparisons():
    """Evaluation scores characters several times faster than training trains them; a window of each in
    turn must not read as a machine that slowed down (which starts a comparison at once)."""

    def comparisons(evaluate: bool) -> int:
        cpu, calls = SimulatedCPU(), []
        governor = Governor(2, lambda n: (calls.append(n), cpu.set_threads(n)))
        for _ in range(60):
            for _ in range(40):  # 2 s of training
                governor.record(0.05, 0.05 * 10_000 * QUIET[cpu.threads])
            for _ in range(30 if evaluate else 0):  # 1.5 s of scoring, 4 times the characters per second
                governor.record(0.05, 0.05 * 40_000 * QUIET[cpu.threads], "score")
        return calls.count(1)  # each comparison on 2 cores tries 1 thread

    assert comparisons(evaluate=False) <= 8  # the doubling schedule over 120 s of training
    assert comparisons(evaluate=True) <= comparisons(evaluate=False) + 2


def test_more_threads_than_cores_is_warned_of():
    before = torch.get_num_threads()
    try:
        with pytest.warns(UserWarning, match=f"threads=1024 is more than the {threads.available_cores()} cores"):
            threads.configure(1024)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            threads.configure(1)
    finally:
        torch.set_num_threads(before)


def test_a_pinned_thread_keeps_its_count_when_another_thread_sets_one_later():
    """`charlm serve` primes on one torch thread beside an engine on --threads: each thread pins its own.
    torch gives a thread the process's count the first time the thread needs one, so a count set
    before that (here 1, then the process's set to 2 by another thread) was overwritten."""
    before, pinned, counts = torch.get_num_threads(), threading.Event(), []
    other_set = threading.Event()

    def primer():
        threads.pin_this_thread(1)
        pinned.set()
        other_set.wait(10)
        torch.randn(300, 300) @ torch.randn(300, 300)  # parallel work
        counts.append(torch.get_num_threads())

    worker = threading.Thread(target=primer)
    try:
        worker.start()
        pinned.wait(10)
        torch.set_num_threads(2)  # as the engine's thread does, while the other is pinned
        other_set.set()
        worker.join(10)
    finally:
        torch.set_num_threads(before)
    assert counts == [1]


def test_a_run_pinned_to_more_threads_than_cores_is_warned_once_at_the_callers_line(fox_file, tiny, monkeypatch):
    """A run sets its threads before planning and again as it trains: `--threads 4` on 2 cores printed
    its warning twice. And it pointed at charlm/threads.py's line, not at the caller's `charlm.train`
    (quiet=True or not: a warning about the caller's own option is not the run's chatter). It named the
    flag --threads, which a Python caller never typed: it names threads=N as written."""
    monkeypatch.setattr(threads, "_pinned", None, raising=False)
    before = torch.get_num_threads()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            charlm.train(fox_file, out="run", threads=(too_many := 2 * threads.available_cores()), **tiny)
    finally:
        torch.set_num_threads(before)
    (warned,) = [w for w in caught if "cores this process may use" in str(w.message)]
    assert warned.filename == __file__, warned.filename
    assert str(warned.message).startswith(f"threads={too_many} is more than the"), warned.message
    assert str(warned.message).endswith(f"so threads={threads.available_cores()} or fewer runs faster")


def test_under_torchrun_a_process_is_warned_of_more_threads_than_its_share_of_the_cores(monkeypatch):
    """torchrun's N processes on one machine share its cores (the governor takes cores // N): --threads
    above a process's share was not warned of until it exceeded the whole machine's."""
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr(threads, "_pinned", None, raising=False)
    monkeypatch.setattr(torch, "set_num_threads", lambda count: None)
    with pytest.warns(UserWarning, match="threads=4 is more than the 2 cores this process may use"):
        threads.configure(4)
