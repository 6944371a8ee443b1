"""What a GPU user needs, checked on a CUDA GPU. Every test here carries the `cuda` marker: skipped
where there is no GPU (CI has none), run by bench/gpu_check.sh on one.

The CPU is the reference: a GPU run must give the CPU's log-probabilities within LOGPROB_TOLERANCE
(inference runs in real fp32 on both, see `inference_context.inference`) and its greedy text.

`CHARLM_TEST_DEVICE=cpu` (`bash bench/gpu_check.sh --cpu`) runs every test here on the CPU instead,
the CPU compared with itself: it cannot find a GPU bug, but it finds a broken test before the few
minutes of a lent GPU are spent on it."""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import datetime
import json
import os
import socket
import subprocess
import sys
import textwrap

import httpx
import pytest
import torch
import torch.distributed as dist

import charlm
from charlm.config import SampleConfig
from charlm.decoding import UNIFORM_BLOCK, RowSampler
from charlm.distributed import Ranks
from charlm.inference_context import inference
from charlm.scoring import bits_per_char
from charlm.serve.engine import Engine, Job

from .conftest import GPU_TEST_DEVICE as DEVICE
from .conftest import cli, cli_args, latest, make_model, run_bench
from .test_distributed import launch

pytestmark = pytest.mark.cuda

ON_GPU = DEVICE.startswith("cuda")  # False in the dry run
LOW_PRECISION = "fp16" if ON_GPU else "bf16"  # fp16 is CUDA's alone
LOGPROB_TOLERANCE = 1e-3  # nats, per character
GREEDY_CHARS = 100
ADAPTIVE = {"head": "adaptive", "hidden": 48, "lr": 1e-2, "eval_every": 30, "dropout": 0.1, "device": DEVICE}
BANNED = "eo"  # characters of the fox text that a logit bias of -100 bans


@contextlib.contextmanager
def serving(loaders: dict, **config):
    """`charlm serve`'s app over `loaders` (ServeConfig(**config)) on a free port of 127.0.0.1, healthy; yields
    its URL. The server's modules and test_serve's (fastapi, openai: ~1.5 s) are imported here, not at the
    top: the dry run (bench/gpu_check.sh --cpu) collects this file in each of its pytest processes."""
    from charlm.serve.app import create_app
    from charlm.serve.config import ServeConfig

    from .test_serve import running, wait_healthy

    with running(create_app(loaders, ServeConfig(**config))) as url:
        wait_healthy(url)
        yield url


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
    # A CPU step's bits depend on its thread count, which adapts to a busy machine: pinned, for the dry run.
    options["threads"] = 1
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
    with serving(loaders, max_tokens=GREEDY_CHARS) as url:
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


def test_logit_bias_and_ban_on_the_gpu_give_the_cpus_greedy_text_and_never_a_banned_character(fox_file, tiny):
    """The bias and ban rows live on the GPU beside the logits, written when a row joins (`decoding.RowSampler`)."""
    charlm.train(fox_file, out="run", **{**tiny, **ADAPTIVE, "head": "full", "max_steps": 80})
    gpu, cpu = charlm.load("run", device=DEVICE), charlm.load("run", device="cpu")
    bias = {**dict.fromkeys(BANNED, -100), "u": 4.0}
    greedy = charlm.generate(gpu, "the ", length=GREEDY_CHARS, greedy=True, logit_bias=bias)
    assert greedy == charlm.generate(cpu, "the ", length=GREEDY_CHARS, greedy=True, logit_bias=bias)
    assert len(greedy) == 4 + GREEDY_CHARS and not set(BANNED) & set(greedy[4:])
    # Drawn, hot, in a batch: a banned character never comes, whatever the temperature.
    drawn = charlm.generate(gpu, "the ", length=200, num_samples=4, random_seed=3, temperature=2.0, logit_bias=bias)
    assert all(len(text) == 204 and not set(BANNED) & set(text[4:]) for text in drawn)
    # `charlm sample --device cuda --ban`: the same text as the API's.
    banned = charlm.generate(gpu, "the ", length=GREEDY_CHARS, greedy=True, logit_bias=dict.fromkeys(BANNED, -100))
    args = ["--checkpoint", "run", "--device", DEVICE, "--seed", "the ", "--greedy", "--length", str(GREEDY_CHARS)]
    result = cli("sample", *args, "--ban", BANNED)
    assert result.exit_code == 0 and banned in result.output, result.output


