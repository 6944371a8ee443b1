"""The benchmark scripts run (on a tiny configuration: speed goals live in bench/, not in tests)."""

import argparse
import asyncio
import copy
import dataclasses
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import charlm
from bench import babygpt, charrnn, common, mixture, serve_load, versus
from charlm import checkpoint, finetune, runs, threads
from charlm.model import head_cutoffs
from charlm.scoring import bits_per_char
from charlm.tokens import load_corpus
from charlm.vocab import Vocab

from .conftest import (
    REPO,
    TINY,
    bench_ended,
    cli,
    fork_charlm_processes,
    fork_python_runs,
    import_or_missing,
    left_running_after_a_kill,
    missing,
    process_state,
    run_bench,
)

# conftest's tiny run as the scripts' name=value settings (each test adds a hidden size), dropout given:
# a run with a time budget left to fit it first times its size for seconds (the probe), which no test
# of a script here is about
TINY_SET = ",".join(f"{name}={TINY[name]}" for name in ("layers", "seq_len", "batch_size")) + ",dropout=0.0"
# charlm's side of bench.versus trains for the baseline's wall time: steps end it sooner, as many as it needs
VERSUS_CHARLM_SET = f"hidden=16,{TINY_SET},eval_every=1000,max_steps=20"

pytestmark = pytest.mark.slow  # each runs a benchmark script in a process of its own


def process_settings() -> tuple:
    governor = threads._command.governor
    return (
        torch.get_num_threads(), governor, copy.deepcopy(vars(governor)), torch.get_default_dtype(),
        torch.get_float32_matmul_precision(), torch.is_grad_enabled(), (torch.tensor([1e-39]) * 1.0).item(),
        random.random(), np.random.random(), torch.rand(1).item(), dict(os.environ), os.getcwd(), list(sys.argv),
        list(warnings.filters),
    )  # fmt: skip


def test_a_script_run_in_this_process_leaves_the_process_as_it_was(tmp_path, monkeypatch):
    """run_bench runs the scripts in the test's process: whatever one changes of it is put back, so a later
    test gets the threads, generators and settings it would have got after a script in a process of its own."""
    monkeypatch.setattr(threads._command, "governor", threads.Governor(2, set_threads=lambda count: None))
    (tmp_path / "elsewhere").mkdir()
    state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    before = process_settings()
    random.setstate(state[0]), np.random.set_state(state[1]), torch.random.set_rng_state(state[2])
    with process_state():
        torch.set_num_threads(torch.get_num_threads() + 1)
        threads._command.governor.threads, threads._command.governor.best_recent["train"] = 1, 1e6
        threads._command.governor = threads.Governor(2, set_threads=lambda count: None)
        torch.set_default_dtype(torch.float64)
        torch.set_float32_matmul_precision("medium" if torch.get_float32_matmul_precision() == "highest" else "highest")
        torch.set_grad_enabled(False)
        torch.set_flush_denormal(True)
        random.seed(1), np.random.seed(1), torch.manual_seed(1)
        os.environ["CHARLM_LEFT_BEHIND"] = "1"
        os.chdir(tmp_path / "elsewhere")
        sys.argv = ["bench/sweep.py", "fox.txt"]
        warnings.simplefilter("error")
    assert process_settings() == before  # the generators too: each draws what it would have drawn
    previous = signal.getsignal(signal.SIGHUP)
    try:
        with pytest.raises(AssertionError, match="a signal handler was left set"), process_state():
            signal.signal(signal.SIGHUP, lambda *_: None)  # a script that does this needs a process of its own
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_sample_speed_bench_runs():
    out = run_bench(
        "sample_speed", "--hidden", "16", "--layers", "2", "--chars", "60", "--streams", "4", "--rounds", "2"
    )
    for label in ("bare loop", "roofline", "naive", "1 stream vs bare nn.LSTM loop", "4 streams bf16 vs 1 stream bf16"):
        assert label in out
    # the server's 1-stream row is its engine's own loop (it timed the padded step alone); 4 streams, the step
    assert "server engine of 4 rows, 1 stream (no HTTP)" in out and "server step batch of 4 rows, 4 streams" in out


# a count of one with its noun in the plural, as a report printed it ("1 steps", "on 1 threads")
ONE_IN_THE_PLURAL = re.compile(r"\b1 (?:[a-z]+ )?(?:steps|streams|rows|threads|chars|characters|iterations|files)\b")


def test_sample_speed_bench_counts_one_stream_and_one_thread_in_the_singular():
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # a one-core machine, or `taskset -c 0`
    try:
        out = run_bench(
            "sample_speed", "--hidden", "16", "--layers", "1", "--chars", "60", "--streams", "1", "--rounds", "1"
        )
    finally:
        torch.set_num_threads(threads_before)
    assert "1 thread\n" in out and "server engine of 1 row, 1 stream" in out
    assert not ONE_IN_THE_PLURAL.search(out), ONE_IN_THE_PLURAL.search(out)


def test_babygpt_counts_one_iteration_and_one_training_character_in_the_singular(fox_file, tmp_path):
    shape = ["--layers", "1", "--heads", "1", "--embed", "8", "--block", "4", "--batch", "2", "--eval-iters", "1"]
    out = run_bench("babygpt", str(fox_file), *shape, "--iters", "1", "--no-compile", "--quiet")
    assert "1 iteration in" in out and not ONE_IN_THE_PLURAL.search(out)
    short = tmp_path / "short.txt"
    short.write_text("\n", encoding="utf-8")  # a text of one character, all of it trained on (too short to hold out)
    code, _, stderr = bench_ended("babygpt", str(short), *shape, "--iters", "1", "--no-compile", "--quiet")
    assert code == 1 and "1 character" in stderr and not ONE_IN_THE_PLURAL.search(stderr), stderr


@pytest.mark.parametrize("situation", ["quiet, torch's count (fixed)", "quiet, charlm.generate (governor)"])
def test_api_threads_bench_runs_a_situation(situation):
    """One situation in this process (the script starts a process of its own for each): a loop of tiny
    samples for 0.2 s, its speed printed."""
    out = run_bench("api_threads", "--situation", situation, "--seconds", "0.2", "--hidden", "16", "--length", "20")
    assert float(out) > 0


def test_sweep_bench_runs(fox_file, tmp_path):
    out = run_bench("sweep", str(fox_file), "--max-time", "0.5s", "--out", str(tmp_path / "sweep"),
        f"hidden=16,{TINY_SET}", f"hidden=24,{TINY_SET}",
    )  # fmt: skip
    assert f"| hidden=16,{TINY_SET} | 1x16 |" in out and "| 1x24 |" in out


def test_prepare_bench_runs(tmp_path, monkeypatch):
    """One training step (one evaluation) each of a 16-unit model (charlm's default size took ~10 s of the
    test's CPU): the memory of the two corpora is compared all the same. 1% held out: scoring charlm's 10%
    (a character at a time, whatever the model's size) took ~5 s a run. Its six measured processes forked
    (~1.5 s of CPU each sooner): their RSS figures are not the test's."""
    fork_python_runs(monkeypatch)
    args = ["--mb", "2", "--train-steps", "1", "--val-fraction", "0.01", "--hidden", "16"]
    out = run_bench("prepare", *args, "--out", str(tmp_path / "prepare"))
    assert "english-like" in out and "cjk-like" in out and "training RSS 2 MB corpus / 1 MB corpus" in out
    result = json.loads((tmp_path / "prepare" / "result.json").read_text())
    assert result["ratio"] == result["train_rss_mb"]["2 MB"] / result["train_rss_mb"]["1 MB"] > 0
    trained = [json.loads(run.read_text())["config"] for run in (tmp_path / "prepare").glob("run-*/run.json")]
    assert (
        "1 step (16 hidden) on" in out
        and not ONE_IN_THE_PLURAL.search(out)
        and [config["hidden"] for config in trained] == [16, 16]
    )


