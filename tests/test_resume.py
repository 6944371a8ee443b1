import signal
import subprocess
import sys
import time

import pytest
import torch

import charlm
from charlm import checkpoint
from charlm.errors import CharLMError

from .conftest import run_cli


def latest(run: str) -> dict:
    return checkpoint.read_checkpoint(checkpoint.resolve(run, prefer=checkpoint.LATEST))


def test_resume_continues_step_data_position_and_state(fox_file, tiny):
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    before = latest("run")
    charlm.train(resume="run", max_steps=25)
    after = latest("run")
    assert before["step"] == 10 and after["step"] == 25
    seq, stream = tiny["seq_len"], (len(fox_file.read_text()) * 9 // 10) // tiny["batch_size"]
    windows_per_epoch = -(-(stream - 1) // seq)
    assert after["data"]["position"] != before["data"]["position"]
    assert after["data"]["epoch"] * windows_per_epoch <= 25
    assert after["hidden"] is not None


def test_resume_refuses_changed_model_options(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    with pytest.raises(CharLMError, match="--hidden: 32 -> 64"):
        charlm.train(resume="run", hidden=64)


def test_resume_refuses_a_changed_corpus(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    fox_file.write_text("a different text altogether\n" * 90)
    with pytest.raises(CharLMError, match="changed since this run started"):
        charlm.train(resume="run", max_steps=30)


def test_a_new_run_never_overwrites_an_old_one(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    with pytest.raises(CharLMError, match="already holds a run"):
        charlm.train(fox_file, out="run", **tiny)


def test_interrupted_run_resumes_to_the_same_weights_as_an_uninterrupted_one(fox_file, tmp_path):
    """Ctrl-C a real training process, resume it, and compare with a run that was never stopped."""
    options = [
        "--layers",
        "1",
        "--hidden",
        "32",
        "--seq-len",
        "8",
        "--batch-size",
        "4",
        "--dropout",
        "0.2",
        "--max-steps",
        "3000",
        "--max-time",
        "none",
        "--eval-every",
        "25",
        "--quiet",
    ]
    run_cli("train", str(fox_file), "--out", "whole", *options, check=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "charlm", "train", str(fox_file), "--out", "cut", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (tmp_path / "checkpoints/cut/latest.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    stopped_at = latest("cut")["step"]
    assert 0 < stopped_at < 3000, "the run should have been stopped part way"
    assert "charlm train --resume" in out and "Traceback" not in err
    run_cli("train", "--resume", "cut", check=True)
    whole, resumed = latest("whole"), latest("cut")
    assert resumed["step"] == whole["step"] == 3000
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
