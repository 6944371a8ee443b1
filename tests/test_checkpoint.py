import io

import pytest
import torch

import charlm
from charlm import checkpoint
from charlm.errors import CharLMError


def test_round_trip_gives_the_same_logits(fox_file, tiny):
    model = charlm.train(fox_file, out="run", **tiny).eval()
    loaded = charlm.load("checkpoints/run/latest.pt")
    ids = torch.randint(0, len(model.vocab), (2, 30))
    assert loaded.vocab == model.vocab
    assert torch.equal(loaded(ids)[0], model(ids)[0])


def test_run_folder_and_name_resolve_to_best_and_latest(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    assert checkpoint.resolve("run").name == "best.pt"
    assert checkpoint.resolve("checkpoints/run", prefer=checkpoint.LATEST).name == "latest.pt"
    assert checkpoint.resolve(None).parent.name == "run"


def test_checkpoint_holds_what_a_resume_needs(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    payload = checkpoint.read_checkpoint(checkpoint.resolve("run", prefer=checkpoint.LATEST))
    for key in ("model", "config", "vocab", "optimizer", "step", "rng", "data", "hidden", "best_bpc"):
        assert key in payload
    assert payload["config"]["hidden"] == tiny["hidden"]


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
    path = checkpoint.resolve("run")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CharLMError, match=r"truncated checkpoint \(4\d{3} of \d+ bytes\)"):
        charlm.load(path)


def test_bit_flipped_checkpoint_is_refused(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    path = checkpoint.resolve("run")
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