def test_prepare_bench_compares_many_files_with_one(tmp_path, monkeypatch):
    """--many-files N: N one-line files (a folder, listed as charlm lists one) against one file of the same
    lines, both prepared (each in a forked process), their seconds compared."""
    fork_python_runs(monkeypatch)
    out = run_bench("prepare", "--many-files", "300", "--out", str(tmp_path / "prepare"))
    assert "300 files of one line" in out and "one file of the same lines" in out
    result = json.loads((tmp_path / "prepare" / "result-many-files.json").read_text())
    assert result["files"] == 300 and result["ratio"] > 0
    out = run_bench("prepare", "--many-files", "1", "--out", str(tmp_path / "prepare"))
    assert "1 file of one line" in out and not ONE_IN_THE_PLURAL.search(out)


def test_finetune_bench_runs(fox_file, tmp_path):
    """A tiny base (conftest's batches: a step of charlm's default ones took ~50 ms at any size) and a
    few steps a run: the script's rows and sample, not what the steps learn."""
    charlm.train(fox_file, out=tmp_path / "base", **{**TINY, "hidden": 16, "max_steps": 10, "quiet": True})
    (tmp_path / "new.txt").write_text("THE QUICK BROWN FOX! the lazy dog?\n" * 40)
    common = [str(tmp_path / "base"), str(tmp_path / "new.txt"), "--out", str(tmp_path / "finetune")]
    out = run_bench("finetune", *common, "--steps", "4", "--scratch", "-", "lr=2e-3")
    assert "| scratch, defaults | 4 |" in out and "| fine-tuned, lr=2e-3 | 4 |" in out and "sample of" in out
    out = run_bench("finetune", *common, "--init", "--steps", "3")
    assert all(f"| {how} |" in out for how in ("rare", "fresh", "zero")) and "after 3 steps" in out


@pytest.fixture
def temporary_folders(tmp_path, monkeypatch) -> Path:
    """The folder tempfile makes its temporary folders in for this test (empty), so a test sees what a
    script left there."""
    folder = tmp_path / "temporary"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def left_behind(temporary: Path) -> list[str]:
    """What is left in `temporary` but torch's compile cache (torchinductor_USER, kept on purpose)."""
    return [path.name for path in temporary.iterdir() if not path.name.startswith("torchinductor_")]


def test_train_speed_bench_runs(temporary_folders):
    """The peak timed on 256x256 matrices: 13 products of 2048x2048 were 220 GFLOP, seconds of both cores."""
    out = run_bench("train_speed", "--sizes", "16", "--steps", "5", "--rounds", "1", "--peak-size", "256")
    assert "charlm/bare" in out and "2x16" in out and "fp32 matmul peak (torch.mm 256x256): " in out
    assert not left_behind(temporary_folders)  # its runs and 2 MB corpus removed at the end


def interrupted_step(*args, **kwargs):
    raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a measurement


@pytest.mark.parametrize(
    "script",
    [
        ["train_speed", "--sizes", "16", "--steps", "5", "--rounds", "1", "--peak-size", "256"],
        ["head_speed", "fox.txt", "--hidden", "16", "--layers", "1"],
        ["gpu", "--tiny", "--sizes", "1x16", "--batches", "4"],
        ["parts", "speed", "fox.txt", "--hidden", "16"],
    ],
    ids=lambda script: script[0],
)
def test_a_bench_script_stopped_by_ctrl_c_leaves_no_temporary_folder(script, fox_file, temporary_folders, monkeypatch):
    """The speed scripts train in a temporary folder: a run stopped half-way (Ctrl-C) removes it too,
    as a finished one does (each left its /tmp/train-speed-* and the like behind)."""
    monkeypatch.setattr(common, "training_step", interrupted_step)
    Path("bench/out/parts").mkdir(parents=True)  # fox_file's folder is the test's own (conftest.in_tmp)
    Path("bench/out/parts/chaizi.tsv").write_text(PARTS_TABLE, encoding="utf-8")  # bench.parts' table
    with pytest.raises(KeyboardInterrupt):
        run_bench(*script)
    assert not left_behind(temporary_folders)


def test_thread_bits_bench_names_what_differs_or_says_same_bits():
    out = run_bench("thread_bits", "--cells", "16,128", "--layers", "1")
    rows = out.splitlines()[1:]
    assert [row.split(" cells")[0].strip() for row in rows] == ["16"] * 3 + ["128"] * 3
    assert all(row.endswith("same bits") or "core.weight_ih_l0" in row for row in rows), out


def test_head_speed_bench_runs(fox_file):
    out = run_bench("head_speed", str(fox_file), "--hidden", "16", "--layers", "1", "--steps", "2", "--rounds", "1")
    assert "| full |" in out and "| adaptive |" in out and "adaptive / full:" in out


def test_quality_bench_runs(fox_file, tmp_path):
    out = run_bench("quality", str(fox_file), "--budgets", "0.5s,1s", "--out", str(tmp_path / "quality"),
        "--set", f"hidden=16,{TINY_SET},eval_every=5", "--png", str(tmp_path / "q.png"),
    )  # fmt: skip
    # the size each run chose: docs/benchmarks.md's table gives it, and no line of the output did
    assert "| fox.txt | 0.5s | 1x16 |" in out and "| fox.txt | 1s | 1x16 |" in out and "bpc against time" in out
    assert (tmp_path / "q.png").stat().st_size > 10_000


def test_gpu_bench_runs_tiny_on_the_cpu():
    out = run_bench("gpu", "--tiny", "--sizes", "1x16", "--batches", "4", "--seconds", "0.05")
    assert "charlm/plain" in out and "1x16" in out and " bf16 " in out and " fp32 " in out


@dataclasses.dataclass
class DryRun:
    """One run of bench/gpu_check.sh --cpu: its folder, exit status, terminal output and report."""

    out: Path
    status: int
    output: str
    report: str


def start_gpu_check_dry_run(out: Path, tests: tuple[Path, ...], **settings: str) -> subprocess.Popen:
    """bench/gpu_check.sh --cpu on a few tests, `settings` as its environment, started."""
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, **settings}
    command = ["bash", str(REPO / "bench/gpu_check.sh"), "--cpu", *map(str, tests)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


# The failing dry run's tests: a cuda test that outlasts the tests' seconds, and a fast test that passes. A
# file outside tests/: its pytest processes load no conftest (torch, charlm: ~3 s of CPU each), which the
# failing check is not about.
OUTLASTING = """
import time
import pytest

@pytest.mark.cuda
def test_outlasts_the_tests_seconds():
    time.sleep(60)

def test_passes():
    pass
"""


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory) -> dict[str, DryRun]:
    """Two dry runs, which the tests below read (each run of the script costs ~12 s, mostly processes
    started one after another, each on one core): one passing, on a fast test and one cuda test, and
    one whose cuda test runs out of the tests' seconds. Both at once, on two cores. The cuda test is one
    that builds no model (~1 s less), and pytest's processes load no third-party plugins (hypothesis,
    schemathesis, anyio: ~1.5 s a process), which neither the script nor these tests are about. The
    failing run's tests are OUTLASTING's, and its benchmark measures nothing (a budget of 0 s: ~3 s of a
    core less), which its test does not read; the passing run's measures, as on a GPU."""
    cuda_test = "tests/test_cuda.py::test_the_peer_timeout_is_every_backends_timeout"
    fast_test = "tests/test_vocab.py::test_an_unseen_character_names_the_form_the_model_knows"
    outlasting = tmp_path_factory.mktemp("outlasting") / "test_outlasting.py"
    outlasting.write_text(OUTLASTING, encoding="utf-8")
    bare = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    runs_of = {
        "passing": ((REPO / fast_test, REPO / cuda_test), {"GPU_CHECK_BUDGET": "20", **bare}),
        "failing": ((outlasting,), {"GPU_CHECK_SUITE_SECONDS": "1", "GPU_CHECK_BUDGET": "0", **bare}),
    }
    folders = {name: tmp_path_factory.mktemp(f"gpu-check-{name}") / "out" for name in runs_of}
    started = {name: start_gpu_check_dry_run(folders[name], tests, **settings)
               for name, (tests, settings) in runs_of.items()}  # fmt: skip
    try:
        outputs = {name: process.communicate(timeout=300)[0] for name, process in started.items()}
    finally:
        for process in started.values():  # one left running when the other timed out
            process.kill()
            process.wait()
    report = {name: folders[name] / "gpu-check.txt" for name in runs_of}
    return {
        name: DryRun(folders[name], started[name].returncode, outputs[name],
                     report[name].read_text() if report[name].exists() else "")
        for name in runs_of
    }  # fmt: skip