@contextlib.contextmanager
def waits_refused():
    """Any operation that waits for the GPU (a copy to the host, `.item()`, a blocking copy from it) raises."""
    if not ON_GPU:  # the dry run: nothing to wait for
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_the_sampler_chooses_on_the_gpu_without_waiting_for_it_and_as_the_cpu_does():
    """`decoding.RowSampler` keeps its rows on the model's device and decides on the host: a step without a
    template copies nothing to or from the host and never waits for the GPU (a per-character copy of each
    option, the history and the uniforms used to), a refill of the uniforms included. Its ids are the
    CPU's: a greedy row's exactly, a drawn row's but where a uniform falls within rounding of a boundary."""
    torch.manual_seed(0)
    vocab, prime = 50, torch.tensor([1, 2, 3, 1])
    bias = torch.zeros(vocab)
    bias[2], bias[5] = float("-inf"), 2.0
    # Only the greedy row has a penalty: a drawn row that differs once would change its later penalties.
    configs = [
        SampleConfig(temperature=0.8, top_k=10, top_p=0.9),
        SampleConfig(greedy=True, repetition_penalty=1.3),
        SampleConfig(temperature=[0.7, 1.3]),
        SampleConfig(top_k=3),
    ]
    cpu, gpu = RowSampler(8, vocab), RowSampler(8, vocab, device=DEVICE)
    for sampler in (cpu, gpu):
        for row, config in enumerate(configs):
            sampler.set(row, config, 40 + row, prime, bias=bias if row % 2 else None)
    steps = UNIFORM_BLOCK + 20  # through a refill of every row's uniforms
    logits = torch.randn(steps, len(configs), vocab) * 3
    on_gpu = logits.to(DEVICE)
    with waits_refused():
        chosen = [gpu.choose(on_gpu[step]) for step in range(steps)]
    assert chosen[0].device == on_gpu.device
    chosen = torch.stack(chosen).cpu()
    expected = torch.stack([cpu.choose(logits[step]) for step in range(steps)])
    assert torch.equal(chosen[:, 1], expected[:, 1])
    assert (chosen == expected).float().mean() > 0.99
    assert not (chosen[:, 1::2] == 2).any()  # banned


def test_presence_and_frequency_penalties_on_the_gpu_write_the_cpus_text_without_waiting_for_it(fox_file, tiny):
    """Each row's counts of the ids it wrote live on the GPU beside its logits, (rows, vocab), added to by
    one scatter a step, its penalties written when it joins (`decoding.RowSampler`): a step never waits for
    the GPU, a greedy row's ids are the CPU's exactly (rows with and without penalties side by side), and
    charlm.generate's greedy and seeded texts under them are the CPU's."""
    torch.manual_seed(0)
    vocab, prime = 50, torch.tensor([1, 2, 3, 1])
    configs = [
        SampleConfig(greedy=True, presence_penalty=1.5, frequency_penalty=0.5),
        SampleConfig(temperature=0.8, presence_penalty=-1.0),
        SampleConfig(greedy=True),
        SampleConfig(greedy=True, frequency_penalty=2.0, repetition_penalty=1.2),
    ]
    cpu, gpu = RowSampler(4, vocab), RowSampler(4, vocab, device=DEVICE)
    for sampler in (cpu, gpu):
        for row, config in enumerate(configs):
            sampler.set(row, config, 70 + row, prime)
    logits = torch.randn(UNIFORM_BLOCK + 20, len(configs), vocab)  # near enough that the penalties change ids
    on_gpu = logits.to(DEVICE)
    with waits_refused():
        chosen = [gpu.choose(on_gpu[step]) for step in range(len(logits))]
    chosen = torch.stack(chosen).cpu()
    expected = torch.stack([cpu.choose(step) for step in logits])
    assert torch.equal(chosen[:, [0, 2, 3]], expected[:, [0, 2, 3]])
    assert not torch.equal(expected[:, 0], expected[:, 2])  # the penalties acted
    assert torch.equal(gpu.counts.cpu(), cpu.counts)
    charlm.train(fox_file, out="run", **{**tiny, **ADAPTIVE, "head": "full", "max_steps": 80})
    gpu_model, cpu_model = charlm.load("run", device=DEVICE), charlm.load("run", device="cpu")
    penalties = {"presence_penalty": 2.0, "frequency_penalty": 1.0}  # strong enough to move a trained model
    greedy = charlm.generate(gpu_model, "the ", length=GREEDY_CHARS, greedy=True, **penalties)
    assert greedy == charlm.generate(cpu_model, "the ", length=GREEDY_CHARS, greedy=True, **penalties)
    assert greedy != charlm.generate(gpu_model, "the ", length=GREEDY_CHARS, greedy=True)
    four = {"length": 60, "num_samples": 4, "random_seed": 5, "temperature": 0.9, **penalties}
    assert same_but_for_a_boundary(
        charlm.generate(gpu_model, "the ", **four), charlm.generate(cpu_model, "the ", **four)
    )


