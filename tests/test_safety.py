"""Never lose a run, never run a stranger's code: kills, signals, locks, full disks, NaN."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import charlm
from charlm import checkpoint, trainer
from charlm.errors import CharLMError

from .conftest import run_cli

TRAIN_ARGS = [
    "--layers", "1", "--hidden", "32", "--seq-len", "8", "--batch-size", "4", "--dropout", "0.2",
    "--max-time", "none", "--quiet",
]  # fmt: skip


def latest(run: str) -> dict:
    return checkpoint.read_checkpoint(checkpoint.resolve(run, prefer=checkpoint.LATEST))


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


def assert_same_weights(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_weights(fox_file, tmp_path):
    args = [*TRAIN_ARGS, "--max-steps", "2500", "--eval-every", "400", "--checkpoint-every", "20"]
    run_cli("train", str(fox_file), "--out", "whole", *args, check=True)
    rng = random.Random(0)
    kills = []
    command = [str(fox_file), "--out", "cut", *args]
    checkpoint_file = tmp_path / "checkpoints/cut/latest.pt"
    for _ in range(3):
        written = checkpoint_file.stat().st_mtime_ns if checkpoint_file.exists() else -1
        process = start_training(*command)
        wait_for(checkpoint_file, newer_than=written)  # this process has trained and saved
        time.sleep(rng.uniform(0.2, 1.2))
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills.append(latest("cut")["step"])
        command = ["--resume", "cut"]
    assert all(0 < step < 2500 for step in kills), kills
    assert len(set(kills)) == 3, f"each kill should land at a different step: {kills}"
    run_cli("train", "--resume", "cut", check=True)
    assert_same_weights(latest("whole"), latest("cut"))


def test_sigint_saves_at_a_step_boundary_and_says_how_to_resume(fox_file, tmp_path):
    process = start_training(str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "100000")
    wait_for(tmp_path / "checkpoints/run/.lock")
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "Traceback" not in err
    step = latest("run")["step"]
    assert f"stopped at step {step}" in out and "charlm train --resume checkpoints/run" in out
    assert not (tmp_path / "checkpoints/run/.lock").exists()


def test_second_training_into_one_folder_is_refused_and_a_dead_owner_is_taken_over(fox_file, tmp_path):
    process = start_training(str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "100000")
    try:
        wait_for(tmp_path / "checkpoints/run/latest.pt")
        second = run_cli("train", "--resume", "run")
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert f"in use by process {process.pid}" in second.stderr
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert (tmp_path / "checkpoints/run/.lock").read_text().split()[0] == str(process.pid)  # left by the dead
    resumed = run_cli("train", "--resume", "run", "--max-steps", str(latest("run")["step"] + 10), check=True)
    assert "done: step" in resumed.stdout


def test_a_lock_of_a_live_process_is_kept(fox_file, tiny, tmp_path):
    lock = tmp_path / "checkpoints/run/.lock"
    lock.parent.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{sleeper.pid}\n")
        with pytest.raises(CharLMError, match=f"in use by process {sleeper.pid}"):
            charlm.train(fox_file, out="run", **tiny)
    finally:
        sleeper.kill()
        sleeper.wait()
    charlm.train(fox_file, out="run", **tiny)  # its owner is gone: taken over
    assert not lock.exists()


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=False, capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()}); the simulated test covers it")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_keeps_the_previous_checkpoint(fox_file, small_disk):
    run = small_disk / "run"
    run_cli("train", str(fox_file), "--out", str(run), *TRAIN_ARGS, "--max-steps", "10", check=True)
    before = (run / "latest.pt").read_bytes()
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - 4096))
    result = run_cli("train", "--resume", str(run), "--max-steps", "20")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "No space left on device" in result.stderr and "the previous one is intact" in result.stderr
    assert (run / "latest.pt").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == [
        "best.pt",
        "latest.pt",
        "metrics.jsonl",
        "run.json",
    ]  # no temporary, no lock


def test_write_errors_stop_the_run_or_warn_and_go_on(fox_file, tiny, monkeypatch):
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    good = latest("run")
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(checkpoint.os, "fsync", failing_fsync)
    with pytest.raises(CharLMError, match="Input/output error.*training stopped at step 20"):
        charlm.train(resume="run", max_steps=30)
    charlm.train(resume="run", max_steps=30, save_errors="warn")  # warns, trains on, nothing saved
    monkeypatch.setattr(checkpoint.os, "fsync", real_fsync)
    assert_same_weights(latest("run"), good)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(fox_file, tiny, monkeypatch):
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 20})
    good = latest("run")
    calls = {"n": 0}
    real = trainer.F.cross_entropy

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 5 else loss

    monkeypatch.setattr(trainer.F, "cross_entropy", poisoned)
    with pytest.raises(CharLMError, match=r"diverged .*after step 20.*--resume checkpoints/run --lr 0\.00075"):
        charlm.train(resume="run", max_steps=60)
    assert_same_weights(latest("run"), good)
    assert all(torch.isfinite(t).all() for t in latest("run")["model"].values())


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
def test_detect_anomaly_turns_on_torch_anomaly_mode(fox_file, tiny, monkeypatch):
    seen = []
    real = trainer.Trainer.train_step

    def spy(self, progress):
        seen.append(torch.is_anomaly_enabled())
        return real(self, progress)

    monkeypatch.setattr(trainer.Trainer, "train_step", spy)
    charlm.train(fox_file, out="a", **{**tiny, "max_steps": 3, "detect_anomaly": True})
    charlm.train(fox_file, out="b", **{**tiny, "max_steps": 3})
    assert seen == [True] * 3 + [False] * 3


def test_resume_with_a_lower_learning_rate_is_allowed_but_not_a_new_shape(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    charlm.train(resume="run", max_steps=30, lr=1e-3)
    with pytest.raises(CharLMError, match=r"--layers: 1 -> 2; --seq-len: 8 -> 9"):
        charlm.train(resume="run", layers=2, seq_len=9)
