"""A Python caller's own arguments, the model and the text, checked where a call begins.

The CLI passes strings only, so without these a model given as its run's name, or a text given as bytes,
a path or a tensor of ids, would meet a TypeError deep inside. Each is refused in one line that names the
call and the argument and says how to make the right one. Options are `Config`'s and `SampleConfig`'s,
which check their own types (fields.check_types). The calls of api.py use these, and so do the functions
that docs/inspect.md shows a Python caller (`tracing.trace`, `scoring.surprise`).
"""

from __future__ import annotations

import contextlib
import numbers
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import PurePath
from typing import NoReturn, TypeVar

import numpy as np
import torch

from . import path_names
from .config import Config, SampleConfig
from .corpus import bytes_hint
from .decode_errors import file_encoding
from .errors import CharLMError, callers_stacklevel, one_line_path
from .fields import KIND_NAMES, SHOWN
from .model import CharLM
from .pieces import holds_integers
from .weight_checks import unsound_weight, weight_problem

T = TypeVar("T")


def refuse(function: str, requirement: str, value: object, hint: str = "") -> NoReturn:
    raise CharLMError(f"charlm.{function}: {requirement}, not {SHOWN.repr(value)}{hint}")


def is_path(value: object) -> bool:
    return isinstance(value, (str, PurePath))


def check_file_name(function: str, argument: str, value: object) -> None:
    """Refuses a path no file can have (`path_names.unnameable`), naming the argument, before a look for it
    raises Python's ValueError or OSError ("File name too long") from deep inside."""
    if is_path(value) and (why := path_names.unnameable(value)):
        raise CharLMError(f"charlm.{function}: {argument} {SHOWN.repr(str(value))}: {why}")


def check_model(function: str, model: object) -> None:
    if not isinstance(model, CharLM):
        hint = f"; load it first: charlm.load({model!r})" if is_path(model) else ""
        refuse(function, "the model must be a charlm.CharLM", model, hint)
    if (size := len(model.vocab)) != model.config.vocab_size:  # `model.vocab = other.vocab`: ids mean other characters
        raise CharLMError(
            f"charlm.{function}: the model's vocabulary has {size} ids but its weights score "
            f"{model.config.vocab_size}: model.vocab must be the vocabulary it was trained with, not another run's"
        )
    weights = model.state_dict()  # once: each call looks at every weight (about a character's step)
    if any(weight.is_meta for weight in weights.values()):  # no values to sample or check
        raise CharLMError(
            f"charlm.{function}: the model's weights are on the meta device, shapes without values; give it "
            "weights first (model.to_empty(device='cpu'), then model.load_state_dict(state)), or charlm.load a run"
        )
    # a model built or changed in Python (a checkpoint's reader checks the same) with a NaN weight sampled one
    # character over and over
    if name := unsound_weight(weights):
        raise CharLMError(
            f"charlm.{function}: the model's weight {weight_problem(name, weights[name])}; nothing "
            "sampled or scored from it would mean anything (a training run that diverged: train again at a lower lr)"
        )


def check_text(function: str, text: object, what: str) -> None:
    if not isinstance(text, str):
        refuse(function, f"the {what} must be a string", text, text_hint(function, text, what))


def check_model_and_seed(function: str, model: object, seed: object, what: str = "seed") -> None:
    if isinstance(seed, CharLM) and not isinstance(model, CharLM):  # not "load it first: charlm.load('the')"
        raise CharLMError(
            f"charlm.{function}: the model goes first, then the {what}: charlm.{function}(model, {SHOWN.repr(model)})"
        )
    check_model(function, model)
    check_text(function, seed, what)


def check_reading(function: str, model: object, text: object, context: object, **flags: object) -> None:
    """`trace`'s and `surprise`'s arguments: beside the text, a context, which None leaves the start of a line,
    and yes-or-no `flags` (probs=False), each True or False: "no" is truthy, and would be taken as True."""
    check_model_and_seed(function, model, text, "text")
    if context is not None:
        check_text(function, context, "context")
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            refuse(function, f"{name} must be {KIND_NAMES[bool]}", value)


