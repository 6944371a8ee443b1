import dataclasses
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import charlm
from charlm import checkpoint, checkpoint_advice, checkpoint_file, device, files, finetune, hub, runs, threads
from charlm.checkpoint_header import glance
from charlm.device import resolve_device
from charlm.errors import CharLMError

from .conftest import TINY_LOOP_ARGS, assert_one_line_error, cli, file_size_limit, latest, trained_once


def test_round_trip_gives_the_same_logits(fox_file, tiny):
    model = charlm.train(fox_file, out="run", **tiny).eval()
    loaded = charlm.load("checkpoints/run/latest.pt", device=str(model.device))
    ids = torch.randint(0, len(model.vocab), (2, 30))
    assert loaded.vocab == model.vocab
    assert torch.equal(loaded(ids)[0], model(ids)[0])


def test_checkpoint_holds_the_model_the_run_and_what_a_resume_needs(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    path = runs.resolve("run", prefer=runs.LATEST)
    payload = checkpoint.unpack(checkpoint_file.read_bytes(path), path)
    assert set(payload) == {"model", "run", "training"}
    assert set(payload["model"]) == {"config", "vocab", "weights"}
    assert payload["model"]["config"] == {
        "cell": "lstm",
        "layers": 1,
        "hidden": 32,
        "dropout": 0.1,
        "vocab_size": 28,
        "head_cutoffs": [],
    }
    assert {"config", "corpus", "progress", "device", "precision"} <= set(payload["run"])
    for key in ("optimizer", "position", "epoch", "hidden", "rng", "rank_rngs", "scaler"):
        assert key in payload["training"]
    saved = latest("run")
    assert saved.config.hidden == tiny["hidden"] and saved.progress.step == tiny["max_steps"]
    assert saved.precision in ("fp32", "bf16") and saved.device == str(resolve_device("auto"))


@pytest.mark.parametrize(
    ("probed", "said"), [(torch.float32, "cpu bf16 (recurrent core in fp32)"), (torch.bfloat16, "cpu bf16")]
)
def test_info_says_the_precision_the_recurrent_core_trained_in(fox_file, tiny, monkeypatch, probed, said):
    """A `--precision bf16` run on a CPU without oneDNN's bf16 LSTM (no AVX-512) trains its core in fp32, as its
    run line says, but `charlm info` said `cpu bf16`. The checkpoint records what the core ran in where it ran,
    which info shows (not probed again where info runs: the file may be read on another machine)."""
    monkeypatch.setattr(device, "cpu_core_dtype", lambda core, dtype: probed)  # the probe's answer on such a CPU
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2, "device": "cpu", "precision": "bf16"})
    rows = dict(line.split(None, 1) for line in cli("info", "run").output.splitlines())
    assert rows["trained_on"] == f"{said} on {threads.available_cores()} cores"
    assert (latest("run").precision, latest("run").core_precision) == ("bf16", said.split()[-1].strip(")"))


def test_a_format_2_checkpoint_is_read(fox_file, tiny):
    """Checkpoints written before the model/run/training split still load and resume."""
    charlm.train(fox_file, out="run", **tiny)
    path = runs.resolve("run", prefer=runs.LATEST)
    new = latest("run")
    old = {
        "config": new.config.to_dict(),
        "vocab": new.vocab.to_dict(),
        "corpus": new.corpus,
        "model": new.weights,
        "raw_model": None,
        "optimizer": new.training.optimizer,
        "step": new.progress.step,
        "elapsed": new.progress.elapsed,
        "chars": new.progress.chars,
        "best_bpc": new.progress.best_bpc,
        "val_bpc": new.progress.val_bpc,
        "data": {"position": new.training.position, "epoch": new.training.epoch},
        "hidden": new.training.hidden,
        "rng": new.training.rng,
        "rank_rngs": new.training.rank_rngs,
        "scaler": new.training.scaler,
    }
    body = checkpoint_file.serialize(old).split(b"\n", 2)[2]
    header = {"version": 2, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    path.write_bytes(checkpoint_file.MAGIC + json.dumps(header).encode() + b"\n" + body)
    upgraded = latest("run")
    assert upgraded.model_config == new.model_config
    kept_none = {"lr": 0.0, "val_step": None, "best_step": None, "worse_evaluations": 0}  # format 2 kept none of these
    assert upgraded.progress == dataclasses.replace(new.progress, **kept_none)
    assert all(torch.equal(upgraded.weights[k], v) for k, v in new.weights.items())
    charlm.train(resume="run", max_steps=tiny["max_steps"] + 5)
    assert latest("run").progress.step == tiny["max_steps"] + 5


def test_a_checkpoint_from_before_patience_best_bpc_counts_patience_against_its_best(trained):
    """A checkpoint written before `patience_best_bpc` counted its worse evaluations against best_bpc:
    resumed, --patience goes on comparing with that (None read every next evaluation as better)."""

    def from_before(payload):
        payload["run"]["progress"].pop("patience_best_bpc")
        payload["run"]["progress"].update(val_bpc=3.5, best_bpc=3.25)

    progress = checkpoint.read(rewritten(trained, from_before)).progress
    assert progress.patience_best_bpc == 3.25


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "run" / "latest.pt"
    checkpoint_file.write_atomic(target, b"old")
    checkpoint_file.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["latest.pt"]


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "latest.pt"
    checkpoint_file.write_atomic(target, b"old")

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(CharLMError, match="No space left"):
        checkpoint_file.write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_a_first_checkpoint_that_cannot_be_written_says_so_and_what_to_do(tmp_path):
    """A run's first checkpoint on a full disk said `the previous one is intact` (there was none) and
    not what to do."""
    target = tmp_path / "run" / "latest.pt"
    with file_size_limit(1000), pytest.raises(CharLMError) as error:
        checkpoint_file.write_atomic(target, b"x" * 5000)
    assert str(error.value) == (
        f"{target}: could not write checkpoint (File too large); no checkpoint was written; free space on its "
        "disk (or raise the file size limit, ulimit -f)"
    )
    assert list(target.parent.iterdir()) == []
    checkpoint_file.write_atomic(target, b"old")
    with file_size_limit(1000), pytest.raises(CharLMError, match="the previous one is intact; free space"):
        checkpoint_file.write_atomic(target, b"x" * 5000)
    assert target.read_bytes() == b"old" and [p.name for p in target.parent.iterdir()] == ["latest.pt"]


def test_truncated_checkpoint_is_refused(trained):
    """Its sizes are the file's, as `ls -l` shows them: a best.pt cut to 5,000 bytes was said to hold
    "4871 of 1150316 bytes" (of the body after its header line), which no listing of the file shows."""
    path = Path(shutil.copy(trained, "best.pt"))
    whole = path.read_bytes()
    path.write_bytes(whole[:5000])
    with pytest.raises(CharLMError, match=rf"truncated checkpoint \(5,000 of {len(whole):,} bytes\)"):
        charlm.load(path)
    path.write_bytes(whole + b"\0" * 10)
    with pytest.raises(CharLMError, match=rf"damaged checkpoint \({len(whole) + 10:,} bytes, not {len(whole):,}\)"):
        charlm.load(path)


def test_bit_flipped_checkpoint_is_refused(trained):
    path = Path(shutil.copy(trained, "best.pt"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CharLMError, match="checksum mismatch"):
        charlm.load(path)


def test_a_file_that_is_not_ours_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CharLMError, match="not a charlm checkpoint"):
        charlm.load(path)


def test_a_checkpoint_of_a_newer_format_says_to_upgrade_charlm(tmp_path):
    """A checkpoint that a newer charlm wrote, or whose body is not a checkpoint, was refused without a
    word on what to do."""
    newer = checkpoint_file.serialize({}).replace(b'"version": 3', b'"version": 4')
    (tmp_path / "newer.pt").write_bytes(newer)
    with pytest.raises(
        CharLMError, match=r"format 4 is not supported .*\(reads 2, 3\); a newer charlm wrote it: update this charlm"
    ):
        charlm.load(tmp_path / "newer.pt")
    (tmp_path / "list.pt").write_bytes(checkpoint_file.serialize([1, 2]))
    with pytest.raises(CharLMError, match=r"list\.pt: damaged checkpoint .*; no run's checkpoint is beside it"):
        charlm.load(tmp_path / "list.pt")


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path("pwned"),))


