import dataclasses
import hashlib
import io
import json

import pytest
import torch

import charlm
from charlm import checkpoint, runs
from charlm.device import resolve_device
from charlm.errors import CharLMError

from .conftest import latest


def test_round_trip_gives_the_same_logits(fox_file, tiny):
    model = charlm.train(fox_file, out="run", **tiny).eval()
    loaded = charlm.load("checkpoints/run/latest.pt", device=str(model.device))
    ids = torch.randint(0, len(model.vocab), (2, 30))
    assert loaded.vocab == model.vocab
    assert torch.equal(loaded(ids)[0], model(ids)[0])


def test_checkpoint_holds_the_model_the_run_and_what_a_resume_needs(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    payload = checkpoint.read_payload(runs.resolve("run", prefer=runs.LATEST))
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
    body = checkpoint.serialize(old).split(b"\n", 2)[2]
    header = {"version": 2, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    path.write_bytes(checkpoint.MAGIC + json.dumps(header).encode() + b"\n" + body)
    upgraded = latest("run")
    assert upgraded.model_config == new.model_config
    kept_none = {"lr": 0.0, "val_step": None, "best_step": None, "worse_evaluations": 0}  # format 2 kept none of these
    assert upgraded.progress == dataclasses.replace(new.progress, **kept_none)
    assert all(torch.equal(upgraded.weights[k], v) for k, v in new.weights.items())
    charlm.train(resume="run", max_steps=tiny["max_steps"] + 5)
    assert latest("run").progress.step == tiny["max_steps"] + 5


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "run" / "latest.pt"
    checkpoint.write_atomic(target, b"old")
    checkpoint.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["latest.pt"]


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "latest.pt"
    checkpoint.write_atomic(target, b"old")

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "replace", full_disk)
    with pytest.raises(CharLMError, match="No space left"):
        checkpoint.write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_truncated_checkpoint_is_refused(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    path = runs.resolve("run")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CharLMError, match=r"truncated checkpoint \(4\d{3} of \d+ bytes\)"):
        charlm.load(path)


def test_bit_flipped_checkpoint_is_refused(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    path = runs.resolve("run")
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


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path("pwned"),))


def test_a_malicious_pickle_is_refused_and_its_code_does_not_run(tmp_path):
    """A checkpoint with a valid header and checksum whose pickle would create a file on load."""
    path = tmp_path / "evil.pt"
    path.write_bytes(checkpoint.serialize({"config": {}, "x": _Payload()}))
    with pytest.raises(CharLMError, match="refused"):
        charlm.load(path)
    assert not (tmp_path / "pwned").exists()
    body = path.read_bytes().split(b"\n", 2)[2]
    torch.load(io.BytesIO(body), weights_only=False)  # what a plain unpickling loader would do
    assert (tmp_path / "pwned").exists()


def test_missing_checkpoint_is_refused():
    with pytest.raises(CharLMError, match="no such checkpoint"):
        charlm.load("nowhere.pt")
    with pytest.raises(CharLMError, match="no runs under checkpoints"):
        charlm.load()