def test_a_lone_row_on_the_gpu_counts_its_uniforms_on_the_host_and_rows_joining_it_draw_as_on_the_cpu():
    """A lone row's uniform is a view of its block at the host's count, the device's counts written again
    when rows join it: a lone row, past a refill, then rows beside it, never wait for the GPU and choose
    the CPU's ids (a drawn row's but where a uniform falls within rounding of a boundary)."""
    torch.manual_seed(0)
    vocab, prime = 50, torch.tensor([1, 2, 3, 1])
    configs = [SampleConfig(temperature=0.8), SampleConfig(top_k=5), SampleConfig(greedy=True)]
    cpu, gpu = RowSampler(4, vocab), RowSampler(4, vocab, device=DEVICE)
    steps, joins = UNIFORM_BLOCK + 40, {0: 0, UNIFORM_BLOCK + 10: 1, UNIFORM_BLOCK + 20: 2}
    chosen, expected = [], []
    for step in range(steps):
        if step in joins:
            for sampler in (cpu, gpu):
                sampler.set(joins[step], configs[joins[step]], 60 + step, prime)
        rows = 1 + sum(at <= step for at in joins if at)
        logits = torch.randn(rows, vocab) * 3
        with waits_refused():
            chosen.append(gpu.choose(logits.to(DEVICE)))
        expected.append(cpu.choose(logits))
    chosen, expected = torch.cat(chosen).cpu(), torch.cat(expected)
    assert (chosen == expected).float().mean() > 0.99


def test_a_byte_fallback_model_writes_whole_characters_on_the_gpu_as_on_the_cpu():
    """`decoding.Utf8Rule` keeps a row's drawn byte pieces to UTF-8 with tensors on the batch's device: the
    GPU's greedy text is the CPU's, and drawn text never holds a broken character (U+FFFD)."""
    import copy

    from charlm.pieces import PieceVocab, train_model

    from .test_sampler import make_model

    torch.manual_seed(0)
    vocab = PieceVocab(train_model(["春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。\n" * 20], "bpe", 300), "none")
    model = make_model(vocab, layers=1, hidden=8).eval()  # untrained: byte pieces come often
    on_gpu = copy.deepcopy(model).to(DEVICE)
    greedy = {"length": GREEDY_CHARS, "greedy": True}
    assert charlm.generate(on_gpu, "春", **greedy) == charlm.generate(model, "春", **greedy)
    drawn = charlm.generate(on_gpu, "春", length=200, temperature=3.0, random_seed=1, num_samples=2)
    assert not any("\ufffd" in text for text in drawn)


