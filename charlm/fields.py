"""Config dataclasses' fields as command-line options: declared with their help (`option`), named as a
message names them, and checked against their annotations and choices.

The same machinery serves every config of charlm (`config.Config`, `config.SampleConfig`,
`serve.config.ServeConfig`). A message names an option as its caller wrote it (`said`): `--max-steps 5`
within the `charlm` command (`on_command_line`), `max_steps=5` for a Python caller, who never typed a flag;
a value as its caller would paste it back (`typed` in a shell, `written` in Python); a stored record's
field (a checkpoint's, config.json's) as its file spells it (`as_stored`), checked by the same rule
(`holds`, `missing_keys`). config.py holds the fields and their defaults; this module knows nothing of
any one of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import inspect
import math
import numbers
import os
import re
import reprlib
import shlex
import sys
import threading
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import field
from pathlib import PurePath
from typing import Any, TypeVar

from .errors import UNDECODABLE_BYTE, CharLMError, agreeing, escaped, one_line_path
from .halfwidth import as_choice, as_number, half_width

T = TypeVar("T")

# What a value of each annotated type is called in a message (`kinds_said`): a Config's field, a checkpoint's
# or config.json's record, said to users who never wrote Python ("a record", not "dict").
KIND_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "True or False",
    type(None): "None",
    dict: "a record",
    list: "a list",
}


# The bracket that closes each one a repr opens (`first_line_closed`).
CLOSING = {"(": ")", "[": "]", "{": "}"}


class Shown(reprlib.Repr):
    """A wrong value as a message shows it: its repr, a long one shortened (a whole text given as a
    number); an int too long for repr() (over 4,300 digits, Python's limit) by its size; a repr of
    many lines (a model's, one module a line) by its first (`CharLM(...)`)."""

    def repr_instance(self, x: object, level: int) -> str:
        shown = super().repr_instance(x, level)  # shortened by cutting its middle: the first line may be gone
        return first_line_closed(repr(x).splitlines()[0][: self.maxother]) if "\n" in shown else shown

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:
            digits = math.floor(math.log10(abs(x))) + 1
            return f"{'a negative' if x < 0 else 'an'} integer of {digits:,} digits"


SHOWN = Shown()
SHOWN.maxstring = SHOWN.maxother = 80


def first_line_closed(line: str) -> str:
    """The first line of a repr of many lines, ended by '...' and the brackets it leaves open:
    `CharLM(...)`, `array([[0., 0.], ...])`, so that the message stays one line that reads whole."""
    still_open = []
    for char in line:
        if char in CLOSING:
            still_open.append(CLOSING[char])
        elif still_open and char == still_open[-1]:
            still_open.pop()
    line = line.rstrip()
    return f"{line}{' ' if line.endswith(',') else ''}...{''.join(reversed(still_open))}"


def option(default: Any, help: str, **extra: Any) -> Any:
    """A config field that is also a command-line option: its default and its help (and `choices`,
    `metavar`), from which commands/options.py builds the option; serve/config.py's fields too.
    `command_line=False`: a field of the Python API only, which messages name as Python does;
    `half_width=True`: a text read by halfwidth.py's rule, kept as read (`store_as_read`; a choice is);
    `python_help`: its help for a Python caller where what it does there differs (`python_help`)."""
    return field(default=default, metadata={"help": help, **extra})


# Whether the caller is the `charlm` command, whose user typed flags; else a Python caller, who wrote keywords:
# each `on_command_line` open, by the command it runs ("" until that is known). Process-wide, not a context
# variable: a thread the command starts (the server loads its models in one) has none of its context, and
# would tell `charlm serve --device tpu` of device=.
_command_lines: list[str] = []
_command_lines_lock = threading.Lock()
_UNSAID = object()


@contextlib.contextmanager
def on_command_line(command: str = "") -> Iterator[None]:
    """Within it, messages name options as flags (`--threads 8`): the `charlm` command runs in it, and
    names the `command` its user ran (`serve`) once it is known (`command_run`)."""
    with _command_lines_lock:
        _command_lines.append(command)
    try:
        yield
    finally:
        with _command_lines_lock:
            _command_lines.remove(command)


def command_run() -> str:
    """The `charlm` command its user ran (`serve`), for advice to name the command they use; "" for a
    Python caller."""
    with _command_lines_lock:
        return next((command for command in reversed(_command_lines) if command), "")


# A thread reading a stored record of options (`as_stored`): its own, so that the command's other threads
# (a server's requests, while one thread loads a model) go on naming flags.
_reading_stored = threading.local()


@contextlib.contextmanager
def as_stored() -> Iterator[None]:
    """Within it, on this thread, messages name options as a stored record spells them (`lr`, not `--lr`),
    even within `on_command_line`: a checkpoint's or config.json's run options were never typed as flags,
    and the file holds `lr`, which its reader is to find and mend."""
    before = getattr(_reading_stored, "on", False)
    _reading_stored.on = True
    try:
        yield
    finally:
        _reading_stored.on = before


def flags_said() -> bool:
    """Whether messages name options as flags (within `on_command_line`, but for `as_stored`), not as keywords."""
    return bool(_command_lines) and not getattr(_reading_stored, "on", False)


def said(name: str, value: object = _UNSAID, metavar: str | None = None) -> str:
    """Option `name` (a field's or argument's name) as its caller wrote it, with `value` or a `metavar`
    placeholder: `--max-steps`, `--threads 8`, `--greedy`, `--max-steps N` on the command line;
    `max_steps`, `threads=8`, `greedy=True`, `max_steps=N` in Python."""
    if not flags_said():
        given = metavar if metavar is not None else "" if value is _UNSAID else written(value)
        return f"{name}={given}" if given else name
    flag = f"--{option_name(name)}"
    given = metavar if metavar is not None else "" if value is _UNSAID or value is True else typed(value)
    return f"{flag} {given}" if given else flag


def changes_said(changes: dict[str, tuple[object, object]]) -> str:
    """Options a resume changed, each with its new value and the one it replaced (`changes`: name -> (old,
    new)), as its caller writes them: `--lr 0.001 (was 0.002), --max-time none (was 1h)`, `lr=0.001 (was 0.002)`."""
    return ", ".join(
        f"{said(name, metavar=value_said(new))} (was {value_said(old)})" for name, (old, new) in changes.items()
    )


def value_said(value: object) -> str:
    """An option's value as its caller writes it: as typed on the command line (None as `none`), as Python writes it."""
    if not flags_said():
        return written(value)
    return "none" if value is None else typed(value)


def about_option(name: str, value: object, error: CharLMError) -> CharLMError:
    """`error`, about the `value` given to option `name` (a path's message, which names the path first),
    named as every option's message names it: the option and its value as written, then what is wrong
    with it (`--init-from nope: no such checkpoint file ...`, `init_from='nope': ...`, as `--device tpu: ...`).
    A message that names another path (the one `value` led to) keeps it after the value. The path may open
    the message raw or as `errors.one_line_path` shows it (`checkpoints/'run '`): either is not said twice.
    It opens the message only where the message goes on with ':' or ' ' (or ends): `run2: ...` is another path
    than `run`, and `run/best.pt: ...` names the file in it, not `run`."""
    message = str(error)
    shown = one_line_path(value) if isinstance(value, (str, PurePath)) and str(value) else str(value)
    for opening in (str(value), shown):
        if message.startswith(opening) and message[len(opening) : len(opening) + 1] in ("", ":", " "):
            return CharLMError(f"{said(name, value)}{message[len(opening) :]}")
    return CharLMError(f"{said(name)} {message}" if flags_said() else f"{said(name, value)}: {message}")


def unreadable_value(name: str, value: object, flag: str | None = None) -> str:
    """The opening of a refusal of option `name`'s `value`, which cannot be read: `--max-time: cannot read
    '5 minutes'` on the command line, as click's `--lr: 'x' is not a valid float`; `max_time='5 minutes':
    cannot read it` in Python (`value_refused`). `flag`: the option as a caller that names it so said it."""
    return value_refused(name, value, "cannot read", flag) + ("" if flag or flags_said() else " it")


def value_refused(name: str, value: object, problem: str, flag: str | None = None) -> str:
    """The opening of a refusal of option `name`'s `value` for its `problem`: `--encoding: unknown text
    encoding 'nosuch'` on the command line; `encoding='nosuch': unknown text encoding` in Python, the keyword
    with its value as every message about a value opens (`device='cuda:7': ...`)."""
    shown = SHOWN.repr(value)
    if flag or flags_said():
        return f"{flag or said(name)}: {problem} {shown}"
    return f"{said(name, metavar=shown)}: {problem}"


def together(*options: str) -> str:
    """Options already `said`, as their caller gives several: `--init-from RUN --out new` on the command
    line, `init_from=RUN, out='new'` in Python."""
    return (" " if flags_said() else ", ").join(options)


def call(command: str, *options: str, path: str | PurePath | None = None) -> str:
    """The charlm command that does something, on `path` if given, with its options `said`: `charlm train
    --resume RUN` on the command line; in Python the function of that name, `charlm.train(resume='RUN')`,
    since a message that gives a whole command is followed by pasting it where its caller works."""
    if flags_said():
        return " ".join(["charlm", command, *([path_typed(path)] if path is not None else []), *options])
    return f"charlm.{command}({together(*([written(path)] if path is not None else []), *options)})"


def keywords_for_flags(text: str, fields: tuple[dataclasses.Field, ...]) -> str:
    """A text written for the command line (an option's `--help`, a run plan's reason) with each flag of
    a field as the keyword a Python caller writes, and a number or one of its choices after it as its
    value: help(charlm.train) tells of max_time and tokenizer='sentencepiece', charlm.train's plan says
    "hidden=128 fits the budget", never a flag Python has not."""
    by_name = {f.name: f for f in fields}

    def keyword(flag: re.Match) -> str:
        name = flag[1].replace("-", "_")
        if name not in by_name:
            return flag[0]
        if flag[2] is not None:
            return f"{name}={flag[2]}"
        if flag[3] is not None and flag[3] in by_name[name].metadata.get("choices", ()):
            return f"{name}={flag[3]!r}"
        return name if flag[3] is None else f"{name} {flag[3]}"

    return FLAG.sub(keyword, text)


# A flag, and the number given to it if one follows ("--hidden 256", "--dropout 0.1"; not a list's comma),
# or the word (a choice: "--tokenizer sentencepiece").
FLAG = re.compile(r"--([a-z][a-z0-9-]*)(?: (?:(\d(?:[\d.,]*\d)?)|([a-z][a-z0-9]*)\b))?")

# The `[default: ...]` a help text ends with where the command line's own would say nothing useful
# (`--allow-origin`'s "[default: none: the served page only]").
STATED_DEFAULT = re.compile(r"\s*\[default: (.*)\]$")


def python_help(config_class: type) -> dict[str, str]:
    """Each field's help, written for `charlm ... --help`, as a Python caller reads it (help(charlm.train),
    docs/python.md): its flags as keywords (`keywords_for_flags`), and the word the command line types
    for "unset" (`--max-time none`) as the None a Python caller gives, where the field takes None."""
    fields, hints = dataclasses.fields(config_class), typing.get_type_hints(config_class)
    helps = {}
    for f in fields:
        text = f.metadata.get("python_help") or f.metadata.get("help", "")
        stated = STATED_DEFAULT.search(text)
        if stated:  # what the default means, as a clause of the help
            text = f"{text[: stated.start()]}; {stated[1]}"
        if holds(None, hints[f.name]):
            text = re.sub(r"\bnone(?=:)", "None", text)  # "(none: no time limit)": max_time=None
        helps[f.name] = keywords_for_flags(text, fields)
    return helps


def as_said(text: str, config_class: type) -> str:
    """A text written for the command line (a run plan's reason) as its caller reads it (`said`): as it
    is within the `charlm` command, with `config_class`'s flags as keywords for a Python caller."""
    return text if flags_said() else keywords_for_flags(text, dataclasses.fields(config_class))


def written(value: object) -> str:
    """A value as Python writes it: a text or path whole, as its caller may copy it (a path as the text
    it names), anything else shortened where long (`SHOWN`)."""
    if isinstance(value, (str, PurePath)):
        return repr(str(value))
    return SHOWN.repr(value)


# What a shell reads as it is, unquoted: shlex's safe characters, with a letter or digit of any script.
SHELL_PLAIN = re.compile(r"[\w@%+=:,./-]+")


def typed(value: object) -> str:
    """A value as a shell user types it, to paste back: as it is where a shell reads it so (`8`,
    `checkpoints/run`), else one shell word: quoted (`'checkpoints/my run'`), or a text holding a newline
    or other control character in bash's $'...' quoting (`--stop $'\\n\\n'`), which also keeps the
    message on one line where errors.one_line would show a `\\n` no shell reads back."""
    text = str(value)
    if not text.isprintable():
        return "$'" + "".join(map(_ansi_c_escaped, text)) + "'"
    return text if SHELL_PLAIN.fullmatch(text) else shlex.quote(text)


def path_typed(path: str | PurePath) -> str:
    """A path as one of a command's arguments, `typed`: `./` before one that begins with '-', which the
    command would read as an option (`charlm eval -d/latest.pt`: no such option -d)."""
    text = str(path)
    return typed(f".{os.sep}{text}" if text.startswith("-") else text)


def _ansi_c_escaped(char: str) -> str:
    """One character inside bash's $'...': a backslash, quote or unprintable one escaped (a letter of
    any script as it is: `\\xe9` would be the byte, not the UTF-8 é)."""
    if char in "\\'":
        return "\\" + char
    code = ord(char)
    if char.isprintable():
        return char
    if code < 0x80 or UNDECODABLE_BYTE.fullmatch(char):  # \n, \t, \x1b; \xff, a byte of a file name
        return escaped(char)
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def paths_given(paths: list[str]) -> str:
    """Paths as their caller gives them, to paste: each a shell word (`typed`) on the command line,
    `a.txt 'my book.txt'`; one path, or the list of them, as Python writes it."""
    if flags_said():
        return " ".join(map(path_typed, paths))
    return written(paths[0]) if len(paths) == 1 else repr(list(paths))


def shown_name(f: dataclasses.Field) -> str:
    """A field as a message names it (`said`); a field of the Python API only, by its Python name."""
    return f.name if f.metadata.get("command_line") is False else said(f.name)


def option_name(field_name: str) -> str:
    """A field's name as its command-line option spells it (click's): max_steps -> max-steps."""
    return field_name.replace("_", "-")


def check_types(config: object) -> None:
    """Every field of a config dataclass holds a value of its annotated type, so that a Python caller's
    hidden="32" or quiet="no" is named here rather than met later as a TypeError (or taken as True).
    The CLI's values are typed by click already. An int is a float; a bool is not an int; a list or
    tuple of numbers is a `tuple[float, ...]`. A numpy number is taken as the Python one (`plain`)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        hint, value = hints[f.name], plain(getattr(config, f.name))
        setattr(config, f.name, value)
        if not holds(value, hint):
            raise CharLMError(
                f"{shown_name(f)} must be {kinds_said(hint)}, not {SHOWN.repr(value)}"
                f"{number_hint(config, f.name, value, hint)}"
            )


def number_hint(config: object, name: str, value: object, hint: object) -> str:
    """What a Python caller who quoted a number ('０．８', as a Chinese input method types 0.8; '0.5，0.8')
    gives instead: the number, read by the command line's rule (halfwidth.py), which to its writer the
    string already was ("" for a value that reads as no number of the field's type). A number `config`'s
    field `name` refuses (max_steps='-5') is told that refusal: offered, it would lead to a second error."""
    number = quoted_number(value, hint)
    if number is None:
        return ""
    refusal = number_refusal(config, name, number)
    return f"; and as a number: {refusal}" if refusal else f"; give it as a number: {name}={SHOWN.repr(number)}"


def number_refusal(config: object, name: str, number: object) -> str:
    """The refusal `config` gives `number` in its field `name`; "" where it takes it or refuses another
    field. Each other field's quoted number is read as a number too: left a string, it would be refused first."""
    hints = typing.get_type_hints(type(config))
    read = {f.name: quoted_number(getattr(config, f.name), hints[f.name]) for f in dataclasses.fields(config)}
    read[name] = number
    try:
        dataclasses.replace(config, **{key: value for key, value in read.items() if value is not None})
    except CharLMError as error:
        refusal = str(error)
        return refusal if re.match(rf"{re.escape(name)}\b", refusal) else ""
    return ""


def quoted_number(value: object, hint: object) -> int | float | list[float] | None:
    """`value`, a string, as the finite number (or list of them) of an annotated type it reads as; else None."""
    if not isinstance(value, str):
        return None
    text = as_number(value).strip()
    for kind in kinds_of(hint):
        listed = typing.get_origin(kind) is tuple and typing.get_args(kind)[0] is float
        if kind not in (int, float) and not listed:
            continue
        with contextlib.suppress(ValueError):
            number = [float(part) for part in text.split(",")] if listed else kind(text)
            if all(map(math.isfinite, number if listed else [number])):
                return number
    return None


def plain(value: object) -> object:
    """`value` with numpy's (or any other library's) integers and reals as Python's int and float, in a
    dict or list too: np.float32(0.5) is a temperature, np.int64(3) a token id, and run.json is JSON.
    An array or tensor is the numbers it holds: np.linspace(1.0, 0.5, 50) is a temperature schedule (a
    bool, np.True_, is kept as it is: it is not a number, and its error names it as given)."""
    if hasattr(value, "ndim") and callable(getattr(value, "tolist", None)):
        held = value.tolist()
        return value if isinstance(held, bool) else plain(held)
    if isinstance(value, numbers.Integral) and not isinstance(value, int):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {plain(key): plain(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(map(plain, value))
    return value


def unset_dropped(config_class: type, options: dict, unset: tuple[str, ...] = ()) -> dict:
    """`options` less those a Python caller gave as None to leave them unset (a wrapper passing on its own
    default), as the `charlm` command drops the options not typed: a field that cannot hold None keeps its
    default, and so does each of `unset`. Where None is a value (max_time=None: no time limit), it stays."""
    hints = typing.get_type_hints(config_class)
    return {
        name: value
        for name, value in options.items()
        if value is not None or name not in hints or name not in unset and holds(None, hints[name])
    }


def kinds_of(hint: object) -> tuple:
    """The types an annotation allows: a union's members, or the one type."""
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def holds(value: object, hint: object) -> bool:
    """Whether `value` is of the annotated type (`check_types`' rule; checkpoint.py checks records by it)."""
    return any(_is_of(value, kind) for kind in kinds_of(hint))


def _is_of(value: object, kind: type) -> bool:
    if typing.get_origin(kind) is tuple:  # tuple[float, ...]: a list or tuple of them
        return isinstance(value, (list, tuple)) and all(_is_of(item, typing.get_args(kind)[0]) for item in value)
    if typing.get_origin(kind) is dict:  # dict[str | int, float]: every key and value of its type
        keys, values = typing.get_args(kind)
        return isinstance(value, dict) and all(holds(k, keys) and holds(v, values) for k, v in value.items())
    if kind in (int, float):  # True is an int to Python, but never a size or a rate
        number = isinstance(value, (int, kind)) and not isinstance(value, bool)
        # an int serves as a float where it is one: 10**400 is not (float() of it raises OverflowError)
        return number and (kind is int or isinstance(value, float) or abs(value) <= sys.float_info.max)
    return isinstance(value, kind)


def kinds_said(hint: object) -> str:
    """What a value of the annotated type is, in words (`KIND_NAMES`): "a number or None", not Python's
    "float | None"."""
    names = [_kind_name(kind) for kind in kinds_of(hint)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _kind_name(kind: type) -> str:
    if typing.get_origin(kind) is tuple:
        return f"a list of {_plural(typing.get_args(kind)[0])}"
    if typing.get_origin(kind) is dict:
        keys, values = (" or ".join(map(_plural, kinds_of(arg))) for arg in typing.get_args(kind))
        return f"a dict of {keys} to {values}"
    return KIND_NAMES.get(kind) or f"a {kind.__name__.lower()}"  # a checkpoint's torch.Tensor: "a tensor"


def _plural(kind: type) -> str:
    return KIND_NAMES[kind].split(" ", 1)[1] + "s"  # "an integer" -> "integers"


def check_choices(config: object) -> None:
    """Every field of a config dataclass whose metadata lists its `choices` holds one of them, read as
    halfwidth.py's rule reads it (`ｂｆ１６` is bf16)."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        if choices and as_choice(getattr(config, f.name), choices) not in choices:
            raise CharLMError(
                f"{shown_name(f)} must be one of {', '.join(choices)}, not {SHOWN.repr(getattr(config, f.name))}"
            )


def store_as_read(config: object) -> None:
    """Each text field read by halfwidth.py's rule (a choice, or marked `half_width`: a duration, a device)
    kept as read, once it is checked: run.json and `charlm info` say '10m' where '１０ｍ' was typed, and
    code that compares a choice meets 'bf16'. Its errors, before, show it as typed."""
    for f in dataclasses.fields(config):
        value, choices = getattr(config, f.name), f.metadata.get("choices")
        if isinstance(value, str) and choices:
            setattr(config, f.name, as_choice(value, choices))
        elif isinstance(value, str) and f.metadata.get("half_width"):
            setattr(config, f.name, half_width(value))


def from_options(
    config_class: type[T], options: dict, what: str = "option", instead: dict[str, str] | None = None
) -> T:
    """A config dataclass of keyword options, an unknown one refused (`check_names`) as what its caller
    gave (`what`: "unknown sampling option", where a `keywords_named` constructor says "charlm.SampleConfig
    field"), with what it was likely meant to be or, from `instead`, what does its job."""
    check_names(config_class, options, what, instead=instead)
    return config_class(**options)


def missing_keys(record: dict, names: Iterable[str]) -> str | None:
    """The `names` a stored record lacks, every one (`no 'hidden', 'dropout'`), so whoever mends the file
    puts them all back at once rather than one a try; None where none is missing."""
    missing = [name for name in names if name not in record]
    return f"no {', '.join(map(repr, missing))}" if missing else None


def check_names(
    config_class: type,
    options: dict,
    what: str = "option",
    arguments: tuple[str, ...] = (),
    instead: dict[str, str] | None = None,
) -> None:
    """Refuses keywords that are not `config_class`'s fields, each with what it was likely meant to be:
    a field or one of the calling function's own `arguments` spelled alike, or `instead[name]`, what
    does the job of a name a caller may bring from elsewhere (an option of the command line, say)."""
    check_keywords([f.name for f in dataclasses.fields(config_class)], options, what, arguments, instead)


def check_keywords(
    names: list[str],
    options: dict,
    what: str,
    arguments: tuple[str, ...] = (),
    instead: dict[str, str] | None = None,
) -> None:
    """`check_names` for keywords known by their `names` alone (a function's parameters)."""
    known = sorted(names)
    unknown = sorted(set(options) - set(known))
    if unknown:
        instead = instead or {}
        named = ", ".join(
            f"{name} ({instead[name]})" if name in instead else meant(name, [*known, *arguments]) for name in unknown
        )
        raise CharLMError(f"unknown {agreeing(what, len(unknown))} {named}; known: {', '.join(known)}")


def keywords_named(config_class: type[T]) -> type[T]:
    """A config dataclass whose constructor refuses a keyword that is not one of its fields as
    charlm.train refuses a mistyped option, naming the field it likely meant (`check_keywords`), where
    charlm.Config(hiden=3) would meet Python's bare TypeError. Applied over `@dataclass`."""
    build = config_class.__init__
    names = [f.name for f in dataclasses.fields(config_class)]
    what = f"charlm.{config_class.__name__} field"

    @functools.wraps(build)
    def __init__(self, *args: Any, **keywords: Any) -> None:
        check_keywords(names, keywords, what)
        try:
            build(self, *args, **keywords)
        except TypeError:  # a field missing or given twice, or too many by position: said, not Python's bare error
            check_arguments(inspect.signature(config_class), args, keywords, f"charlm.{config_class.__name__}")
            raise

    config_class.__init__ = __init__
    return config_class


def check_arguments(signature: inspect.Signature, args: tuple, keywords: dict, who: str) -> None:
    """Refuses arguments that `signature` cannot take (one missing, too many, one given twice) in one line
    that lists what `who` takes, where Python's TypeError ("missing 4 required positional arguments") would
    not say which they are."""
    try:
        signature.bind(*args, **keywords)
    except TypeError as e:
        raise CharLMError(f"{who}: {e}; it takes ({', '.join(signature.parameters)})") from None


def meant(name: str, known: list[str]) -> str:
    """A mistyped keyword and the known one it is closest to, as the CLI suggests for a mistyped option."""
    close = difflib.get_close_matches(name, known, n=1)
    return f"{name} (did you mean {close[0]}?)" if close else name
