"""The thread governor, on a simulated CPU whose load changes: it must find the faster thread count
and follow the load both ways."""

import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import charlm
from charlm import threads, trainer
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
    monkeypatch.setattr(threads._command, "pinned", None)
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
    monkeypatch.setattr(threads._command, "pinned", None)
    monkeypatch.setattr(torch, "set_num_threads", lambda count: None)
    with pytest.warns(UserWarning, match="threads=4 is more than the 2 cores this process may use"):
        threads.configure(4)


class FakeMachine:
    """torch's thread count and the clock that sampling's and scoring's steps time themselves with, both
    faked: a step takes `cost[threads]` seconds of the fake clock (each of its two readings moves the
    clock on by half), whatever the real machine does. The caller's thread count starts at `count`."""

    def __init__(self, cost: dict, count: int = 2):
        self.cost, self.count, self.now, self.sets, self.counts = cost, count, 0.0, [], []

    def set_num_threads(self, count: int) -> None:
        self.sets.append(count)
        self.count = count

    def get_num_threads(self) -> int:
        return self.count

    def perf_counter(self) -> float:
        self.counts.append(self.count)
        self.now += self.cost[self.count] / 2
        return self.now


@pytest.fixture
def tiny(tiny: dict) -> dict:
    """conftest's tiny run, its thread count left to the governor these tests are about."""
    return {name: value for name, value in tiny.items() if name != "threads"}


@pytest.fixture
def machine(monkeypatch) -> Iterator[FakeMachine]:
    """A 2-core machine (`FakeMachine`) on which no governor runs yet: a Python caller's first call. The
    real work runs on one real thread (fast on a loaded machine), whatever the fake count says."""
    import types

    from charlm import generation, scoring

    real_set, before = torch.set_num_threads, torch.get_num_threads()
    real_set(1)
    fake = FakeMachine(QUIET_STEP)
    clock = types.SimpleNamespace(perf_counter=fake.perf_counter)
    monkeypatch.setattr(generation, "time", clock)
    monkeypatch.setattr(scoring, "time", clock)
    monkeypatch.setattr(torch, "set_num_threads", fake.set_num_threads)
    monkeypatch.setattr(torch, "get_num_threads", fake.get_num_threads)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads._command, "governor", None)
    monkeypatch.setattr(threads._command, "pinned", None)
    yield fake
    real_set(before)


# Seconds a sampling step (or a scoring window) takes by threads: one core busy, two threads 15x slower
# than one (test_cli's governor test measured 94 chars/s against 1,775); quiet, two 1.5x faster (a call
# of 10 steps 0.4 s: 200 calls, 80 s, hold several of the governor's comparisons).
BUSY_STEP = {1: 0.004, 2: 0.06}
QUIET_STEP = {1: 0.06, 2: 0.04}


def test_a_python_callers_samples_take_fewer_threads_on_a_busy_machine_and_keep_that_between_calls(model, machine):
    """charlm.generate kept torch's count whatever the load: a notebook sampling while a training ran got
    two threads on one free core, 19x slower. Its calls now run under a governor, kept from call to call:
    each call here is shorter than a window (10 steps, 0.6 s at two threads), yet their windows add up,
    the next call starts where the last left off, and the caller's own count is back after every call."""
    machine.cost = BUSY_STEP
    for _ in range(40):
        charlm.generate(model, "ab", length=10)
        assert machine.count == 2  # the caller's count, for the notebook's own torch work
    assert machine.counts[-20:] == [1] * 20, machine.counts  # the last two calls, every step on one thread
    machine.counts.clear()
    charlm.generate(model, "ab", length=10)
    assert machine.counts[:2] == [1, 1], machine.counts  # the next call's first step: no new start at two


def test_a_python_callers_samples_keep_every_core_on_a_quiet_machine(model, machine):
    for _ in range(200):
        charlm.generate(model, "ab", length=10)
    assert machine.counts.count(2) > 0.9 * len(machine.counts)  # the comparisons with one thread cost little
    assert machine.counts[-20:] == [2] * 20 and machine.count == 2


def test_a_python_callers_scores_and_next_probs_take_fewer_threads_on_a_busy_machine(model, machine):
    """charlm.bits_per_char, the same: its windows teach the thread's governor, and next_probs, which
    measures nothing, runs on the count it learned; the caller's count is back after each."""
    machine.cost = BUSY_STEP
    text = "abc defgh\n" * 30  # 300 characters: two scoring windows, 0.12 s at two threads
    for _ in range(60):
        charlm.bits_per_char(model, text)
        assert machine.count == 2
    assert machine.counts[-8:] == [1] * 8, machine.counts
    counts, real_forward = [], type(model).forward

    def forward(*args, **keywords):
        counts.append(machine.count)
        return real_forward(*args, **keywords)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(model), "forward", forward)
        charlm.next_probs(model, "ab")
    assert counts == [1] and machine.count == 2


