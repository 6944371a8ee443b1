"""The model size fitted to a time budget when --hidden is not given."""

import random

import numpy as np
import pytest
import torch

import charlm
from charlm import model, plan, runs, sizing, threads, train_state, trainer
from charlm.model import frequent_characters
from charlm.tokens import load_corpus
from charlm.vocab import Vocab

from .conftest import latest, make_model


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_trained_parameters_are_the_model_without_its_embedding(cell):
    vocab = Vocab([chr(0x4E00 + i) for i in range(300)])
    model = make_model(vocab, cell=cell, layers=3, hidden=40)
    expected = model.num_parameters() - model.embed.weight.numel()
    assert sizing.trained_parameters(cell, 3, 40, len(vocab)) == expected


def test_the_largest_size_that_sees_enough_characters_is_chosen():
    speed = {128: 40_000.0, 192: 30_000.0, 256: 20_000.0, 384: 9_000.0, 512: 5_000.0, 768: 2_000.0, 1024: 1_000.0}
    parameters = {h: sizing.trained_parameters("lstm", 2, h, 65) for h in sizing.CANDIDATES}
    tried = []

    def measure(hidden: int) -> float:
        tried.append(hidden)
        return speed[hidden]

    # 10 minutes: 2x256 sees 12M characters for ~1.1M parameters (11 each), 2x384 5.4M for 2.4M (2.3).
    hidden, measured = sizing.choose_hidden(600, measure, parameters.get)
    assert tried[:5] == [128, 192, 256, 384, 512]  # stops at the first size that falls short,
    assert hidden == 384 and tried[5:] == [384, 512]  # then times the two either side of the choice again
    assert [c.chars_per_parameter >= sizing.CHARS_PER_PARAMETER for c in measured] == [True] * 4 + [False]
    # A short budget picks a smaller model; a tiny one still gets the smallest candidate.
    assert sizing.choose_hidden(60, speed.get, parameters.get)[0] == 192
    assert sizing.choose_hidden(1, speed.get, parameters.get)[0] == 128
    assert "--hidden 384 fits the budget" in sizing.describe(hidden, measured)
    # "128: 44,653 chars/s, 100.1, 192: ..." ran sizes, speeds and ratios together with commas that also
    # group thousands: each size now reads on its own, "384 gets 2.2 per parameter at 8,516 chars/s"; and
    # `charlm info`, which shows the line in parentheses, showed its own parentheses nested in them
    line = sizing.describe(hidden, measured)
    assert "(" not in line and ")" not in line, line
    sizes = line.split("; measured: ", 1)[1].split(" chars/s, ")
    assert [part.split(" gets ")[0] for part in sizes] == ["128", "192", "256", "384", "512"]
    assert all(part.split(" gets ")[1].split(" per parameter at ")[0].replace(".", "").isdigit() for part in sizes)
    # When not even the smallest fits, the line says so instead of calling it a fit.
    tiny_budget = sizing.choose_hidden(1, speed.get, parameters.get)
    assert sizing.describe(*tiny_budget).startswith(f"--hidden 128{sizing.SMALLEST_SHORT} in the budget: no size ")
    assert sizing.fit_to_chars(1000, parameters.get)[1].startswith(
        f"--hidden 128{sizing.SMALLEST_SHORT} under --max-steps: "
    )
    assert sizing.fit_to_chars(1e9, parameters.get)[1].startswith("--hidden 1024 fits --max-steps: ")
    # 3 steps of a tiny run said "0.0 per parameter (want >= 2)": the ratio as it is, and no parentheses
    ratio = f"{1000 / parameters[128]:.2g}"  # 0.0037
    assert ratio != "0.0" and sizing.fit_to_chars(1000, parameters.get)[1].endswith(
        f": its 1,000 training characters are {ratio} per parameter, 2 or more wanted"
    )


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_training_without_hidden_fits_the_size_to_the_budget_or_takes_the_default(fox_file, tiny):
    del tiny["hidden"]
    tiny.update(max_steps=None, max_time="1s", layers=1)
    charlm.train(fox_file, out="fitted", **tiny)
    fitted = latest("fitted").model_config.hidden
    assert fitted in sizing.CANDIDATES
    tiny.update(max_steps=3, max_time=None)  # 3 steps see a few hundred characters: the smallest size
    charlm.train(fox_file, out="steps", **tiny)
    assert latest("steps").model_config.hidden == sizing.CANDIDATES[0]