def config_hint(function: str, value: object, seed: object = None) -> str:
    """Where a caller gave a `Config` or `SampleConfig` by position (as the seed, a path or an option),
    how its fields are given, where charlm.generate(model, SampleConfig(...)) would be told only that the
    seed must be a string. The options are keywords; a config built by hand is unpacked into them. The call
    shown keeps the caller's `seed` where it is a string, else shows 'It was'."""
    if not isinstance(value, Config if function == "train" else SampleConfig):
        return ""
    given = "PATH" if function == "train" else f"model, {seed if isinstance(seed, str) else 'It was'!r}"
    return (
        f"; a {type(value).__name__}'s fields are the options, given by name: "
        f"charlm.{function}({given}, **dataclasses.asdict(config))"
    )


def text_hint(function: str, value: object, what: str) -> str:
    """How to make a string of what a caller gave for one: the bytes, ids, path, open file or lines it
    came as, or a config (`config_hint`)."""
    if hint := config_hint(function, value) or bytes_hint(value, what):
        return hint
    if is_ids(value):  # model.vocab.encode's, or a row of them: the text they spell is the model's to say
        rows = isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim > 1
        return f"; decode the ids first: model.vocab.decode({what}{'[0]' if rows else ''})" + (
            f", a row at a time (call charlm.{function} once per row)" if rows else ""
        )
    if isinstance(value, (list, tuple)):
        return f"; call charlm.{function} once per {what}"
    if isinstance(value, PurePath):
        return f"; {no_file}" if (no_file := not_a_file_problem(value)) else f"; read it first: {read_call(value)}"
    if callable(getattr(value, "read", None)):
        return f"; read it first: {what}.read()"
    if isinstance(value, Iterable) and not isinstance(value, (torch.Tensor, np.ndarray)):  # ''.join refuses those
        return f"; join it first: ''.join({what})"
    return ""


def is_ids(value: object) -> bool:
    """Token ids: an integer tensor or array, or a list or tuple of integers (what vocab.encode gives)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.ndim > 0 and holds_integers(value)
    integers = (
        [isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value]
        if isinstance(value, (list, tuple))
        else []
    )
    return bool(integers) and all(integers)


def home(path: T) -> T:
    """A path given as "~/novel.txt" in the user's home, as a shell would have read it (Python does not)."""
    return os.path.expanduser(path) if is_path(path) and str(path).startswith("~") else path


def not_a_file_problem(path: str | PurePath) -> str:
    """Why no read of `path` would give a text ("" where it is a file): told to read a missing file or a
    folder, a caller met FileNotFoundError or IsADirectoryError."""
    if os.path.isdir(home(path)):
        return f"{one_line_path(path)} is a folder: give a file's text, read from a file in it"
    return "" if os.path.isfile(home(path)) else f"there is no file {one_line_path(path)}: give the text itself"


def read_call(path: str | PurePath) -> str:
    """The Python that reads the file at `path` as text, in the encoding it looks to be in; a "~" is
    expanded (Path() does not)."""
    expand = ".expanduser()" if home(path) != path else ""
    return f"Path({str(path)!r}){expand}.read_text(encoding={file_encoding(home(path))!r})"


@contextlib.contextmanager
def reading_text(function: str, text: str) -> Iterator[None]:
    """Reads `text` (the body of a `with`) knowing whether it is a file's name, as `charlm eval` would
    have read it: one that scores warns that the name was scored, and one refused (a model of Chinese
    knows no letter of "chapter.txt") is said to be a file's name, with how to give the file's text."""
    file_text = "" if "\n" in text or not_a_file_problem(text) else f"give its text: {read_call(text)}"
    try:
        yield
    except CharLMError as refused:
        if not file_text:
            raise
        raise CharLMError(f"{refused}; {text!r} names a file: to score the file {file_text}") from None
    if file_text:  # once scored: an error above says it better, and a caller would read both
        warnings.warn(
            f"{text!r} names a file; charlm.{function} scored the text itself, those {len(text)} characters; "
            f"to score the file {file_text}",
            stacklevel=callers_stacklevel(),
        )
