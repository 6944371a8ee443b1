"""Devices and precision: chosen, checked, and failing clearly where they cannot work."""

import json
import threading
from pathlib import Path
from unittest import mock

import click
import pytest
import torch

import charlm
from charlm import runs, summary, threads
from charlm.device import (
    core_precision,
    cpu_core_dtype,
    cpu_has_bf16,
    grad_scaler,
    hardware_said,
    precision_text,
    resolve_device,
    resolve_precision,
    to_host,
)
from charlm.device_names import DEVICE_FORMS
from charlm.errors import CharLMError
from charlm.runs import read_metrics
from charlm.vocab import Vocab

from .conftest import TINY_ARGS, assert_one_line_error, cli, latest, make_model, max_weight_difference, state_telling
from .test_export import TEXT, run_of


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_lists_what_is_available(fox_file, tiny):
    result = cli("train", str(fox_file), "--device", "cuda", *TINY_ARGS, "--max-steps", "5")
    assert_one_line_error(result, "--device cuda: no CUDA GPU here (available: cpu")
    with pytest.raises(CharLMError, match="no CUDA GPU here"):
        charlm.train(fox_file, out="gpu", **tiny, device="cuda:0")


def test_device_and_precision_are_checked():
    with pytest.raises(CharLMError, match="^device must be auto, cpu"):
        charlm.train(device="tpu")
    with pytest.raises(CharLMError, match="^precision='fp16' needs a CUDA GPU"):
        resolve_precision("fp16", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if cpu_has_bf16() else "fp32")
    with (
        mock.patch.object(torch.cpu, "_is_avx512_bf16_supported", lambda: False, create=True),
        mock.patch.object(torch.cpu, "_is_amx_tile_supported", lambda: False, create=True),
    ):
        assert resolve_precision("auto", torch.device("cpu")) == "fp32"  # no bf16 hardware: fp32 unchanged
    assert resolve_device("auto", world=2).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_the_loss_is_scaled_wherever_the_recurrent_core_computes_in_fp16():
    """Under CUDA autocast cuDNN's RNN runs in fp16 even when bf16 was asked for, so bf16 needs the scaler too."""
    gpu, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert [core_precision(gpu, p) for p in ("fp16", "bf16", "fp32")] == ["fp16", "fp16", "fp32"]
    assert [core_precision(cpu, p, torch.nn.RNN) for p in ("bf16", "fp32")] == ["bf16", "fp32"]
    assert not grad_scaler(cpu, "bf16").is_enabled()
    assert precision_text(cpu, "bf16", torch.nn.RNN) == "bf16" and precision_text(gpu, "fp32") == "fp32"
    assert precision_text(gpu, "bf16") == "bf16 (recurrent core in fp16: cuDNN, loss scaled)"


def test_a_checkpoint_says_what_trained_it_with_torchruns_processes_and_the_cpus_cores(fox_file, tiny):
    """What a resume compares (`resume_record.record_resume`): the device type (not a rank's GPU index), the
    precision, torchrun's number of processes (its batch layout) and, on a CPU, the cores (its speed)."""
    charlm.train(fox_file, out="run", **{**tiny, "device": "cpu", "precision": "fp32"})
    saved, cores = latest("run"), threads.available_cores()
    assert saved.cores == cores and saved.hardware() == f"cpu fp32 on {cores} cores"
    saved.training.rank_rngs = saved.training.rank_rngs.repeat(2, 1)  # as two ranks leave it
    assert saved.hardware() == f"cpu fp32 x 2 processes on {cores} cores"
    assert hardware_said("cuda:1", "bf16 (recurrent core in fp16)") == "cuda bf16 (recurrent core in fp16)"
    assert hardware_said("cuda:1", "bf16", 2, with_index=True) == "cuda:1 bf16 x 2 processes"  # the start line's
    # `charlm info`'s row says it as a resume's row does: `(was cpu fp32 on 4 cores)` is the same hardware
    assert dict(summary.rows(saved))["trained_on"] == f"cpu fp32 x 2 processes on {cores} cores"
    saved.device, saved.precision, saved.core_precision, saved.cores = "cuda:1", "bf16", "bf16", None
    assert dict(summary.rows(saved))["trained_on"] == "cuda bf16 x 2 processes"


def test_the_run_line_says_a_cpus_gru_computes_in_fp32_under_bf16():
    """torch's CPU autocast leaves a GRU in fp32 (an LSTM and an RNN go to bf16): the run line said `bf16`
    of a GRU whose every step was fp32."""
    cpu = torch.device("cpu")
    assert core_precision(cpu, "bf16", torch.nn.GRU) == "fp32"
    assert (
        precision_text(cpu, "bf16", torch.nn.GRU) == "bf16 (recurrent core in fp32: torch has no bf16 GRU on this CPU)"
    )


class _LSTMWithoutBF16(torch.nn.LSTM):
    """An LSTM as a CPU without AVX-512 runs it: oneDNN has no kernel for it under bf16 autocast."""

    def forward(self, *args, **kwargs):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive")
        return super().forward(*args, **kwargs)