def test_the_probe_times_finished_work_of_the_whole_batch(fox_file, tiny, monkeypatch):
    """On a GPU kernels run asynchronously, so the probe must wait for them before reading the clock.
    (Under torchrun every rank times its share of the batch at once: tests/test_distributed.py.)"""
    events = []
    monkeypatch.setattr(sizing, "synchronize", lambda device: events.append("sync"))
    real_step = train_state.train_step

    def step(state, spent):
        events.append(("step", state.config.batch_size))
        return real_step(state, spent)

    monkeypatch.setattr(train_state, "train_step", step)
    config = charlm.Config(**{**tiny, "batch_size": 8})
    corpus = load_corpus([str(fox_file)], config, quiet=True)
    one = sizing.Probe(config, corpus, head_cutoffs=())(16)
    assert events[sizing.PROBE_WARMUP] == "sync" and events[-1] == "sync"  # before and after the timed steps
    assert {e[1] for e in events if e != "sync"} == {8}
    assert sum(e != "sync" for e in events) >= sizing.PROBE_WARMUP + sizing.PROBE_WINDOWS * sizing.PROBE_MIN_STEPS
    assert one > 0


def test_the_thread_calibration_times_the_first_size_once(fox_file, tiny, monkeypatch):
    """The first size the probe times settles the thread count: two windows at each of two counts.
    The two at the count kept are that size's timing; two more windows of it, at the same count, were
    0.3 s or more before a run's first step."""
    monkeypatch.setattr(threads._command, "governor", threads.Governor(2, lambda count: None))
    windows = iter([10.0, 11.0, 30.0, 20.0, 40.0, 99.0, 0.0])  # 2 threads, then 1 (faster: kept), then more
    monkeypatch.setattr(sizing.Probe, "window", lambda self, state: next(windows))
    config = charlm.Config(**{**tiny, "batch_size": 8})
    probe = sizing.Probe(config, load_corpus([str(fox_file)], config, quiet=True), head_cutoffs=())
    assert probe(16) == 30.0 and threads._command.governor.threads == 1
    assert probe(16) == 99.0  # timed again (the rule's second look): two windows of its own
    assert next(windows) == 0.0


def test_the_rule_counts_a_head_row_per_frequent_character_only(tmp_path, tiny, monkeypatch):
    """A Chinese novel's rare characters each learn from a few occurrences whatever the budget: their
    head rows must not shrink the model the way the LSTM's weights do."""
    rng = random.Random(0)
    chars = [chr(0x4E00 + i) for i in range(1500)]
    weights = [1 / (rank + 1) for rank in range(1500)]
    (tmp_path / "zh.txt").write_text("".join(rng.choices(chars, weights, k=60_000)), encoding="utf-8")
    config = charlm.Config(**{**tiny, "hidden": None, "max_steps": None, "max_time": "5m"})
    corpus = load_corpus([str(tmp_path / "zh.txt")], config, quiet=True)
    seen = {}

    def choose(seconds, speed, parameters, max_chars=None):
        seen["parameters"] = parameters(256)
        return 256, []

    monkeypatch.setattr(sizing, "choose_hidden", choose)
    sizing.measure_sizes(config, corpus, sizing.Probe(config, corpus, head_cutoffs=()))
    counts = torch.from_numpy(np.bincount(corpus.train_ids, minlength=len(corpus.vocab)))
    frequent = frequent_characters(counts)
    assert 100 < frequent < len(corpus.vocab) // 2
    assert seen["parameters"] == sizing.trained_parameters("lstm", 1, 256, frequent)


def test_a_run_fits_dropout_and_evaluation_to_the_passes_it_will_make(fox_file, tiny, monkeypatch, capsys):
    """A short text read dozens of times gets strong dropout and an evaluation per pass; a time budget
    is turned into passes with the probed speed, also when the user gave --hidden."""
    tiny.update(batch_size=16, seq_len=25, max_steps=300, eval_every=None)  # 120,000 tokens of a 2,376-token text
    charlm.train(fox_file, out="many", **tiny)
    many = latest("many").config
    assert many.dropout == 0.5 and many.eval_every == 5  # 2,376 tokens, 400 a step: every 5 steps
    charlm.train(fox_file, out="told", **{**tiny, "quiet": False, "max_steps": 3})  # 1,200 tokens: half a pass
    assert "dropout=0.1 fits about 0.5 passes over the training text" in capsys.readouterr().err  # said to Python
    probed = []
    monkeypatch.setattr(sizing.Probe, "__call__", lambda self, hidden, batch=None: probed.append(hidden) or 100.0)
    tiny.update(max_steps=None, max_time="1s")  # 100 chars/s: a twentieth of one pass
    charlm.train(fox_file, out="timed", **tiny)
    assert probed == [32] and latest("timed").config.dropout == 0.1
    tiny.update(dropout=0.3)
    charlm.train(fox_file, out="given", **tiny)
    assert probed == [32] and latest("given").config.dropout == 0.3  # given: nothing to probe


def test_the_probe_times_a_bare_training_state_and_builds_no_trainer(fox_file, tiny, monkeypatch):
    monkeypatch.setattr(trainer.Trainer, "__init__", lambda *args, **kwargs: pytest.fail("the probe built a Trainer"))
    config = charlm.Config(**{**tiny, "batch_size": 8})
    corpus = load_corpus([str(fox_file)], config, quiet=True)
    probe = sizing.Probe(config, corpus, head_cutoffs=())
    assert probe(16) > 0 and probe(16, 4) > 0
    assert set(probe.states) == {(16, 8), (16, 4)}
    assert all(isinstance(state, train_state.TrainState) for state in probe.states.values())


