"""`charlm export`: safetensors and ONNX round trips, the CLI's errors, `charlm info`'s exports line.
The HTML page's tests (a real browser) are in test_export_html.py."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import charlm
from charlm import checkpoint, export, export_names, hub, runtext, sampler
from charlm.checkpoint import Checkpoint, Progress
from charlm.cli import export_command
from charlm.config import Config
from charlm.export import FORMATS
from charlm.export import onnx as onnx_export
from charlm.model import CharLM, ModelConfig
from charlm.vocab import Vocab

from .conftest import (
    REPO,
    assert_one_line_error,
    block_import,
    cli,
    file_size_limit,
    import_or_missing,
    run_cli,
    start_python,
    wait_for,
    without_file_locks,
)
from .export_contender import export_by_turns, export_in_rounds

TEXT = "the quick brown fox jumps over the lazy dog\n"
CHINESE = "".join(chr(0x4E00 + i) for i in range(40)) + "，。\n"


def model_of(cell: str = "lstm", chars: str = TEXT, cutoffs: tuple[int, ...] = (), hidden: int = 24) -> CharLM:
    """An untrained model with random (not zero) biases, so every weight matters."""
    torch.manual_seed(3)
    vocab = Vocab(sorted(set(chars)))
    model = CharLM(ModelConfig(cell, 2, hidden, 0.0, len(vocab), cutoffs), vocab)
    if cutoffs:  # a frequency order that is not the id order, so the rank lookup is exercised
        model.head.set_frequencies(torch.rand(len(vocab)))
    return model.eval()


def run_of(model: CharLM, folder: Path, corpus: str = "fox") -> Path:
    """A run folder holding `model`, trained on `corpus`, as its best checkpoint (no training needed)."""
    saved = Checkpoint(
        model.config,
        model.vocab,
        model.state_dict(),
        Config(cell=model.config.cell, hidden=model.config.hidden),
        {"name": corpus, "sources": [], "digest": ""},
        Progress(step=10, val_bpc=2.5, best_bpc=2.5),
    )
    checkpoint.save(saved, [folder / "best.pt", folder / "latest.pt"])
    return folder


def logits(model: CharLM, text: str) -> torch.Tensor:
    with torch.no_grad():
        return model(model.vocab.encode(text).unsqueeze(0))[0][0]


@pytest.mark.parametrize(
    ("cell", "chars", "cutoffs"), [("lstm", TEXT, ()), ("gru", CHINESE, (8, 20)), ("rnn", TEXT, ())]
)
def test_safetensors_folder_loads_everywhere_a_checkpoint_does(tmp_path, cell, chars, cutoffs):
    model = model_of(cell, chars, cutoffs)
    run = run_of(model, tmp_path / "run")
    result = cli("export", str(run), "--format", "safetensors", "--output", str(tmp_path / "hub"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    loaded = charlm.load(tmp_path / "hub")
    text = (chars * 3)[:60]
    assert torch.equal(logits(loaded, text), logits(model, text))
    assert json.loads((tmp_path / "hub" / "vocab.json").read_text(encoding="utf-8"))["chars"] == "".join(
        model.vocab.chars
    )
    seed = chars[:3]
    from_run = cli("sample", "--checkpoint", str(run), "--seed", seed, "--greedy", "--length", "40")
    from_hub = cli("sample", "--checkpoint", str(tmp_path / "hub"), "--seed", seed, "--greedy", "--length", "40")
    assert from_hub.exit_code == 0 and from_hub.output == from_run.output
    info = cli("info", str(tmp_path / "hub"))
    assert info.exit_code == 0 and "model.safetensors" in info.output and f"2x24 {cell}" in info.output


@pytest.mark.parametrize(
    ("cell", "chars", "cutoffs"), [("lstm", TEXT, ()), ("gru", CHINESE, (8, 20)), ("rnn", TEXT, ())]
)
def test_the_docs_plain_torch_loader_reads_a_model_folder_without_charlm(tmp_path, cell, chars, cutoffs):
    """docs/export.md said only that model.safetensors holds "the weights, by their PyTorch names": a user
    without charlm had to guess the modules, the adaptive head's division and what head.rank is. Its plain
    torch block, run where importing charlm fails, gives charlm's log-probabilities."""
    model = model_of(cell, chars, cutoffs)
    run = run_of(model, tmp_path / "run")
    assert cli("export", str(run), "--format", "safetensors", "--output", str(tmp_path / "hub")).exit_code == 0
    text = (chars * 3)[:40]
    example = docs_block("python", "safetensors.torch").replace('"shakespeare-model"', '"hub"')
    example = example.replace('"ROMEO:"', repr(text)) + "print(json.dumps(logprobs[0].tolist()))\n"
    result = run_without_charlm(example)
    assert result.returncode == 0, result.stderr
    likeliest, printed = result.stdout[:-1].rsplit("\n", 1)  # the docs' line, then the log-probabilities
    expected = torch.log_softmax(logits(model, text).double(), -1)
    assert np.abs(np.array(json.loads(printed)) - expected.numpy()).max() < 1e-5
    assert likeliest == model.vocab.chars[int(expected[-1].argmax())]


def test_safetensors_folder_holds_no_pickle(tmp_path):
    run = run_of(model_of(), tmp_path / "run")
    cli("export", str(run), "--format", "safetensors", "--output", str(tmp_path / "hub"))
    weights = (tmp_path / "hub" / "model.safetensors").read_bytes()
    header = json.loads(weights[8 : 8 + int.from_bytes(weights[:8], "little")])
    assert header["__metadata__"]["format"] == "charlm-safetensors-1" and "embed.weight" in header
    assert b"\x80\x04" not in weights[: 8 + len(header)] and not list((tmp_path / "hub").glob("*.pt"))


def test_a_model_folder_that_cannot_be_listed_is_one_line_saying_what_to_do(tmp_path, monkeypatch):
    """A folder with a config.json and no model.safetensors is listed for weights of another name; a
    listing refused (a folder readable by its owner alone, which a test run as root cannot make) was
    `charlm.load`'s raw PermissionError, and the command's `hub: Permission denied`, with nothing to do."""
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / hub.CONFIG).write_text("{}", encoding="utf-8")
    real_iterdir = Path.iterdir

    def refused(path: Path):
        if path == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real_iterdir(path)

    monkeypatch.setattr(Path, "iterdir", refused)
    with pytest.raises(charlm.CharLMError, match=f"{folder}: cannot read .*; make it readable"):
        charlm.load(folder)
    assert_one_line_error(cli("info", str(folder)), f"{folder}: cannot read (Permission denied); make it readable")


@pytest.mark.parametrize("name", ["model.SAFETENSORS", "Model.SafeTensors", "weights.safetensors"])
def test_a_safetensors_file_of_another_name_is_refused_and_never_read_as_its_folders(tmp_path, name):
    """The .safetensors suffix was checked in lower case only (.pt in any case): model.SAFETENSORS was
    'not a charlm checkpoint' to sample and binary text to eval; and weights.safetensors read its folder's
    model.safetensors, another file, without a word. A file of that suffix in any case is a model's
    weights, read with its folder only where it is the folder's model.safetensors."""
    run = run_of(model_of(), tmp_path / "run")
    assert cli("export", str(run), "--format", "safetensors", "--output", str(tmp_path / "hub")).exit_code == 0
    other = tmp_path / "hub" / name
    other.write_bytes(b"not the folder's weights")  # beside model.safetensors: never read in its place
    for command in (["sample", str(other)], ["eval", str(other)], ["info", str(other)]):
        assert_one_line_error(cli(*command), f"{other}: ", "rename it model.safetensors")
    with pytest.raises(charlm.CharLMError, match="rename it model.safetensors"):
        charlm.load(other)
    expected = charlm.generate(charlm.load(tmp_path / "hub"), "the", length=20, random_seed=1)
    (tmp_path / "hub" / "model.safetensors").replace(other)  # the folder's weights, so named: the folder's name
    with pytest.raises(charlm.CharLMError, match="rename it model.safetensors"):
        charlm.load(tmp_path / "hub")  # a folder without model.safetensors is no model folder
    other.replace(tmp_path / "hub" / "model.safetensors")
    assert (
        charlm.generate(charlm.load(tmp_path / "hub" / "model.safetensors"), "the", length=20, random_seed=1)
        == expected
    )