def test_serve_on_the_gpu_with_threads_many_rows_and_a_logit_bias_gives_the_cpus_greedy_text(fox_file, tiny):
    """A request of 20 rows banning characters (more rows than `engine.PARALLEL_ROWS`, so the engine thread
    takes --threads 2) beside one of 10 free rows: every row's greedy text is the CPU server's."""
    charlm.train(fox_file, out="run", **{**tiny, **ADAPTIVE, "head": "full", "max_steps": 80})
    vocab = charlm.load("run", device="cpu").vocab
    loaders = {"gpu": lambda: charlm.load("run", device=DEVICE), "cpu": lambda: charlm.load("run", device="cpu")}
    prompts = ["the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dog ", "t", "q"]
    biases = {"banned": {str(vocab.index[c]): -100 for c in BANNED}, "free": None}
    samples = {"banned": 2, "free": 1}  # per prompt: 20 rows and 10, on each server (60 of its 64 streams)
    requests = [(model, bias) for model in loaders for bias in biases]

    def complete(url: str, model: str, bias: str) -> list[str]:
        body = {"model": model, "prompt": prompts, "n": samples[bias], "max_tokens": 60, "temperature": 0}
        answer = httpx.post(f"{url}/v1/completions", json={**body, "logit_bias": biases[bias]}, timeout=120)
        assert answer.status_code == 200, answer.text
        return [choice["text"] for choice in sorted(answer.json()["choices"], key=lambda choice: choice["index"])]

    with (
        serving(loaders, max_streams=64, threads=2, max_tokens=60) as url,
        concurrent.futures.ThreadPoolExecutor(len(requests)) as pool,
    ):
        answers = dict(zip(requests, pool.map(lambda request: complete(url, *request), requests)))
    for bias in biases:
        gpu, cpu = answers["gpu", bias], answers["cpu", bias]
        assert gpu == cpu and len(gpu) == samples[bias] * len(prompts) and all(len(text) == 60 for text in gpu)
    banned = answers["gpu", "banned"]
    assert not set(BANNED) & set("".join(banned)) and banned[::2] == banned[1::2]  # greedy: n alike
    assert banned[::2] != answers["gpu", "free"]  # the bias was applied to its rows only


CALLER = textwrap.dedent(
    """
    import json, sys, torch, charlm
    device, path, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    state = torch.cuda.get_rng_state if device.startswith("cuda") else torch.get_rng_state
    torch.manual_seed(7)  # CUDA has not started: torch keeps the seed for when it does
    charlm.train(path, device=device, **options)
    after = state()
    torch.manual_seed(7)
    print("kept" if torch.equal(after, state()) else "changed")
    """
)


def generator_state() -> torch.Tensor:
    """The state of the generator GPU dropout draws from (the CPU's in the dry run)."""
    return torch.cuda.get_rng_state() if ON_GPU else torch.get_rng_state()


