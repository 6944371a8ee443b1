from __future__ import annotations

import builtins
import contextlib
import copy
import errno
import importlib
import io
import os
import random
import resource
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench import browser as headless
from bench.common import served_url, wait_healthy  # noqa: F401  (one copy, for the tests that start a server)
from charlm import checkpoint, files, runs, threads, trainer
from charlm.checkpoint import Checkpoint
from charlm.cli import main
from charlm.errors import CharLMError
from charlm.export import onnx as onnx_export
from charlm.model import CharLM, ModelConfig
from charlm.vocab import Vocab

from . import forkserver

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPORA = Path(os.environ.get("CHARLM_SHARED_CORPORA", REPO.parent / "shared" / "corpora"))
# onnxruntime's telemetry writes a session file (.ses) into the temp folder of each process that imports it
# while this is unset (charlm's onnx export sets it, as the tests that import onnxruntime first do not)
os.environ.setdefault(onnx_export.TELEMETRY_OFF, "1")

# Small enough that a run takes a second or two on 2 cores. One thread: at 64 cells or fewer an AVX2 CPU's
# LSTM gradient has other last bits on 2 threads, so two runs compared bit for bit must not let the governor
# pick their counts apart (docs/data-and-checkpoints.md, "Repeating a run").
TINY = {
    "layers": 1,
    "hidden": 32,
    "seq_len": 8,
    "batch_size": 4,
    "max_steps": 20,
    "max_time": None,
    "eval_every": 10,
    "warmup_steps": 2,
    "quiet": True,
    "threads": 1,
}


def missing(message: str) -> None:
    """A tool or package the test extra or .ci/run installs is absent: a skip that says so here, a
    failure under CI (where its absence is a broken setup, not a reason to test less)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message, allow_module_level=True)


def import_or_missing(name: str):
    """The module, or `missing` for one the test extra installs (pip install -e '.[test]')."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"{name} is not installed (pip install -e '.[test]')")


# Where the `cuda` tests run: a GPU, or the CPU for their dry run (`CHARLM_TEST_DEVICE=cpu`, set by
# `bench/gpu_check.sh --cpu`): the same test bodies, the CPU compared with itself, so that a mistake in a
# test shows here rather than in the few minutes a GPU is lent for.
GPU_TEST_DEVICE = os.environ.get("CHARLM_TEST_DEVICE", "cuda")


def pytest_configure(config) -> None:
    """Started from a background job (`nohup`, `&` in a script), pytest inherits Ctrl-C ignored, and so
    does every process a test starts: the tests of what Ctrl-C does failed there. They get what a
    terminal gives, Python's own handler here, and the default (then Python's) in a child."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items) -> None:
    """`cuda` tests need a GPU: without one they are skipped, saying so (CI has none; a GPU check runs
    them), unless they are dry-run on the CPU (GPU_TEST_DEVICE)."""
    if torch.cuda.is_available() or not GPU_TEST_DEVICE.startswith("cuda"):
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run bench/gpu_check.sh on one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Every test runs in its own folder, so checkpoints/ and corpora/ land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def fresh_callers_governors(monkeypatch):
    """Every test's Python calls start with no thread governor of their own (`threads.for_python_caller`
    keeps one per Python thread from call to call): what an earlier test's sampling taught it would
    change the counts a later test's samples run on."""
    monkeypatch.setattr(threads, "_callers", threads.CallerRule())


@pytest.fixture(scope="session", autouse=True)
def one_tls_context_for_httpx() -> Iterator[None]:
    """httpx gives each client a TLS context of its own, reading ~150 certificates for it (~25 ms, ~60 ms on
    a busy machine), and httpx.get, post and stream make a client a call: the server tests' ~450 clients
    and bench.common.wait_healthy's polls spent ~20 s on contexts that no request to a 127.0.0.1 server
    (plain HTTP) opens. Clients given no TLS settings share one, made once for the certificates they read.
    Only where a test module imported httpx (the server tests): no other process pays for its import."""
    transports = sys.modules.get("httpx._transports.default")
    if transports is None or not hasattr(transports, "create_ssl_context"):
        yield
        return
    make, made = transports.create_ssl_context, {}

    def create_ssl_context(verify=True, cert=None, trust_env=True, **more):
        if verify is not True or cert is not None or more:  # settings of its own (a newer httpx's too): its own
            return make(verify=verify, cert=cert, trust_env=trust_env, **more)
        where = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")) if trust_env else None
        if (trust_env, where) not in made:  # the certificates it reads: the same, the same context
            made[trust_env, where] = make(verify=True, trust_env=trust_env)
        return made[trust_env, where]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transports, "create_ssl_context", create_ssl_context)
        yield