def test_an_experiments_model_is_refused_by_every_format_before_writing(tmp_path):
    """A checkpoint of an experiment's own model (weights charlm's lacks, bench/parts.py) was exported as a
    safetensors folder that `charlm.load` then refused; html and onnx refused it at once."""
    model = model_of()
    weights = {**model.state_dict(), "embed.parts.bag.weight": torch.zeros(3, 24)}
    saved = Checkpoint(
        model.config,
        model.vocab,
        weights,
        Config(hidden=24),
        {"name": "fox", "sources": [], "digest": ""},
        Progress(step=10),
    )
    checkpoint.save(saved, [tmp_path / "run" / "best.pt", tmp_path / "run" / "latest.pt"])
    for format_ in FORMATS:
        output = tmp_path / f"out-{format_}"
        result = cli("export", str(tmp_path / "run"), "--format", format_, "--output", str(output))
        assert_one_line_error(result, "holds weights charlm's model has not (embed.parts.bag.weight)")
        assert not output.exists()


def test_damaged_model_folder_is_a_one_line_error(tmp_path):
    run = run_of(model_of(), tmp_path / "run")
    cli("export", str(run), "--format", "safetensors", "--output", str(tmp_path / "hub"))
    config = json.loads((tmp_path / "hub" / "config.json").read_text(encoding="utf-8"))
    (tmp_path / "hub" / "config.json").write_text("{not json", encoding="utf-8")
    hub = str(tmp_path / "hub")
    assert_one_line_error(cli("sample", "--checkpoint", hub), "damaged model folder", "export it again from its run")
    (tmp_path / "hub" / "config.json").write_text("{}", encoding="utf-8")
    assert_one_line_error(cli("info", hub), "not a charlm model folder", "give a run folder")
    del config["run"]  # a config.json of the right format that lacks a part: damage too, said with its remedy
    (tmp_path / "hub" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert_one_line_error(cli("info", hub), "hub/config.json: damaged model folder (no 'run')", "export it again")


@pytest.mark.parametrize("rank", [99_999, -5, "twice"])
def test_a_model_folder_whose_adaptive_heads_ranks_were_edited_is_damaged(tmp_path, rank):
    """head.rank, each id's frequency rank, edited (an export older than config.json's sha256, a byte
    flipped): past the vocabulary was an IndexError traceback in sample and eval, negative one in eval
    (sample wrapped it round silently), a rank given twice a figure of a distribution not summing to 1."""
    from safetensors.torch import load_file, save_file

    run = run_of(model_of(chars=CHINESE, cutoffs=(8,)), tmp_path / "run")
    folder = tmp_path / "hub"
    cli("export", str(run), "--format", "safetensors", "--output", str(folder))
    weights = load_file(folder / "model.safetensors")
    weights["head.rank"][0] = weights["head.rank"][1] if rank == "twice" else rank
    save_file(weights, folder / "model.safetensors", metadata={"format": hub.FORMAT})
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    del config["sha256"]  # as an export older than the record
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (text := tmp_path / "text.txt").write_text(CHINESE, encoding="utf-8")
    said = f"{folder / hub.WEIGHTS}: damaged model folder (head.rank is not a ranking of the {len(set(CHINESE))} ids"
    assert_one_line_error(cli("sample", str(folder), "--seed", CHINESE[:3], "--length", "5"), said)
    assert_one_line_error(cli("eval", str(folder), str(text)), said)
    assert_one_line_error(cli("info", str(folder)), said)


def edited_config(config: dict, field: str, value: object) -> None:
    """config.json's `field` (`run.progress`: a field of its run record) set to `value`, or removed (DELETED)."""
    *parents, name = field.split(".")
    for parent in parents:
        config = config[parent]
    if value is DELETED:
        del config[name]
    else:
        config[name] = value


DELETED = object()
PROGRESS_FIELDS = ", ".join(sorted(f.name for f in dataclasses.fields(Progress)))


@pytest.mark.parametrize(
    "field, value, said",
    [
        ("model", DELETED, "hub/config.json: damaged model folder (no 'model')"),
        ("run", DELETED, "hub/config.json: damaged model folder (no 'run')"),
        ("run", [], "hub/config.json: damaged model folder (run is [], not a record)"),
        ("run", None, "hub/config.json: damaged model folder (run is None, not a record)"),
        ("run.progress", [], "hub/config.json: damaged model folder (run: progress is [], not a record)"),
        ("run.progress", None, "hub/config.json: damaged model folder (run: progress is None, not a record)"),
        ("run.config", "fast", "hub/config.json: damaged model folder (run: config is 'fast', not a record)"),
    ],
)
def test_a_model_folder_whose_config_json_lacks_a_part_or_holds_one_of_another_type_names_it(
    tmp_path, field, value, said
):
    """config.json without `model` or `run` was "damaged model folder (KeyError)"; a `run` or its `progress`
    given as a list or null, Python's own words ("TypeError: list indices must be integers or slices"):
    the field is named, with what is wrong with it, as a .pt's damage is."""
    hub = tmp_path / "hub"
    checkpoint.write_model_folder(checkpoint.read(run_of(model_of(), tmp_path / "run") / "best.pt"), hub)
    config = json.loads((hub / "config.json").read_text(encoding="utf-8"))
    edited_config(config, field, value)
    (hub / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(charlm.CharLMError) as refused:
        charlm.load(hub)
    assert str(refused.value) == f"{tmp_path / said}; export it again from its run"


@pytest.mark.parametrize(
    "field, value, said",
    [
        ("tokenizer", 3, "tokenizer is 3, not 'char' or 'sentencepiece'"),
        ("tokenizer", "chars", "tokenizer is 'chars', not 'char' or 'sentencepiece'"),
        ("model", "xx", "model is 'xx', a sentencepiece vocabulary's field in a character vocabulary"),
    ],
)
def test_a_vocab_json_of_an_older_export_with_a_field_of_another_tokenizer_is_damage(tmp_path, field, value, said):
    """Without config.json's sha256 record (an export older than it), a vocab.json edited to `"tokenizer": 3`
    or given a sentencepiece model's `"model"` loaded as a plain character model: it is damage, named."""
    hub = tmp_path / "hub"
    checkpoint.write_model_folder(checkpoint.read(run_of(model_of(), tmp_path / "run") / "best.pt"), hub)
    config = json.loads((hub / "config.json").read_text(encoding="utf-8"))
    del config["sha256"]
    (hub / "config.json").write_text(json.dumps(config), encoding="utf-8")
    vocab = json.loads((hub / "vocab.json").read_text(encoding="utf-8"))
    (hub / "vocab.json").write_text(json.dumps({**vocab, field: value}), encoding="utf-8")
    with pytest.raises(charlm.CharLMError) as refused:
        charlm.load(hub)
    assert str(refused.value) == (
        f"{hub / 'vocab.json'}: damaged model folder (the vocabulary is damaged: {said}); export it again from its run"
    )
    (hub / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    assert charlm.load(hub).vocab.chars == model_of().vocab.chars  # the same folder, its vocab.json as exported


@pytest.fixture(scope="module")
def exported_once(tmp_path_factory) -> Path:
    """A model folder of a tiny adaptive-head model (it has head.rank), written once for the tests that
    edit a copy of it (`edited_copy`)."""
    folder = tmp_path_factory.mktemp("exported") / "hub"
    run = run_of(model_of(chars=CHINESE, cutoffs=(8,)), folder.parent / "run")
    checkpoint.write_model_folder(checkpoint.read(run / "best.pt"), folder)
    return folder


def edited_copy(exported: Path, tmp_path: Path, name: str, edit, keep_sha256: bool = False) -> Path:
    """A copy of the model folder `exported` whose file `name` (a JSON file, or the weights as a dict of
    tensors) `edit` changed in place; config.json's sha256 record removed, as an export older than it
    holds none, unless `keep_sha256` (an edit to the record itself)."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "hub"
    shutil.copytree(exported, folder)
    if name == hub.WEIGHTS:
        weights = load_file(folder / name)
        edit(weights)
        save_file(weights, folder / name, metadata={"format": hub.FORMAT})
    else:
        data = json.loads((folder / name).read_text(encoding="utf-8"))
        edit(data)
        (folder / name).write_text(json.dumps(data), encoding="utf-8")
    config = json.loads((folder / hub.CONFIG).read_text(encoding="utf-8"))
    if not keep_sha256:
        del config["sha256"]
    (folder / hub.CONFIG).write_text(json.dumps(config), encoding="utf-8")
    return folder


def assert_refused_everywhere(folder: Path, said: str) -> None:
    """`said`, the whole one-line error, from charlm.load and from sample, info and eval."""
    with pytest.raises(charlm.CharLMError) as refused:
        charlm.load(folder)
    assert str(refused.value) == said
    (text := folder.parent / "text.txt").write_text(CHINESE, encoding="utf-8")
    for command in (["sample", str(folder), "--length", "3"], ["info", str(folder)], ["eval", str(folder), str(text)]):
        result = cli(*command)
        assert_one_line_error(result, said)


def test_a_model_folder_s_description_and_vocabulary_are_read_once(exported_once, monkeypatch):
    """read_model_folder read config.json's model and vocab.json to name the file at fault, then
    Checkpoint._build read both again: a sentencepiece vocabulary's model was loaded twice a load."""
    read = []
    for kind in (ModelConfig, Vocab):
        real = kind.from_dict
        monkeypatch.setattr(kind, "from_dict", lambda data, real=real, kind=kind: read.append(kind) or real(data))
    checkpoint.read_model_folder(exported_once)
    assert sorted(kind.__name__ for kind in read) == ["ModelConfig", "Vocab"]


@pytest.mark.parametrize(
    "edit, said",
    [
        (lambda vocab: vocab.update(chars=""), "chars is empty"),
        (
            lambda vocab: vocab.update(chars=vocab["chars"][:-1] + "一"),
            f"chars holds {CHINESE[0]!r} twice",
        ),
        (lambda vocab: vocab.update(unknown="no"), "unknown is 'no', not true or false"),
        (lambda vocab: vocab.update(characters=vocab.pop("chars")), "no 'chars'"),
        (lambda vocab: [vocab.pop("chars"), vocab.pop("normalize")], "no 'chars', 'normalize'"),
    ],
    ids=["empty", "a character twice", "unknown a string", "chars renamed", "two keys lost"],
)
def test_a_vocab_json_edited_by_hand_is_named_with_its_field(exported_once, tmp_path, edit, said):
    """vocab.json's damage was said of the folder alone (`DIR: damaged model folder (the vocabulary is
    damaged: ...)`), naming no file; emptied, as `the vocabulary is empty: the corpus has no characters`,
    which sends the user to a corpus; a key renamed, as `expected chars, unknown and normalize`."""
    folder = edited_copy(exported_once, tmp_path, hub.VOCAB, edit)
    assert_refused_everywhere(
        folder,
        f"{folder / hub.VOCAB}: damaged model folder (the vocabulary is damaged: {said}); export it again from its run",
    )


@pytest.mark.parametrize(
    "record, said",
    [
        ("zz", "sha256 is 'zz', not the record of the sha256 of model.safetensors and vocab.json"),
        (None, "sha256 is None, not the record of the sha256 of model.safetensors and vocab.json"),
        ({"model.safetensors": "zz"}, "sha256 of model.safetensors is 'zz', not 64 hex digits"),
        ({"vocab.json": "0" * 64}, "sha256 has no 'model.safetensors'"),
        ({}, "sha256 has no 'model.safetensors', 'vocab.json'"),
    ],
)
def test_a_sha256_record_edited_by_hand_is_refused_not_skipped(exported_once, tmp_path, record, said):
    """config.json's `sha256` edited to something other than the record charlm writes ("zz", null) was read
    as an export older than the record, so the check that the three files are of one export was skipped
    without a word; a digest edited within it was searched for 2 s as a re-export midway. An export older
    than the record has no `sha256` at all (tests/data/compat/model-2709826), and still loads."""

    def edit(config: dict) -> None:
        kept = config["sha256"] if record else {}  # {}: the record emptied
        config["sha256"] = {**kept, **record} if isinstance(record, dict) else record
        if "vocab.json" in (record or {}):
            del config["sha256"]["model.safetensors"]

    folder = edited_copy(exported_once, tmp_path, hub.CONFIG, edit, keep_sha256=True)
    started = time.monotonic()
    assert_refused_everywhere(
        folder, f"{folder / hub.CONFIG}: damaged model folder ({said}); export it again from its run"
    )
    assert time.monotonic() - started < 1.5  # said at once, not read again for REREAD_WAITS' 2 s


@pytest.mark.parametrize(
    "field, value, said",
    [
        ("model.layers", "2", "the model description is damaged: layers must be an integer from 1 to 64, not '2'"),
        ("model.hidden", 24.0, "the model description is damaged: hidden must be an integer from 1 to 16384, not 24.0"),
        ("model.cell", "LSTM", "the model description is damaged: unknown cell 'LSTM' (one of lstm, gru, rnn)"),
        ("model.dropout", DELETED, "the model description is damaged: no 'dropout'"),
        ("run.device", 3, "device is 3, not a string"),
        ("run.corpus", DELETED, "no 'corpus'"),
        ("run.progress.step", "10", "progress: step is '10', not an integer"),
        ("run.progress.stpe", 10, f"progress: unknown field stpe (did you mean step?); known: {PROGRESS_FIELDS}"),
        ("run.base", {"run": "base"}, "base: no 'path', 'sha256', 'vocab_size'"),
        ("run.config.lr", "x", "run options: lr must be a number, not 'x'"),
    ],
)
def test_a_config_json_field_edited_by_hand_names_config_json(exported_once, tmp_path, field, value, said):
    """A config.json field of the wrong type or removed was said of the folder alone (`DIR: damaged model
    folder (device is 3, not a string)`), or as a mismatch with the weights (`config.json has layers '2' but
    model.safetensors holds weights of layers 2`): the file is named, and what is wrong with its field. A
    field added to a record or lost from it was Python's TypeError (`Progress.__init__() got an unexpected
    keyword argument`); a run option, named as the flag `charlm` takes (`--lr`), not as the file spells it."""
    folder = edited_copy(exported_once, tmp_path, hub.CONFIG, lambda config: edited_config(config, field, value))
    assert_refused_everywhere(
        folder, f"{folder / hub.CONFIG}: damaged model folder ({said}); export it again from its run"
    )


@pytest.mark.parametrize(
    "edit, said",
    [
        (
            lambda weights: weights.update({"embed.weight": weights["embed.weight"].long()}),
            "embed.weight is not a tensor of torch.float32",
        ),
        (lambda weights: weights.update(embedding=weights.pop("embed.weight")), "embed.weight missing"),
        (
            lambda weights: weights["core.bias_hh_l0"].fill_(float("nan")),
            "core.bias_hh_l0 holds NaN or infinite values",
        ),
    ],
    ids=["dtype", "renamed", "nan"],
)
def test_a_weight_edited_by_hand_names_model_safetensors(exported_once, tmp_path, edit, said):
    """A weight of another dtype, renamed or not finite was said of the folder alone, as `weights: ...`."""
    folder = edited_copy(exported_once, tmp_path, hub.WEIGHTS, edit)
    assert_refused_everywhere(
        folder, f"{folder / hub.WEIGHTS}: damaged model folder ({said}); export it again from its run"
    )


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "vocab.json"])
def test_a_model_folder_missing_one_of_its_files_is_damaged_not_a_run_to_train_into(tmp_path, name):
    run = run_of(model_of(), tmp_path / "run")
    cli("export", str(run), "--format", "safetensors", "--output", str(tmp_path / "hub"))
    (tmp_path / "hub" / name).unlink()  # half copied, or one file lost on the way from a model hub
    with pytest.raises(charlm.CharLMError) as refused:
        charlm.load(tmp_path / "hub")
    assert str(refused.value) == (
        f"{tmp_path / 'hub'}: damaged model folder ({name} is missing); export it again from its run"
    )


def test_a_model_folder_missing_its_weights_is_a_damaged_model_to_eval_not_a_folder_of_texts(tmp_path):
    """`charlm eval DIR FILE` (and DIR among FILES, or as --eval-also) took a model folder that lost its
    model.safetensors for a folder of texts to score: `DIR: folder holds no .txt files`, which sends the
    user looking for texts, not for the weights file that is missing."""
    run = run_of(model_of(), tmp_path / "run")
    hub = tmp_path / "hub"
    cli("export", str(run), "--format", "safetensors", "--output", str(hub))
    (hub / "model.safetensors").unlink()
    (text := tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    said = f"{hub}: damaged model folder (model.safetensors is missing); export it again from its run"
    assert_one_line_error(cli("eval", str(hub), str(text)), said)
    assert_one_line_error(cli("eval", str(run), str(hub)), said)
    with pytest.raises(charlm.CharLMError, match=r"model\.safetensors is missing"):
        runtext.eval_also_run(str(hub))


@pytest.mark.parametrize(
    "field, edited, weights",
    [("layers", 1, 2), ("layers", 3, 2), ("hidden", 48, 24), ("cell", "gru", "'lstm'")],
    ids=["fewer layers", "more layers", "hidden", "cell"],
)
def test_a_model_folder_whose_config_json_was_edited_names_the_field_its_weights_do_not_match(
    tmp_path, field, edited, weights
):
    """A model folder's config.json edited to fewer `layers` than its weights hold read as "an experiment's
    model of its own (api.ModelBuilder); load it with the code that trained it", naming neither the folder
    (charlm info) nor the field; more layers or another hidden as a missing weight or a shape."""
    run = run_of(model_of(), tmp_path / "run")
    hub = tmp_path / "hub"
    assert cli("export", str(run), "--format", "safetensors", "--output", str(hub)).exit_code == 0
    config = json.loads((hub / "config.json").read_text(encoding="utf-8"))
    config["model"][field] = edited
    (hub / "config.json").write_text(json.dumps(config), encoding="utf-8")
    said = (
        f"{hub}: damaged model folder (config.json has {field} {edited!r} but model.safetensors holds weights of "
        f"{field} {weights}: they do not match); export it again from its run"
    )
    assert_one_line_error(cli("info", str(hub)), said)
    assert_one_line_error(cli("sample", "--checkpoint", str(hub), "--length", "5"), said)


@pytest.mark.parametrize(
    "cutoffs, edited", [((8,), [5]), ((8,), [8, 20]), ((8,), []), ((), [8])], ids=["moved", "added", "removed", "full"]
)
def test_a_model_folder_whose_config_json_head_cutoffs_were_edited_names_the_field(tmp_path, cutoffs, edited):
    """config.json's `head_cutoffs` edited was blamed on the weights (`DIR/model.safetensors: damaged model
    folder (head.softmax.head.weight has shape [10, 24], the architecture's is [7, 24])`, or `head.rank
    missing`), which are as exported: the head's shapes say its cutoffs, as the core's say `layers`."""
    hub = tmp_path / "hub"
    run = run_of(model_of(chars=CHINESE, cutoffs=cutoffs), tmp_path / "run")
    checkpoint.write_model_folder(checkpoint.read(run / "best.pt"), hub)
    config = json.loads((hub / "config.json").read_text(encoding="utf-8"))
    config["model"]["head_cutoffs"] = edited
    (hub / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert_refused_everywhere(
        hub,
        f"{hub}: damaged model folder (config.json has head_cutoffs {edited} but model.safetensors holds weights "
        f"of head_cutoffs {list(cutoffs)}: they do not match); export it again from its run",
    )


@pytest.mark.parametrize("change", [3, -1])
def test_a_model_folder_whose_config_json_vocab_size_was_edited_names_the_field_and_vocab_json(tmp_path, change):
    """A config.json edited to another `vocab_size` was refused in the words meant for a Python caller of
    charlm.CharLM ("config.vocab_size is 30 ... (model.config with model.vocab)"), naming no file of the
    folder: it is named as `layers` is, against the vocabulary vocab.json holds."""
    hub = tmp_path / "hub"
    checkpoint.write_model_folder(checkpoint.read(run_of(model_of(), tmp_path / "run") / "best.pt"), hub)
    config = json.loads((hub / "config.json").read_text(encoding="utf-8"))
    size = config["model"]["vocab_size"]
    config["model"]["vocab_size"] = size + change
    (hub / "config.json").write_text(json.dumps(config), encoding="utf-8")
    said = (
        f"{hub}: damaged model folder (config.json has vocab_size {size + change} but vocab.json holds {size} ids: "
        "they do not match); export it again from its run"
    )
    assert_one_line_error(cli("info", str(hub)), said)
    with pytest.raises(charlm.CharLMError) as refused:
        charlm.load(hub)
    assert str(refused.value) == said


def two_runs(tmp_path: Path) -> list[Checkpoint]:
    """Two runs whose model folders differ in every file (weights, the vocabulary's order, corpus) but not
    in shapes: a folder that mixes them loads without a word, and writes garbage."""
    first = model_of()
    torch.manual_seed(4)
    second = CharLM(first.config, Vocab(first.vocab.chars[::-1]))
    runs_ = [run_of(first, tmp_path / "first", "first"), run_of(second, tmp_path / "second", "second")]
    return [checkpoint.read(run / "best.pt") for run in runs_]


def exported(saved: Checkpoint, folder: Path) -> tuple[bytes, ...]:
    """The three files of `saved`'s model folder, exported into `folder`."""
    checkpoint.write_model_folder(saved, folder)
    return folder_files(folder)


def folder_files(folder: Path) -> tuple[bytes, ...]:
    return tuple((folder / name).read_bytes() for name in (hub.WEIGHTS, hub.CONFIG, hub.VOCAB))


def test_two_exports_into_one_folder_at_once_leave_one_of_them_whole(tmp_path):
    """Two exports of two runs into one folder at once (two scripts, two terminals) renamed their files
    in by turns: one run's weights beside the other's config and vocabulary. Two exporter processes,
    released at once in each of 12 rounds; after each the folder is one run's export, byte for byte."""
    models, rounds = two_runs(tmp_path), 12
    whole = [exported(saved, tmp_path / f"alone-{i}") for i, saved in enumerate(models)]
    sources = [str(tmp_path / f"alone-{i}") for i in range(2)]
    folder = tmp_path / "hub"
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(3)
    exporters = [
        spawn.Process(target=export_in_rounds, args=(source, str(folder), rounds, barrier, seed))
        for seed, source in enumerate(sources)
    ]
    for exporter in exporters:
        exporter.start()
    try:
        for round_ in range(rounds):
            barrier.wait(timeout=120)  # both exporters released
            barrier.wait(timeout=120)  # both done
            one_export = folder_files(folder) in whole  # a bool, so that a failure is not three files' bytes
            assert one_export, f"round {round_}: the folder mixes the two runs' files"
    except BaseException:
        barrier.abort()  # the exporters waiting for the next round end
        raise
    finally:
        for exporter in exporters:
            exporter.join(timeout=60)
    assert [exporter.exitcode for exporter in exporters] == [0, 0]
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "vocab.json"]  # no lock left


def test_a_model_folder_read_while_it_is_exported_again_reads_as_one_export(tmp_path):
    """A reader (charlm.load, sample, serve, --init-from) that read a model folder while a re-export
    renamed its files in got the new vocabulary with the old weights, and --init-from recorded the digest
    of weights it had not read. Here one process exports two runs into the folder by turns while this
    one reads it in a loop: every read is one run's export, whole, with its weights' digest."""
    models = two_runs(tmp_path)
    digests = [
        hashlib.sha256(exported(saved, tmp_path / f"alone-{i}")[0]).hexdigest() for i, saved in enumerate(models)
    ]
    folder = tmp_path / "hub"
    checkpoint.write_model_folder(models[0], folder)
    spawn = multiprocessing.get_context("spawn")
    started = spawn.Event()
    sources = [str(tmp_path / f"alone-{i}") for i in range(2)]
    reads_counted = spawn.Value("i", 0)
    exporter = spawn.Process(target=export_by_turns, args=(sources, str(folder), 20, started, reads_counted, 10))
    exporter.start()
    reads = 0
    try:
        assert started.wait(timeout=120)
        while exporter.is_alive():
            if reads % 2:
                loaded = charlm.load(folder)
                vocab, weights, corpus, digest = loaded.vocab, loaded.state_dict(), None, None
            else:
                saved, digest, _ = checkpoint.read_with_digest(folder / hub.WEIGHTS)
                vocab, weights, corpus = saved.vocab, saved.weights, saved.corpus["name"]
            i = 0 if vocab.chars == models[0].vocab.chars else 1
            assert vocab.chars == models[i].vocab.chars
            mixed = f"read {reads}: the vocabulary of one export, and not"
            assert all(torch.equal(weights[name], models[i].weights[name]) for name in weights), f"{mixed} its weights"
            assert corpus in (None, models[i].corpus["name"]), f"{mixed} its run record"
            assert digest in (None, digests[i]), f"{mixed} its weights' digest"
            reads += 1
            reads_counted.value = reads
    finally:
        exporter.join(timeout=60)
    assert exporter.exitcode == 0 and reads >= 10, reads


KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from charlm import checkpoint, files
rename = files.replace
def rename_then_die(source, target):
    rename(source, target)
    os.kill(os.getpid(), signal.SIGKILL)  # config.json renamed in, vocab.json and the weights not yet
files.replace = rename_then_die
checkpoint.write_model_folder(checkpoint.read_model_folder(Path(sys.argv[1]))[0], Path(sys.argv[2]))
"""


def test_a_reexport_killed_between_its_renames_leaves_a_folder_that_reads_as_that_export(tmp_path):
    """`kill -9` during `charlm export --format safetensors` into an earlier export, between its renames,
    left the new config.json beside the old weights: the folder read as neither export, damaged, and the
    earlier one was lost. The killed export's other files are whole beside them, as its temporaries."""
    models = two_runs(tmp_path)
    new = exported(models[1], tmp_path / "alone")
    exported(models[0], tmp_path / "hub")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(tmp_path / "alone"), str(tmp_path / "hub")],
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    saved, digest, _ = checkpoint.read_with_digest(tmp_path / "hub" / hub.WEIGHTS)
    assert saved.vocab.chars == models[1].vocab.chars and digest == hashlib.sha256(new[0]).hexdigest()
    assert all(torch.equal(saved.weights[name], models[1].weights[name]) for name in saved.weights)


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the OS does not say when a process started")
def test_a_link_named_as_a_killed_exports_temporary_is_not_read(tmp_path, monkeypatch):
    """A damaged folder's leftovers of a killed export were read through a link named as one: its target
    (/etc/passwd, a file of gigabytes, another folder's vocab.json) was read whole, and one whose bytes
    matched made the folder load. An export writes its temporaries as files; a link is someone else's."""
    models = two_runs(tmp_path)
    exported(models[1], tmp_path / "other")
    exported(models[0], tmp_path / "hub")
    monkeypatch.setattr(hub, "REREAD_WAITS", ())
    vocab = tmp_path / "hub" / hub.VOCAB
    (tmp_path / "whole-vocab.json").write_bytes(vocab.read_bytes())
    vocab.write_bytes((tmp_path / "other" / hub.VOCAB).read_bytes())
    killed = f".{hub.VOCAB}.tmp-{os.getpid()}-1"  # this PID, started 1 tick after boot: a dead process's
    (tmp_path / "hub" / killed).symlink_to(tmp_path / "whole-vocab.json")
    assert_one_line_error(cli("sample", str(tmp_path / "hub")), "vocab.json is not the file its config.json")
    (tmp_path / "hub" / killed).unlink()
    (tmp_path / "hub" / killed).write_bytes((tmp_path / "whole-vocab.json").read_bytes())
    assert charlm.load(tmp_path / "hub").vocab.chars == models[0].vocab.chars  # a file left so is read


def test_a_model_folder_of_two_exports_is_a_one_line_error_and_an_older_one_loads(tmp_path, monkeypatch):
    """A folder whose vocab.json is another export's (copied in by hand, or mixed by an older charlm's two
    exports at once) is refused once reading again finds it so still; an export from before config.json
    recorded its files' sha256 loads as it did."""
    models = two_runs(tmp_path)
    exported(models[1], tmp_path / "other")
    exported(models[0], tmp_path / "hub")
    monkeypatch.setattr(hub, "REREAD_WAITS", (0.0,))
    (tmp_path / "hub" / hub.VOCAB).write_bytes((tmp_path / "other" / hub.VOCAB).read_bytes())
    result = cli("sample", "--checkpoint", str(tmp_path / "hub"))
    assert_one_line_error(result, "damaged model folder (vocab.json is not the file its config.json was exported")
    config = json.loads((tmp_path / "hub" / hub.CONFIG).read_text(encoding="utf-8"))
    del config["sha256"]
    (tmp_path / "hub" / hub.CONFIG).write_text(json.dumps(config), encoding="utf-8")
    assert charlm.load(tmp_path / "hub").vocab.chars == models[1].vocab.chars  # read as it is, as before


def onnx_session(path: Path):
    ort = import_or_missing("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(
    ("cell", "chars", "cutoffs"), [("lstm", TEXT, ()), ("gru", CHINESE, (8, 20)), ("rnn", TEXT, ())]
)
def test_onnx_logits_equal_torch_whole_and_stepped(tmp_path, cell, chars, cutoffs):
    import_or_missing("onnx")
    model = model_of(cell, chars, cutoffs)
    run = run_of(model, tmp_path / "run")
    result = cli("export", str(run), "--format", "onnx", "--output", str(tmp_path / "m.onnx"))
    assert result.exit_code == 0, result.output
    session = onnx_session(tmp_path / "m.onnx")
    text = (chars * 20)[:300]
    ids = model.vocab.encode(text).unsqueeze(0).numpy()
    expected = logits(model, text).numpy()
    names = ["h0", "c0"] if cell == "lstm" else ["h0"]
    zeros = {name: np.zeros((2, 1, 24), np.float32) for name in names}
    whole = session.run(None, {"ids": ids, **zeros})
    assert whole[0].shape == (1, 300, len(model.vocab)) and np.abs(whole[0][0] - expected).max() < 1e-4
    state, stepped = zeros, []
    for t in range(ids.shape[1]):
        out = session.run(None, {"ids": ids[:, t : t + 1], **state})
        stepped.append(out[0][0, 0])
        state = dict(zip(names, out[1:]))
    assert np.abs(np.stack(stepped) - expected).max() < 1e-4
    batch = session.run(
        None, {"ids": np.repeat(ids[:, :50], 3, 0), **{n: np.zeros((2, 3, 24), np.float32) for n in names}}
    )
    assert np.abs(batch[0][2] - expected[:50]).max() < 1e-4  # batch is dynamic too


def test_an_onnx_export_leaves_nothing_in_the_temp_folder(tmp_path, monkeypatch):
    """onnxruntime's telemetry, on by default, wrote a session file (.ses) into the temp folder of every
    process that imported it: `charlm export --format onnx`, which loads the model in it as a check,
    left one there that the user never asked for. A process of its own: onnxruntime reads it as it loads."""
    import_or_missing("onnxruntime")
    run = run_of(model_of(), tmp_path / "run")
    (temp := tmp_path / "temp").mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.delenv(onnx_export.TELEMETRY_OFF, raising=False)
    result = run_cli("export", str(run), "--format", "onnx", "--output", str(tmp_path / "m.onnx"))
    assert result.returncode == 0, result.stderr
    left = sorted(path.name for path in temp.iterdir())
    assert [name for name in left if not name.startswith("torchinductor_")] == []  # torch's cache is torch's


def test_onnx_without_the_export_extra_is_a_one_line_error(tmp_path, monkeypatch):
    run = run_of(model_of(), tmp_path / "run")
    block_import(monkeypatch, "onnxruntime")
    assert_one_line_error(cli("export", str(run), "--format", "onnx"), "pip install 'charlm[export]'")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--format", "pdf"], ["--format pdf", "html, onnx, safetensors"]),
        (["--format", "onnx", "--weights", "int8"], ["--weights", "html only"]),
        (["--format", "html", "--weights", "fp8"], ["--weights fp8", "fp32, fp16, int8"]),
    ],
)
def test_bad_export_options_are_one_line_errors(tmp_path, args, fragments):
    run = run_of(model_of(), tmp_path / "run")
    assert_one_line_error(cli("export", str(run), *args), *fragments)