def test_a_stream_steps_under_the_governor_and_yields_on_the_callers_count(model, machine, monkeypatch):
    """charlm.stream's steps run on the governor's count, the caller's code between pieces on its own:
    after every piece, after the stream is closed early, and after a step that raised."""
    from charlm.generation import Batch

    machine.cost = BUSY_STEP
    for _ in range(40):
        for _ in charlm.stream(model, "ab", length=10):
            assert machine.count == 2
    assert machine.counts[-20:] == [1] * 20, machine.counts
    pieces = charlm.stream(model, "ab", length=10)
    next(pieces), next(pieces)
    pieces.close()
    assert machine.count == 2

    def broken(batch):
        raise RuntimeError("a step failed")

    monkeypatch.setattr(Batch, "step", broken)
    for call in (lambda: list(charlm.stream(model, "ab", length=5)), lambda: charlm.generate(model, "ab", length=5)):
        with pytest.raises(RuntimeError, match="a step failed"):
            call()
        assert machine.count == 2


def test_a_python_caller_that_set_one_thread_keeps_it(model, machine):
    """torch.set_num_threads(1) (or OMP_NUM_THREADS=1) is the caller's pin: charlm never sets another count.
    A larger count the caller set is the most charlm uses."""
    machine.cost, machine.count = BUSY_STEP, 1
    for _ in range(20):
        charlm.generate(model, "ab", length=10)
        charlm.bits_per_char(model, "abc defgh\n" * 30)
    assert machine.sets == [] and machine.count == 1


def test_a_count_the_caller_changes_between_calls_starts_afresh_from_it(model, machine):
    machine.cost = BUSY_STEP
    for _ in range(40):
        charlm.generate(model, "ab", length=10)
    assert machine.counts[-1] == 1
    machine.count = 4  # the caller's torch.set_num_threads(4) on this 2-core machine: at most its 2 cores
    machine.counts.clear()
    charlm.generate(model, "ab", length=10)
    assert machine.counts[:2] == [2, 2] and machine.count == 4


def test_calls_of_many_samples_and_of_one_in_turns_are_measured_apart(model, machine):
    """A notebook's calls of 8 samples and of one, seven of each in turns: a window that straddled them
    mixed a step's 8 characters with a lone row's 1, and read the change as the machine's (a quiet one
    got one thread for 34% of its steps, where two are 1.5x faster). Each number of rows now fills
    windows of its own, kept while the other runs (14%: a comparison waits for a window of its own kind,
    the other kind's steps on its count meanwhile; 7% where every call has one row)."""
    for call in range(200):
        charlm.generate(model, "ab", length=10, num_samples=1 if call // 7 % 2 else 8)
    assert machine.counts.count(2) > 0.8 * len(machine.counts)


@pytest.fixture
def quick_governors(monkeypatch) -> None:
    """Governors that measure windows of 10 ms and compare counts every few windows, on 2 cores: a test
    of a few seconds holds dozens of their comparisons (each sets a thread count)."""
    monkeypatch.setattr(threads, "WINDOW_SECONDS", 0.01)
    monkeypatch.setattr(threads, "EXPLORE_AFTER", (0.01, 0.04))
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads._command, "governor", None)
    monkeypatch.setattr(threads._command, "pinned", None)