def test_bf16_trains_on_a_cpu_without_onednns_bf16_lstm(fox_file, tiny, monkeypatch):
    """On an AVX2 CPU `--precision bf16` stopped with oneDNN's RuntimeError from inside nn.LSTM: the core now
    runs outside autocast there (fp32, as the run line says), the embedding and the head under it."""
    monkeypatch.setitem(charlm.model.CORES, "lstm", _LSTMWithoutBF16)
    assert cpu_core_dtype(_LSTMWithoutBF16, torch.bfloat16) == torch.float32
    args = [arg for arg in TINY_ARGS if arg != "--quiet"]
    result = cli("train", str(fox_file), *args, "--max-steps", "3", "--precision", "bf16", "--out", "avx2")
    assert result.exit_code == 0, result.output
    assert "cpu bf16 (recurrent core in fp32: torch has no bf16 _LSTMWithoutBF16 on this CPU)" in result.output


class _CoreWhileAnotherThreadDraws(torch.nn.RNN):
    """A core whose probe pass lets another thread draw from torch's generator meanwhile."""

    def forward(self, *args, **kwargs):
        other = threading.Thread(target=torch.rand, args=(3,))
        other.start()
        other.join()
        return super().forward(*args, **kwargs)


def test_the_cores_probe_keeps_what_another_thread_drew_meanwhile():
    """A probe that forked torch's generator gave it back as it was before the probe: a thread that drew while
    the probe ran (charlm.train and a caller's sampling, say) had its draws rewound, and drew them again."""
    torch.manual_seed(0)
    cpu_core_dtype(_CoreWhileAnotherThreadDraws, torch.bfloat16)
    after_probe = torch.get_rng_state()
    torch.manual_seed(0)
    torch.rand(3)  # the other thread's draw, and nothing else
    assert torch.equal(after_probe, torch.get_rng_state())


def test_the_cores_probe_leaves_a_seeded_run_drawing_as_before():
    """The probe builds a small core, whose weights are drawn: from a forked RNG, or a seeded run's first
    draws would depend on whether the probe ran before."""
    cpu_core_dtype.cache_clear()
    torch.manual_seed(0)
    cpu_core_dtype(torch.nn.GRU, torch.bfloat16)
    after_probe = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), after_probe)


def test_bf16_on_the_cpu_trains_and_the_checkpoint_samples_anywhere(fox_file, tiny):
    for precision in ("bf16", "fp32"):
        charlm.train(fox_file, out=precision, **{**tiny, "max_steps": 60, "eval_every": 20, "precision": precision})
    bpc = [row["val_bpc"] for row in read_metrics(runs.CHECKPOINT_ROOT / "bf16") if row["val_bpc"] is not None]
    assert bpc[-1] < bpc[0] - 0.3
    assert max_weight_difference("bf16", "fp32") > 1e-4  # autocast did change the arithmetic
    saved = latest("bf16")
    assert saved.training.hidden[0].dtype == torch.float32  # resumable in any precision
    assert json.dumps(saved.config.to_dict())  # plain values only
    model = charlm.load("bf16", device="cpu")
    assert len(charlm.generate(model, "the ", length=20, random_seed=1)) == 24
    charlm.train(resume="bf16", max_steps=70, precision="fp32")  # a resume may change the precision
    assert latest("bf16").progress.step == 70


def test_a_callers_autocast_changes_neither_an_fp32_run_nor_a_score(fox_file, tiny):
    """A caller's own `torch.autocast` (a GPU notebook's habit) reached inside charlm: `precision="fp32"`
    trained in bf16 (on a GPU in fp16, its loss unscaled), and bits_per_char, next_probs and sampling,
    fp32 by design, scored in the caller's precision."""
    options = {**tiny, "precision": "fp32", "threads": 1}
    charlm.train(fox_file, out="plain", **options)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        charlm.train(fox_file, out="under", **options)
    assert max_weight_difference("plain", "under") == 0
    model, text = charlm.load("plain", device="cpu"), fox_file.read_text()[:300]
    expected = (charlm.bits_per_char(model, text), charlm.next_probs(model, text[:40], top=None))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (charlm.bits_per_char(model, text), charlm.next_probs(model, text[:40], top=None)) == expected


def test_serve_takes_a_device(fox_file, tiny):
    """`charlm serve` had no --device: on a GPU machine its models could only run on the CPU."""
    from charlm.serve import model_loaders

    charlm.train(fox_file, out="run", **tiny)
    loaders, _ = model_loaders(["run"], "cpu")
    assert loaders["run"]().device.type == "cpu"
    assert_one_line_error(cli("serve", "run", "--device", "tpu", "--port", "0"), "--device must be auto, cpu")