@pytest.mark.parametrize(("format_", "output"), [("html", "m.html"), ("onnx", "m.onnx"), ("safetensors", "m")])
def test_an_export_to_a_full_disk_keeps_the_earlier_export_and_says_what_to_do(tmp_path, format_, output):
    """On a full disk (a file size limit here) an export cut the earlier file short, leaving the first
    bytes of a page or model that a browser or onnxruntime takes for whole, and said `Error: file: File
    too large`; safetensors printed a traceback."""
    if format_ == "onnx":
        import_or_missing("onnxruntime")
    run = run_of(model_of(), tmp_path / "run")
    assert cli("export", str(run), "--format", format_, "--output", output).exit_code == 0
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    with file_size_limit(4000):
        result = cli("export", str(run), "--format", format_, "--output", output)
    assert_one_line_error(result, f"--output {output}: cannot write (File too large); free space on its disk")
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()} == before


@pytest.mark.parametrize(
    "command",
    [
        ["export", "--format", "html", "--output", "/proc/x"],
        ["export", "--format", "safetensors", "--output", "/proc/x/model"],
        ["sample", "--length", "5", "--output", "/proc/sample.txt"],
    ],
    ids=["page-into-proc", "model-folder-into-proc", "sample-into-proc"],
)
def test_an_output_where_no_folder_can_hold_it_says_to_write_into_one_that_can(tmp_path, command):
    """`charlm export RUN --output /proc/x` (a folder that cannot hold files) or `charlm sample --output
    /proc/x.txt` said `cannot write (No such file or directory)`, without what to do. (A folder that is
    only missing is made: `test_every_output_makes_its_missing_folders`.)"""
    if "/proc" in command[-1] and not Path("/proc/self").is_dir():
        pytest.skip("no /proc, whose folders hold no files")
    run = run_of(model_of(), tmp_path / "run")
    name, *options = command
    assert_one_line_error(
        cli(name, str(run), *options),
        f"--output {options[-1]}: cannot write (No such file or directory); no folder there can hold it: write into "
        "a folder that exists and is writable",
    )


