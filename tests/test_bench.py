"""The benchmark scripts run (on a tiny configuration: speed goals live in bench/, not in tests)."""

import os
import subprocess
import sys

import pytest
import torch

from .conftest import REPO

pytestmark = pytest.mark.slow  # each runs a benchmark script in a process of its own


def run_bench(script: str, *args: str) -> str:
    """A bench script run from the test's own folder, so its corpora/ and checkpoints/ land there."""
    command = [sys.executable, str(REPO / script), *args]
    result = subprocess.run(command, cwd=os.getcwd(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_sample_speed_bench_runs():
    out = run_bench(
        "bench/sample_speed.py", "--hidden", "16", "--layers", "2", "--chars", "60", "--streams", "4", "--rounds", "2"
    )
    for label in ("bare loop", "roofline", "naive", "1 stream vs bare nn.LSTM loop", "4 streams bf16 vs 1 stream bf16"):
        assert label in out


def test_sweep_bench_runs(fox_file, tmp_path):
    out = run_bench(
        "bench/sweep.py", str(fox_file), "--max-time", "1s", "--out", str(tmp_path / "sweep"),
        "hidden=16,layers=1,seq_len=8,batch_size=4", "hidden=24,layers=1,seq_len=8,batch_size=4",
    )  # fmt: skip
    assert "| hidden=16,layers=1,seq_len=8,batch_size=4 | 1x16 |" in out and "| 1x24 |" in out


def test_prepare_bench_runs(tmp_path):
    out = run_bench("bench/prepare.py", "--mb", "2", "--train-steps", "4", "--out", str(tmp_path / "prepare"))
    assert "english-like" in out and "cjk-like" in out and "training RSS 2 MB corpus / 1 MB corpus" in out


def test_train_speed_bench_runs():
    out = run_bench("bench/train_speed.py", "--sizes", "16", "--steps", "5", "--rounds", "1")
    assert "charlm/bare" in out and "2x16" in out and "fp32 matmul peak" in out


def test_quality_bench_runs(fox_file, tmp_path):
    out = run_bench(
        "bench/quality.py", str(fox_file), "--budgets", "1s,2s", "--out", str(tmp_path / "quality"),
        "--set", "hidden=16,layers=1,seq_len=8,batch_size=4,eval_every=5", "--png", str(tmp_path / "q.png"),
    )  # fmt: skip
    assert "| fox.txt | 1s |" in out and "| fox.txt | 2s |" in out and "bpc against time" in out
    assert (tmp_path / "q.png").stat().st_size > 10_000


def test_gpu_bench_runs_tiny_on_the_cpu():
    out = run_bench("bench/gpu.py", "--tiny", "--sizes", "1x16", "--batches", "4", "--seconds", "0.05")
    assert "charlm/plain" in out and "1x16" in out and " bf16 " in out and " fp32 " in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_bench_refuses_a_machine_without_a_gpu():
    result = subprocess.run([sys.executable, str(REPO / "bench/gpu.py")], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "has none; --tiny runs a small CPU check" in result.stderr