def test_a_malicious_pickle_is_refused_and_its_code_does_not_run(tmp_path):
    """A checkpoint with a valid header and checksum whose pickle would create a file on load."""
    path = tmp_path / "evil.pt"
    path.write_bytes(checkpoint_file.serialize({"config": {}, "x": _Payload()}))
    with pytest.raises(CharLMError) as refused:
        charlm.load(path)
    assert str(refused.value) == (
        f"{path}: refused: the checkpoint holds code (getattr), not only tensors and plain values; "
        "no run's checkpoint is beside it (a run writes best.pt and latest.pt): copy it again from where it "
        "came, or use the run it came from"
    )  # not torch's advice on loading it anyway
    assert not (tmp_path / "pwned").exists()
    body = path.read_bytes().split(b"\n", 2)[2]
    torch.load(io.BytesIO(body), weights_only=False)  # what a plain unpickling loader would do
    assert (tmp_path / "pwned").exists()


class _Shell:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_a_pickle_calling_a_module_torch_blocks_is_refused_naming_the_code(tmp_path):
    """A pickle calling os.system (a module torch's weights-only loader blocks outright, with its own
    wording) was refused as "holds more than tensors and plain values (Weights only load failed. In
    PyTorch 2.6, we changed the default value of ...": torch's advice, cut, not what the file holds."""
    path = tmp_path / "shell.pt"
    path.write_bytes(checkpoint_file.serialize({"x": _Shell()}))
    with pytest.raises(CharLMError, match=r"refused: the checkpoint holds code \((posix|nt)\.system\), not only"):
        charlm.load(path)
    assert not (tmp_path / "pwned").exists()


def zip_bomb(floats: int) -> bytes:
    """A checkpoint file whose body is torch.save's archive of `floats` zeros, their record deflated: four
    bytes a float unpacked, about a thousandth of that in the file."""
    saved, bomb = io.BytesIO(), io.BytesIO()
    torch.save({"model": torch.zeros(floats)}, saved)
    with zipfile.ZipFile(saved) as archive, zipfile.ZipFile(bomb, "w") as packed:
        for record in archive.infolist():
            deflated = zipfile.ZIP_DEFLATED if record.filename.endswith("data/0") else zipfile.ZIP_STORED
            packed.writestr(record.filename, archive.read(record), compress_type=deflated)
    body = bomb.getvalue()
    header = {"version": checkpoint_file.VERSION, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    return checkpoint_file.MAGIC + json.dumps(header).encode() + b"\n" + body


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path):
    """torch.load unpacks a compressed record whole before anything checks it: a 10 MB file of this kind
    allocated 10 GB. torch.save never compresses, so a compressed record is refused unread."""
    path = tmp_path / "bomb.pt"
    path.write_bytes(zip_bomb(2_000_000))
    assert path.stat().st_size < 100_000
    with pytest.raises(
        CharLMError, match=r"bomb\.pt: refused: its record '.*data/0' unpacks [\d,]+ bytes to 8,000,000"
    ):
        charlm.load(path)


def test_missing_checkpoint_is_refused():
    with pytest.raises(CharLMError, match="no such checkpoint"):
        charlm.load("nowhere.pt")
    with pytest.raises(CharLMError, match="no runs under checkpoints"):
        charlm.load()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny run's latest.pt, trained once for the tests that damage copies of it."""
    return trained_once(tmp_path_factory, "trained") / runs.LATEST


def rewritten(path: Path, edit) -> Path:
    """A copy of checkpoint `path` whose payload `edit` changed, under a valid header: damage the
    checksum cannot see (a payload written wrong, or edited and its checksum recomputed)."""
    payload = checkpoint.unpack(checkpoint_file.read_bytes(path), path)
    edit(payload)
    copy = Path("edited.pt").resolve()
    copy.write_bytes(checkpoint_file.serialize(payload))
    return copy


def set_first_weight(value):
    def edit(payload):
        weights = payload["model"]["weights"]
        weights[next(iter(weights))] = value(weights[next(iter(weights))])

    return edit


def setting(part: str, record: str, **values):
    def edit(payload):
        payload[part][record].update(values)

    return edit


def replacing(part: str, record: str, value):
    def edit(payload):
        payload[part][record] = value

    return edit


def overflowing(weight: torch.Tensor) -> torch.Tensor:
    """`weight` with two values near float32's largest, of opposite signs: finite, and so is its sum."""
    weight[0, 0], weight[0, 1] = 3e38, -3e38
    return weight


def nan_moments(payload):
    payload["training"]["optimizer"]["state"][0]["exp_avg_sq"].fill_(float("nan"))


def optimizer_state(value):
    """An edit setting parameter 0's exp_avg (a tensor of its shape) to `value(exp_avg)`."""

    def edit(payload):
        state = payload["training"]["optimizer"]["state"][0]
        state["exp_avg"] = value(state["exp_avg"])

    return edit


def hidden_state(value):
    def edit(payload):
        hidden = payload["training"]["hidden"]
        payload["training"]["hidden"] = tuple(map(value, hidden)) if isinstance(hidden, tuple) else value(hidden)

    return edit


def nan_hidden(payload):
    hidden = payload["training"]["hidden"]
    (hidden[0] if isinstance(hidden, tuple) else hidden).fill_(float("inf"))