@pytest.mark.parametrize(
    "command",
    [["sample", "--length", "5"], ["export", "--format", "html"], ["export", "--format", "onnx"]],
    ids=["sample", "export-html", "export-onnx"],
)
def test_every_output_makes_its_missing_folders(tmp_path, command):
    """`charlm export --output missing/x.html` made the folder, `charlm sample --output missing/x.txt`
    refused: commands that write a file make its missing folders alike."""
    run = run_of(model_of(), tmp_path / "run")
    output = tmp_path / "missing" / "deeper" / "out"
    result = cli(command[0], str(run), *command[1:], "--output", str(output))
    assert result.exit_code == 0, result.output
    assert output.is_file() and output.stat().st_size > 0


def test_an_export_over_an_earlier_output_says_it_replaced_it(tmp_path):
    """As inspect and plot: a second `charlm export --output page.html` replaced the first page (perhaps
    another run's) and said only `wrote page.html`."""
    run = run_of(model_of(), tmp_path / "run")
    output = str(tmp_path / "page.html")
    assert cli("export", str(run), "--format", "html", "--output", output).output == f"wrote {output}\n"
    again = cli("export", str(run), "--format", "html", "--output", output).output
    assert again == f"wrote {output}, replacing the earlier {output} (give --output another name to keep both)\n"