def test_gpu_check_dry_run_passes_and_reports(dry_runs):
    """bench/gpu_check.sh --cpu: every step of the device check, on the CPU and a tiny selection."""
    run = dry_runs["passing"]
    assert run.status == 0, run.output
    for step in ("setup", "fast suite", "cuda tests", "bench.gpu"):
        assert f"== {step}:" in run.report and f"-- {step}: exit" in run.report
    assert "passed" in run.report.split("pytest-fast:")[1] and "charlm/plain" in run.report
    assert run.report.rstrip().splitlines()[-1].startswith("device check passed in")
    assert {p.name for p in run.out.iterdir()} >= {"gpu-check.txt", "pytest-fast.txt", "bench-gpu.txt"}
    # what a session's note needs from the report alone: the machine (python, torch, and the GPU on one)
    assert f"torch {torch.__version__}" in run.report.rsplit("\n\n", 1)[1]


def test_gpu_check_runs_on_a_gpu_what_one_lent_run_can_hold():
    """On a GPU the check ran the whole fast suite (1,300 tests) inside 180 s shared with the cuda tests:
    it ran out of time every time, and the check failed with no test named. It runs the cuda tests and the
    fast tests of device code (DEVICE_TESTS), every one a file that exists, under 7 minutes in all."""
    script = (REPO / "bench/gpu_check.sh").read_text()
    listed = re.search(r"DEVICE_TESTS=\((.*?)\)", script, re.DOTALL)[1].split()
    assert listed and all((REPO / test).is_file() for test in listed), listed
    assert 'tests=(tests/test_cuda.py "${DEVICE_TESTS[@]}")' in script
    suite = int(re.search(r"GPU_CHECK_SUITE_SECONDS:-(\d+)", script)[1])
    bench = int(re.search(r"GPU_CHECK_BUDGET:-(\d+)", script)[1])
    assert suite + bench + 60 <= 7 * 60  # 60: setup, the benchmark's last measurement, a stopped step's grace


def test_gpu_check_fails_when_a_step_fails(dry_runs):
    """A step that fails (here the cuda tests running out of the tests' seconds) fails the whole check,
    and says which."""
    run = dry_runs["failing"]
    assert run.status == 1, run.output
    assert "-- cuda tests: exit 124" in run.report and "timed out: cuda tests" in run.report
    last = run.report.rstrip().splitlines()[-1]
    # the failed steps, listed after the colon: the cuda tests first (on a loaded machine the fast suite's
    # 30 s may run out too, which the check rightly names after them)
    assert last.startswith("device check FAILED") and last.split(": ", 1)[1].startswith("cuda tests")


def test_gpu_check_dry_run_runs_the_cuda_tests_on_the_cpu_first_and_once(dry_runs):
    """The dry run ran no cuda test (skipped without a GPU), so a broken one met its first run on a lent
    GPU; and the fast suite ran the cuda tests a second time inside the same seconds."""
    run = dry_runs["passing"]
    assert run.status == 0, run.output
    cuda, fast = (run.out / name for name in ("pytest-cuda.txt", "pytest-fast.txt"))
    assert "1 passed" in cuda.read_text().splitlines()[-1] and "skipped" not in cuda.read_text()
    assert "1 deselected" in fast.read_text().splitlines()[-1] and "skipped" not in fast.read_text()
    assert run.report.index("== cuda tests:") < run.report.index("== fast suite:")


def test_gpu_wheels_lists_the_serving_packages():
    pins = run_bench("gpu_wheels", "--list").split()
    assert any(p.startswith("fastapi==") for p in pins) and any(p.startswith("uvicorn==") for p in pins)
    assert not any(p.startswith(("torch==", "numpy==")) for p in pins)  # the image holds them


def test_gpu_wheels_carries_every_package_a_carried_one_asks_a_version_of():
    """pydantic asks typing-extensions>=4.16.0, openai anyio>=4.10.0, but both were left to the GPU image's
    versions, which nothing here knows: one too old fails every import of charlm.serve there, and with it
    test_cuda.py whole. A package a carried one asks a version of is carried at this environment's."""
    from importlib import metadata

    from packaging.requirements import Requirement

    from bench import gpu_wheels

    carried = {pin.split("==")[0] for pin in run_bench("gpu_wheels", "--list").split()}
    needs = [Requirement(line) for name in carried for line in metadata.distribution(name).requires or []]
    on_the_gpu = [r for r in needs if r.marker is None or r.marker.evaluate(gpu_wheels.TARGET)]
    asked = {gpu_wheels.canonical(r.name) for r in on_the_gpu if r.specifier}
    assert {"pydantic", "typing-extensions"} <= carried and asked <= carried, asked - carried


def test_the_device_check_has_every_package_charlm_requires():
    """safetensors, a requirement of charlm, is not in the GPU image's package list: the device check
    neither carried it nor checked for it, so on that image every fast test that exports or loads a
    model folder failed with an ImportError instead of the setup step saying what to carry."""
    import configparser

    from bench import gpu_wheels

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg", encoding="utf-8")
    required = {
        re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0] for line in config["options"]["install_requires"].split()
    }
    required = {gpu_wheels.canonical(name) for name in required if name}
    carried = {pin.split("==")[0] for pin in run_bench("gpu_wheels", "--list").split()}
    assert not required - gpu_wheels.ON_THE_IMAGE - carried, "neither on the GPU image nor carried in .whl/"
    checked = re.search(r"for name in \((.*?)\):", (REPO / "bench/gpu_check.sh").read_text(), re.DOTALL)[1]
    assert required - {"torch"} <= {gpu_wheels.canonical(name) for name in re.findall(r'"([\w-]+)"', checked)}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_bench_refuses_a_machine_without_a_gpu():
    with pytest.raises(AssertionError, match="has none; --tiny runs a small CPU check"):
        run_bench("gpu")


def messy_text(path: Path, lines: int = 500) -> Path:
    """Generated words with `\\r\\n` line ends, a decomposed é (NFD) and no final newline: the held-out
    text versus.py reads must still be the one charlm reads."""
    rng = random.Random(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "cafe\u0301", "sat", "on", "mat"]
    path.write_bytes("\r\n".join(" ".join(rng.choice(words) for _ in range(9)) for _ in range(lines)).encode())
    return path


def test_versus_bench_runs(tmp_path):
    corpus = messy_text(tmp_path / "words.txt")
    out = run_bench("versus", str(corpus), "--iters", "30", "--layers", "1", "--heads", "2", "--embed", "32",
        "--block", "16", "--quiet", "--busy", "1", "--out", str(tmp_path / "versus.txt"),
        "--charlm-set", VERSUS_CHARLM_SET,
    )  # fmt: skip
    report = (tmp_path / "versus.txt").read_text(encoding="utf-8")
    assert report in out and "1 busy-loop processes running" in report
    (row,) = [line for line in report.splitlines() if line.startswith("| words.txt |") and "1x16" in line]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    baseline_bpc, charlm_bpc, ratio = float(cells[7]), float(cells[12]), float(cells[13])
    assert all(math.isfinite(x) and 0.5 < x < 10 for x in (baseline_bpc, charlm_bpc))
    assert ratio == pytest.approx(charlm_bpc / baseline_bpc, abs=2e-4)
    assert cells[3] == "1x32, context 16" and cells[4] == "30" and float(cells[5].replace(",", "")) > 0
    assert int(cells[9].replace(",", "")) > 0 and float(cells[10].replace(",", "")) > 0  # charlm's steps, chars/s