def test_sample_takes_a_device(tmp_path):
    """`charlm sample --device cpu` writes what charlm.generate writes there, from no seed and from one, on a
    model whose state tells its seed (`state_telling`): a tiny run's text was the same where the CLI primed
    only the seed's last three characters, and no seed, as the test had, has no start to prime wrongly."""
    torch.manual_seed(0)
    run = run_of(state_telling(make_model(Vocab(sorted(set(TEXT))), hidden=32)).eval(), tmp_path / "run")
    for seed in ([], ["--seed", "the quick "]):
        result = cli(
            "sample", "--checkpoint", str(run), "--device", "cpu", *seed, "--length", "40", "--random-seed", "3"
        )
        expected = charlm.generate(charlm.load(run, device="cpu"), "".join(seed[1:]), length=40, random_seed=3)
        assert result.exit_code == 0 and result.stdout == expected + "\n", result.output


def test_a_cpu_run_under_torchrun_on_a_gpu_machine_leaves_cuda_alone(monkeypatch):
    """The process group made each rank's GPU the current one, starting CUDA (a context on the GPU) in a
    `--device cpu` job too. Now only a rank that trains on CUDA takes its GPU (`Ranks.use`), and the
    group's timeout, --peer-timeout, is given to both of its backends alike."""
    import datetime

    import torch.distributed as dist

    from charlm.distributed import Ranks

    current, opened = [], []
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)  # what a rank is given, which `Ranks.check_reachable` reads
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, timeout: opened.append((backend, timeout)))
    monkeypatch.setattr(dist, "new_group", lambda **options: None)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: None)
    ranks = Ranks(rank=1, world=2, local_rank=1)
    with ranks.group(timeout=7.0):
        assert current == []  # the group alone takes no GPU
        ranks.use(torch.device("cpu"))
        assert current == []
        ranks.use(torch.device("cuda", 1))
    assert current == [torch.device("cuda", 1)]
    assert opened == [("cpu:gloo,cuda:nccl", datetime.timedelta(seconds=7))]


def test_ids_read_from_a_second_gpu_wait_for_that_gpus_copy(monkeypatch):
    """`to_host` waits for an event on the stream the copy runs on, the one of the ids' own GPU: recorded
    on the current device's (GPU 0), a model on cuda:1 (`charlm sample --device cuda:1`) had its ids
    read before the copy had brought them. No GPU here: the stream the event marks is what is checked."""
    recorded = []

    class Event:
        def record(self, stream=None):
            recorded.append(stream)

        def synchronize(self):
            pass

    class OnSecondGPU:
        device = torch.device("cuda", 1)

        def to(self, device, non_blocking=False):
            return torch.tensor([3, 1, 4])

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: f"stream of {device or 'cuda:0'}")
    assert to_host(OnSecondGPU())() == [3, 1, 4]
    assert recorded == ["stream of cuda:1"]


@pytest.mark.parametrize(
    "command",
    [
        ["sample"],
        ["sample", "--interactive"],
        ["serve", "--port", "0"],
        ["inspect", "chapter.txt"],
        ["eval", "chapter.txt"],
        ["train", "--resume"],
    ],
    ids=lambda command: " ".join(command),
)
@pytest.mark.parametrize("device", ["tpu", "cuda:99"])
def test_a_bad_device_is_named_before_the_latest_run_is_looked_for(command, device):
    """Without a run folder, sample, serve, inspect and a resume looked for the latest run first and said
    there was none, then, given one, that --device was wrong: a bad option is named before any search of
    the disk, as eval names it."""
    Path("chapter.txt").write_text("the quick brown fox\n" * 5, encoding="utf-8")
    if device == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("this machine has a GPU 99")
    result = cli(*command, "--device", device)
    assert_one_line_error(result, f"--device {device}" if device != "tpu" else "--device must be auto, cpu")


def test_a_resume_names_a_bad_option_before_it_looks_for_the_run():
    """`charlm train --resume --lr -1` said there was no run to resume, the option unread; as charlm.train does."""
    assert_one_line_error(cli("train", "--resume", "--lr", "-1"), "--lr must be a positive number, not -1")
    with pytest.raises(CharLMError, match=r"^lr must be a positive number, not -1"):
        charlm.train(resume=True, lr=-1)


def device_helps(command: click.Command, path: str = "charlm") -> dict[str, str]:
    """The help of every --device under `command`, by the command line that takes it."""
    helps = {f"{path} --{param.name}": param.help for param in command.params if param.name == "device"}
    for name, sub in command.commands.items() if isinstance(command, click.Group) else ():
        helps |= device_helps(sub, f"{path} {name}")
    return helps


def test_every_device_help_names_the_forms_the_check_takes():
    """--device's forms were written out in each help (`cpu, cuda, cuda:N, mps or auto`) beside DEVICE_FORMS,
    which the check's error gives: one form added there would be missing from the help."""
    from charlm.cli import main

    helps = device_helps(main)
    assert {f"charlm {name} --device" for name in ("train", "sample", "eval", "serve")} <= helps.keys(), helps
    assert all(DEVICE_FORMS in text for text in helps.values()), helps
