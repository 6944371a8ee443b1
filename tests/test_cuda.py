"""What a GPU user needs, checked on a CUDA GPU. Every test here carries the `cuda` marker: skipped
where there is no GPU (CI has none), run by bench/gpu_check.sh on one.

The CPU is the reference: a GPU run must give the CPU's log-probabilities within LOGPROB_TOLERANCE
(inference runs in real fp32 on both, see `model.inference`) and its greedy text.

`CHARLM_TEST_DEVICE=cpu` (`bash bench/gpu_check.sh --cpu`) runs every test here on the CPU instead,
the CPU compared with itself: it cannot find a GPU bug, but it finds a broken test before the few
minutes of a lent GPU are spent on it."""

from __future__ import annotations

import os

import httpx
import pytest
import torch

import charlm
from charlm.model import inference
from charlm.scoring import bits_per_char
from charlm.serve.app import create_app
from charlm.serve.config import ServeConfig

from .conftest import GPU_TEST_DEVICE as DEVICE
from .conftest import latest, run_bench
from .test_serve import running, wait_healthy

pytestmark = pytest.mark.cuda

ON_GPU = DEVICE.startswith("cuda")  # False in the dry run
LOW_PRECISION = "fp16" if ON_GPU else "bf16"  # fp16 is CUDA's alone
LOGPROB_TOLERANCE = 1e-3  # nats, per character
GREEDY_CHARS = 100
ADAPTIVE = {"head": "adaptive", "hidden": 48, "lr": 1e-2, "eval_every": 30, "dropout": 0.1, "device": DEVICE}


@pytest.fixture
def deterministic():
    """cuBLAS and scatter kernels may add in any order; bit-exact comparisons need the fixed order."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)


def log_probs(model: charlm.CharLM, text: str) -> torch.Tensor:
    """Each character's log-probability after the ones before it, on the CPU."""
    ids = model.vocab.encode(text)
    with inference(model):
        logits, _ = model(ids[:-1].unsqueeze(0))
    return torch.log_softmax(logits[0].float(), -1).gather(-1, ids[1:, None].to(logits.device)).squeeze(-1).cpu()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_adaptive_head_trains_and_resumes_bit_exactly_on_the_gpu(fox_file, tiny, precision, deterministic):
    if precision == "fp16" and not ON_GPU:
        pytest.skip("fp16 needs CUDA; the dry run checks this test's code with bf16")
    options = {**tiny, **ADAPTIVE, "precision": precision, "min_lr_ratio": 1.0}  # flat lr: 30 + 30 steps = 60
    del options["max_steps"]
    model = charlm.train(fox_file, out="whole", **options, max_steps=60)
    assert model.device.type == DEVICE.split(":")[0]  # charlm.train returns the model where it trained
    assert latest("whole").progress.best_bpc < 2.0
    charlm.train(fox_file, out="split", **options, max_steps=30)
    charlm.train(resume="split", max_steps=60)
    whole, split = latest("whole"), latest("split")
    assert split.progress.step == 60 and split.precision == precision
    for name, tensor in whole.weights.items():
        assert torch.equal(tensor, split.weights[name]), name


def test_evaluation_is_fp32_whatever_the_training_precision(fox_file, tiny):
    model = charlm.train(fox_file, out="run", **{**tiny, **ADAPTIVE, "precision": LOW_PRECISION, "max_steps": 60})
    recorded = latest("run").progress.val_bpc
    held_out = model.vocab.encode(fox_file.read_text()[-len(fox_file.read_text()) // 10 :])
    on_gpu, on_cpu = bits_per_char(model, held_out), bits_per_char(charlm.load("run", device="cpu"), held_out)
    assert abs(on_gpu - on_cpu) < 1e-4  # fp32 on both: no trace of the fp16 training arithmetic
    assert abs(recorded - on_cpu) < 0.05  # the run scored the same split (its own first tokens of it)


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_a_gpu_model_gives_the_cpus_log_probabilities_and_greedy_text(fox_file, tiny, head):
    trained = charlm.train(fox_file, out="run", **{**tiny, **ADAPTIVE, "head": head, "max_steps": 80})
    gpu, cpu = charlm.load("run", device=DEVICE), charlm.load("run", device="cpu")  # trained on the GPU
    text = fox_file.read_text()[:300]
    assert torch.allclose(log_probs(gpu, text), log_probs(cpu, text), atol=LOGPROB_TOLERANCE)
    on_gpu = charlm.generate(gpu, "the ", length=GREEDY_CHARS, greedy=True)
    assert on_gpu == charlm.generate(cpu, "the ", length=GREEDY_CHARS, greedy=True)
    assert len(on_gpu) == 4 + GREEDY_CHARS
    # The Python API takes ids wherever they live: CPU ids into the GPU model it returned.
    ids = trained.vocab.encode(text)
    assert abs(bits_per_char(trained, ids) - bits_per_char(cpu, ids)) < 1e-4
    logits, _ = trained(ids[None, :20])
    assert logits.device == trained.device


def test_a_gpu_model_samples_on_a_cpu_after_loading(fox_file, tiny):
    charlm.train(fox_file, out="run", **{**tiny, "device": DEVICE, "max_steps": 40})
    assert latest("run").device.startswith(DEVICE)
    model = charlm.load("run", device="cpu")
    assert model.device.type == "cpu"
    assert len(charlm.generate(model, "the ", length=50, random_seed=0)) == 54


def test_serve_loads_its_models_onto_its_device(fox_file, tiny):
    from charlm.serve import model_loaders

    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    assert model_loaders(["run"], DEVICE)[0]["run"]().device.type == DEVICE.split(":")[0]


def test_serve_on_the_gpu_gives_the_cpus_logprobs_and_greedy_text(fox_file, tiny):
    charlm.train(fox_file, out="run", **{**tiny, **ADAPTIVE, "max_steps": 80})
    loaders = {"gpu": lambda: charlm.load("run", device=DEVICE), "cpu": lambda: charlm.load("run", device="cpu")}
    app = create_app(loaders, ServeConfig(max_tokens=GREEDY_CHARS))
    with running(app) as url:
        wait_healthy(url)
        answers = {}
        for name in loaders:
            body = {"model": name, "prompt": "the ", "max_tokens": GREEDY_CHARS, "temperature": 0, "logprobs": 1}
            answers[name] = httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()["choices"][0]
    assert answers["gpu"]["text"] == answers["cpu"]["text"] and len(answers["gpu"]["text"]) == GREEDY_CHARS
    gpu, cpu = (torch.tensor(answers[n]["logprobs"]["token_logprobs"]) for n in ("gpu", "cpu"))
    assert torch.allclose(gpu, cpu, atol=LOGPROB_TOLERANCE)


def test_the_sampling_bench_runs_on_the_gpu():
    """#24 asks for sampling chars/s on the GPU, 1 and 64 streams: `bench.sample_speed --device cuda`."""
    out = run_bench("sample_speed", "--device", DEVICE, "--hidden", "16", "--chars", "60", "--streams", "4")
    assert "4 streams in one batch (total)" in out
    if ON_GPU:
        assert "cuda:" in out and "bf16" not in out