def test_the_gpu_batch_doubles_while_each_doubling_still_buys_speed():
    """A fake speed table: a GPU idles at 16 streams and saturates around 128."""
    table = {16: 100_000.0, 32: 190_000.0, 64: 350_000.0, 128: 420_000.0, 256: 440_000.0, 512: 445_000.0}
    tried = []

    def speed(batch: int) -> float:
        tried.append(batch)
        return table[batch]

    batch, measured = sizing.choose_batch(speed)
    assert batch == 128 and tried == [16, 32, 64, 128, 256]  # 256 gains 5% over 128: not enough; stop there
    assert measured == [(b, table[b]) for b in tried]
    assert "--batch-size 128" in sizing.describe_batch(batch, measured) and "256 streams at 440,000 chars/s" in (
        sizing.describe_batch(batch, measured)
    )
    # A saturated device keeps the first candidate; one that always gains takes the cap.
    assert sizing.choose_batch(lambda b: 1000.0)[0] == sizing.BATCH_CANDIDATES[0]
    assert sizing.choose_batch(lambda b: float(b))[0] == sizing.BATCH_CANDIDATES[-1]
    assert sizing.choose_batch(table.get, (32, 64))[0] == 64


def test_max_steps_caps_the_characters_the_size_rule_counts(fox_file, tiny, monkeypatch):
    """`--max-steps 50` with the default 10 minutes: the run sees 50 steps' characters, not 10 minutes'
    at the probed speed, so it gets the size those few characters fit (issue 26 item 13)."""
    monkeypatch.setattr(sizing.Probe, "__call__", lambda self, hidden, batch=None: 1e6)  # fast: time fits 1024
    options = {**tiny, "hidden": None, "dropout": None, "max_steps": 50, "max_time": "10m", "quiet": True}
    corpus = load_corpus([str(fox_file)], charlm.Config(**options), quiet=True)
    capped = plan.plan(charlm.Config(**options), corpus, out="capped")
    assert capped.config.hidden == sizing.CANDIDATES[0] and "--max-steps" in capped.reasons["hidden"]
    assert capped.config.dropout == plan.fitted_dropout(50 * 4 * 8 / len(corpus.train_ids))
    steps_only = plan.plan(charlm.Config(**{**options, "max_time": None}), corpus, out="steps")
    assert steps_only.config.hidden == sizing.CANDIDATES[0] and "--max-steps" in steps_only.reasons["hidden"]
    roomy = plan.plan(charlm.Config(**{**options, "max_steps": 10**9}), corpus, out="roomy")
    assert roomy.config.hidden == sizing.CANDIDATES[-1]  # steps to spare: the time budget decides


def test_the_probe_times_the_head_the_plan_chose(fox_file, tiny, monkeypatch):
    """The probe built its models' head from --head and the rule itself, a third place the head was
    decided: it could time a head the run would not train. It builds the plan's (here adaptive)."""
    monkeypatch.setattr(model, "ADAPTIVE_MIN_VOCAB", 10)  # the fox's 28 characters: adaptive
    monkeypatch.setattr(sizing.Probe, "window", lambda self, state: 1000.0)
    monkeypatch.setattr(sizing, "choose_hidden", lambda seconds, speed, *rest, **limit: (speed(16) and 16, []))
    built, real_build = [], train_state.build

    def build(*args, **kwargs):
        state = real_build(*args, **kwargs)
        built.append(state.model.config.head_cutoffs)
        return state

    monkeypatch.setattr(train_state, "build", build)
    config = charlm.Config(**{**tiny, "hidden": None, "max_steps": None, "max_time": "5m"})
    planned = plan.plan(config, load_corpus([str(fox_file)], config, quiet=True), out="run")
    assert planned.head_cutoffs and built == [planned.head_cutoffs]


def test_a_caller_that_leaves_the_head_out_is_told_not_given_a_full_head(fox_file, tiny):
    """RunPlan, train_state.build and sizing.Probe built a full head where a caller left `head_cutoffs` out:
    a big vocabulary's run would time or train another head than its plan's, without a word."""
    config = charlm.Config(**{**tiny, "dropout": 0.0})
    corpus = load_corpus([str(fox_file)], config, quiet=True)
    for left_out in (
        lambda: plan.RunPlan(config, runs.CHECKPOINT_ROOT / "x"),
        lambda: train_state.build(config, corpus),
        lambda: sizing.Probe(config, corpus),
        lambda: sizing.measure_sizes(config, corpus),  # its own probe's head was a full one
    ):
        with pytest.raises(TypeError, match="head_cutoffs|probe"):
            left_out()