DAMAGE = {
    "wrong shape": (set_first_weight(lambda w: torch.zeros(1)), "weights: embed.weight has shape [1]"),
    "missing weight": (lambda p: p["model"]["weights"].pop("embed.weight"), "weights: embed.weight missing"),
    "NaN weight": (set_first_weight(lambda w: torch.full_like(w, float("nan"))), "embed.weight holds NaN"),
    # finite, its sum too (0): read, it sampled one character over and over and scored "nan bits per character"
    "overflowing weight": (
        set_first_weight(overflowing),
        "embed.weight holds 3e+38, which no trained model's weight is",
    ),
    # torch.load(weights_only=True) takes these too; each was a torch traceback (a sparse weight's in info only)
    "sparse weight": (set_first_weight(lambda w: w.to_sparse()), "embed.weight is a tensor of layout torch.sparse_coo"),
    "meta weight": (set_first_weight(lambda w: w.to("meta")), "embed.weight is a tensor of the meta device"),
    # floats torch has no aminmax or isfinite for, a tensor of no values, one of complex numbers (a NaN in
    # it unchecked: the resume diverged, told to lower --lr) or no tensor at all: each was a torch traceback
    "float8 weight": (set_first_weight(lambda w: w.to(torch.float8_e4m3fn)), "embed.weight is a tensor of torch.f"),
    "float8 optimizer state": (optimizer_state(lambda t: t.to(torch.float8_e5m2)), "exp_avg of parameter 0 is a t"),
    "complex optimizer state": (optimizer_state(lambda t: t * complex("nan")), "exp_avg of parameter 0 is a tensor"),
    "meta optimizer state": (optimizer_state(lambda t: t.to("meta")), "exp_avg of parameter 0 is a tensor of the m"),
    "optimizer state a string": (optimizer_state(lambda t: "x"), "exp_avg of parameter 0 is 'x', not a tensor"),
    "sparse hidden state": (hidden_state(lambda t: t.to_sparse()), "hidden is a tensor of layout torch.sparse_coo"),
    "float8 hidden state": (hidden_state(lambda t: t.to(torch.float8_e4m3fn)), "hidden is a tensor of torch.float8"),
    "step a string": (setting("run", "progress", step="x"), "progress: step is 'x', not an integer"),
    "best without val": (setting("run", "progress", val_bpc=None, best_bpc=1.0), "best_bpc without val_bpc"),
    "empty corpus": (replacing("run", "corpus", {}), "corpus: no 'name', 'sources', 'digest'"),
    "negative hidden": (setting("model", "config", hidden=-5), "hidden must be an integer from 1 to 16384, not -5"),
    "huge hidden": (setting("model", "config", hidden=10**12), "hidden must be an integer from 1 to 16384"),
    "run options": (setting("run", "config", hidden=0), "run options: hidden must be at least 1, not 0"),
    "empty optimizer": (
        replacing("training", "optimizer", {}),
        "training state: optimizer: no 'state', 'param_groups'",
    ),
    # read as sound, a resume trained on NaN and stopped saying to lower --lr, which never helps
    "NaN optimizer state": (nan_moments, "training state: optimizer: exp_avg_sq of parameter 0 holds NaN"),
    "NaN hidden state": (nan_hidden, "training state: hidden holds NaN or infinite values"),
    # each a traceback in some command (info's count of ranks, a resume's setting of the generators or its
    # first window), read as a sound checkpoint by the others
    "negative position": (lambda p: p["training"].update(position=-1), "position -1 or epoch 0 is below 0"),
    "rank_rngs none": (lambda p: p["training"].update(rank_rngs=None), "rank_rngs is None, not a tensor"),
    "rank_rngs of floats": (
        lambda p: p["training"].update(rank_rngs=torch.zeros(1, 9)),
        "rank_rngs is not a random generator's state",
    ),
    "base a tensor": (lambda p: p["run"].update(base=torch.zeros(2)), "base is tensor([0., 0.]), not a record"),
    "unknown a tensor": (setting("model", "vocab", unknown=torch.zeros(2)), "unknown is tensor([0., 0.]), not true"),
    "elapsed of 400 digits": (setting("run", "progress", elapsed=10**400), "progress: elapsed is 1000"),
    "chars of 400 digits": (setting("run", "progress", chars=10**400), "past a 64-bit integer"),
    "model description a tensor": (replacing("model", "config", torch.zeros(2)), "the model description is damaged"),
    "vocabulary a tensor": (replacing("model", "vocab", torch.zeros(2)), "the vocabulary is damaged"),
    "vocabulary": (replacing("model", "vocab", {"chars": "ab"}), "the vocabulary is damaged"),
}


def test_a_vocabulary_holding_a_number_names_it_not_a_type_error(trained):
    """A stored vocabulary whose characters held a number was "checkpoint is damaged (TypeError)", saying
    nothing of where: now the vocabulary's field and value."""
    path = rewritten(trained, setting("model", "vocab", chars=["a", 3]))
    with pytest.raises(CharLMError) as error:
        checkpoint.read(path)
    assert f"{path}: damaged checkpoint (the vocabulary is damaged: chars holds 3, not a character)" in str(error.value)


def test_a_model_that_cannot_be_built_is_said_as_other_damage_is_with_what_to_do(trained):
    """`model_on` said "checkpoint is damaged (KeyError)" and stopped, where every other refusal of the
    same file says "damaged checkpoint (...)" and then what to do; of a model folder's weights it said
    "checkpoint" too, where the folder's other refusals say "damaged model folder" and to export again."""

    def fails():
        raise KeyError("lstm.weight_ih_l0")

    unbuildable = SimpleNamespace(model=fails)
    best = trained.with_name(runs.BEST)
    for path, said in [
        (best, f"{best}: damaged checkpoint (KeyError); {checkpoint_advice.remedy(best)}"),
        (Path("hub", hub.WEIGHTS), f"{Path('hub', hub.WEIGHTS)}: damaged model folder (KeyError); export it again"),
    ]:
        with pytest.raises(CharLMError) as error:
            checkpoint.model_on(unbuildable, path, torch.device("cpu"))
        assert str(error.value).startswith(said), str(error.value)


@pytest.mark.parametrize(
    "edit, said",
    [
        (lambda p: p.update(run=None), "run is None, not a record"),
        (lambda p: p.pop("run"), "no 'run'"),
        (replacing("run", "progress", []), "run: progress is [], not a record"),
        (replacing("run", "config", None), "run: config is None, not a record"),
        (replacing("run", "corpus", []), "corpus is [], not a record"),
        (setting("run", "progress", best_bpc="x"), "progress: best_bpc is 'x', not a number or None"),
        (lambda p: p["run"].update(base=[1]), "run: base is [1], not a record or None"),
        (lambda p: p.update(training=[]), "training is [], not a record or None"),
        (replacing("model", "weights", []), "weights is [], not a record"),
        (replacing("training", "optimizer", []), "training state: optimizer is [], not a record"),
        (lambda p: p["training"].update(raw_weights=[]), "training state: raw_weights is [], not a record or None"),
    ],
    ids=["run null", "no run", "progress a list", "run options null", "corpus a list", "best_bpc a string"]
    + ["base a list", "training a list", "weights a list", "optimizer a list", "raw weights a list"],
)
def test_a_payload_whose_run_or_its_parts_are_of_another_type_names_the_field(trained, edit, said):
    """A run record or its progress given as a list or null was said in Python's words ("run options:
    TypeError: 'NoneType' object is not subscriptable", "progress: AttributeError: 'list' object has no
    attribute 'get'"): the field is named with what it holds, as a model folder's config.json's is, and
    what it should hold in words a reader who never wrote Python knows ("not a record", once "not dict"
    beside "corpus: not a record"; "not a number or None", once "not float or NoneType")."""
    path = rewritten(trained, edit)
    with pytest.raises(CharLMError) as error:
        checkpoint.read(path)
    assert f"{path}: damaged checkpoint ({said});" in str(error.value)


