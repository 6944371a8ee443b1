"""A run planned once: every unset option resolved by its rule, with the reason kept in run.json."""

import dataclasses
import json
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch

import charlm
from charlm import api, checkpoint, model, plan, runs, sizing
from charlm.config import Config
from charlm.errors import CharLMError
from charlm.tokens import load_corpus
from charlm.trainer import Trainer

from .conftest import assert_one_line_error, cli, latest, trained_once


def test_dropout_rises_with_the_passes_over_the_training_text():
    (few, low), (many, high) = plan.DROPOUT_RULE
    assert plan.fitted_dropout(0.0) == plan.fitted_dropout(few) == low
    assert plan.fitted_dropout(many) == plan.fitted_dropout(10 * many) == high
    between = [plan.fitted_dropout(few + (many - few) * k / 4) for k in range(5)]
    assert between == sorted(between) and len(set(between)) == 5


def test_the_budget_in_tokens_and_the_evaluation_cadence():
    config = Config(batch_size=16, seq_len=25, max_steps=15_000, max_time="256s")
    assert plan.planned_tokens(config, None) == 15_000 * 400
    assert plan.planned_tokens(config, 10_000.0) == 2_560_000  # the time budget ends first at this speed
    assert plan.fitted_dropout(6_000_000 / 130_000) == 0.5  # alice.txt read 46 times
    assert plan.eval_cadence(config, 130_000) == 325  # once per pass of 130,000 / 400 steps
    assert plan.fitted_dropout(5_000_000 / 1_000_000) == 0.1  # tinyshakespeare, 5 passes
    assert plan.eval_cadence(config, 1_000_000) == 2000
    assert plan.eval_cadence(config, 2_000) == 5


def test_a_small_text_is_evaluated_once_per_pass_however_small():
    """tangshi300's 24,866 training characters are 62 steps a pass: a 200-step floor evaluated every 3 passes."""
    config = Config(batch_size=16, seq_len=25)
    assert plan.eval_cadence(config, 24_866) == 62
    assert plan.eval_cadence(config, 100) == 1


def test_a_plan_leaves_nothing_unset_and_keeps_given_values(fox_file, tiny):
    # on the CPU, whatever the machine: a GPU's batch and precision have rules of their own (tested below)
    unset = {**tiny, "dropout": None, "eval_every": None, "batch_size": None, "hidden": None, "device": "cpu"}
    corpus = load_corpus([str(fox_file)], Config(**unset), quiet=True)
    planned = plan.plan(Config(**unset), corpus, out="run")
    assert all(getattr(planned.config, name) is not None for name in plan.PLANNED)
    assert planned.config.batch_size == sizing.DEFAULT_BATCH_SIZE == 16  # a CPU keeps the default batch
    assert (
        planned.config.hidden == sizing.CANDIDATES[0] and planned.run_dir == runs.CHECKPOINT_ROOT / "run"
    )  # 20 steps fit the smallest size
    assert set(planned.reasons) == {*plan.PLANNED, "head", "precision", "run_dir"}  # auto: chosen where used
    assert (
        planned.reasons["head"]
        == f"--head auto chose full: a vocabulary of {len(corpus.vocab)} characters (adaptive from 1,000)"
    )
    assert (
        planned.reasons["precision"].startswith("--precision auto chose ")
        and " on cpu: this CPU " in planned.reasons["precision"]
    )
    given_options = {**tiny, "dropout": 0.25, "eval_every": 70, "head": "full", "precision": "fp32"}
    given = plan.plan(Config(**given_options), corpus, out="given")
    assert (given.config.dropout, given.config.eval_every, given.config.batch_size) == (0.25, 70, 4)
    assert {given.reasons[name] for name in plan.PLANNED} == {plan.GIVEN}
    assert given.reasons["head"] == given.reasons["precision"] == plan.GIVEN
    assert pickle.loads(pickle.dumps(given)) == given  # one object, broadcast whole under torchrun
    with pytest.raises(charlm.CharLMError, match="leaves batch_size, hidden, dropout, eval_every unset"):
        plan.RunPlan(Config(), runs.CHECKPOINT_ROOT / "x", head_cutoffs=())