def test_an_export_into_a_folder_of_hidden_files_alone_replaces_nothing_and_says_none(tmp_path):
    """A folder holding only an export's left lock, macOS's .DS_Store and a git clone's .git was taken for
    an export (hidden files are not the user's to lose), then said `replacing the earlier FOLDER`."""
    run = run_of(model_of(), tmp_path / "run")
    folder = tmp_path / "hub"
    (folder / ".git").mkdir(parents=True)
    (folder / hub.LOCK).touch()
    (folder / ".DS_Store").write_bytes(b"\0")
    result = cli("export", str(run), "--format", "safetensors", "--output", str(folder))
    assert result.output == f"wrote {folder}\n"
    assert (folder / ".DS_Store").read_bytes() == b"\0" and hub.holds_model(folder)


def export_while_held(run: Path, folder: Path, held_for: float):
    """`charlm export run --format safetensors --output folder` while a real process holds the folder's
    export lock, letting go `held_for` seconds after the export starts."""
    hold = "from charlm import hub; from pathlib import Path\nwith hub.one_export_at_a_time(Path({!r})): input()"
    holder = subprocess.Popen([sys.executable, "-c", hold.format(str(folder))], stdin=subprocess.PIPE, text=True)
    try:
        wait_for(folder / hub.LOCK, timeout=60)
        threading.Timer(held_for, holder.communicate, args=("\n",)).start()
        return cli("export", str(run), "--format", "safetensors", "--output", str(folder))
    finally:
        holder.kill()  # still holding only where the export failed at once
        holder.wait(timeout=60)