def known_fields(record: type) -> str:
    return ", ".join(sorted(f.name for f in dataclasses.fields(record)))


@pytest.mark.parametrize(
    "edit, said",
    [
        (
            setting("run", "progress", stpe=3),
            f"progress: unknown field stpe (did you mean step?); known: {known_fields(checkpoint.Progress)}",
        ),
        (lambda p: p["run"].update(base={"run": "base", "path": "base.pt"}), "base: no 'sha256', 'vocab_size'"),
        (
            lambda p: p["training"].update(epochs=1),
            "training state: unknown field epochs (did you mean epoch?); known: "
            + known_fields(checkpoint.SavedTraining),
        ),
        (lambda p: p["training"].pop("position"), "training state: no 'position'"),
        (lambda p: p["model"]["config"].pop("hidden"), "the model description is damaged: no 'hidden'"),
        (
            lambda p: [p["model"]["config"].pop(name) for name in ("cell", "vocab_size")],
            "the model description is damaged: no 'cell', 'vocab_size'",
        ),
        (
            setting("model", "config", head_cutoffs=5),
            "the model description is damaged: head_cutoffs 5 are not rising ranks",
        ),
    ],
    ids=[
        "progress field added",
        "base field lost",
        "training field added",
        "training field lost",
        "model key lost",
        "model keys lost",
        "model cutoffs not a list",
    ],
)
def test_a_payload_record_with_a_field_added_or_lost_names_the_field(trained, edit, said):
    """A field added to a run record or lost from it was said in Python's words ("progress: TypeError:
    Progress.__init__() got an unexpected keyword argument 'stpe'", "base: TypeError: Base.__init__()
    missing 2 required positional arguments"): the field is named, as a Config's mistyped keyword is. A key
    lost from the model description was "expected cell, layers, hidden, dropout, vocab_size", which left the
    reader to find which one, and so was a head_cutoffs that is no list."""
    path = rewritten(trained, edit)
    with pytest.raises(CharLMError) as error:
        checkpoint.read(path)
    assert f"{path}: damaged checkpoint ({said});" in str(error.value)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_payload_with_a_valid_checksum_is_one_line_in_every_command(trained, fox_file, damage):
    """Every command that reads a checkpoint names the file and what is wrong: no traceback, no
    allocation of a 10**12-wide model, nothing written."""
    edit, fragment = DAMAGE[damage]
    path = str(rewritten(trained, edit))
    commands = [
        ["info", path],
        ["sample", path, "--length", "5"],
        ["eval", path, str(fox_file)],
        ["train", "--resume", path, "--max-steps", "60"],
        ["train", str(fox_file), "--init-from", path, *TINY_LOOP_ARGS],
        ["export", path, "--format", "html", "--output", "page.html"],
        ["export", path, "--format", "onnx", "--output", "model.onnx"],
        ["export", path, "--format", "safetensors", "--output", "folder"],
        ["inspect", path, "--held-out"],
    ]
    copied = "copy it again from where it came"  # edited.pt is in no run: there is no other checkpoint to use
    for command in commands:
        assert_one_line_error(cli(*command), f"{path}: damaged checkpoint", fragment, copied)
    assert not any(Path(name).exists() for name in ("page.html", "model.onnx", "folder", "checkpoints"))


@pytest.mark.parametrize(
    "damage", ["NaN weight", "overflowing weight", "NaN optimizer state", "NaN hidden state", "step a string"]
)
def test_the_writer_refuses_what_every_reader_refuses_and_writes_nothing(trained, damage):
    """A checkpoint of a model built or trained in Python whose weights were NaN was written without a word,
    and every command then refused the file: the writer checks what the readers check, naming the file."""
    saved = checkpoint.read(trained)
    payload = saved.to_payload()
    DAMAGE[damage][0](payload)  # the damaged parts, put back past the reader's checks
    saved.weights = payload["model"]["weights"]
    saved.progress = checkpoint.Progress(**payload["run"]["progress"])
    saved.training = checkpoint.SavedTraining(**payload["training"])
    target = Path("best.pt")
    with pytest.raises(CharLMError) as error:
        checkpoint.save(saved, [target, Path("latest.pt")])
    assert str(error.value).startswith("best.pt: not written: ") and DAMAGE[damage][1] in str(error.value)
    assert not target.exists() and not Path("latest.pt").exists()


def test_the_writers_refusal_names_a_folder_ending_in_a_space_as_every_checkpoint_error_does(trained, tmp_path):
    """The writer's refusal named its path raw, where every other checkpoint error shows it as
    `errors.one_line_path` does: a run folder renamed to `run ` read as `run`, another folder."""
    saved = checkpoint.read(trained)
    first = next(iter(saved.weights))
    saved.weights = {**saved.weights, first: torch.full_like(saved.weights[first], 1e30)}  # past MAX_WEIGHT
    with pytest.raises(CharLMError) as error:
        checkpoint.save(saved, [tmp_path / "run " / "best.pt"])
    assert str(error.value).startswith(f"{tmp_path}/'run '/best.pt: not written: ")


def test_an_experiments_checkpoint_is_refused_naming_the_file_in_every_command(trained, fox_file):
    """A checkpoint of an experiment's own model (weights charlm's lacks: api.ModelBuilder) skips the
    training-state check, its code's to make; a bad rank_rngs in it never reached `charlm info`'s count
    of processes, since every command refuses the model first. But info, export, inspect and a resume
    said "this checkpoint holds weights ..." without naming the file, as sample and eval name it."""

    def experiment_with_bad_generators(payload):
        payload["model"]["weights"]["embed.parts.bag.weight"] = torch.zeros(3, 4)
        payload["training"]["rank_rngs"] = torch.tensor(3.0)  # len() of a 0-d tensor: a TypeError if read

    path = str(rewritten(trained, experiment_with_bad_generators))
    commands = [
        ["info", path],
        ["sample", path, "--length", "5"],
        ["eval", path, str(fox_file)],
        ["train", "--resume", path, "--max-steps", "60"],
        ["export", path, "--format", "html", "--output", "page.html"],
        ["export", path, "--format", "safetensors", "--output", "folder"],
        ["inspect", path, "--held-out"],
    ]
    for command in commands:
        assert_one_line_error(cli(*command), f"{path}: this checkpoint holds weights charlm's model has not")
    assert not any(Path(name).exists() for name in ("page.html", "folder", "checkpoints"))


