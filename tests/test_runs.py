"""Run folders: names, finding them, one training process per folder."""

import signal
import subprocess
import sys

import pytest

import charlm
from charlm import runs
from charlm.errors import CharLMError

from .conftest import TRAIN_ARGS, latest, run_cli, start_training, wait_for


def test_run_folder_and_name_resolve_to_best_and_latest(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    assert runs.resolve("run").name == "best.pt"
    assert runs.resolve("checkpoints/run", prefer=runs.LATEST).name == "latest.pt"
    assert runs.resolve(None).parent.name == "run"


def test_a_new_run_never_overwrites_an_old_one(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    with pytest.raises(CharLMError, match="already holds a run"):
        charlm.train(fox_file, out="run", **tiny)


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
    resumed = run_cli("train", "--resume", "run", "--max-steps", str(latest("run").progress.step + 10), check=True)
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