def test_versus_gpu_recipe_runs_its_shape_on_the_cpu(tmp_path):
    """--gpu: nanoGPT's GPU recipe (6x384, context 256, dropout 0.2, bf16 autocast), here on the CPU with one
    iteration of one window, a held-out estimate of one window, and torch.compile off, so the code path runs
    without a GPU. Each window of 256 through 6x384 in bf16 costs tens of seconds of CPU where bf16 is
    emulated (a CPU with avx2 alone): two iterations of batch 2 were four times the work, for the same lines.
    100 lines: a held-out text of ~400 characters, more than one window, scored through 6x384 in 3 windows
    where 400 lines took 14 (~2 s of CPU)."""
    corpus = messy_text(tmp_path / "words.txt", lines=100)
    run_bench(
        "versus", str(corpus), "--gpu", "--device", "cpu", "--no-compile", "--iters", "1", "--batch", "1",
        "--eval-iters", "1", "--quiet", "--out", str(tmp_path / "versus.txt"),
        "--charlm-set", VERSUS_CHARLM_SET,
    )  # fmt: skip
    report = (tmp_path / "versus.txt").read_text(encoding="utf-8")
    assert "GPU recipe): 6 layers, 6 heads, embed 384, block 256, dropout 0.2, batch 1, 1 iterations, bf16" in report
    assert "torch.compile off" in report and "device cpu (CPU)" in report
    (row,) = [line for line in report.splitlines() if line.startswith("| words.txt |") and "1x16" in line]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3] == "6x384, context 256" and cells[4] == "1" and math.isfinite(float(cells[7]))


def test_babygpt_gpu_recipe_is_nanogpts_config():
    """config/train_shakespeare_char.py's values, and its schedule: warm-up, cosine to min_lr at lr_decay_iters."""
    parser = argparse.ArgumentParser()
    babygpt.add_arguments(parser)
    model, loop = babygpt.configs(parser.parse_args(["--gpu"]), vocab_size=65)
    assert (model.layers, model.heads, model.embed, model.block, model.dropout) == (6, 6, 384, 256, 0.2)
    assert (loop.iters, loop.decay_iters, loop.batch, loop.lr, loop.min_lr, loop.warmup) == (
        5000,
        5000,
        64,
        1e-3,
        1e-4,
        100,
    )
    assert (loop.beta2, loop.weight_decay, loop.grad_clip, loop.eval_interval, loop.eval_iters) == (
        0.99,
        0.1,
        1.0,
        250,
        200,
    )
    assert (loop.precision, loop.compile, loop.device) == ("bf16", True, "cuda")
    assert babygpt.learning_rate(loop, 0) == pytest.approx(1e-3 / 101)
    assert babygpt.learning_rate(loop, 2550) == pytest.approx(0.55e-3)  # halfway through the decay
    shorter = dataclasses.replace(loop, decay_iters=1000)
    assert babygpt.learning_rate(shorter, 1000) == babygpt.learning_rate(shorter, 4000) == pytest.approx(1e-4)
    _, cpu = babygpt.configs(parser.parse_args([]), vocab_size=65)
    assert (cpu.iters, cpu.batch, cpu.precision, cpu.compile, cpu.device, cpu.decay_iters) == (
        6000,
        12,
        "fp32",
        False,
        "cpu",
        None,
    )


def test_busy_processes_end_with_the_block():
    with common.busy_processes(2) as processes:
        assert len(processes) == 2 and all(p.poll() is None for p in processes)
    assert all(p.poll() is not None for p in processes)


# bench.common.busy_processes' spinners started, then the bench killed with them running
SPINS = """
import time
from bench.common import busy_processes
with busy_processes(2):
    print("spinning", flush=True)
    time.sleep(600)
"""


def test_busy_processes_end_with_a_killed_bench():
    """A bench killed hard (SIGKILL: the OOM killer, `kill -9`) while it kept cores busy left its spinners
    running with parent pid 1, a core each, for ever."""
    assert left_running_after_a_kill(SPINS) == []


def naive_bits(model, segments: list[torch.Tensor], context_start) -> float:
    """Every target of every segment scored by itself: one forward pass over exactly its context."""
    nats, count = 0.0, 0
    with torch.no_grad():
        for ids in segments:
            for t in range(1, len(ids)):
                logits = model(ids[context_start(t, len(ids) - 1) : t].unsqueeze(0))[0, -1]
                nats += torch.log_softmax(logits.double(), -1)[ids[t]].neg().item()
                count += 1
    return nats / count / math.log(2)


def test_babygpt_sliding_window_score_is_exact():
    torch.manual_seed(0)
    block, stride = 8, 4
    model = babygpt.BabyGPT(babygpt.GPTConfig(vocab_size=7, layers=2, heads=2, embed=16, block=block)).eval()
    segments = [torch.randint(7, (n,)) for n in (5, 9, 10, 47, 48)]  # shorter than, equal to, longer than a block

    def documented(t: int, targets: int) -> int:
        """The first block targets from the segment's start; after that, chunks of `stride` targets, each
        predicted by the window of `block` characters ending just before the chunk's last target."""
        if t <= block:
            return 0
        chunk_end = min(block + stride * math.ceil((t - block) / stride), targets)
        return chunk_end - block

    assert babygpt.bits_per_char(model, segments, stride) == pytest.approx(naive_bits(model, segments, documented))
    longest = naive_bits(model, segments, lambda t, _: max(0, t - block))  # every target with `block` of context
    assert babygpt.bits_per_char(model, segments, stride=1) == pytest.approx(longest)
    assert babygpt.bits_per_char(model, segments, stride) != pytest.approx(longest)  # the contexts do differ


def test_babygpt_keeps_the_weights_of_its_best_held_out_estimate(monkeypatch):
    """nanoGPT's checkpoint rule: a baseline that gets worse on the held-out text late in training ends
    with its best weights, not its last."""
    torch.manual_seed(0)
    model = babygpt.BabyGPT(babygpt.GPTConfig(vocab_size=5, layers=1, heads=1, embed=8, block=4))
    estimates = iter([3.0, 1.0, 2.0, 4.0])  # the second evaluation (iteration 20) is the best
    kept = {}

    def estimate(model, ids, config, generator):
        value = next(estimates)
        kept[value] = {k: v.clone() for k, v in model.state_dict().items()}
        return value

    monkeypatch.setattr(babygpt, "estimate_loss", estimate)
    config = babygpt.TrainConfig(iters=40, batch=2, eval_interval=10, quiet=True)
    babygpt.train(model, torch.randint(5, (200,)), config, held_out=torch.randint(5, (50,)))
    for name, value in model.state_dict().items():
        assert torch.equal(value, kept[1.0][name])
    assert any(not torch.equal(kept[1.0][name], kept[4.0][name]) for name in kept[1.0])  # training went on


def test_babygpt_runs_eager_when_compiling_fails(monkeypatch, capsys):
    """torch.compile "where it works": a compiled model that fails at its first step is replaced by the model
    itself, said once on stderr, and training goes on."""

    def broken_compile(model):
        def fails(ids):
            raise RuntimeError("no backend here")

        return fails

    monkeypatch.setattr(torch, "compile", broken_compile)
    torch.manual_seed(0)
    model = babygpt.BabyGPT(babygpt.GPTConfig(vocab_size=5, layers=1, heads=1, embed=8, block=4))
    config = babygpt.TrainConfig(iters=6, batch=2, eval_interval=3, eval_iters=2, compile=True, quiet=True)
    babygpt.train(model, torch.randint(5, (200,)), config, held_out=torch.randint(5, (50,)))
    assert capsys.readouterr().err.count("torch.compile failed (RuntimeError: no backend here); eager") == 1