def test_a_fine_tunes_refusal_of_an_experiments_checkpoint_names_its_file_as_every_command_does(trained, tmp_path):
    """--init-from refused an experiment's checkpoint naming its file raw (through a payload part's
    error), where every other command shows it by `errors.one_line_path`: `base ` read as `base`."""
    base = tmp_path / "base "
    base.mkdir()
    shutil.copy(
        rewritten(trained, lambda payload: payload["model"]["weights"].update(extra=torch.zeros(2))), base / runs.BEST
    )
    with pytest.raises(CharLMError) as error:
        finetune.read_base(base)
    assert f"{tmp_path}/'base '/best.pt: this checkpoint holds weights charlm's model has not (extra)" in str(
        error.value
    )


def test_a_damaged_model_folder_is_one_line_naming_it(trained, tmp_path):
    """An exported model folder goes through the same checks: weights that are not its config's."""
    folder = tmp_path / "model"
    assert cli("export", str(trained), "--format", "safetensors", "--output", str(folder)).exit_code == 0
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["model"]["hidden"] *= 2
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert_one_line_error(
        cli("info", str(folder)),
        f"{folder}: damaged model folder (config.json has hidden {config['model']['hidden']} but model.safetensors "
        f"holds weights of hidden {config['model']['hidden'] // 2}: they do not match); export it again",
    )


DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested past Python's parser: a RecursionError, not a ValueError


def nested_too_deeply(trained: Path, name: str) -> tuple[list[str], str | None]:
    """A copy of the trained run (or its model folder) with file `name` made DEEP JSON; the command that
    reads it, and the error it must give (None: the file is one a reader skips, and the command works)."""
    run = Path("run")
    shutil.copytree(trained.parent, run)
    if name in ("config.json", "vocab.json"):
        assert cli("export", str(run), "--format", "safetensors", "--output", "model").exit_code == 0
        (Path("model") / name).write_text(DEEP, encoding="utf-8")
        if name == "vocab.json":  # its sha256 recorded, as a crafted folder would: else the mismatch is told
            config = json.loads(Path("model/config.json").read_text(encoding="utf-8"))
            config["sha256"]["vocab.json"] = hashlib.sha256(DEEP.encode()).hexdigest()
            Path("model/config.json").write_text(json.dumps(config), encoding="utf-8")
        return ["info", "model"], f"model/{name}: damaged model folder (JSON nested too deeply)"
    if name == "header":  # the header line is at most 2 KiB: as deep as that allows
        data = (run / runs.LATEST).read_bytes().split(b"\n", 2)[2]
        (run / runs.LATEST).write_bytes(checkpoint_file.MAGIC + b"[" * 1000 + b"]" * 1000 + b"\n" + data)
        return ["info", str(run / runs.LATEST)], "damaged checkpoint header"
    resume = ["train", "--resume", str(run), "--max-steps", "21"]
    if name == "meta.json":  # a corpus cache's: rebuilt by the resume
        (meta,) = trained.parents[2].glob("corpora/cache/*/meta.json")
        shutil.copytree(meta.parents[2], "corpora")
        (Path("corpora/cache") / meta.parent.name / "meta.json").write_text(DEEP, encoding="utf-8")
        return resume, None
    if name == "run.json":  # lost, never the run
        (run / name).write_text(DEEP, encoding="utf-8")
        return resume, None
    with open(run / name, "a", encoding="utf-8") as file:  # a line of exports.jsonl, skipped
        file.write(DEEP + "\n")
    return ["info", str(run)], None


@pytest.mark.parametrize("name", ["header", "config.json", "vocab.json", "run.json", "exports.jsonl", "meta.json"])
def test_json_nested_too_deeply_is_damage_not_a_traceback(trained, name):
    """Every JSON file charlm reads, made of 100,000 nested brackets: Python's parser raised a
    RecursionError that no reader caught (a traceback), where malformed JSON is one line or skipped."""
    command, error = nested_too_deeply(trained, name)
    result = cli(*command)
    if error is None:
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    else:
        assert_one_line_error(result, error)


def test_a_base_without_its_run_options_is_fine_tuned_from_with_dropout_fitted(trained, fox_file, tmp_path):
    """A model folder whose config.json keeps no run options (a checkpoint made by hand, with Config's
    defaults) has no dropout to take: a fine-tune from it ended in a TypeError traceback saying the
    base's None as a number. It fits one, as a new run does."""
    folder = tmp_path / "model"
    assert cli("export", str(trained), "--format", "safetensors", "--output", str(folder)).exit_code == 0
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["run"]["config"] = {}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    result = cli(
        "train", str(fox_file), "--init-from", str(folder), *TINY_LOOP_ARGS, "--max-steps", "1", "--out", "new"
    )
    assert result.exit_code == 0, result.output
    assert "fits" in runs.read_reasons(Path("checkpoints/new"))["dropout"]


def test_resuming_a_model_folder_says_to_start_a_new_run_from_it(trained, tmp_path):
    folder = tmp_path / "model"
    assert cli("export", str(trained), "--format", "safetensors", "--output", str(folder)).exit_code == 0
    assert_one_line_error(
        cli("train", "--resume", str(folder), "--max-steps", "60"),
        f"{folder}: a model folder holds no training state",
        f"--init-from {folder}",
    )