def test_an_export_into_a_new_folder_another_export_is_writing_waits_for_it(tmp_path):
    """Two first exports into one new folder at once: the second found the first's lock (and temporary
    files) there, no model yet, and was refused as a folder of other files. A real process holds the
    folder's export lock while `charlm export` starts: the export waits for it, then writes."""
    run = run_of(model_of(), tmp_path / "run")
    folder = tmp_path / "hub"
    folder.mkdir()  # as the first export's hub.put made it
    result = export_while_held(run, folder, 0.5)  # the holder lets go while the export waits
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "vocab.json"]


def test_an_export_waiting_for_another_export_into_its_folder_says_so_once(tmp_path, monkeypatch):
    """An export into a folder whose export lock another process held waited without a word, for as
    long as that process held it: a hang, to the user. A real process holds the lock; the export says
    once what it waits for, then writes when the holder lets go."""
    monkeypatch.setattr(hub, "WAIT_SAID", 0.1)
    run = run_of(model_of(), tmp_path / "run")
    folder = tmp_path / "hub"
    folder.mkdir()
    result = export_while_held(run, folder, 0.6)  # well after the export said it waits
    assert result.exit_code == 0, result.output
    assert result.stderr == f"waiting for another export into {folder} ...\n"
    assert result.stdout.startswith(f"wrote {folder}") and hub.holds_model(folder)


# In a process of its own: an export into the folder sys.argv[1], holding its lock while it writes its weights.
EXPORT_WRITING = """
import sys
from pathlib import Path
from charlm import files, hub
folder = Path(sys.argv[1])
with hub.one_export_at_a_time(folder):
    files.temporary(folder / hub.WEIGHTS).write_bytes(bytes(1 << 20))  # its weights, half written
    print("writing", flush=True)
    sys.stdin.readline()
"""