@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture
def fox_file(tmp_path) -> Path:
    path = tmp_path / "fox.txt"
    path.write_text("the quick brown fox jumps over the lazy dog\n" * 60, encoding="utf-8")
    return path


def shared_corpus(name: str) -> Path:
    path = SHARED_CORPORA / name
    if not path.is_file():
        pytest.skip(f"{path} not found: these tests read the real corpora from ../shared/corpora")
    return path


def run_cli(*args: str, check: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m charlm ARGS` in a real process, as a user runs it (`start_charlm`), to its end."""
    process = start_charlm(*args)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()  # when it ran past `timeout`, as subprocess.run does; nothing once it has ended
    result = subprocess.CompletedProcess([sys.executable, "-m", "charlm", *args], process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"charlm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def cli_args(options: dict) -> list[str]:
    """Training options as `charlm train` flags: `--name value`, a bare `--name` for True, `none` for None."""
    args = []
    for name, value in options.items():
        flag = f"--{name.replace('_', '-')}"
        args += [flag] if value is True else [flag, "none" if value is None else str(value)]
    return args


def run_bench(name: str, *args: str) -> str:
    """`python -m bench.NAME ARGS` from the test's own folder (so its corpora/ and checkpoints/ land
    there); its stdout, after asserting it succeeded (exit status 0, or its stdout and stderr)."""
    code, stdout, stderr = bench_ended(name, *args)
    assert not code, stdout + stderr
    return stdout


def bench_ended(name: str, *args: str) -> tuple[int, str, str]:
    """`python -m bench.NAME ARGS` as `run_bench` runs it: its exit status, stdout and stderr, however it ended.

    Run in this process (`runpy`, as `-m` runs it), which saves the ~2 s a process of its own spends
    importing torch: the scripts install no signal handlers, start processes only as children of their
    own and leave by returning or by SystemExit; `process_state` puts back what they change of this
    process (charlm's thread governor, torch's generator, ...)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with process_state(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        sys.argv = [str(REPO / "bench" / f"{name}.py"), *args]
        try:
            warnings.filterwarnings("ignore", "'bench.* found in sys.modules", RuntimeWarning)  # a test imported it
            runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as stop:  # as the interpreter ends: a message is printed, its status 1
            code = stop.code
            if code is not None and not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        except Exception:  # noqa: BLE001  (as the interpreter reports it: the traceback, status 1)
            traceback.print_exc()
            code = 1
    return code or 0, stdout.getvalue(), stderr.getvalue()


def flushes_denormals() -> bool:
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


@contextlib.contextmanager
def process_state() -> Iterator[None]:
    """Puts back what code run in this process (a bench script, as its own process ran it) may change of
    the process: argv, the folder, the environment, torch's threads (and charlm's governors of them),
    default dtype, matmul precision, grad mode, flush-denormal, the random generators, warnings filters.
    Signal handlers it may not touch: asserted."""
    argv, cwd, environ = list(sys.argv), os.getcwd(), dict(os.environ)
    torch_threads, governor = torch.get_num_threads(), threads._command.governor
    governed = copy.deepcopy(vars(governor)) if governor else None  # what it learned: its count, its speeds
    callers = copy.deepcopy(vars(threads._callers))  # this thread's Python calls' governor (for_python_caller)
    dtype, precision = torch.get_default_dtype(), torch.get_float32_matmul_precision()
    grad, denormal = torch.is_grad_enabled(), flushes_denormals()
    rng = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        with warnings.catch_warnings():
            yield
    finally:
        sys.argv = argv
        os.chdir(cwd)
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)
        torch.set_num_threads(torch_threads)
        threads._command.governor = governor
        if governor:
            vars(governor).update(governed)
        vars(threads._callers).clear()
        vars(threads._callers).update(callers)
        torch.set_default_dtype(dtype)
        torch.set_float32_matmul_precision(precision)
        torch.set_grad_enabled(grad)
        torch.set_flush_denormal(denormal)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.random.set_rng_state(rng[2])
    assert {number: signal.getsignal(number) for number in handlers} == handlers, "a signal handler was left set"


# The tiny training options as command-line arguments: the loop's (what a fine-tuning run may set) and
# with them the size; no step limit or cadence.
TINY_LOOP_ARGS = cli_args({name: TINY[name] for name in ("seq_len", "batch_size", "max_time", "quiet", "threads")})
TINY_ARGS = [*cli_args({name: TINY[name] for name in ("layers", "hidden")}), *TINY_LOOP_ARGS]


def cli(*args: str, input: bytes | str | None = None):
    """`charlm ARGS` in this process, through click's test runner, `input` on its standard input."""
    return CliRunner().invoke(main, list(args), input=input)


def assert_one_line_error(result, *fragments: str) -> None:
    """A failed command printed exactly one line, `Error: ...`, holding every fragment, no traceback."""
    output = result.output if hasattr(result, "output") else result.stdout + result.stderr
    assert result.exit_code if hasattr(result, "exit_code") else result.returncode
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def without_file_locks(monkeypatch) -> None:
    """flock(2) fails with ENOLCK, as on an NFS mount without its lock service (the lock is taken, not
    released, by LOCK_EX)."""
    fcntl = pytest.importorskip("fcntl")
    real_flock = fcntl.flock

    def flock(fd, operation):
        if operation & fcntl.LOCK_EX:
            raise OSError(errno.ENOLCK, "No locks available")
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)


@contextlib.contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """Writes past `size` bytes fail (EFBIG), as on a full disk: this process's soft RLIMIT_FSIZE, with
    SIGXFSZ ignored so the write returns the error; no root needed. Keep output quiet inside: pytest's
    own capture files are held to the limit too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def trained_once(tmp_path_factory, name: str) -> Path:
    """A tiny run on the fox text, trained in a folder of its own (its corpus cache too) for a module's
    tests to read or copy: its run folder."""
    import charlm

    folder = tmp_path_factory.mktemp(name)
    text = folder / "fox.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 60, encoding="utf-8")
    here = os.getcwd()
    os.chdir(folder)  # not contextlib.chdir: Python 3.10 has none
    try:
        charlm.train(text, out="run", **TINY)
    finally:
        os.chdir(here)
    return folder / "checkpoints" / "run"


def latest(run: str) -> Checkpoint:
    """The latest checkpoint of a run folder (a name under checkpoints/ or a path)."""
    return checkpoint.read(runs.resolve(run, prefer=runs.LATEST))


def make_model(
    vocab: Vocab | str, cell: str = "lstm", layers: int = 2, hidden: int = 16, dropout: float = 0.0
) -> CharLM:
    """An untrained model over `vocab` (a Vocab, or a string of its characters)."""
    vocab = Vocab(vocab) if isinstance(vocab, str) else vocab
    return CharLM(ModelConfig(cell, layers, hidden, dropout, len(vocab)), vocab)


def state_telling(model: CharLM) -> CharLM:
    """`model` with its recurrent core's weights scaled up 8 times and its head's twice, in place: an
    untrained core forgets a prompt within a character or two and its next-character distribution hardly
    moves with the state, so two doors' seeded texts agreed even where one primed "e" for "the " (the same
    uniform draws pick the same character from near-equal distributions). Scaled, the state carries the
    prompt: such a text differs within a few characters, while the distribution stays broad."""
    with torch.no_grad():
        for name, weight in model.named_parameters():
            weight.mul_(8.0 if name.startswith("core.") else 2.0 if name.startswith("head.") else 1.0)
    return model


def block_import(monkeypatch, prefix: str) -> None:
    """Make `import prefix...` fail, as if the package were not installed."""
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.startswith(prefix):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)


TRAIN_ARGS = [*TINY_ARGS, "--dropout", "0.2"]


def start_charlm(*args: str, stdin: bool = False) -> forkserver.Forked:
    """`python -m charlm ARGS` started, its stdout and stderr (and stdin if `stdin`) piped here, read as a
    Popen's: a process forked from one that has imported torch (`forkserver`), ~2 s of CPU sooner (~3 s
    for a training, whose optimizer imports torch._dynamo)."""
    env = dict(os.environ)
    return forkserver.server(env).start(forkserver.CHARLM, ["-m", *args], env, stdin)


def fork_charlm_processes(monkeypatch) -> None:
    """The `python -m charlm ARGS` processes that code run in this test starts with subprocess.Popen (a
    bench script's trainings, its server) are started by `start_charlm`: each still a process of its own,
    ~3 s of CPU sooner. Their stdout and stderr are piped here, also where the script asked for DEVNULL
    (it does for quiet commands: a few lines). Any other command is Popen's own."""
    real_popen = subprocess.Popen

    def popen(command, *args, **kwargs):
        if isinstance(command, list) and command[:3] == [sys.executable, "-m", "charlm"]:
            # nothing start_charlm drops but a lifeline's group (bench.lifeline): the fork server's children end
            # with the tests' process (tests/forkserver.py)
            in_group = {"process_group", "preexec_fn"}
            assert not args and set(kwargs) <= {"stdout", "stderr", "text", "env", *in_group}, kwargs
            assert kwargs.get("env") in (None, os.environ), "start_charlm gives the process this one's environment"
            return start_charlm(*command[3:])
        return real_popen(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)


def fork_python_runs(monkeypatch) -> None:
    """The `python -c CODE ARGS` processes that code run in this test runs with subprocess.run, output
    captured as text (a bench script's measured children), are started by `start_python`: each still a
    process of its own, ~1.5 s of CPU sooner, its peak RSS counted from the server's (a figure no test
    checks). Any other command is run's own."""
    real_run = subprocess.run

    def run(command, *args, **kwargs):
        if isinstance(command, list) and command[:2] == [sys.executable, "-c"]:
            assert not args and set(kwargs) <= {"capture_output", "text", "check"}, kwargs  # nothing dropped
            assert kwargs.get("capture_output") and kwargs.get("text"), "start_python pipes and decodes both streams"
            stdout, stderr = (process := start_python(*command[2:])).communicate()
            result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
            if kwargs.get("check"):
                result.check_returncode()
            return result
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)


def start_python(code: str, *args: str) -> forkserver.Forked:
    """`python -c CODE ARGS` started, as `start_charlm` starts charlm: for code that imports torch."""
    env = dict(os.environ)
    return forkserver.server(env).start(code, ["-c", *args], env)


def interrupted_at(reached: Path, args: list[str], env: dict[str, str], signum: int = signal.SIGINT) -> tuple[int, str]:
    """`python -m charlm ARGS` in a process of its own with environment `env` (a hook or fake module on its
    PYTHONPATH), sent `signum` (Ctrl-C) once `reached` exists: its exit status and stderr. A hang-up ends it as
    one typed at a terminal, whatever the tests' process does with one (a CI run under nohup ignores it, and an
    ignored signal stays ignored in the processes it starts: the command slept on)."""
    command = [sys.executable, "-m", "charlm"]
    if signum == signal.SIGHUP:
        command = [
            sys.executable,
            "-c",
            f"import signal\nsignal.signal(signal.SIGHUP, signal.SIG_DFL)\n{forkserver.CHARLM}",
        ]
    process = subprocess.Popen([*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(reached, timeout=60)
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    return process.returncode, err


def start_training(*args: str) -> forkserver.Forked:
    """`python -m charlm train ARGS` started (`start_charlm`)."""
    return start_charlm("train", *args)


def left_running_after_a_kill(code: str, *args: str, timeout: float = 15) -> list[str]:
    """`python -c CODE ARGS` (this repository importable) SIGKILLed once it has printed a line, that is once
    what it starts runs, as a CI timeout, the OOM killer or `kill -9` ends a test run: the command lines
    of its descendants at that moment that still run `timeout` s after (polled), each then killed here,
    so that a test that finds some leaves none behind. What it leaves in its temporary folder (its TMPDIR:
    a browser profile) is removed. Needs Linux's /proc, with each thread's children."""
    if not any(Path("/proc/self/task").glob("*/children")):  # no /proc, or a kernel without CONFIG_PROC_CHILDREN
        pytest.skip("needs Linux's /proc/PID/task/TID/children to find a process's descendants")
    # short: a socket path in it (Chromium's) must fit in 108 bytes
    with tempfile.TemporaryDirectory(prefix="k-", ignore_cleanup_errors=True) as temporary:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "TMPDIR": temporary,
        }
        process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env)
        try:
            ready = process.stdout.readline()
            started = descendants(process.pid)
        finally:
            process.kill()
            process.wait()
            process.stdout.close()

        def still_running() -> list[int]:
            return [pid for pid, start in started.items() if running_since(pid) == start]

        deadline = time.monotonic() + timeout
        while still_running() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = []
        for pid in still_running():
            with contextlib.suppress(OSError):  # it ended just now
                command = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
                os.kill(pid, signal.SIGKILL)
                left.append(command)
        assert ready, "it ended before it printed a line"
        assert started, "it had started no process: none could be left running"
        return left


def descendants(pid: int) -> dict[int, str]:
    """The processes below process `pid` now, each with its start time (`running_since`)."""
    found, below = {}, [pid]
    while below:
        for children in Path(f"/proc/{below.pop()}/task").glob("*/children"):  # each thread's children
            with contextlib.suppress(OSError):  # it ended
                for child in map(int, children.read_text().split()):
                    if (start := running_since(child)) is not None:
                        found[child] = start
                        below.append(child)
    return found


def running_since(pid: int) -> str | None:
    """When process `pid` started, in clock ticks after boot (a later process given the same pid has
    another start); None where it has ended, a zombie too (an orphan's new parent may never reap it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # from field 3, the state, on
    except (OSError, IndexError):
        return None
    return None if fields[0] in "ZX" else fields[19]  # field 22: starttime


def at_once_in_rounds(work: Callable[[int], object], threads: int, rounds: int) -> tuple[list, list[str]]:
    """`work(i)` run by `threads` real threads at once (released together by a barrier, i from 0), `rounds`
    times over: what the calls returned, and the CharLMError of each call that raised one."""
    returned, errors = [], []

    def run(start: threading.Barrier, i: int) -> None:
        start.wait(timeout=60)
        try:
            returned.append(work(i))
        except CharLMError as e:
            errors.append(str(e))

    for _ in range(rounds):
        start = threading.Barrier(threads)
        running = [threading.Thread(target=run, args=(start, i)) for i in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join(timeout=60)
    return returned, errors


def wait_for(path, timeout: float = 120, newer_than: int = -1) -> None:
    """Until `path` exists and was written after `newer_than` (an st_mtime_ns)."""
    deadline = time.time() + timeout
    while not (path.exists() and path.stat().st_mtime_ns > newer_than):
        assert time.time() < deadline, f"{path} was not written"
        time.sleep(0.02)


@pytest.fixture
def model() -> CharLM:
    """A small untrained LSTM over ten characters, in eval mode."""
    torch.manual_seed(0)
    return make_model("\nabcdefgh ").eval()


def max_weight_difference(a: str, b: str) -> float:
    first, second = latest(a).weights, latest(b).weights
    return max((first[name] - second[name]).abs().max().item() for name in first)


# --- one headless Chromium for the page tests ----------------------------------------------------

# Seconds a shared browser may take to be given a clean slate before it counts as dead: a page that hung
# its renderer leaves chromedriver waiting on it, and every later command waits behind that one.
CLEAN_SLATE_TIMEOUT = 20


def clean_slate(driver, timeouts) -> bool:
    """Whether `driver` could be left as a freshly started browser is: one new tab showing a blank page,
    in a window of the start-up size, with no storage (local, session, cache), cookies, permissions or
    console entries of an earlier page, and the session's first timeouts. What a test set through CDP
    on its tab (emulated media or metrics, blocked URLs, scripts run on each page) goes with the tabs
    closed. False where the browser or chromedriver failed at it."""
    from selenium.common.exceptions import WebDriverException
    from urllib3.exceptions import HTTPError

    try:
        earlier = driver.window_handles
        driver.switch_to.new_window("tab")
        fresh = driver.current_window_handle
        for handle in earlier:
            driver.switch_to.window(handle)
            driver.close()
        driver.switch_to.window(fresh)
        driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": "*", "storageTypes": "all"})
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        driver.execute_cdp_cmd("Browser.resetPermissions", {})
        driver.set_window_size(*headless.WINDOW)
        driver.timeouts = timeouts
        driver.get_log("browser")  # read, so emptied
        return headless.shows_a_blank_page(driver)
    except (WebDriverException, HTTPError, OSError):  # urllib3's and the OS's: chromedriver is gone
        return False


def true_within(seconds: float, check) -> bool:
    """`check()` in a thread of its own: False where it has not returned True within `seconds`."""
    answers = []
    worker = threading.Thread(target=lambda: answers.append(check()), daemon=True)
    worker.start()
    worker.join(seconds)
    return answers == [True]


class SharedChromium:
    """The session's one headless Chromium (bench.browser's) for the page tests, rather than one each
    (1-2 s apiece, about 50 tests). `page()` hands it over with a clean slate; a browser that
    cannot be given one (a crashed tab, a hung page, chromedriver gone) is killed and a fresh one started,
    so one test that breaks it fails alone."""

    def __init__(self) -> None:
        self.running: contextlib.ExitStack | None = None
        self.driver = None
        self.timeouts = None

    def page(self):
        if self.driver is not None and true_within(
            CLEAN_SLATE_TIMEOUT, lambda: clean_slate(self.driver, self.timeouts)
        ):
            return self.driver
        self.close(dead=True)
        self.running = contextlib.ExitStack()
        self.driver = self.running.enter_context(headless.chromium())
        self.timeouts = self.driver.timeouts
        return self.driver

    def close(self, dead: bool = False) -> None:
        """Quits the browser; one found `dead` is killed after a second, not quit_or_kill's 30 s."""
        if self.driver is None:
            return
        if dead:
            headless.quit_or_kill(self.driver, timeout=1)
        self.running.close()
        self.running = self.driver = None


@pytest.fixture(scope="session")
def shared_chromium() -> Iterator[SharedChromium]:
    if not headless.installed():
        missing(headless.INSTALL)
    shared = SharedChromium()
    yield shared
    shared.close()


@pytest.fixture
def browser(shared_chromium):
    """Headless Chromium from the OS packages (`apt-get install chromium chromium-driver`), through
    Selenium: the session's one, as a freshly started one is (SharedChromium)."""
    return shared_chromium.page()


def disk_full_once_saved(monkeypatch, run_dir: Path) -> None:
    """A disk that fills once `run_dir` holds latest.pt: its later checkpoints are not written
    (`files.replace_files`; what else the run writes is)."""
    real = files.replace_files

    def no_room_for_more(contents: dict, before_rename=None) -> None:
        if any(path.suffix == ".pt" for path in contents) and (run_dir / runs.LATEST).exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        real(contents, before_rename)

    monkeypatch.setattr(files, "replace_files", no_room_for_more)


def ctrl_c_as_the_stop_scores(monkeypatch) -> None:
    """A second Ctrl-C as a run stopped after one evaluation scores its held-out text (the scoring takes a
    big model tens of seconds): the second scoring, the first being that evaluation's."""
    signalled_in_a_scoring(monkeypatch, signal.SIGINT)


def signalled_in_a_scoring(monkeypatch, signum: int, nth: int = 2) -> None:
    """The run sends itself `signum` as it starts scoring its held-out text the `nth` time: 2, the scoring of a stop,
    or of its last step, after a first evaluation; 1, that evaluation's."""
    real, scored = trainer.bits_per_char, []

    def signalled_as_it_scores(*args, **kwargs):
        scored.append(args)
        if len(scored) == nth:
            signal.raise_signal(signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "bits_per_char", signalled_as_it_scores)