def test_versus_scores_both_models_on_every_held_out_character(fox_file, tiny):
    """charlm's bits_per_char is one pass over the whole held-out text, as the baseline's sliding window
    covers it: every character after the first, each from the text before it."""
    import charlm

    model = charlm.train(fox_file, **tiny)
    ids = model.vocab.encode(fox_file.read_text(encoding="utf-8") * 3)  # long enough to be scored in pieces
    with torch.no_grad():
        logits, _ = model(ids[:-1].unsqueeze(0))
        one_pass = F.cross_entropy(logits[0], ids[1:], reduction="sum").double().item() / (len(ids) - 1) / math.log(2)
    assert versus.charlm_scoring.bits_per_char(model, ids) == pytest.approx(one_pass, rel=1e-5)


def results_row(report: str, corpus: str) -> list[str]:
    """The cells of `corpus`'s row in the report's results table (the first table)."""
    row = next(line for line in report.splitlines() if line.startswith(f"| {corpus} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_versus_charrnn_baseline_runs(tmp_path):
    """--baseline charrnn: char-rnn trains for --seconds, charlm for its wall time, both scored on the held-out text."""
    corpus = messy_text(tmp_path / "words.txt", lines=300)
    out = run_bench("versus", str(corpus), "--baseline", "charrnn", "--seconds", "0.5", "--rnn-size", "16",
        "--batch-size", "4", "--seq-length", "16", "--eval-val-every", "10", "--quiet",
        "--out", str(tmp_path / "versus.txt"), "--charlm-set", VERSUS_CHARLM_SET,
    )  # fmt: skip
    report = (tmp_path / "versus.txt").read_text(encoding="utf-8")
    assert report in out and "baseline: char-rnn (train.lua's defaults): 2x16 LSTM" in report
    assert "max_time = the char-rnn's wall s" in report and "char-rnn's lowest loss" in report
    cells = results_row(report, "words.txt")
    baseline_bpc, charlm_bpc, ratio = float(cells[7]), float(cells[12]), float(cells[13])
    assert all(math.isfinite(x) and 0.5 < x < 10 for x in (baseline_bpc, charlm_bpc))
    assert ratio == pytest.approx(charlm_bpc / baseline_bpc, abs=2e-4)
    assert cells[3] == "2x16" and int(cells[4].replace(",", "")) > 0 and float(cells[6]) >= 0.5
    assert cells[8] == "1x16" and int(cells[9].replace(",", "")) > 0


@pytest.mark.parametrize(
    "flags, refused",
    [(["--baseline", "charrnn", "--iters", "5"], "--iters"), (["--baseline", "charrnn", "--gpu"], "--gpu"),
     (["--seconds", "5"], "--seconds"), (["--rnn-size", "64"], "--rnn-size")],
)  # fmt: skip
def test_versus_refuses_the_other_baselines_flags(tmp_path, monkeypatch, flags, refused):
    """A flag the chosen baseline does not read would be ignored without a word: it is refused, before training."""
    monkeypatch.setattr(sys, "argv", ["versus", "words.txt", *flags, "--out", str(tmp_path / "v.txt")])
    with pytest.raises(SystemExit, match=f"^{refused} is not a flag of --baseline"):
        versus.main()


def test_charrnn_batches_are_its_loaders_layout():
    """CharSplitLMMinibatchLoader: the text cut to whole batches, laid out as batch_size contiguous streams read
    in windows of seq_length, the targets one character on (the last wraps round to the first)."""
    ids = torch.arange(27)  # 2 streams x 3 windows of 4 = 24 characters kept
    inputs, targets = charrnn.batches(ids, batch_size=2, seq_length=4)
    assert inputs.shape == targets.shape == (3, 2, 4)
    assert inputs[0].tolist() == [[0, 1, 2, 3], [12, 13, 14, 15]]
    assert inputs[2].tolist() == [[8, 9, 10, 11], [20, 21, 22, 23]]
    assert targets[2].tolist() == [[9, 10, 11, 12], [21, 22, 23, 0]]
    stream = torch.cat(list(inputs[:, 1]))  # the second stream, window after window
    assert stream.tolist() == list(range(12, 24))
    with pytest.raises(SystemExit, match="the 7 characters of the text do not fill one batch of --batch-size 2"):
        charrnn.batches(torch.arange(7), batch_size=2, seq_length=4)


class RecordingRNN(charrnn.CharRNN):
    """char-rnn's model, recording each training call's inputs and the state it got and gave."""

    def __init__(self, *args):
        super().__init__(*args)
        self.calls = []

    def forward(self, ids, state=None):
        logits, after = super().forward(ids, state)
        if self.training:
            self.calls.append((ids.clone(), state, tuple(s.detach().clone() for s in after)))
        return logits, after


def test_charrnn_carries_the_state_from_batch_to_batch_and_across_epochs():
    """init_state_global: each batch starts from the state the one before ended with, and train.lua never resets
    it, not even when the batches wrap round into the next epoch."""
    recipe = charrnn.Recipe(rnn_size=8, batch_size=2, seq_length=4, max_iterations=7, seconds=1e9, quiet=True)
    torch.manual_seed(0)
    model = RecordingRNN(5, recipe)
    ids = torch.randint(5, (27,))
    charrnn.train(model, ids, recipe, held_out=torch.randint(5, (8,)))
    inputs, _ = charrnn.batches(ids, 2, 4)
    assert [torch.equal(call[0], inputs[i % 3]) for i, call in enumerate(model.calls)] == [True] * 7  # in order
    assert model.calls[0][1] is None  # zeros
    for (_, _, gave), (_, got, _) in zip(model.calls, model.calls[1:]):
        assert all(torch.equal(g, h) for g, h in zip(gave, got)) and not any(h.requires_grad for h in got)


def test_charrnn_recipe_is_train_luas():
    """train.lua's defaults, its learning rate decay and its initialisation (forget gates' i2h biases at 1)."""
    r = charrnn.Recipe()
    assert (r.rnn_size, r.num_layers, r.dropout, r.seq_length, r.batch_size) == (128, 2, 0.0, 50, 50)
    assert (r.learning_rate, r.decay_rate, r.epsilon, r.grad_clip, r.eval_val_every) == (2e-3, 0.95, 1e-8, 5.0, 1000)
    assert [charrnn.learning_rate(r, epochs) for epochs in (0, 9, 10, 12)] == pytest.approx(
        [2e-3, 2e-3, 2e-3 * 0.97, 2e-3 * 0.97**3]
    )
    model = charrnn.CharRNN(65, r)
    assert model.num_parameters() == 240_321  # train.lua prints this for tinyshakespeare's 65 characters
    for layer in range(2):
        bias = getattr(model.lstm, f"bias_ih_l{layer}")
        assert torch.all(bias[128:256] == 1.0) and bias[:128].abs().max() <= 0.08
    assert all(p.abs().max() <= 1.0 for p in model.parameters())


def test_charrnn_steps_are_rmsprop_on_the_clamped_summed_gradient():
    """Three iterations against train.lua's step written out: the gradient of the loss summed over the window's
    steps (train.lua leaves out the division), each element clamped to grad_clip, then optim.rmsprop
    (m = alpha m + (1 - alpha) g^2, x -= lr g / (sqrt(m) + eps)). RMSprop's first step is lr sign(g) / sqrt(1 -
    alpha) whatever the scale, so only later steps tell a gradient not summed or not clamped."""
    recipe = charrnn.Recipe(rnn_size=8, batch_size=2, seq_length=4, grad_clip=0.05, max_iterations=3, quiet=True)
    torch.manual_seed(0)
    model = charrnn.CharRNN(5, recipe)
    reference = copy.deepcopy(model)
    ids = torch.randint(5, (40,))
    charrnn.train(model, ids, recipe, held_out=torch.randint(5, (8,)))
    inputs, targets = charrnn.batches(ids, 2, 4)
    parameters = list(reference.parameters())
    squares, state, clamped, free = [torch.zeros_like(p) for p in parameters], None, 0, 0
    for x, y in zip(inputs[:3], targets[:3]):  # 5 batches: the first 3
        logits, state = reference(x, state)
        nats = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(2, 4)
        grads = torch.autograd.grad(nats.mean(0).sum(), parameters)
        state = tuple(s.detach() for s in state)
        with torch.no_grad():
            for p, g, m in zip(parameters, grads, squares):
                clamped, free = clamped + int((g.abs() > 0.05).sum()), free + int((g.abs() < 0.05 / 4).sum())
                g = g.clamp(-0.05, 0.05)
                m.mul_(0.95).add_(0.05 * g * g)
                p.sub_(2e-3 * g / (m.sqrt() + 1e-8))
    for (name, expected), got in zip(reference.named_parameters(), model.parameters()):
        assert torch.allclose(got, expected, atol=1e-6), name
    assert clamped > 0 and free > 0  # both the clamp and the summed scale were tested


def test_charrnn_keeps_the_weights_of_its_lowest_validation_loss(monkeypatch):
    torch.manual_seed(0)
    recipe = charrnn.Recipe(rnn_size=8, batch_size=2, seq_length=4, eval_val_every=10, max_iterations=40, quiet=True)
    model = charrnn.CharRNN(5, recipe)
    losses, kept = iter([3.0, 1.0, 2.0, 4.0]), {}  # the second evaluation (iteration 20) is the lowest

    def validation_loss(model, inputs, targets):
        value = next(losses)
        kept[value] = copy.deepcopy(model.state_dict())
        return value

    monkeypatch.setattr(charrnn, "validation_loss", validation_loss)
    seconds, iterations = charrnn.train(model, torch.randint(5, (200,)), recipe, held_out=torch.randint(5, (8,)))
    assert iterations == 40 and seconds > 0
    assert all(torch.equal(value, kept[1.0][name]) for name, value in model.state_dict().items())


def test_charrnn_validation_loss_carries_the_state_from_a_zero_one():
    """eval_split: the whole split, batch after batch, from a zero state carried across batches."""
    torch.manual_seed(0)
    model = charrnn.CharRNN(5, charrnn.Recipe(rnn_size=8))
    ids = torch.randint(5, (24,))
    inputs, targets = charrnn.batches(ids, 2, 4)
    logits, _ = model(inputs.transpose(0, 1).flatten(1))  # each stream in one pass
    one_pass = F.cross_entropy(logits.flatten(0, 1), targets.transpose(0, 1).flatten()).item()
    assert charrnn.validation_loss(model, inputs, targets) == pytest.approx(one_pass, rel=1e-5)


def test_charrnn_bits_per_char_is_one_pass():
    """Every character after the first, the state carried through the whole text, whatever the chunk."""
    torch.manual_seed(0)
    model = charrnn.CharRNN(7, charrnn.Recipe(rnn_size=8))
    ids = torch.randint(7, (50,))
    with torch.no_grad():
        logits, _ = model(ids[:-1].unsqueeze(0))
        one_pass = F.cross_entropy(logits[0], ids[1:]).item() / math.log(2)
    assert charrnn.bits_per_char(model, ids, chunk=7) == pytest.approx(one_pass, rel=1e-5)
    assert charrnn.bits_per_char(model, ids, chunk=49) == pytest.approx(one_pass, rel=1e-5)


def test_threads_bench_runs(fox_file, temporary_folders, monkeypatch):
    """Three of its seven situations (each a training process of its own, forked: ~1 s to start where
    a fresh one took ~4): one quiet, one beside a busy core, one pair at once; each trains 0.5 s (a
    hundred steps or more), the rest is starting. Without --out its runs are removed at the end (each
    test run left a /tmp/threads-*)."""
    fork_charlm_processes(monkeypatch)
    only = "quiet-governor,busy-governor,pair-governor"
    out = run_bench("threads", str(fox_file), "--seconds", "0.5", "--hidden", "16", "--only", only)
    rows = [line for line in out.splitlines() if line.startswith("| ") and "steps" not in line and "---" not in line]
    assert len(rows) == 3 and rows[0].startswith("| quiet, governor |") and rows[0].endswith("| 1.00 |")
    assert "one core busy, governor" in rows[1] and "two trainings together, governor, each" in rows[2]
    assert not left_behind(temporary_folders)


def test_size_rule_bench_runs(fox_file):
    out = run_bench("size_rule", str(fox_file), "--budgets", "2s", "--repeats", "2")
    rows = [line for line in out.splitlines() if line.startswith("| fox.txt | 2s |")]
    assert len(rows) == 2 and all("x128 |" in row or "x192 |" in row for row in rows)


def test_mixture_cache_decays_each_count_by_its_age():
    """The cache's probability of character i: the counts of characters 0..i-1, each halved per
    `half_life` characters of age, over their sum; also past the point where the weights are rescaled."""
    assert list(mixture.cache_probabilities("abab", 1.0)) == pytest.approx([0.0, 1 / 3, 2 / 7])  # worked by hand
    text = "".join(random.Random(0).choice("abc") for _ in range(600))
    got = mixture.cache_probabilities(text, 1.5)  # weights grow 2 ** (1 / 1.5) per character: rescaled
    for i in (1, 2, 300, 599):
        ages = np.arange(i)[::-1]  # character j of text[:i] is i - 1 - j characters old
        weights = 0.5 ** (ages / 1.5)
        expected = weights[[c == text[i] for c in text[:i]]].sum() / weights.sum()
        assert got[i - 1] == pytest.approx(expected, rel=1e-9)


def test_inspect_cell_and_inspect_shots_run(fox_file, tiny):
    """The two scripts behind how-it-works' cell figures and the docs' inspect screenshots."""
    import struct

    charlm.train(fox_file, out="run", **tiny)
    out = run_bench(
        "inspect_cell", "checkpoints/run", str(fox_file), "--cell", "0", "0", "--positions", "1", "5",
        "--at", " ", "--split", "inside a word",
    )  # fmt: skip
    assert "layer 0, cell 0" in out and "characters in ' '" in out and "5 characters after" in out
    assert "where inside a word is 1:" in out and "where inside a word is 0:" in out  # a space is never in a word
    assert cli("inspect", "run", str(fox_file), "--output", "page.html", "--quiet").exit_code == 0
    run_bench("inspect_shots", "page.html", "--cell", "0", "0", "--out", "cell.png")
    png = Path("cell.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (955, 229)


def test_inspect_time_times_charlm_inspect_under_each_revision(fox_file, tiny):
    """bench.inspect_time runs `charlm inspect` under each revision's charlm in turn and gives the ratio, and with
    --passes times the model reading the text twice against once."""
    charlm.train(fox_file, out="run", **tiny)
    out = run_bench("inspect_time", "checkpoints/run", str(fox_file), "--revisions", "@,HEAD", "--rounds", "2")
    timed = r"[\d.]+ s \(CPU [\d.]+ s\)"
    assert re.search(rf"round 1: @ {timed}; HEAD {timed}\nround 2: HEAD {timed}; @ {timed}\n", out), out
    ratio = r"[\d.]+ s [\d.]+ \[[\d.]+, [\d.]+\]"
    assert re.search(rf"\n@ \(\w+\): wall [\d.]+ s; CPU [\d.]+ s\nHEAD \(\w+\): wall {ratio}; CPU {ratio}\n$", out), out
    out = run_bench("inspect_time", "checkpoints/run", str(fox_file), "--passes", "--rounds", "2")
    assert re.search(r"\ntwice: [\d.]+ s\nonce: [\d.]+ s [\d.]+ \[[\d.]+, [\d.]+\]\n$", out), out


@pytest.mark.parametrize(
    ("script", "words"),
    [
        ("babygpt", ["nope.txt"]),
        ("charrnn", ["nope.txt"]),
        ("export_formats", ["nope"]),
        ("export_page", ["nope"]),
        ("finetune", ["nope", "nope.txt"]),
        ("forms", ["nope", "nope.txt"]),
        ("head_speed", ["nope.txt"]),
        ("inspect_cell", ["nope", "--held-out", "--cell", "0", "0"]),
        ("inspect_shots", ["nope.html", "--gates", "--out", "gates.png"]),  # before a browser starts
        ("inspect_time", ["nope", "--held-out"]),  # before any revision is taken out of git
        ("mixture", ["nope", "nope.txt"]),
        ("parts", ["table", "nope.txt"]),  # before the table's download
        ("parts", ["speed", "nope.txt"]),
        ("parts", ["train", "nope.txt", "--steps", "1", "--out", "out"]),
        ("parts", ["evaluations", "nope"]),
        ("quality", ["nope.txt", "--budgets", "1s"]),
        ("seen_share", ["nope.txt"]),
        ("serve_load", ["--checkpoint", "nope", "--streams", "1", "--churn", "0"]),
        ("size_rule", ["nope.txt", "--budgets", "1s", "--repeats", "1"]),
        ("sweep", ["nope.txt", "hidden=8", "--max-time", "1s"]),
        ("threads", ["nope.txt", "--seconds", "1"]),
        ("versus", ["nope.txt", "--iters", "1"]),
    ],
)
def test_a_bench_script_given_a_run_or_file_that_is_not_there_says_so_in_one_line(script, words, monkeypatch):
    """`python -m bench.inspect_cell RUN` on a missing run printed charlm's CharLMError under a traceback, and
    the scripts that read a text themselves a FileNotFoundError's; bench.inspect_shots and bench.export_page
    started Chromium first, bench.parts table downloaded its table first. Each is now one line naming what
    is missing, as charlm's own commands say it, status 1, before any work."""
    from bench import browser

    monkeypatch.setattr(browser, "chromium", lambda: pytest.fail("started a browser"))
    code, stdout, stderr = bench_ended(script, *words)
    assert code == 1 and stderr.count("\n") == 1, stdout + stderr
    assert "nope" in stderr and "Traceback" not in stderr and "Error:" not in stderr.split("nope")[0], stderr
    assert not Path("bench").exists() and not Path("gates.png").exists()  # nothing made on the way


def headless_or_missing():
    from bench import browser

    if not browser.installed():
        missing(browser.INSTALL)
    return browser


def shown_text(driver, page: Path) -> str:
    driver.get(page.as_uri())
    return driver.find_element("tag name", "p").text


def test_browsers_started_at_once_each_load_a_page_in_a_profile_of_their_own(tmp_path):
    """Tests and scripts start several browsers, sometimes at once: each has a profile folder of its own,
    removed after it quits."""
    browser = headless_or_missing()
    page = tmp_path / "page.html"
    page.write_text("<p>a page</p>", encoding="utf-8")
    shown, profiles = {}, {}

    def load(number: int) -> None:
        with browser.chromium() as driver:
            profiles[number] = driver.capabilities["chrome"]["userDataDir"]
            shown[number] = shown_text(driver, page)

    loading = [threading.Thread(target=load, args=(number,)) for number in range(2)]
    for thread in loading:
        thread.start()
    for thread in loading:
        thread.join(timeout=180)
    assert shown == {0: "a page", 1: "a page"}
    assert len(set(profiles.values())) == 2 and all("charlm-chromium-" in folder for folder in profiles.values())
    assert not any(Path(folder).exists() for folder in profiles.values())


def killing_the_browser(browser, monkeypatch, starts_to_kill: int) -> list[str]:
    """bench.browser's starts, the first `starts_to_kill` of them with their browser killed as soon as it is
    up (chromedriver left running: "the browser has closed the connection", as in CI); the profiles used."""
    profiles = []
    start = browser.started

    def started(profile: str):
        driver = start(profile)
        profiles.append(profile)
        if len(profiles) <= starts_to_kill:
            chromedriver = driver.service.process.pid
            for children in Path(f"/proc/{chromedriver}/task").glob("*/children"):  # each thread's
                for pid in children.read_text().split():
                    os.kill(int(pid), signal.SIGKILL)
        return driver

    monkeypatch.setattr(browser, "started", started)
    return profiles


@pytest.fixture
def short_temporary_folder(monkeypatch) -> Iterator[Path]:
    """An empty folder that tempfile, Chromium and chromedriver make their temporary files in for this test
    (tempfile.tempdir, TMPDIR), under /tmp: a socket's path, Chromium's in it, must fit in 108 bytes,
    and one under tmp_path does not. Removed after."""
    folder = Path(tempfile.mkdtemp(prefix="t-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    yield folder
    shutil.rmtree(folder)


def test_a_browser_dead_at_start_up_is_replaced_once_by_a_fresh_one(tmp_path, short_temporary_folder, monkeypatch):
    """Neither browser leaves anything in the temporary folder: Chromium's org.chromium.Chromium.* (its
    singleton socket) and chromedriver's scoped_dir.* are removed only by a browser that quits, so each
    killed one left them in /tmp, a few each test run."""
    browser = headless_or_missing()
    page = tmp_path / "page.html"
    page.write_text("<p>a page</p>", encoding="utf-8")
    profiles = killing_the_browser(browser, monkeypatch, starts_to_kill=1)
    with browser.chromium() as driver:
        assert shown_text(driver, page) == "a page"
    assert len(profiles) == 2 and not any(Path(folder).exists() for folder in profiles)
    assert not left_behind(short_temporary_folder)


def test_a_browser_dead_at_start_up_twice_is_an_error_not_a_third_try(monkeypatch):
    browser = headless_or_missing()
    profiles = killing_the_browser(browser, monkeypatch, starts_to_kill=3)
    with pytest.raises(RuntimeError, match="died at start-up 2 times in a row"), browser.chromium():
        pass
    assert len(profiles) == 2 and not any(Path(folder).exists() for folder in profiles)


# bench.browser's Chromium started in a thread, used once that thread has ended, then killed with its process
OPENS_A_BROWSER = """
import threading, time
from bench import browser
opening = browser.chromium()  # kept: collected, it would quit the browser
drivers = []
starting = threading.Thread(target=lambda: drivers.append(opening.__enter__()))
starting.start()
starting.join()
assert browser.shows_a_blank_page(drivers[0])
print("open", flush=True)
time.sleep(600)
"""


def test_a_killed_process_takes_its_chromedriver_and_chromium_with_it(short_temporary_folder):
    """A test run or bench killed hard (SIGKILL: a CI timeout, the OOM killer, `kill -9`) cleans up nothing:
    its chromedriver and every Chromium process ran on with parent pid 1, two of them once at ~50% CPU
    each for two hours on a 2-core machine, slowing every later run. The browser outlives the thread
    that started it (as a parent-death signal would not). Its profile, left too, went to /tmp each test
    run: the killed process's temporary folder is the test's."""
    headless_or_missing()
    assert left_running_after_a_kill(OPENS_A_BROWSER) == []
    assert not left_behind(short_temporary_folder)


@pytest.mark.slow  # the onnx export takes seconds
def test_export_formats_bench_gives_sizes_and_speed(fox_file, tiny):
    """The script behind docs/export.md's onnx and safetensors figures: a row per run, each size beside its
    best.pt's and a speed."""
    import_or_missing("onnxruntime")
    charlm.train(fox_file, out="run", **tiny)
    out = run_bench("export_formats", "checkpoints/run", "--steps", "5", "--rounds", "1")
    row = (
        [line for line in out.splitlines() if line.startswith("| run |")][-1].strip("|").split("|")
    )  # after the header
    best_mb, onnx_mb, safetensors_mb, speed = (float(cell.replace(",", "")) for cell in row[1:])
    assert best_mb >= safetensors_mb >= 0 and onnx_mb >= 0 and speed > 0  # best.pt holds the optimizer too


def test_mixture_bench_runs(tmp_path, tiny):
    corpus = messy_text(tmp_path / "words.txt", lines=300)
    charlm.train(str(corpus), out=str(tmp_path / "run"), **tiny)
    model = charlm.load(tmp_path / "run")  # best.pt, as the script reads it
    out = run_bench("mixture", str(tmp_path / "run"), str(corpus), "--orders", "2", "--half-lives", "50")
    table = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    rows = {cells[0].strip(): float(cells[1]) for cells in table[1:]}  # table[0]: the header
    held_out = load_corpus([str(corpus)], charlm.Config(**tiny), quiet=True).val_ids
    assert rows["charlm"] == pytest.approx(bits_per_char(model, held_out), abs=1e-4)
    assert rows["charlm + KN-2"] <= rows["charlm"] and rows["charlm + KN-2 + cache (50)"] <= rows["charlm + KN-2"]
    assert all(math.isfinite(value) and value > 0 for value in rows.values())


PARTS_TABLE = "河\t水可\n江\t水工\n湖\t水胡\n海\t水每\n林\t木木\n森\t木林\n村\t木寸\n沐\t水木\n"


def test_parts_model_starts_as_charlms_and_adds_its_components(tmp_path):
    from bench import parts

    table = dict(line.split("\t") for line in PARTS_TABLE.splitlines())
    vocab = Vocab(list("\n山河江湖海林森村"))
    counts = torch.arange(len(vocab), 0, -1)
    config = charlm.ModelConfig("lstm", 1, 16, 0.0, len(vocab), head_cutoffs("adaptive", counts))
    model = charlm.CharLM(config, vocab).eval()
    model.head.set_frequencies(counts)
    ids, targets = torch.randint(0, len(vocab), (2, 6)), torch.randint(0, len(vocab), (2, 6))
    with torch.no_grad():
        before = model(ids, targets=targets)[0], model(ids)[0]
        kept = parts.components(vocab.chars, table)
        assert kept == ["水", "木"]  # most shared first; 可 工 胡 每 林 寸 belong to one character each
        model = parts.with_parts(model, kept, table).eval()
        after = model(ids, targets=targets)[0], model(ids)[0]
        assert all(torch.allclose(b, a, atol=1e-6) for b, a in zip(before, after))  # zero parts: charlm's model
        for bag in (model.embed.parts.bag, *(p.bag for p in model.head.parts)):
            bag.weight[:-1].normal_()
        nats, logits = model(ids, targets=targets)[0], model(ids)[0]
        assert torch.allclose(nats, -logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1), atol=1e-5)
        river, parts_of = vocab.index["河"], model.embed.parts.bag.weight
        expected = model.embed.weight[river] + parts_of[kept.index("水")]
        assert torch.allclose(model.embed(torch.tensor([river])), expected)  # own vector + its parts'


def test_parts_bench_trains_and_a_new_character_starts_from_its_parts(tmp_path):
    from bench import parts

    folder = tmp_path / "bench" / "out" / "parts"
    folder.mkdir(parents=True)
    (folder / "chaizi.tsv").write_text(PARTS_TABLE, encoding="utf-8")
    rng = random.Random(0)
    (tmp_path / "base.txt").write_text("".join(rng.choice("山河江湖海林森村\n") for _ in range(3000)), encoding="utf-8")
    (tmp_path / "new.txt").write_text("".join(rng.choice("沐河林\n") for _ in range(600)), encoding="utf-8")
    settings = ["--set", f"{TINY_SET},hidden=16,head=adaptive,eval_every=10"]
    out = run_bench("parts", "train", "base.txt", "--steps", "20", "--parts", "--out", "base", *settings)
    assert "| base.txt | parts | - | 20 |" in out
    out = run_bench(
        "parts", "train", "new.txt", "--steps", "10", "--parts", "--init-from", "base", "--out", "new", *settings
    )
    assert "| new.txt | parts | base | 10 |" in out
    saved = checkpoint.read(runs.resolve("base"))  # its extra weights pass the payload check
    with pytest.raises(charlm.CharLMError, match="holds weights charlm's model has not .* the code that trained it"):
        charlm.load("base")  # but charlm's own model cannot hold them: one line, not a state_dict error
    start = finetune.read_base("base", charlm_model=False)  # the experiment builds its own model
    vocab = saved.vocab.extended(["沐"])
    corpus = type("Corpus", (), {"vocab": vocab})()
    config = dataclasses.replace(saved.config, dropout=0.0)
    model = parts.parts_builder(parts.read_table())(config, corpus, start, saved.model_config.head_cutoffs)
    bath, kept = vocab.index["沐"], parts.components(saved.vocab.chars, parts.read_table())
    bag = model.embed.parts.bag.weight
    with torch.no_grad():  # charlm's zero row for a new character, plus its parts learned in the base
        assert torch.allclose(
            model.embed(torch.tensor([bath])).squeeze(0), bag[kept.index("水")] + bag[kept.index("木")]
        )


def test_startup_bench_runs():
    """One round (each command timed once: a round took ~2.5 s of CPU, most of it importing torch): the
    rows, not their medians, are the test's."""
    out = run_bench("startup", "--rounds", "1", "--only", "help")
    assert "| import torch | " in out and "| help | " in out
    assert "; 1 round, each command in turn" in out  # it said `1 rounds`


def test_serve_loads_comparison_of_one_round_says_one_round(capsys):
    """`--rounds 1` (serve_load's default) headed its comparison `medians over 1 rounds`."""
    point = {"aggregate": 100.0, "per_stream": 10.0, "first_p50": 5.0, "prompt_p50": 1.0, "http_ms": 20.0}
    serve_load.compare({(1, "stream"): [([point], None)], (2, "stream"): [([point], None)]}, [1])
    assert "medians over 1 round;" in capsys.readouterr().out


def test_suite_time_bench_times_a_suite_in_one_process_and_in_two(tmp_path, monkeypatch):
    """On a two-test file of its own (not the suite: that is the bench's job, minutes), one row per worker
    count, each with pytest's own summary: the CPU of the workers it waited for is counted. Only xdist
    is loaded of the installed plugins (each pytest process spent ~2.7 s loading them all)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    (tmp_path / "test_two.py").write_text(
        "import time\n\ndef test_a():\n    time.sleep(0.2)\n\ndef test_b():\n    pass\n"
    )
    table = tmp_path / "suite-time.txt"
    out = run_bench(
        "suite_time", "--workers", "0,2", "--output", str(table), "-p", "xdist", str(tmp_path / "test_two.py")
    )
    rows = [line.split() for line in out.splitlines()[3:]]
    assert [row[0] for row in rows] == ["0", "2"], out
    assert all(" ".join(row[6:]).startswith("exit 0:") and "2 passed" in " ".join(row) for row in rows), out
    assert float(rows[1][1]) > 0 and float(rows[1][2]) > 0, out
    assert table.read_text(encoding="utf-8") == out


def test_the_load_bench_waits_for_busy_streams_too(monkeypatch):
    """/metrics' charlm_active_streams counts samples generated now; a stream the model has finished but
    whose client has not taken its last update is busy (admission counts it, a 429 beyond --max-streams)
    and not active: the churn's check for streams left behind read active alone, so such a leak passed."""
    states, asked = [(0, 2), (0, 1), (0, 0)], []

    async def metrics(url: str) -> dict[str, float]:
        active, busy = states[min(len(asked), len(states) - 1)]
        asked.append(url)
        return {"charlm_active_streams": active, "charlm_busy_streams": busy}

    monkeypatch.setattr(serve_load, "metrics", metrics)
    after = asyncio.run(serve_load.settled("http://server", seconds=5))
    assert after["charlm_busy_streams"] == 0 and len(asked) == 3
    states[:], asked[:] = [(0, 1)], []  # a server that never lets go: told as it is, once the time is up
    assert asyncio.run(serve_load.settled("http://server", seconds=0.25))["charlm_busy_streams"] == 1
    assert len(asked) > 1