def test_a_cpu_plan_with_a_time_budget_keeps_batch_16(fox_file, tiny, monkeypatch):
    monkeypatch.setattr(sizing, "measure_sizes", lambda config, *args: (128, [sizing.Candidate(128, 1e5, 10, 1)]))
    options = {**tiny, "batch_size": None, "hidden": None, "max_steps": None, "max_time": "5m", "device": "cpu"}
    corpus = load_corpus([str(fox_file)], Config(**options), quiet=True)
    planned = plan.plan(Config(**options), corpus, out="run")
    assert planned.config.batch_size == 16 and "cpu" in planned.reasons["batch_size"]
    assert planned.config.hidden == 128 and planned.probed_chars_per_second == 1e5


def test_an_out_folder_that_holds_a_run_is_refused_before_the_size_is_measured(fox_file, tiny, monkeypatch):
    """The size probe takes seconds (ten and more on a busy machine) to end in `already holds a run`."""
    charlm.train(fox_file, out="run", **tiny)

    def measured(*args):
        raise AssertionError("the size was measured for a run that cannot start")

    monkeypatch.setattr(sizing, "measure_sizes", measured)
    options = {**tiny, "hidden": None, "max_steps": None, "max_time": "5m"}
    corpus = load_corpus([str(fox_file)], Config(**options), quiet=True)
    with pytest.raises(charlm.CharLMError, match="already holds a run"):
        plan.plan(Config(**options), corpus, out="run")


def test_on_a_gpu_the_batch_is_chosen_from_measured_speed(tmp_path, tiny, monkeypatch, capsys):
    """No GPU here: the plan is told it runs on cuda:0 and the probe answers from a fake speed table."""
    table = {16: 100_000.0, 32: 190_000.0, 64: 350_000.0, 128: 420_000.0, 256: 440_000.0}
    probed = []

    def fake_probe(self, hidden, batch=None):
        probed.append((hidden, batch))
        return table.get(batch, 1.0)

    monkeypatch.setattr(plan, "resolve_device", lambda *args: torch.device("cuda", 0))
    monkeypatch.setattr(sizing.Probe, "__call__", fake_probe)
    text = tmp_path / "long.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 2000, encoding="utf-8")
    options = {**tiny, "batch_size": None, "hidden": None, "max_steps": None, "max_time": "5m", "quiet": False}
    corpus = load_corpus([str(text)], Config(**options), quiet=True)
    planned = plan.plan(Config(**options), corpus, out="run")
    assert planned.config.batch_size == 128
    assert probed[:5] == [(sizing.BATCH_PROBE_HIDDEN, b) for b in (16, 32, 64, 128, 256)]
    assert {batch for _, batch in probed[5:]} == {128}  # the size is then fitted at the chosen batch
    assert "measured at --hidden 256" in planned.reasons["batch_size"]
    assert "batch_size=128: more streams gained less than 15% chars/s" in capsys.readouterr().err  # as Python writes
    # --batch-size always wins; a world size the candidates do not split over keeps 16.
    assert plan.plan(Config(**{**options, "batch_size": 8}), corpus, out="given").config.batch_size == 8
    probe, gpu = sizing.Probe(Config(**options), corpus, head_cutoffs=()), torch.device("cuda", 0)
    assert plan.planned_batch(Config(**options), gpu, probe, 3, say=str)[0] == 16


