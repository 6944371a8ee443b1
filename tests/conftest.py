from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