def test_train_on_the_gpu_gives_the_caller_its_generators_back(fox_file, tiny):
    """charlm.train seeds the GPU's generator and draws dropout from it: the caller's is put back, for a
    caller that used CUDA before the call and for one whose CUDA starts inside it."""
    options = {**tiny, "dropout": 0.2}
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if ON_GPU else []):
        torch.manual_seed(11)
        before = generator_state()
        charlm.train(fox_file, out="run", device=DEVICE, **options)
        assert torch.equal(generator_state(), before)
    command = [sys.executable, "-c", CALLER, DEVICE, str(fox_file), json.dumps(options)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.split()[-1:] == ["kept"], result.stdout + result.stderr


def test_bits_per_char_and_next_probs_of_a_gpu_model_are_the_cpus(fox_file, tiny):
    """CPU text into a GPU model (charlm.bits_per_char, charlm.next_probs): the CPU's numbers within 1e-4,
    a character the model never saw left out alike."""
    charlm.train(fox_file, out="run", **{**tiny, **ADAPTIVE, "max_steps": 60})
    gpu, cpu = charlm.load("run", device=DEVICE), charlm.load("run", device="cpu")
    text = fox_file.read_text()[:400] + "Zebra the fox"
    with pytest.warns(UserWarning, match="unseen"):
        on_gpu = charlm.bits_per_char(gpu, text)
    with pytest.warns(UserWarning, match="unseen"):
        assert abs(on_gpu - charlm.bits_per_char(cpu, text)) < 1e-4
    for prefix in ("", "the qu"):
        gpu_probs, cpu_probs = (
            dict(charlm.next_probs(gpu, prefix, top=None)),
            dict(charlm.next_probs(cpu, prefix, top=None)),
        )
        assert gpu_probs.keys() == cpu_probs.keys() == set(gpu.vocab.chars)
        assert max(abs(gpu_probs[c] - cpu_probs[c]) for c in cpu_probs) < 1e-4
    assert [c for c, _ in charlm.next_probs(gpu, "the qu", top=3)] == [
        c for c, _ in charlm.next_probs(cpu, "the qu", top=3)
    ]


def test_a_callers_autocast_on_the_gpu_changes_neither_an_fp32_run_nor_a_score(fox_file, tiny, deterministic):
    """A caller's `torch.autocast("cuda")` (fp16) around charlm: `precision="fp32"` trains in fp32 and
    scores are fp32, as without it (tests/test_device.py checks the CPU's bf16 autocast)."""
    device_type, low = DEVICE.split(":")[0], torch.float16 if ON_GPU else torch.bfloat16
    options = {**tiny, **ADAPTIVE, "precision": "fp32", "threads": 1, "max_steps": 30}
    charlm.train(fox_file, out="plain", **options)
    with torch.autocast(device_type, dtype=low):
        charlm.train(fox_file, out="under", **options)
    plain, under = latest("plain").weights, latest("under").weights
    assert all(torch.equal(plain[name], under[name]) for name in plain)
    model, text = charlm.load("plain", device=DEVICE), fox_file.read_text()[:300]
    expected = (charlm.bits_per_char(model, text), charlm.next_probs(model, "the qu", top=None))
    with torch.autocast(device_type, dtype=low):
        assert (charlm.bits_per_char(model, text), charlm.next_probs(model, "the qu", top=None)) == expected


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_a_gpu_state_made_under_autocast_a_halved_model_and_bf16_sampling_run_with_either_head(fox_file, tiny, head):
    """What a GPU user meets in half precision: a state made under autocast (fp16 from cuDNN) fed back
    outside it, a model halved with `.half()`, and `charlm.generate(precision="bf16")` on the GPU."""
    charlm.train(fox_file, out="run", **{**tiny, **ADAPTIVE, "head": head, "max_steps": 40})
    model, text = charlm.load("run", device=DEVICE), fox_file.read_text()[:200]
    ids = model.vocab.encode(text)[None]
    with torch.autocast(DEVICE.split(":")[0], dtype=torch.float16 if ON_GPU else torch.bfloat16):
        _, low_state = model(ids)
    logits, _ = model(ids, low_state)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    exact = log_probs(model, text)
    assert torch.allclose(log_probs(charlm.load("run", device=DEVICE).half(), text), exact, atol=0.1)
    greedy = charlm.generate(model, "the ", length=GREEDY_CHARS, greedy=True)
    low_greedy = charlm.generate(model, "the ", length=GREEDY_CHARS, greedy=True, precision="bf16")
    assert len(low_greedy) == len(greedy) and set(low_greedy) <= set(model.vocab.chars)
    assert low_greedy[:12] == greedy[:12]  # bf16 products round differently, but not the likeliest next characters


def test_a_run_resumes_on_another_device_type(fox_file, tiny):
    """A checkpoint keeps its device's generator state for a resume on that device type; on another,
    the run reseeds rather than give CUDA's state to the CPU or the CPU's nothing to CUDA."""
    options = {**tiny, "dropout": 0.2, "max_steps": 20}
    charlm.train(fox_file, out="gpu", **options, device=DEVICE)
    assert (latest("gpu").training.device_rngs is not None) == ON_GPU
    charlm.train(resume="gpu", device="cpu", max_steps=30)
    charlm.train(fox_file, out="cpu", **options, device="cpu")
    charlm.train(resume="cpu", device=DEVICE, max_steps=30)
    for run, device in (("gpu", "cpu"), ("cpu", DEVICE)):
        saved = latest(run)
        assert saved.progress.step == 30 and saved.device.startswith(device) and saved.progress.val_bpc < 5


# Each rank says at exit whether it started CUDA.
SAYS_IF_CUDA_STARTED = """
import atexit, sys, torch
atexit.register(lambda: print(f"CUDA started: {torch.cuda.is_initialized()}", file=sys.stderr, flush=True))
"""


def test_two_processes_under_torchrun_train_on_the_cpu_of_a_gpu_machine(fox_file, tiny):
    """On a GPU machine the process group is cpu:gloo,cuda:nccl (`Ranks.group`); two ranks on one GPU
    cannot share nccl, so a CPU run's every collective (barriers, the plan, the gathered states) must
    take gloo, as on a machine without a GPU (tests/test_distributed.py, not run by the device check).
    Neither rank starts CUDA (the group made each rank's GPU current: a context on it, for a CPU run)."""
    args = cli_args({**tiny, "max_steps": 10, "device": "cpu"})
    process = launch("train", str(fox_file), "--out", "ddp", *args, prelude=SAYS_IF_CUDA_STARTED)
    try:
        out, err = process.communicate(timeout=90)
    finally:
        process.kill()
    assert process.returncode == 0, out + err
    assert err.count("CUDA started: False") == 2, err
    saved = latest("ddp")
    assert saved.progress.step == 10 and saved.training.rank_rngs.shape[0] == 2 and saved.device == "cpu"


def test_the_peer_timeout_is_every_backends_timeout(monkeypatch):
    """`--peer-timeout` is the process group's timeout: gloo's, and on a GPU machine nccl's (its watchdog
    gives up on a collective after it), not nccl's own default of 10 minutes. A group of one, opened as
    `Ranks.group` opens a job's."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    monkeypatch.setattr(Ranks, "active", property(lambda ranks: True))
    with Ranks(rank=0, world=1).group(timeout=7.0):
        group = dist.distributed_c10d._get_default_group()
        for device in ("cpu", "cuda") if ON_GPU else ("cpu",):
            assert group._get_backend(torch.device(device)).options._timeout == datetime.timedelta(seconds=7), device


def test_a_row_stepper_on_the_gpu_steps_a_callers_cpu_ids_as_its_own(fox_file, tiny):
    """A lone row steps on the ids it is given, uncopied: ids on another device (a caller's CPU ids for a
    GPU model) are copied to the model's, and give what the same ids there give."""
    from charlm.lstm_step import RowStepper

    charlm.train(fox_file, out="run", **{**tiny, "device": DEVICE, "max_steps": 20})
    model = charlm.load("run", device=DEVICE)
    ids = torch.tensor([model.vocab.index[c] for c in "the quick"])
    steps = []
    for where in ("cpu", model.device):
        stepper = RowStepper(model, 1, pad=False)
        stepper.load(0, *stepper.prime(ids[:3]))
        steps.append(torch.stack([stepper.step(ids[t : t + 1].to(where))[0].clone() for t in range(3, len(ids))]))
    assert torch.equal(steps[0], steps[1])


def same_but_for_a_boundary(on_gpu: list[str], on_cpu: list[str]) -> bool:
    """Seeded drawn texts of the GPU against the CPU's: equal, but that one may part where a uniform fell
    within rounding of a boundary between two ids (the products' last bits differ; greedy ones do not)."""
    return len(on_gpu) == len(on_cpu) and sum(g != c for g, c in zip(on_gpu, on_cpu)) <= 1


def test_seeded_samples_on_the_gpu_are_the_cpus_alone_in_a_batch_streamed_and_from_the_cli(fox_file, tiny):
    """`charlm.generate` holds one inference context for the whole sample (`sampler.samples_held`); a lone
    sample steps its one row, unpadded, its uniforms counted on the host past a refill (UNIFORM_BLOCK);
    four are padded. Each seeded text is the CPU's, and `charlm.stream` (a context per step) and
    `charlm sample --device` write the same."""
    charlm.train(fox_file, out="run", **{**tiny, **ADAPTIVE, "head": "full", "max_steps": 80})
    gpu, cpu = charlm.load("run", device=DEVICE), charlm.load("run", device="cpu")
    drawn = {"temperature": 0.9, "top_k": 12, "random_seed": 5}
    lone = {**drawn, "length": UNIFORM_BLOCK + 40}
    on_gpu = charlm.generate(gpu, "the ", **lone)
    assert on_gpu == charlm.generate(cpu, "the ", **lone) and len(on_gpu) == 4 + UNIFORM_BLOCK + 40
    assert "".join(charlm.stream(gpu, "the ", **lone)) == on_gpu
    four = {**drawn, "length": 60, "num_samples": 4, "repetition_penalty": 1.2}
    assert same_but_for_a_boundary(charlm.generate(gpu, "the ", **four), charlm.generate(cpu, "the ", **four))
    args = ["--checkpoint", "run", "--device", DEVICE, "--seed", "the ", "--length", str(UNIFORM_BLOCK + 40)]
    result = cli("sample", *args, "--temperature", "0.9", "--top-k", "12", "--random-seed", "5")
    assert result.exit_code == 0 and on_gpu in result.output, result.output


def healing_model_on(device: str) -> charlm.CharLM:
    """`tests/test_serve.py`'s healing model (a small untrained sentencepiece model whose pieces `▁the` and
    `杜甫` begin with `▁th` and `杜`) on `device`: the same weights on either."""
    from charlm.pieces import PieceVocab, train_model

    from .test_sampler import make_model

    text = "go to the sea, then the other thing; that is this.\n春望\n杜甫\n国破山河在，城春草木深。\n杜牧\n李白\n" * 40
    torch.manual_seed(0)
    model = make_model(PieceVocab(train_model([text], "bpe", 320), normalize="none"), layers=1, hidden=16)
    return model.eval().to(device)


HEALED = ["go to th", "春望\n杜"]  # seeds ending inside a piece: read without it, written again


def test_token_healing_on_the_gpu_writes_the_cpus_texts_in_generate_and_serve():
    """A seed ending mid-piece is read without its last piece, and the first pieces drawn are kept to
    those that spell it again (`generation.Healing`, a host mask of the vocabulary copied to the GPU each
    healing step, as a template's): generate and a GPU server write the CPU's texts, the word whole."""
    gpu, cpu = healing_model_on(DEVICE), healing_model_on("cpu")
    vocab = gpu.vocab
    favoured = {vocab.processor.piece_to_id(piece): 100 for piece in ("▁the", "杜甫")}
    for seed in HEALED:
        greedy = {"length": 12, "greedy": True, "logit_bias": favoured}
        healed = charlm.generate(gpu, seed, **greedy)
        assert healed == charlm.generate(cpu, seed, **greedy)
        assert healed[len(seed) :].startswith(("e", "甫")), healed  # the word written whole, not again
        drawn = {"length": 12, "num_samples": 2, "random_seed": 4, "temperature": 1.0, "logit_bias": favoured}
        assert same_but_for_a_boundary(charlm.generate(gpu, seed, **drawn), charlm.generate(cpu, seed, **drawn))
    loaders = {"gpu": lambda: gpu, "cpu": lambda: cpu}
    body = {"prompt": HEALED, "max_tokens": 12, "temperature": 0, "logprobs": 1}
    body["logit_bias"] = {str(token): bias for token, bias in favoured.items()}
    with serving(loaders) as url:
        answers = {
            name: httpx.post(f"{url}/v1/completions", json={**body, "model": name}, timeout=60).json()["choices"]
            for name in loaders
        }
    texts = {name: [choice["text"] for choice in sorted(answers[name], key=lambda c: c["index"])] for name in loaders}
    assert texts["gpu"] == texts["cpu"] and all(text.startswith(("e", "甫")) for text in texts["gpu"]), texts
    gpu_logprobs, cpu_logprobs = (
        torch.tensor([lp for choice in answers[name] for lp in choice["logprobs"]["token_logprobs"]])
        for name in loaders
    )
    assert torch.allclose(gpu_logprobs, cpu_logprobs, atol=LOGPROB_TOLERANCE)


def test_poem_forms_and_a_temperature_schedule_on_the_gpu_write_the_cpus_texts():
    """A form's masks (`constraints.Constrained.allowed`, one per fixed character) are copied to the GPU once
    and read there (`decoding.on_device`), its cursors moved on the step's one read of the ids
    (`RowSampler.advance`); a temperature schedule is read on the device at each row's step
    (`RowSampler.scheduled`; 1e-50 is 0 in float32: greedy at that step). Greedy poems are the CPU's,
    drawn texts too but where a uniform fell within rounding of a boundary."""
    from .test_forms import chinese_model  # hypothesis: ~0.7 s that the dry run's processes need not import

    cpu = chinese_model()
    gpu = copy.deepcopy(cpu).to(DEVICE)
    greedy = {"form": "五言绝句", "greedy": True, "acrostic": "春夏秋冬"}
    poem = charlm.generate(gpu, "丁\n", **greedy)
    assert poem == charlm.generate(cpu, "丁\n", **greedy) and poem.count("。") == 2, poem
    for drawn in (
        {"form": "七言律诗", "num_samples": 3, "random_seed": 2, "temperature": 1.5, "top_k": 20},
        {"length": 80, "num_samples": 3, "random_seed": 6, "temperature": (1e-50, 1.0, 0.5), "top_p": 0.9},
        {"length": 80, "num_samples": 1, "random_seed": 7, "temperature": (1.2, 1e-50)},
    ):
        on_gpu, on_cpu = (charlm.generate(model, "丁\n", **drawn) for model in (gpu, cpu))
        on_gpu, on_cpu = ([on_gpu], [on_cpu]) if isinstance(on_gpu, str) else (on_gpu, on_cpu)
        assert same_but_for_a_boundary(on_gpu, on_cpu), drawn


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_a_gru_or_rnn_on_the_gpu_writes_the_cpus_text_alone_and_in_a_batch(cell):
    """A GRU's or RNN's rows step through the model itself (cuDNN on a GPU, in real fp32 inside
    `inference`) in blocks of ROW_BLOCK rows, a lone sample's one row unpadded (`lstm_step.RowStepper`):
    greedy texts are the CPU's, alone and four at once; drawn ones too but where a uniform fell on a
    boundary. (Every other cuda test samples an LSTM, whose step is `FusedLSTMStep`'s.)"""
    torch.manual_seed(0)
    cpu = make_model("\nabcdefghijklmnopqrstuvwxyz ", cell=cell, layers=2, hidden=32).eval()
    gpu = copy.deepcopy(cpu).to(DEVICE)
    for options in ({"greedy": True}, {"greedy": True, "num_samples": 4}):
        options = {**options, "length": GREEDY_CHARS}
        assert charlm.generate(gpu, "the ", **options) == charlm.generate(cpu, "the ", **options), options
    drawn = {"length": 60, "num_samples": 4, "random_seed": 3, "temperature": 0.8}
    assert same_but_for_a_boundary(charlm.generate(gpu, "the ", **drawn), charlm.generate(cpu, "the ", **drawn))


def test_an_engine_on_the_gpu_gives_the_cpus_logprobs_to_rows_that_ask_among_rows_that_do_not():
    """Rows asking for logprobs behind rows that do not are picked out of the step's tensors by an index
    made on the device once per set of rows (`Engine.rows_at`), and their chosen log-probability, top
    values and top ids are read with the step's ids in one copy (`Batch.step(also=...)`): each token's
    text, log-probability and alternatives are the CPU engine's."""
    torch.manual_seed(0)
    cpu = make_model("\nabcdefghijklmnopqrstuvwxyz ", layers=2, hidden=32).eval()
    gpu = copy.deepcopy(cpu).to(DEVICE)
    asks = [None, 3, None, 1]

    def tokens(model: charlm.CharLM) -> dict[int, list]:
        updates = []
        with inference(model):
            engine = Engine(model, 8, updates.extend)
            ids = model.vocab.encode("the ")
            logits, state = engine.batch.prime(ids)
            options = SampleConfig(greedy=True)
            jobs = [Job(ids, logits, state, options, [seed], 30, logprobs=n) for seed, n in enumerate(asks)]
            engine.admit(jobs)
            while engine.rows:
                engine.advance()
                engine.flush()
        made = {job: [] for job, n in enumerate(asks) if n is not None}
        for update in updates:
            if update.tokens is not None:
                made[jobs.index(update.job)] += [(t.text, t.logprob, t.top) for t in update.tokens]
        return made

    on_gpu, on_cpu = tokens(gpu), tokens(cpu)
    assert on_gpu.keys() == on_cpu.keys() == {1, 3}
    for job in on_cpu:
        assert len(on_gpu[job]) == len(on_cpu[job]) == 30
        for (text, logprob, top), (cpu_text, cpu_logprob, cpu_top) in zip(on_gpu[job], on_cpu[job]):
            assert text == cpu_text and abs(logprob - cpu_logprob) < LOGPROB_TOLERANCE
            assert [alt for alt, _ in top] == [alt for alt, _ in cpu_top] and len(top) == asks[job]
            assert all(abs(value - cpu_value) < LOGPROB_TOLERANCE for (_, value), (_, cpu_value) in zip(top, cpu_top))
