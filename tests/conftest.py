from __future__ import annotations

import builtins
import contextlib
import importlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bench.common import free_port, wait_healthy  # noqa: F401  (one copy, for the tests that start a server)
from charlm import checkpoint, runs
from charlm.checkpoint import Checkpoint
from charlm.cli import main
from charlm.model import CharLM, ModelConfig
from charlm.vocab import Vocab

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPORA = Path(os.environ.get("CHARLM_SHARED_CORPORA", REPO.parent / "shared" / "corpora"))

# Small enough that a run takes a second or two on 2 cores.
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


def pytest_collection_modifyitems(config, items) -> None:
    """`cuda` tests need a GPU: without one they are skipped, saying so (CI has none; a GPU check runs them)."""
    if torch.cuda.is_available():
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
    """`python -m charlm ARGS` in a real process, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "charlm", *args], check=False, capture_output=True, text=True, timeout=timeout
    )
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


def run_bench(name: str, *args: str, timeout: float = 300) -> str:
    """`python -m bench.NAME ARGS` from the test's own folder (so its corpora/ and checkpoints/ land
    there), the repository on the path; its stdout, after asserting it succeeded."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", f"bench.{name}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# The tiny training options as command-line arguments: the loop's (what a fine-tuning run may set) and
# with them the size; no step limit or cadence.
TINY_LOOP_ARGS = cli_args({name: TINY[name] for name in ("seq_len", "batch_size", "max_time", "quiet")})
TINY_ARGS = [*cli_args({name: TINY[name] for name in ("layers", "hidden")}), *TINY_LOOP_ARGS]


def cli(*args: str):
    """`charlm ARGS` in this process, through click's test runner."""
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    """A failed command printed exactly one line, `Error: ...`, holding every fragment, no traceback."""
    output = result.output if hasattr(result, "output") else result.stdout + result.stderr
    assert result.exit_code if hasattr(result, "exit_code") else result.returncode
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


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


def latest(run: str) -> Checkpoint:
    """The latest checkpoint of a run folder (a name under checkpoints/ or a path)."""
    return checkpoint.read(runs.resolve(run, prefer=runs.LATEST))


def make_model(
    vocab: Vocab | str, cell: str = "lstm", layers: int = 2, hidden: int = 16, dropout: float = 0.0
) -> CharLM:
    """An untrained model over `vocab` (a Vocab, or a string of its characters)."""
    vocab = Vocab(vocab) if isinstance(vocab, str) else vocab
    return CharLM(ModelConfig(cell, layers, hidden, dropout, len(vocab)), vocab)


def block_import(monkeypatch, prefix: str) -> None:
    """Make `import prefix...` fail, as if the package were not installed."""
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.startswith(prefix):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)


TRAIN_ARGS = [*TINY_ARGS, "--dropout", "0.2"]


def start_training(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "charlm", "train", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


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