def test_an_export_records_its_own_files_while_another_export_writes_into_its_folder(tmp_path, monkeypatch):
    """Two exports into one folder at once: the first, its files in place, recorded in exports.jsonl the
    size of all the folder held, the second's weights half written there too (`charlm info` listed the
    model at the size of both; a clone's .git was counted as well), and a file the second renamed away
    while the first summed them would fail the finished export (`No such file or directory`). A real
    process exports into the folder, its lock taken the moment the first let it go; the first records its three."""
    run = run_of(model_of(), tmp_path / "run")
    folder = tmp_path / "hub"
    real_record, others = export.log_export, []

    def record_while_another_export_writes(*args) -> None:  # after the first let the lock go
        other = subprocess.Popen(
            [sys.executable, "-c", EXPORT_WRITING, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        others.append(other)
        assert other.stdout.readline() == "writing\n"
        real_record(*args)

    monkeypatch.setattr(export, "log_export", record_while_another_export_writes)
    try:
        result = cli("export", str(run), "--format", "safetensors", "--output", str(folder))
        assert result.exit_code == 0, result.output
        [row] = [json.loads(line) for line in (run / "exports.jsonl").read_text().splitlines()]
        assert row["bytes"] == sum((folder / name).stat().st_size for name in (hub.CONFIG, hub.VOCAB, hub.WEIGHTS))
    finally:
        for other in others:
            other.kill()
            other.wait(timeout=60)


def test_an_export_into_a_folder_on_a_file_system_without_locks_says_so(tmp_path, monkeypatch):
    """flock(2) fails with ENOLCK on an NFS mount without its lock service: an export said
    `--output m: cannot write (No locks available)`, with nothing to do about it, and then left the lock
    file it had made there, which no export removed (each is refused the lock)."""
    without_file_locks(monkeypatch)
    run = run_of(model_of(), tmp_path / "run")
    result = cli("export", str(run), "--format", "safetensors", "--output", str(tmp_path / "m"))
    expected = f"{tmp_path / 'm' / hub.LOCK}: cannot lock the model folder (No locks available)"
    assert_one_line_error(result, expected, "export into a folder on a local disk (--output)")
    assert sorted(path.name for path in (tmp_path / "m").iterdir()) == []


def test_a_safetensors_export_never_writes_over_a_folder_of_other_files(tmp_path):
    """`--output ~/project` wrote model.safetensors, config.json and vocab.json among the project's files,
    replacing its own config.json, and said `wrote ~/project, replacing the earlier ~/project`."""
    run = run_of(model_of(), tmp_path / "run")
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text("mine", encoding="utf-8")
    result = cli("export", str(run), "--format", "safetensors", "--output", str(project))
    assert_one_line_error(result, f"--output {project}: holds other files (config.json)", "a new or empty folder")
    assert [p.name for p in project.iterdir()] == ["config.json"] and (project / "config.json").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("export", str(run), "--format", "safetensors", "--output", str(empty)).output == f"wrote {empty}\n"
    again = cli("export", str(run), "--format", "safetensors", "--output", str(empty)).output  # an earlier export
    assert again.startswith(f"wrote {empty}, replacing the earlier {empty}")


def test_an_export_of_a_model_folder_leaves_the_folder_as_it_was(tmp_path):
    """`charlm export hub --format html` wrote exports/model.html and exports.jsonl inside the model folder
    hub/, which was then no longer the three files to upload to a model hub."""
    run = run_of(model_of(), tmp_path / "run")
    hub_folder = tmp_path / "hub"
    assert cli("export", str(run), "--format", "safetensors", "--output", str(hub_folder)).exit_code == 0
    model_files = sorted(p.name for p in hub_folder.iterdir())
    assert cli("export", str(hub_folder), "--format", "html").output == f"wrote {tmp_path / 'hub.html'}\n"
    assert sorted(p.name for p in hub_folder.iterdir()) == model_files  # beside it, not in it
    result = cli("export", str(hub_folder), "--format", "safetensors")
    assert_one_line_error(result, f"{hub_folder} is a safetensors model folder already; to copy it, give", "--output")
    # the run's own model folder (RUN/exports/model): its exports join the run's, listed by `charlm info`
    assert cli("export", str(run), "--format", "safetensors").exit_code == 0
    assert cli("export", str(run / "exports" / "model"), "--format", "html").exit_code == 0
    assert sorted(p.name for p in (run / "exports").iterdir()) == ["model", "model.html"]
    assert str((run / "exports" / "model.html").resolve()) in cli("info", str(run)).output


def test_an_export_beside_a_model_folder_says_it_replaced_an_earlier_file(tmp_path):
    """`charlm export hub --format html` writes hub.html beside the model folder, among the user's files:
    a second one replaced the first without a word, where an --output replaced says so. A run's own
    exports/ is its exports' place (`charlm info` lists them): replaced there as before, unsaid."""
    run = run_of(model_of(), tmp_path / "run")
    hub_folder = tmp_path / "hub"
    assert cli("export", str(run), "--format", "safetensors", "--output", str(hub_folder)).exit_code == 0
    page = tmp_path / "hub.html"
    assert cli("export", str(hub_folder), "--format", "html").output == f"wrote {page}\n"
    again = cli("export", str(hub_folder), "--format", "html").output
    assert again == f"wrote {page}, replacing the earlier {page} (give --output another name to keep both)\n"
    assert cli("export", str(run), "--format", "html").exit_code == 0
    assert cli("export", str(run), "--format", "html").output == f"wrote {run / 'exports' / 'model.html'}\n"


def test_an_export_after_a_record_cut_short_is_listed(tmp_path):
    """A record of exports.jsonl cut short (a full disk, a crash mid-write) had the next export's record
    glued onto it: `charlm info` listed neither."""
    run = run_of(model_of(), tmp_path / "run")
    (run / "exports.jsonl").write_text('{"format": "onnx", "pa', encoding="utf-8")
    assert cli("export", str(run), "--format", "html").exit_code == 0
    assert str((run / "exports" / "model.html").resolve()) in cli("info", str(run)).output


def test_unknown_run_is_a_one_line_error(tmp_path):
    assert_one_line_error(cli("export", str(tmp_path / "nowhere"), "--format", "html"), "no such checkpoint")


def test_info_lists_the_runs_exports(tmp_path):
    run = run_of(model_of(), tmp_path / "run")
    assert cli("export", str(run), "--format", "safetensors").exit_code == 0
    info = cli("info", str(run))
    assert info.exit_code == 0
    line = next(line for line in info.output.splitlines() if line.startswith("exports"))
    assert "safetensors" in line and str((run / "exports" / "model").resolve()) in line


def test_info_skips_damaged_lines_of_the_exports_log(tmp_path):
    """exports.jsonl may be cut short or edited by hand: `charlm info` lists the sound records and
    skips the rest, as `charlm runs` does with run.json, instead of ending in a traceback."""
    run = run_of(model_of(), tmp_path / "run")
    assert cli("export", str(run), "--format", "safetensors").exit_code == 0
    folder = str((run / "exports" / "model").resolve())
    damaged = [
        {"path": folder},
        {"path": 5, "format": "onnx", "bytes": 1},
        {"format": "html", "path": folder, "bytes": "x"},
        [1],
    ]
    with open(run / "exports.jsonl", "ab") as log:
        log.write(b"".join(json.dumps(row).encode() + b"\n" for row in damaged) + b"\xff{\n")
    info = cli("info", str(run))
    assert info.exit_code == 0, info.output
    assert [line.split()[1] for line in info.output.splitlines() if line.startswith("exports")] == ["safetensors"]


def test_an_export_record_a_full_disk_cut_short_loses_no_later_record(tmp_path):
    """exports.jsonl kept the first bytes of a record a full disk cut short, and the next export's
    record, once there was room, was glued onto them and lost with them: `charlm info` listed neither."""
    run = run_of(model_of(), tmp_path / "run")
    assert cli("export", str(run), "--format", "html").exit_code == 0
    log, page = run / "exports.jsonl", tmp_path / "page.html"
    page.write_text("<p>another export</p>", encoding="utf-8")
    with file_size_limit(log.stat().st_size + 10):
        export.log_export(run, "html", page, "fp16")  # best effort: no error, and no part of a record
    assert cli("export", str(run), "--format", "safetensors").exit_code == 0
    assert [line.split()[0] for line in export.listed(run)] == ["html", "safetensors"]


def test_the_exports_log_writes_a_chinese_path_as_text_one_record_a_line(tmp_path):
    """exports.jsonl wrote a Chinese run folder's path as \\u escapes; written as text, a U+2028 in
    it (which `str.splitlines` breaks a line at) stays escaped, and `charlm info` still reads it."""
    run = run_of(model_of(), tmp_path / "红楼梦\u2028甲")
    assert cli("export", str(run), "--format", "safetensors").exit_code == 0
    text = (run / "exports.jsonl").read_text(encoding="utf-8")
    assert "红楼梦\\u2028甲" in text and len(text.splitlines()) == 1, text
    info = cli("info", str(run)).output
    assert [line.split()[1] for line in info.splitlines() if line.startswith("exports")] == ["safetensors"], info


def docs_block(language: str, holding: str) -> str:
    """The first ```LANGUAGE block of docs/export.md that holds `holding`, as a user copies it."""
    docs = (REPO / "docs" / "export.md").read_text(encoding="utf-8")
    return next(block for block in docs.split(f"```{language}\n")[1:] if holding in block).split("```")[0]


def run_without(blocked: str, script: str, folder: Path) -> subprocess.CompletedProcess:
    """`script` in a Python process of its own in `folder`, where importing `blocked` fails."""
    script = f"import sys\nsys.modules[{blocked!r}] = None  # importing it now fails\n" + script
    return subprocess.run(
        [sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=120, check=False
    )


def run_without_charlm(script: str) -> subprocess.CompletedProcess:
    """`script` in a Python process of its own in this folder, where importing charlm fails: forked from one
    that has imported torch (`start_python`, ~2 s of CPU sooner), with every charlm module it had loaded made
    unimportable as well as the package (`from charlm.model import CharLM` finds a loaded module)."""
    unloaded = (
        "import sys\nsys.modules.update(dict.fromkeys([n for n in sys.modules if n.split('.')[0] == 'charlm']))\n"
    )
    process = start_python(unloaded + script)
    try:
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # when it ran past the timeout; nothing once it has ended
    return subprocess.CompletedProcess(["python", "-c", script], process.returncode, stdout, stderr)


def docs_onnx_example(seed: str, length: int, temperature: float, top_p: float) -> str:
    """docs/export.md's onnxruntime loop with its first line (the options) set to these."""
    example = docs_block("python", "onnxruntime")
    options = example.splitlines()[0]
    assert options.startswith("seed, length, temperature, top_p = "), options
    return example.replace(options, f"seed, length, temperature, top_p = {seed!r}, {length}, {temperature}, {top_p}", 1)


def test_the_docs_onnxruntime_example_samples_without_torch(tmp_path):
    import_or_missing("onnxruntime")
    run = run_of(model_of(), tmp_path / "run")
    assert cli("export", str(run), "--format", "onnx", "--output", str(tmp_path / "model.onnx")).exit_code == 0
    example = docs_block("python", "onnxruntime").replace('"ROMEO:"', '"the "')
    result = run_without("torch", example, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("the ") and len(result.stdout) == 4 + 200 + 1  # the seed, 200 characters, "\n"


@pytest.mark.parametrize(
    ("chars", "cutoffs", "normalize", "seed"),
    [
        (TEXT, (), "nfc", ""),
        (TEXT, (), "nfc", "the quick"),
        (CHINESE, (8, 20), "nfkc", "丁七，一\u212b"),
        (TEXT, (), "nfc", "the quick\r\nbrown"),
    ],
    ids=["empty-seed", "seed", "nfkc-unknown", "windows-line-break"],
)
def test_the_docs_onnxruntime_example_writes_what_charlm_sample_does(tmp_path, chars, cutoffs, normalize, seed):
    """The docs' loop crashed on an empty seed (IndexError: charlm starts at the beginning of a line), and on
    a seed charlm reads (KeyError): a character the vocabulary's normalization reads as one it knows (nfkc's
    "，" as ","), or one it never saw, which a model with the unknown symbol reads as that. It reads a seed as
    charlm does now, and greedy (temperature 0) or a top-p that keeps only the likeliest writes charlm's text.
    A seed with a Windows line break (`\\r\\n`, as charlm reads it: `\\n`) was a KeyError on its `\\r`."""
    import_or_missing("onnxruntime")
    torch.manual_seed(3)
    vocab = Vocab(sorted(set(unicodedata.normalize("NFKC", chars))), unknown=bool(cutoffs), normalize=normalize)
    model = CharLM(ModelConfig("lstm", 2, 24, 0.0, len(vocab), cutoffs), vocab).eval()
    run = run_of(model, tmp_path / "run")
    assert cli("export", str(run), "--format", "onnx", "--output", str(tmp_path / "model.onnx")).exit_code == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unknown character's note
        expected = sampler.generate(model, seed, length=60, greedy=True)[0]
    for temperature, top_p in ((0, 1.0), (1.0, 0.01)):
        result = run_without("torch", docs_onnx_example(seed, 60, temperature, top_p), tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected + "\n", (temperature, top_p)


def test_export_without_a_format_names_the_formats():
    """`charlm export RUN` without --format said only "Missing option '--format'": which ones exist was
    in --help alone."""
    assert_one_line_error(cli("export", "run"), "--format", *FORMATS)


def test_the_export_help_states_the_formats_precisions_and_default_the_export_takes(tmp_path):
    """`charlm export --help` wrote out html, onnx, safetensors, fp32, fp16, int8 and the page's default fp16,
    each also held by export_names.py or the export package: a format or default changed there would leave
    the help stating the old one. The help now reads them from export_names.py, which needs no torch."""
    helps = {param.name: param.help for param in export_command.params}
    assert all(name in helps["format_"] for name in FORMATS)
    assert all(name in helps["weights"] for name in export_names.WEIGHTS)
    assert f"[default: {export_names.HTML_WEIGHTS}]" in helps["weights"]
    run = run_of(model_of(), tmp_path / "run")
    assert cli("export", str(run), "--format", "html", "--output", str(tmp_path / "model.html")).exit_code == 0
    assert f"({export_names.HTML_WEIGHTS})" in export.listed(run)[0]


def test_info_does_not_wait_on_an_exports_log_that_is_a_named_pipe(tmp_path):
    """exports.jsonl that is a named pipe (a FIFO left there) held `charlm info` forever, waiting for a
    writer; run.json and metrics.jsonl were already read only when they are files. It lists no exports."""
    run = run_of(model_of(), tmp_path / "run")
    os.mkfifo(run / "exports.jsonl")
    listed = []
    reader = threading.Thread(target=lambda: listed.append(export.listed(run)), daemon=True)
    reader.start()
    reader.join(timeout=5)
    waited = reader.is_alive()
    if waited:  # let the waiting read end, so that the test ends
        os.close(os.open(run / "exports.jsonl", os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
    assert not waited, "export.listed waited for a writer to the named pipe"
    assert listed == [[]]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("name", ["config.json", "vocab.json"])
def test_a_model_folder_with_a_named_pipe_for_a_file_is_damaged_not_waited_on(tmp_path, name):
    """A model folder whose config.json (or vocab.json) is a named pipe held `charlm sample FOLDER`
    forever, waiting for a writer, as exports.jsonl once held `charlm info`."""
    run = run_of(model_of(), tmp_path / "run")
    folder = tmp_path / "hub"
    assert cli("export", str(run), "--format", "safetensors", "--output", str(folder)).exit_code == 0
    (folder / name).unlink()
    os.mkfifo(folder / name)
    results = []
    reader = threading.Thread(target=lambda: results.append(cli("sample", str(folder), "--length", "5")), daemon=True)
    reader.start()
    reader.join(timeout=5)
    waited = reader.is_alive()
    while reader.is_alive():  # let each waiting read end (a folder whose files do not match is read again)
        with contextlib.suppress(OSError):  # ENXIO: no reader is waiting just now
            os.close(os.open(folder / name, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=0.05)
    assert not waited, f"charlm sample waited for a writer to {name}, a named pipe"
    assert_one_line_error(
        results[0], f"{folder}: damaged model folder ({name} is a pipe, not a regular file); export it again"
    )