@pytest.mark.parametrize(
    ("max_steps", "passes"),
    [(10, "under a tenth of a pass"), (2_500, "about 0.1 passes")],  # 320 and 80,000 of 792,000 characters
)
def test_a_run_that_reads_a_sliver_of_its_text_says_so_in_words(tmp_path, tiny, max_steps, passes):
    """Not "fits about 0.0 passes" for a few steps over a long text, nor "fits 0.0004 passes": a figure that
    small means nothing to a reader, and dropout stays at its floor below 12 passes whatever it is."""
    long_file = tmp_path / "long.txt"
    long_file.write_text("the quick brown fox jumps over the lazy dog\n" * 20_000, encoding="utf-8")
    corpus = load_corpus([str(long_file)], Config(), quiet=True)
    options = {**tiny, "dropout": None, "max_steps": max_steps}
    reason = plan.plan(Config(**options), corpus, out="short").reasons["dropout"]
    assert reason == f"--dropout 0.1 fits {passes} over the training text"


def test_run_json_says_why_and_a_resume_fits_nothing_again(fox_file, tiny, monkeypatch):
    unset = {**tiny, "dropout": None, "eval_every": None, "batch_size": None, "device": "cpu"}  # the CPU's batch rule
    charlm.train(fox_file, out="run", **unset)
    info = json.loads((runs.CHECKPOINT_ROOT / "run" / runs.RUN_INFO).read_text())
    assert info["reasons"]["dropout"].startswith("--dropout 0.1 fits about")
    assert info["reasons"]["eval_every"].startswith("--eval-every 18: once per pass")  # 2,376 chars, 128 a step
    assert info["reasons"]["hidden"] == plan.GIVEN and "cpu" in info["reasons"]["batch_size"]
    assert info["config"]["batch_size"] == 16 and latest("run").config.dropout == 0.1
    assert info["config"]["patience"] == 5  # the early stop run.json records
    monkeypatch.setattr(plan, "decide", lambda *args: pytest.fail("a resumed run was planned again"))
    monkeypatch.setattr(sizing.Probe, "__call__", lambda *args: pytest.fail("a resumed run was probed"))
    trainer = api.resume_run("run", {"max_steps": 30})
    assert trainer.plan.reasons == info["reasons"] and trainer.config.dropout == 0.1
    trainer.fit()
    again = json.loads((runs.CHECKPOINT_ROOT / "run" / runs.RUN_INFO).read_text())
    assert again["reasons"] == info["reasons"]


