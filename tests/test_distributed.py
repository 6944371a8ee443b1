"""Data parallelism on the CPU: two gloo processes under torchrun train the model one process trains
with the same global batch; devices and precision fail clearly where they cannot work."""

import json
import os
import subprocess
import sys
from unittest import mock

import pytest
import torch

import charlm
from charlm import checkpoint
from charlm.device import cpu_has_bf16, resolve_device, resolve_precision
from charlm.errors import CharLMError
from charlm.metrics import read_metrics

from .conftest import run_cli

# dropout 0: the only randomness; a flat learning rate after warm-up, so a run resumed with a
# larger --max-steps follows the same schedule as one that ran through.
OPTIONS = {
    "layers": 2, "hidden": 32, "seq_len": 8, "batch_size": 4, "max_time": None, "eval_every": 5,
    "warmup_steps": 2, "dropout": 0.0, "min_lr_ratio": 1.0, "quiet": True,
}  # fmt: skip
WEIGHT_TOLERANCE = 1e-5
BPC_TOLERANCE = 1e-5


def cli_options(**changes) -> list[str]:
    args = []
    for name, value in {**OPTIONS, **changes}.items():
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            args.append(flag)
        elif value is not None:
            args += [flag, str(value)]
    return args + (["--max-time", "none"] if "max_time" not in changes else [])


def torchrun(*args: str, processes: int = 2) -> None:
    """`torchrun --nproc_per_node N -m charlm ARGS` with one thread per process (2 cores here)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, "-m", "charlm", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def latest(run: str) -> dict:
    return checkpoint.read_checkpoint(checkpoint.resolve(run, prefer=checkpoint.LATEST))


def max_weight_difference(a: str, b: str) -> float:
    first, second = latest(a)["model"], latest(b)["model"]
    return max((first[name] - second[name]).abs().max().item() for name in first)


def curve(run: str) -> list[tuple[int, float, float]]:
    rows = read_metrics(checkpoint.CHECKPOINT_ROOT / run)
    return [(row["step"], row["train_bpc"], row["val_bpc"]) for row in rows if row["val_bpc"] is not None]


def assert_same_curve(a: str, b: str) -> float:
    first, second = curve(a), curve(b)
    assert [row[0] for row in first] == [row[0] for row in second] and len(first) >= 4
    difference = max(abs(x - y) for p, q in zip(first, second) for x, y in zip(p[1:], q[1:]))
    assert difference < BPC_TOLERANCE, (first, second)
    return difference


def test_two_gloo_processes_train_the_model_one_process_trains(fox_file, capsys):
    torch.set_num_threads(1)
    torchrun("train", str(fox_file), "--out", "ddp", *cli_options(max_steps=20))
    charlm.train(fox_file, out="one", **OPTIONS, max_steps=20)
    weights = max_weight_difference("ddp", "one")
    bpc = assert_same_curve("ddp", "one")
    assert weights < WEIGHT_TOLERANCE
    saved = latest("ddp")
    assert saved["hidden"][0].shape == (2, 4, 32)  # every rank's streams, in the single-process layout
    assert saved["chars"] == latest("one")["chars"] and saved["data"] == latest("one")["data"]
    assert saved["rank_rngs"].shape[0] == 2

    # The DDP checkpoint resumes in one process, and the one-process checkpoint under two processes:
    # both continue exactly as an uninterrupted one-process run.
    charlm.train(fox_file, out="through", **OPTIONS, max_steps=40)
    charlm.train(resume="ddp", max_steps=40)
    torchrun("train", "--resume", "one", "--max-steps", "40")
    resumed = max(max_weight_difference("ddp", "through"), max_weight_difference("one", "through"))
    assert resumed < WEIGHT_TOLERANCE
    with capsys.disabled():
        print(
            f"\n2 gloo processes vs 1: max |weight difference| {weights:.2e} after 20 steps, "
            f"{resumed:.2e} after resuming to 40 across world sizes; max |bpc difference| {bpc:.2e}"
        )


def test_a_world_size_that_does_not_divide_the_batch_is_one_line(fox_file):
    env = {**os.environ, "WORLD_SIZE": "3", "RANK": "0", "LOCAL_RANK": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "charlm", "train", str(fox_file), *cli_options(max_steps=5)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--batch-size 4 does not split over 3 processes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_lists_what_is_available(fox_file):
    result = run_cli("train", str(fox_file), "--device", "cuda", *cli_options(max_steps=5))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--device cuda: no CUDA GPU here (available: cpu" in result.stderr
    with pytest.raises(CharLMError, match="no CUDA GPU here"):
        charlm.train(fox_file, out="gpu", **OPTIONS, max_steps=5, device="cuda:0")


def test_device_and_precision_are_checked():
    with pytest.raises(CharLMError, match="--device must be auto, cpu"):
        charlm.train(device="tpu")
    with pytest.raises(CharLMError, match="--precision fp16 needs a CUDA GPU"):
        resolve_precision("fp16", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if cpu_has_bf16() else "fp32")
    with (
        mock.patch.object(torch.cpu, "_is_avx512_bf16_supported", lambda: False, create=True),
        mock.patch.object(torch.cpu, "_is_amx_tile_supported", lambda: False, create=True),
    ):
        assert resolve_precision("auto", torch.device("cpu")) == "fp32"  # no bf16 hardware: fp32 unchanged
    assert resolve_device("auto", world=2).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_bf16_on_the_cpu_trains_and_the_checkpoint_samples_anywhere(fox_file, tiny):
    for precision in ("bf16", "fp32"):
        charlm.train(fox_file, out=precision, **{**tiny, "max_steps": 60, "eval_every": 20, "precision": precision})
    bpc = [row["val_bpc"] for row in read_metrics(checkpoint.CHECKPOINT_ROOT / "bf16") if row["val_bpc"] is not None]
    assert bpc[-1] < bpc[0] - 0.3
    assert max_weight_difference("bf16", "fp32") > 1e-4  # autocast did change the arithmetic
    saved = latest("bf16")
    assert saved["hidden"][0].dtype == torch.float32  # resumable in any precision
    assert json.dumps(saved["config"])  # plain values only
    model = charlm.load("bf16", device="cpu")
    assert len(model.generate("the ", length=20, random_seed=1)) == 24
    charlm.train(resume="bf16", max_steps=70, precision="fp32")  # a resume may change the precision
    assert latest("bf16")["step"] == 70


def test_sample_takes_a_device(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    result = run_cli("sample", "--checkpoint", "run", "--device", "cpu", "--length", "10", "--random-seed", "3")
    assert result.returncode == 0 and len(result.stdout) >= 10