def on_one_thread(call):
    """What `call()` returns, run alone on a new thread whose torch count is 1: a seeded text as exact
    as any load leaves it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: (threads.pin_this_thread(1), call())[1]).result()


def sample_until(done: threading.Event, model, count: int, seeds: range, deadline: float) -> list:
    """Seeded samples drawn over and over on a thread whose count is `count` until `done` (at least one
    round): each round's texts and the thread's count after each call."""
    threads.pin_this_thread(count)
    rounds = []
    while not rounds or (not done.is_set() and time.monotonic() < deadline):
        texts = []
        for seed in seeds:
            texts.append(charlm.generate(model, "ab", length=30, random_seed=seed))
            texts.append(torch.get_num_threads())
        rounds.append(texts)
    return rounds


def test_threads_sampling_while_another_trains_keep_their_own_counts_and_texts(model, fox_file, tiny, quick_governors):
    """charlm.train's governor took every thread's samples as its own: a thread sampling while another
    trained fed the training's windows, and the comparisons they started set the count of the sampling
    thread (a caller's pinned 1 became 2, its 2 became 1, and stayed after the call), while the training
    governor believed it had set its own. Each thread's samples now run under its own rule."""
    seeds = range(4)
    alone = on_one_thread(lambda: [charlm.generate(model, "ab", length=30, random_seed=seed) for seed in seeds])
    done, deadline = threading.Event(), time.monotonic() + 20
    with ThreadPoolExecutor(2) as pool:
        samplers = [pool.submit(sample_until, done, model, count, seeds, deadline) for count in (1, 2)]
        try:
            charlm.train(fox_file, **{**tiny, "max_steps": 40})
        finally:
            done.set()
        rounds = [sampler.result() for sampler in samplers]
    for count, drawn in zip((1, 2), rounds):
        for texts in drawn:
            assert texts[1::2] == [count] * len(seeds), (count, texts[1::2])
            assert texts[0::2] == alone


def test_python_threads_sampling_at_once_keep_their_own_counts_and_texts(model, quick_governors):
    """Each Python thread's calls run under a governor of its own (`for_python_caller`): threads
    generating at once, and a stream read in one thread while another generates, each end every call
    on the count it had (1 or 2) and write what a lone call writes."""
    seeds = range(6)
    alone = on_one_thread(lambda: [charlm.generate(model, "ab", length=30, random_seed=seed) for seed in seeds])
    streamed = on_one_thread(lambda: "".join(charlm.stream(model, "ab", length=200, random_seed=9)))
    start = threading.Barrier(5)

    def generating(count: int) -> list:
        threads.pin_this_thread(count)
        start.wait(5)
        drawn = []
        for _ in range(3):
            for seed in seeds:
                drawn += [charlm.generate(model, "ab", length=30, random_seed=seed), torch.get_num_threads()]
        return drawn

    def streaming(count: int) -> list:
        threads.pin_this_thread(count)
        start.wait(5)
        pieces, counts = [], set()
        for piece in charlm.stream(model, "ab", length=200, random_seed=9):
            pieces.append(piece)
            counts.add(torch.get_num_threads())  # the caller's code between pieces: on its own count
        return ["".join(pieces), counts]

    with ThreadPoolExecutor(5) as pool:
        generators = [pool.submit(generating, count) for count in (1, 2, 2)]
        streams = [pool.submit(streaming, count) for count in (1, 2)]
        for count, future in zip((1, 2, 2), generators):
            drawn = future.result(timeout=30)
            assert drawn[1::2] == [count] * 3 * len(seeds)
            assert drawn[0::2] == alone * 3
        for count, future in zip((1, 2), streams):
            assert future.result(timeout=30) == [streamed, {count}]


def test_two_threads_training_at_once_each_train_governed_and_leave_no_governor_behind(
    fox_file, tiny, quick_governors, monkeypatch
):
    """The governor charlm.train starts was the process's: a second thread's charlm.train, begun while
    the first trained, found the first's and kept it, so its own steps went ungoverned (the first's
    governor sets only its own thread's count); and, ending last, it put back the first's governor as
    found, which then went on governing the first thread after its call had returned. Each thread now
    keeps its own rule, and finds it again after the call; each keeps its torch count."""
    real_fit, governed, first_fitting, first_done = trainer.Trainer.fit, {}, threading.Event(), threading.Event()

    def fit(self):
        name = threading.current_thread().name
        if name == "first":
            first_fitting.set()
        model = real_fit(self)
        governed[name] = threads.command_governor() is not None
        if name == "second":
            first_done.wait(20)  # ends after the first thread's call has returned
        return model

    monkeypatch.setattr(trainer.Trainer, "fit", fit)

    def train(name: str, count: int) -> int:
        threading.current_thread().name = name
        threads.pin_this_thread(count)
        if name == "second":
            first_fitting.wait(20)
        charlm.train(fox_file, out=name, **{**tiny, "max_steps": 30})
        return torch.get_num_threads()

    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(train, "second", 2)
        name = threading.current_thread().name
        try:
            first = train("first", 1)
        finally:
            threading.current_thread().name = name
            first_done.set()
        assert (first, second.result()) == (1, 2)  # each thread's count as it was
    assert governed == {"first": True, "second": True}
    assert threads.command_governor() is None  # as before the call: nothing governs this thread's count


def test_a_thread_started_while_another_trains_samples_on_the_callers_count_not_the_trainings(
    model, fox_file, tiny, monkeypatch
):
    """torch.set_num_threads also sets the count every thread starts with that has not run torch's parallel
    work yet: a thread the caller started while charlm.train(threads=1) ran in another (a web app's
    request thread) took the training's 1 as its own, so charlm.generate there read it as the caller's pin
    of one thread, ran ungoverned, and left the thread on 1 for good. A thread started meanwhile now
    starts from the caller's count (2 here), its calls governed, its count 2 again after them."""
    fitting, sampled = threading.Event(), threading.Event()
    real_fit = trainer.Trainer.fit

    def fit(self):
        fitting.set()
        sampled.wait(20)  # the training's count pinned while the new thread samples
        return real_fit(self)

    monkeypatch.setattr(trainer.Trainer, "fit", fit)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)

    def sample() -> tuple[int, int, bool]:
        found = torch.get_num_threads()  # this new thread's first parallel count: the process's now
        charlm.generate(model, "ab", length=5)
        return found, torch.get_num_threads(), threads._callers.governor is not None

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's count, which its threads start from
    try:
        with ThreadPoolExecutor(1) as training:
            trained = training.submit(charlm.train, fox_file, out="run", threads=1, **{**tiny, "max_steps": 2})
            assert fitting.wait(20)
            try:
                with ThreadPoolExecutor(1) as sampling:
                    drawn = sampling.submit(sample).result(timeout=20)
            finally:
                sampled.set()
            trained.result(timeout=60)
    finally:
        torch.set_num_threads(before)
    assert drawn == (2, 2, True)