def test_checking_a_checkpoint_builds_no_model_and_imports_no_compiler(trained):
    """The weights are compared with a model skeleton on the meta device; torch computes meta
    initialisation through its compiler, whose import alone takes seconds."""
    code = (
        "import sys; from charlm import checkpoint; "
        f"checkpoint.read({str(trained)!r}); assert 'torch._dynamo' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_a_damaged_checkpoint_kept_aside_says_to_delete_it(fox_file, tiny):
    """A run folder names latest.pending.pt while it is the newer (a checkpoint kept aside on Windows);
    damaged, `sample`, `info` and `train --resume` all stopped at it, told to 'use the run's other
    checkpoint', which they could not name (the folder gives the damaged file). Delete it, the line
    says, and the one it stands for is used."""
    charlm.train(fox_file, out="run", **tiny)
    folder = Path("checkpoints/run")
    for name, damage in (("latest", b"charlm-checkpoint\n{\n"), ("best", (folder / "best.pt").read_bytes()[:-9])):
        aside = runs.pending(folder / f"{name}.pt")
        aside.write_bytes(damage)  # written after the .pt file: the newer, which the folder names
        command = ["train", "--resume", "run", "--max-steps", "30"] if name == "latest" else ["sample", "run"]
        advice = f"it was kept aside for {name}.pt: delete it to use {folder / name}.pt"
        assert_one_line_error(cli(*command), str(aside), advice)
        if name == "best":  # info shows the run: what the file kept aside stands for, and the advice
            shown = cli("info", "run").output.splitlines()
            damaged = [row for row in shown if row.startswith("damaged")]
            assert f"checkpoint      {folder / name}.pt" in shown and damaged[0].startswith(
                f"damaged         {aside}: "
            )
            assert damaged[0].endswith(advice), shown
        aside.unlink()
        assert cli(*command).exit_code == 0


def test_a_run_whose_two_checkpoints_are_both_damaged_says_so_and_what_is_left(trained, tmp_path):
    """best.pt cut short and latest.pt emptied: `charlm sample`, `eval` and `train --resume` each said
    "use the run's other checkpoint", naming one that is damaged too. Now they say both are, and what is
    left: the run's export where it has one (to sample from or --init-from), else training anew."""
    run = shutil.copytree(trained.parent, tmp_path / "run")
    best, last = run / runs.BEST, run / runs.LATEST
    best.write_bytes(best.read_bytes()[:1000])
    last.write_bytes(b"")
    for command, file, other in [
        (["sample", str(run), "--length", "5"], best, "latest.pt"),
        (["eval", str(run)], best, "latest.pt"),
        (["train", "--resume", str(run), *TINY_LOOP_ARGS], last, "best.pt"),
    ]:
        assert_one_line_error(
            cli(*command),
            f"{file}: truncated checkpoint",
            f"; {other} is damaged too: nothing of this run can be read back; train anew, or from a model "
            "exported from it elsewhere with --init-from FOLDER",
        )
    export = run / runs.EXPORTS / "model"
    export.mkdir(parents=True)
    (export / "model.safetensors").write_bytes(b"")  # what the advice names, not what it reads
    last.unlink()
    with pytest.raises(CharLMError) as refused:
        charlm.load(run)
    assert str(refused.value).endswith(
        f"; the run has no latest.pt: its export {export} is what is left: sample from it, or start a new "
        f"run from it with init_from='{export}'"
    )


@pytest.mark.parametrize("kept", [0, 9, 50], ids=["empty", "cut in its first line", "cut in its header line"])
def test_an_empty_or_barely_begun_best_pt_is_called_truncated(trained, tmp_path, kept):
    """A run folder whose best.pt was emptied (a copy onto a full disk, a file system that lost it) was
    "not a charlm checkpoint; give a run folder, ...", given a run folder. It is truncated, and the
    run's other checkpoint is named as for any other damage. One cut inside its header line was a
    "damaged checkpoint header", though the file only ends early: truncated too, in the same words."""
    run = shutil.copytree(trained.parent, tmp_path / "run")
    best = run / runs.BEST
    best.write_bytes(best.read_bytes()[:kept])
    with pytest.raises(CharLMError) as refused:
        charlm.load(run)
    assert str(refused.value) == (
        f"{best}: truncated checkpoint ({kept} bytes, no whole header); use the run's other checkpoint, "
        f"{run / runs.LATEST}, in its place (as in charlm.load('{run / runs.LATEST}'))"
    )


@pytest.mark.parametrize("size", [None, "1150316", True, 12.0], ids=["null", "a string", "true", "a float"])
def test_a_header_whose_length_is_no_count_of_bytes_is_damaged(trained, tmp_path, size):
    """A header whose "bytes" is not a whole number (a hand-edited or damaged file) was a TypeError
    traceback ("'<' not supported between instances of 'int' and 'NoneType'") as the sizes were compared:
    a damaged header, in one line naming the file."""
    checkpoint_path = shutil.copy(trained, tmp_path / "best.pt")
    header, body = checkpoint_path.read_bytes()[len(checkpoint_file.MAGIC) :].split(b"\n", 1)
    edited = {**json.loads(header), "bytes": size}
    checkpoint_path.write_bytes(checkpoint_file.MAGIC + json.dumps(edited).encode() + b"\n" + body)
    with pytest.raises(CharLMError, match=f"^{re.escape(str(checkpoint_path))}: damaged checkpoint header; "):
        checkpoint_file.verified(checkpoint_path.read_bytes(), checkpoint_path, checkpoint_advice.remedy)


def test_a_damaged_checkpoint_names_the_runs_other_one_and_the_command_that_reads_it(trained, tmp_path):
    """A damaged best.pt (or latest.pt) said "use the run's other checkpoint" without naming it or how:
    a user had to know a run folder holds two and that a command takes either file. Now the message
    names it and a command that reads it (a sample from latest.pt, a resume from best.pt), which works."""
    run = shutil.copytree(trained.parent, tmp_path / "run")
    best, last = run / runs.BEST, run / runs.LATEST
    whole = best.read_bytes()
    best.write_bytes(whole[:1000])
    advised = f"charlm sample {last}"
    assert_one_line_error(
        cli("sample", str(run), "--length", "5"),
        f"{best}: truncated checkpoint",
        f"; use the run's other checkpoint, {last}, in its place (as in {advised})",
    )
    assert cli(*advised.split()[1:], "--length", "5").exit_code == 0
    best.write_bytes(whole)
    last.write_bytes(last.read_bytes()[:1000])
    advised = f"charlm train --resume {best}"
    assert_one_line_error(
        cli("train", "--resume", str(run), *TINY_LOOP_ARGS),
        f"{last}: truncated checkpoint",
        f"; use the run's other checkpoint, {best}, in its place (to resume: {advised})",
    )
    assert cli(*advised.split()[1:], "--max-steps", "30", "--quiet").exit_code == 0
    assert checkpoint_file.readable(last)  # the resume wrote the run's latest.pt anew


@pytest.mark.parametrize(
    "args, advised",
    [
        ("eval {run}", "charlm eval {last}"),
        ("serve {run} --port 0", "charlm serve {last}"),
        ("export {run} --format html", "charlm export {last}"),
        ("inspect {run} {text}", "charlm inspect {last} FILE"),
        ("train {text} --init-from {run}", "--init-from {last}"),
        ("info {run}/best.pt", "charlm sample {last}"),
        ("train {text} --eval-also {run} --quiet", "--eval-also {last}"),
        ("eval {run}/latest.pt {run}", "charlm eval {run}/latest.pt {last}"),
        ("eval ./model {run}", "charlm eval ./model {last}"),
        ("train --resume ./model --max-steps 21 --eval-also {run} --quiet", "--eval-also {last}"),
    ],
    ids=[
        "eval",
        "serve",
        "export",
        "inspect",
        "fine-tune",
        "info",
        "eval-also",
        "eval-held-out",
        "eval-model-typed",
        "resume-eval-also",
    ],
)
def test_a_damaged_best_pt_names_latest_pt_with_the_command_the_user_ran(trained, in_tmp, args, advised):
    """`charlm serve RUN` (eval, export, inspect, a fine-tune's --init-from) of a run whose best.pt was cut short
    advised "(as in charlm sample RUN/latest.pt)": a user serving a run wants it served. The advice names the
    command run, taking the file as that command takes one; `charlm info`, which shows a file rather than uses
    it, the sample whose refusal its damaged row is. A run read for its held-out text (--eval-also RUN, eval's
    FILES) was advised as the command's model (`--init-from RUN/latest.pt`: a fine-tune, not a score): it is
    named where it was given. The paths are those typed, relative, as in the command pasted back: --eval-also's
    was named absolute (kept so for a resume before it was read; a resume given it now, too), and eval's model rewritten (`./model` as
    `model/best.pt`)."""
    shutil.copytree(trained.parent, "run")
    shutil.copytree(trained.parent, "model")
    best, last = Path("run", runs.BEST), Path("run", runs.LATEST)
    best.write_bytes(best.read_bytes()[:40])
    Path("fox.txt").write_text("the quick brown fox\n" * 5, encoding="utf-8")
    result = cli(*args.format(run="./run", text="fox.txt").split())
    assert_one_line_error(
        result,
        f"{best}: truncated checkpoint (40 bytes, no whole header)",
        f"; use the run's other checkpoint, {last}, in its place (as in {advised.format(run='./run', last=last)})",
    )
    assert str(in_tmp) not in result.output


@pytest.mark.parametrize(
    "args, advised",
    [("eval ./-d", "charlm eval ./-d/latest.pt"), ("eval ./run ./-d", "charlm eval ./run ./-d/latest.pt")],
    ids=["model", "held-out"],
)
def test_a_damaged_run_whose_name_begins_with_a_dash_is_advised_in_a_command_that_runs(trained, in_tmp, args, advised):
    """A run folder named `-d`, typed `./-d`, was advised `charlm eval -d/latest.pt`: pasted, the command
    read the path as an option (`no such option -d`). A path that begins with '-' is given as `./-d`."""
    shutil.copytree(trained.parent, "-d")
    shutil.copytree(trained.parent, "run")
    best = Path("-d", runs.BEST)
    best.write_bytes(best.read_bytes()[:40])
    assert_one_line_error(cli(*args.split()), f"(as in {advised})")
    assert cli(*shlex.split(advised)[1:]).exit_code == 0


def test_a_damaged_copy_outside_any_run_says_to_copy_it_again_or_use_the_run_beside_it(trained, tmp_path):
    """`charlm sample my.pt`, a copy cut short outside any run, said "use the run's other checkpoint": it
    is in no run and has none. Now it says to copy it again; a copy inside a run names the run's own."""
    run = shutil.copytree(trained.parent, tmp_path / "run")
    best = run / runs.BEST
    for copy, advice in [
        (tmp_path / "my.pt", "no run's checkpoint is beside it (a run writes best.pt and latest.pt): copy it again"),
        (run / "copy.pt", f"; use {best}, beside it, in its place (as in charlm sample {best})"),
    ]:
        copy.write_bytes(trained.read_bytes()[:1000])
        assert_one_line_error(cli("sample", str(copy), "--length", "5"), f"{copy}: truncated checkpoint", advice)
    assert cli("sample", str(best), "--length", "5").exit_code == 0  # what the advice names reads back


def cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def grown(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\n")


def torn_directory(path: Path) -> None:
    """The archive's end record overwritten, the file's size kept: only its directory shows it."""
    data = bytearray(path.read_bytes())
    data[-22:-18] = b"XXXX"
    path.write_bytes(bytes(data))


def header_cut(path: Path) -> None:
    """Cut within its header line, as a kill leaves a file it had just begun."""
    path.write_bytes(path.read_bytes()[: len(checkpoint_file.MAGIC) + 10])


@pytest.mark.parametrize(
    "damage, seen",
    [
        (cut, "truncated"),
        (header_cut, "truncated"),
        (grown, "damaged"),
        (torn_directory, "damaged"),
        (lambda path: path.write_bytes(b""), "truncated"),
        (lambda path: path.write_bytes(b"<html>"), "not a checkpoint"),
    ],
    ids=["cut", "cut in its header", "grown", "torn directory", "empty", "another kind"],
)
def test_the_glance_charlm_runs_takes_sees_what_the_full_read_refuses(trained, tmp_path, damage, seen):
    """`charlm runs` glances at each checkpoint (header, size, archive directory) rather than reading it
    whole: each damage a kill, a full disk or a copy leaves is seen and said in a word, and a sound file
    passes."""
    copy = shutil.copy(trained, tmp_path / "latest.pt")
    assert glance(copy) == ""
    damage(copy)
    assert not checkpoint_file.readable(copy)
    assert glance(copy) == seen


def test_runs_and_info_say_which_checkpoints_of_a_run_are_damaged(trained, tmp_path):
    """A run whose best.pt and latest.pt a kill cut short was listed by `charlm runs` like a sound one,
    and `charlm info` of a run with a sound best.pt said nothing of its cut latest.pt: the damage showed
    only when a sample or a resume loaded it. The table now has a column saying which are damaged (only
    while one is: a sound run's table is as it was), and info a row saying what to do."""
    for name in ("sound", "both", "last", "grown"):
        shutil.copytree(trained.parent, tmp_path / "checkpoints" / name)
    assert "checkpoints" not in cli("runs").output.splitlines()[0]
    for name in (runs.BEST, runs.LATEST):
        cut(tmp_path / "checkpoints" / "both" / name)
    cut(tmp_path / "checkpoints" / "last" / runs.LATEST)
    grown(tmp_path / "checkpoints" / "grown" / runs.BEST)
    header, *rows = cli("runs").output.splitlines()
    assert header.split()[-1] == "checkpoints"
    notes = {row.split()[0]: row.split("  ")[-1] for row in rows}
    assert notes == {"both": "both truncated", "grown": "best.pt damaged", "last": "latest.pt truncated", "sound": "ok"}
    last = tmp_path / "checkpoints" / "last"
    shown = cli("info", str(last)).output
    damaged = [line for line in shown.splitlines() if line.startswith("damaged")]
    assert len(damaged) == 1 and damaged[0].startswith(f"damaged         {last / runs.LATEST}: truncated checkpoint ")
    assert damaged[0].endswith(
        f"; use the run's other checkpoint, {last / runs.BEST}, in its place (to resume: charlm train --resume "
        f"{last / runs.BEST})"
    ), shown
    sound = cli("info", str(tmp_path / "checkpoints" / "sound")).output
    assert not [line for line in sound.splitlines() if line.startswith("damaged")], sound


@pytest.mark.parametrize("kept", [40, 1000], ids=["cut in its header", "cut in its payload"])
def test_infos_damaged_row_says_the_damage_in_the_words_a_command_loading_it_says(trained, tmp_path, kept):
    """`charlm info RUN` said "latest.pt is truncated" of a cut latest.pt, where every command loading it
    says "latest.pt: truncated checkpoint (40 bytes, no whole header)": two wordings of one damage, the
    row's without how much is left. The row is now the refusal a command loading the file gives."""
    run = shutil.copytree(trained.parent, tmp_path / "run")
    last = run / runs.LATEST
    last.write_bytes(last.read_bytes()[:kept])
    refused = cli("sample", str(last), "--length", "5")
    assert_one_line_error(refused, f"{last}: truncated checkpoint (")
    shown = cli("info", str(run))
    assert shown.exit_code == 0, shown.output
    damaged = [line.removeprefix("damaged").strip() for line in shown.output.splitlines() if line.startswith("damaged")]
    assert damaged == [refused.output.strip().removeprefix("Error: ")], shown.output


def test_runs_glances_at_the_checkpoint_a_command_loads_a_newer_one_kept_aside(trained, tmp_path):
    """A run folder names latest.pending.pt while it is the newer (a checkpoint kept aside on Windows), and
    every command loads it; `charlm runs` glanced at latest.pt alone, so a pending one cut short was `ok`
    until a resume refused it. The table and info's row now name the file a command loads; an older one
    kept aside, which none loads, is no damage of the run's."""
    run = shutil.copytree(trained.parent, tmp_path / "checkpoints" / "run")
    aside = runs.pending(run / runs.LATEST)
    aside.write_bytes((run / runs.LATEST).read_bytes()[:1000])
    header, row = cli("runs").output.splitlines()
    assert header.split()[-1] == "checkpoints" and row.split("  ")[-1] == "latest.pending.pt truncated", row
    damaged = [row for row in cli("info", str(run)).output.splitlines() if row.startswith("damaged")]
    assert damaged[0].startswith(f"damaged         {aside}: truncated checkpoint (1,000 of "), damaged
    assert damaged[0].endswith("; it was kept aside for latest.pt: delete it to use " + str(run / runs.LATEST)), damaged
    os.utime(aside, (0, 0))  # older than latest.pt: no command loads it
    assert "checkpoints" not in cli("runs").output.splitlines()[0]


def flipped(path: Path) -> None:
    """A byte within the payload changed, the size kept: only the full read's checksum shows it."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [cut, flipped], ids=["cut", "a byte flipped"])
def test_info_of_a_run_whose_best_pt_is_damaged_shows_its_latest_pt_and_says_so(trained, tmp_path, damage):
    """`charlm info RUN` with best.pt cut short (and latest.pt sound) refused in one line: use latest.pt.
    A user asking about a run was given no information about it, though `charlm runs` lists it. It shows
    latest.pt, with a `damaged` row holding the refusal and its advice; a sample of the run still refuses
    (a model other than the best would be sampled unsaid), and so does info of best.pt named as a file."""
    run = shutil.copytree(trained.parent, tmp_path / "run")
    best, last = run / runs.BEST, run / runs.LATEST
    damage(best)
    refusal = cli("info", str(best))
    assert_one_line_error(refusal, f"{best}: ", f"use the run's other checkpoint, {last}, in its place")
    shown = cli("info", str(run))
    assert shown.exit_code == 0, shown.output
    rows = shown.output.splitlines()
    assert rows[0] == f"checkpoint      {last}" and f"damaged         {refusal.output[7:].strip()}" in rows, rows
    assert_one_line_error(cli("sample", str(run), "--length", "5"), f"{best}: ", f"charlm sample {last}")
    damage(last)  # both: nothing to show, and the refusal says so
    assert_one_line_error(cli("info", str(run)), f"{best}: ", f"{last.name} is damaged too")


def test_runs_tells_damage_without_reading_any_checkpoint_whole(trained, tmp_path, monkeypatch):
    """The glance is what keeps `charlm runs` quick with many runs: no checkpoint is read whole nor
    verified (a sha256 over every byte) to list them."""
    for name in ("one", "two"):
        shutil.copytree(trained.parent, tmp_path / "checkpoints" / name)
    cut(tmp_path / "checkpoints" / "two" / runs.LATEST)
    for reader in ("read_bytes", "verified"):
        monkeypatch.setattr(checkpoint_file, reader, lambda *args, **kwargs: pytest.fail("a checkpoint read whole"))
    assert [row.split("  ")[-1].strip() for row in cli("runs").output.splitlines()] == [
        "checkpoints",
        "ok",
        "latest.pt truncated",
    ]


class LargestOutput(TorchDispatchMode):
    """The most values any torch op run under it wrote into one new tensor (of the CPU's: a model skeleton's
    meta tensors hold none; a view of a tensor given, `detach`'s, is no new one)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for value in tree_leaves(out):
            new = isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() not in given
            if new and value.device.type == "cpu":
                self.largest = max(self.largest, value.numel())
        return out


def test_checking_a_checkpoints_values_copies_none_of_them(trained):
    """Every read and every save checks the optimizer's and hidden states' values: with isfinite().all(),
    a bool copy of each, written whole before it is looked at (a 100M-parameter model's Adam states: 200M
    values, 20 times the time of the weights' one pass). The check reads each once, as the weights'
    (`weight_checks.value_range`), and writes no tensor near the size of the largest it checks."""
    saved = checkpoint.read(trained)
    states = [v for s in saved.training.optimizer["state"].values() for v in s.values() if torch.is_tensor(v)]
    hidden = saved.training.hidden if isinstance(saved.training.hidden, tuple) else (saved.training.hidden,)
    largest = max(v.numel() for v in [*states, *hidden, *saved.weights.values()])
    with LargestOutput() as mode:
        saved.check()
    assert mode.largest < largest / 10, (mode.largest, largest)


def test_torchs_notice_on_reading_a_sparse_tensor_leaves_the_error_one_line(trained, monkeypatch):
    """torch 2.14's torch.load(weights_only=True) warns "Validating sparse tensor invariants ..." as it reads
    a sparse tensor: the CLI printed it as a warning line above its own one-line refusal of the same tensor."""
    path = str(rewritten(trained, DAMAGE["sparse weight"][0]))
    load = torch.load

    def load_as_torch_2_14(*args, **kwargs):
        warnings.warn("Validating sparse tensor invariants because weights_only=True. To disable ...", UserWarning)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load_as_torch_2_14)
    for command in (["info", path], ["sample", path, "--length", "5"]):
        assert_one_line_error(cli(*command), f"{path}: damaged checkpoint", DAMAGE["sparse weight"][1])


def test_torchs_notice_of_a_newer_pickle_protocol_leaves_the_error_one_line(tmp_path):
    """torch.load(weights_only=True) warns "Detected pickle protocol 5 in the checkpoint ..." of a body that
    torch.save did not write as charlm's does (protocol 2): the CLI printed its 300 characters as a warning line
    above its own one-line refusal of the same file."""
    saved = io.BytesIO()
    torch.save({"model": torch.zeros(2)}, saved, pickle_protocol=5)
    body = saved.getvalue()
    header = {"version": checkpoint_file.VERSION, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    path = tmp_path / "protocol5.pt"
    path.write_bytes(checkpoint_file.MAGIC + json.dumps(header).encode() + b"\n" + body)
    assert_one_line_error(cli("info", str(path)), f"{path}: ")


def out_of_bounds_sparse(weight: torch.Tensor) -> torch.Tensor:
    """A sparse tensor of `weight`'s shape with an index past its first dimension, as torch builds one
    unchecked (check_invariants=False): what a damaged or crafted file can hold."""
    indices = torch.tensor([[0, weight.shape[0] + 5], [0, 0]])
    return torch.sparse_coo_tensor(indices, torch.ones(2), weight.shape, check_invariants=False)


def test_a_sparse_weight_with_an_index_out_of_bounds_is_damage_on_every_torch(trained):
    """torch 2.14's torch.load(weights_only=True) checks a sparse tensor's indices and raises on one out
    of bounds, where torch 2.13 read it and charlm refused its layout as damage: the same file was then
    "refused: the checkpoint holds more than tensors and plain values", as if it held code."""
    path = str(rewritten(trained, set_first_weight(out_of_bounds_sparse)))
    for command in (["info", path], ["sample", path, "--length", "5"]):
        assert_one_line_error(cli(*command), f"{path}: damaged checkpoint (")