def test_a_resume_in_another_precision_says_why_in_run_json(fox_file, tiny):
    """run.json kept the first start's reason for its precision: a run resumed with --precision fp32 said
    "--precision auto chose bf16 on cpu", which it no longer was; auto is chosen again on the resume's device."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10, "precision": "auto"})
    first = json.loads((runs.CHECKPOINT_ROOT / "run" / runs.RUN_INFO).read_text())["reasons"]["precision"]
    assert first.startswith("--precision auto chose ")
    path = runs.resolve("run", prefer=runs.LATEST)
    assert plan.resumed(checkpoint.read(path), {"max_steps": 20, "precision": "fp32"}, path).reasons["precision"] == (
        "given when resumed"
    )
    moved = plan.resumed(checkpoint.read(path), {"max_steps": 20, "device": "cpu"}, path).reasons["precision"]
    assert moved.startswith("--precision auto chose ") and " on cpu: " in moved


def test_the_head_reason_of_a_sentencepiece_run_counts_tokens(fox_file, tiny):
    """--head auto's rule counts the vocabulary's ids: a sentencepiece run's reason called its 287 pieces
    "287 distinct characters", of a text that has 28."""
    config = Config(**{**tiny, "tokenizer": "sentencepiece", "spm_model": "char", "vocab_size": 300})
    corpus = load_corpus([str(fox_file)], config, quiet=True)
    reason = plan.plan(config, corpus, out="pieces").reasons["head"]
    assert reason == f"--head auto chose full: a vocabulary of {len(corpus.vocab)} tokens (adaptive from 1,000)"


def test_the_model_is_built_with_the_head_the_plan_chose_and_gave_its_reason_for(fox_file, tiny, monkeypatch):
    """--head auto was settled twice, the plan's reason by one copy of the rule and the model by another: a
    rule changed between them (here, after planning) left run.json naming one head and the model holding
    another. The plan decides once; the trainer, under torchrun every rank, builds what it decided."""
    monkeypatch.setattr(model, "ADAPTIVE_MIN_VOCAB", 10)  # the fox's 28 characters: adaptive
    corpus = load_corpus([str(fox_file)], Config(**tiny), quiet=True)
    planned = plan.plan(Config(**tiny), corpus, out="run")
    monkeypatch.setattr(model, "ADAPTIVE_MIN_VOCAB", 1000)  # the rule now says full
    built = Trainer(planned, corpus).model
    assert planned.reasons["head"].startswith("--head auto chose adaptive: a vocabulary of 28 characters")
    assert built.config.head_cutoffs and built.config.head_cutoffs == planned.head_cutoffs


def many_characters_file(folder: Path, distinct: int = 1200) -> Path:
    """A text of `distinct` CJK characters, each more often the lower its code: --head auto's adaptive case."""
    path = folder / "many.txt"
    path.write_text("".join(chr(0x4E00 + i) * (1 + 30 // (i + 1)) for i in range(distinct)) * 2, encoding="utf-8")
    return path


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_an_adaptive_head_too_narrow_for_its_clusters_is_refused_saying_the_hidden_that_works(fox_file, tiny, cell):
    """`--head adaptive --hidden 8` trained with the rarest cluster's projection hidden // 4 // 4 = 0 wide, a
    cluster scored uniform whatever the context, and said only torch's "Initializing zero-element tensors is
    a no-op" (twice). The run is refused before anything is measured or claimed, naming the hidden size from
    which each cluster has a width; at that size the model is built without a word from torch."""
    options = {**tiny, "cell": cell, "head": "adaptive"}
    corpus = load_corpus([str(fox_file)], Config(**options), quiet=True)
    cutoffs = model.head_cutoffs("adaptive", torch.from_numpy(corpus.train_counts))
    narrowest = 4 ** len(cutoffs)
    with pytest.raises(CharLMError) as refused:
        plan.plan(Config(**{**options, "hidden": narrowest - 1}), corpus, out="narrow")
    assert str(refused.value) == (
        f"head='adaptive' needs hidden={narrowest} or more on this text: each of its {len(cutoffs)} rare clusters "
        f"is 4 times narrower than the one before, so at hidden={narrowest - 1} the rarest is 0 wide; give "
        f"hidden={narrowest} or more, or head='full'"
    )
    assert not (runs.CHECKPOINT_ROOT / "narrow").exists()
    planned = plan.plan(Config(**{**options, "hidden": narrowest}), corpus, out="wide")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built = Trainer(planned, corpus).model
    assert [tail[0].out_features for tail in built.head.softmax.tail][-1] == 1


def test_head_auto_chooses_a_full_head_where_the_hidden_size_is_too_narrow_for_an_adaptive_one(tmp_path, tiny):
    """--head auto gave a 1,200-character text at --hidden 8 an adaptive head whose rarest cluster was 0 wide,
    which the user never asked for: it chooses the full head there, and says why."""
    text = many_characters_file(tmp_path)
    corpus = load_corpus([str(text)], Config(**tiny), quiet=True)
    narrow = plan.plan(Config(**{**tiny, "hidden": 8}), corpus, out="narrow")
    assert narrow.head_cutoffs == ()
    assert narrow.reasons["head"] == (
        f"--head auto chose full: a vocabulary of {len(corpus.vocab):,} characters (adaptive from 1,000), but at "
        "--hidden 8 the rarest of its clusters would be 0 wide (adaptive from --hidden 16)"
    )
    wide = plan.plan(Config(**{**tiny, "hidden": 16}), corpus, out="wide")
    assert len(wide.head_cutoffs) == 2
    assert wide.reasons["head"].startswith(f"--head auto chose adaptive: a vocabulary of {len(corpus.vocab):,}")


NO_LIMIT = "give the run a limit: --max-steps N or --max-time DURATION"


@pytest.mark.parametrize(
    "words",
    [
        ["fox.txt"],
        ["missing.txt"],  # the text is not looked at
        ["fox.txt", "--out", "empty"],
    ],
)
def test_a_run_without_a_limit_is_refused_before_its_text_is_read(fox_file, words):
    """`charlm train big.txt --max-time none` prepared its corpus and wrote the cache (minutes for a big text)
    before it was told to give a limit: refused once what was given is checked, for the command line and
    Python alike."""
    (Path("checkpoints") / "empty").mkdir(parents=True)
    assert_one_line_error(cli("train", *words, "--max-time", "none", "--layers", "1", "--hidden", "16"), NO_LIMIT)
    with pytest.raises(CharLMError, match="^give the run a limit: max_steps=N or max_time=DURATION$"):
        charlm.train(words[0], max_time=None, out=(words[1:] or [None, None])[1])
    assert not Path("corpora").exists()


def test_a_run_with_a_bad_option_and_no_limit_is_told_of_the_bad_option_first():
    """Which option is wrong, or which run folder cannot be, is said before the limit that is missing."""
    assert_one_line_error(
        cli("train", "fox.txt", "--dropout", "2", "--max-time", "none"), "--dropout must be in [0, 1)"
    )
    assert_one_line_error(cli("train", "fox.txt", "--out", " ", "--max-time", "none"), "names no run folder of its own")


@pytest.fixture(scope="module")
def stepped_run(tmp_path_factory) -> Path:
    return trained_once(tmp_path_factory, "stepped") / runs.LATEST


def test_a_resume_left_without_a_limit_is_refused_before_its_text_is_read(stepped_run):
    """A run that had --max-time alone, resumed with --max-time none, read its text before it was refused."""
    saved = checkpoint.read(stepped_run)
    timed = dataclasses.replace(saved, config=dataclasses.replace(saved.config, max_steps=None, max_time="1h"))
    with pytest.raises(CharLMError, match="^give the run a limit: max_steps=N or max_time=DURATION$"):
        plan.resumed(timed, {"max_time": None}, stepped_run)


@pytest.mark.parametrize(
    "eval_also, refusal",
    [
        ("nope.txt", "--eval-also nope.txt: no such checkpoint file or run folder"),
        ("pipe", "--eval-also pipe: a pipe, not a regular file"),
        ("empty", "--eval-also empty: folder holds no .txt files"),
    ],
)
def test_a_bad_eval_also_is_refused_before_the_run_folder_the_limit_and_the_text(eval_also, refusal):
    """A missing --eval-also, or a pipe or a folder of no text, was refused only once the corpus was prepared
    (minutes for a big text): it is a value given, checked with the others, before the run folder and the limit."""
    os.mkfifo("pipe")
    Path("empty").mkdir()
    given = ["missing.txt", "--eval-also", eval_also, "--out", " ", "--max-time", "none"]
    assert_one_line_error(cli("train", *given), refusal)
    with pytest.raises(CharLMError, match=f"^eval_also='{eval_also}': "):
        charlm.train("missing.txt", eval_also=eval_also, out=" ", max_time=None)
    assert not Path("corpora").exists()


def test_an_out_folder_with_a_folder_where_its_checkpoint_goes_is_refused_as_in_the_way(tmp_path):
    """A folder named best.pt (a run of `--out x/best.pt`) counted as a checkpoint: `--out x` was refused as
    holding a run, to `continue it with --resume x`, which said x is a folder of runs. It is still refused
    (the checkpoint cannot be saved over a folder), saying what is in the way."""
    in_the_way = tmp_path / "x" / "best.pt"
    in_the_way.mkdir(parents=True)
    with pytest.raises(CharLMError) as refused:
        plan.free_out_folder(str(tmp_path / "x"))
    message = str(refused.value)
    assert message.startswith(f"{in_the_way} is a folder, where the run saves a checkpoint") and "resume" not in message
