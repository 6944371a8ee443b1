"""Click options built from charlm's config dataclasses, and the one --device rule, for every command."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable
from typing import TypeVar

import click

from ..config import added_limits
from ..device_names import DEVICE_FORMS, STEP_DEVICE, WHOLE_TEXTS_DEVICE
from ..fields import SHOWN, option_name
from ..halfwidth import as_choice, as_number, dashes_hint, option_places, option_typed, options_read, retype_hint
from .completion import BY_FIELD, devices

F = TypeVar("F", bound=Callable)

# --device's default by the kind of work (device_names.py's rule; train's is Config.device).
DEVICE_DEFAULTS = {"whole texts": WHOLE_TEXTS_DEVICE, "one character a step": STEP_DEVICE}


def device_option(work: str) -> Callable[[F], F]:
    """A command's --device, whose default follows the `work` it does (`DEVICE_DEFAULTS`)."""
    return click.option(
        "--device",
        default=DEVICE_DEFAULTS[work],
        show_default=True,
        help=DEVICE_FORMS,
        shell_complete=devices,
    )


class HalfWidth(click.ParamType):
    """A click number type that reads full-width forms and dashes as ASCII (`--random-seed １２`, `--top-p ０．９`,
    `--presence-penalty –1`, as halfwidth.py's rule), and names what to retype in a value that is no number even so."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        if isinstance(value, str):
            number, kind = (int, "integer") if isinstance(self, click.types.IntParamType) else (float, "float")
            try:
                value = number(as_number(value))  # read once; click's convert takes the number as it is
            except ValueError:  # click's words, and what to retype
                self.fail(f"{SHOWN.repr(value)} is not a valid {kind}{retype_hint(value)}", param, ctx)
        return super().convert(value, param, ctx)


class HalfWidthInt(HalfWidth, click.types.IntParamType):
    pass


class HalfWidthFloat(HalfWidth, click.types.FloatParamType):
    pass


class HalfWidthIntRange(HalfWidth, click.IntRange):
    pass


class WholeRunSteps(HalfWidthInt):
    """--max-steps, whose '+' is kept (`+100`, not 100) for the run's plan to refuse with the whole run's
    figure (config.refuse_added_limits): limits count the whole run, and 100 more than its 200 is 300."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        return value if added_limits({"max_steps": value}) else super().convert(value, param, ctx)


NUMBER_TYPES = {int: HalfWidthInt(), float: HalfWidthFloat()}


class HalfWidthChoice(click.Choice):
    """click's named choices read as halfwidth.py's rule reads numbers: `--precision ｂｆ１６` is bf16."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        return super().convert(as_choice(value, self.choices), param, ctx)

    def get_invalid_choice_message(self, value: object, ctx: click.Context | None) -> str:
        """click's words, with a value of thousands of characters shown shortened (`SHOWN`)."""
        return f"{SHOWN.repr(value)} is not one of {', '.join(map(repr, self.choices))}."


def shown_default(default: object) -> str:
    """The `[default: ...]` a help text ends with: `off` for a flag, none for an option unset by default
    (its help says what unset means)."""
    if default is None:
        return ""
    return f"  [default: {'off' if default is False else default}]"


def options_of(config_class: type, types: dict | None = None, only: tuple[str, ...] | None = None) -> Callable[[F], F]:
    """One click option per field of a config dataclass (or the fields named in `only`). Default None
    means "not given", so the defaults stay in the dataclass; `types` overrides a field's click type.
    A field marked `command_line=False` (fields.option) is the Python API's only."""

    def decorate(command: F) -> F:
        hints = typing.get_type_hints(config_class)
        for f in reversed(dataclasses.fields(config_class)):
            if (only is not None and f.name not in only) or f.metadata.get("command_line") is False:
                continue
            kind = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
            help_text = f"{f.metadata['help']}{shown_default(f.default)}"
            name, complete = f"--{option_name(f.name)}", BY_FIELD.get(f.name)
            if kind is bool:
                option = click.option(name, f.name, is_flag=True, default=None, help=help_text)
            else:
                choices = f.metadata.get("choices")
                kind = (types or {}).get(f.name, HalfWidthChoice(choices) if choices else NUMBER_TYPES.get(kind, kind))
                metavar = f.metadata.get("metavar")
                option = click.option(
                    name, f.name, type=kind, default=None, help=help_text, metavar=metavar, shell_complete=complete
                )
            command = option(command)
        return command

    return decorate


def dashes_read(command: click.Command, name: str, group: click.Context, words: list[str]) -> list[str]:
    """The `words` given to `command` (as `name`, in `group`) with each option typed after an input
    method's dashes read as that option (`——top-p 0.9`: halfwidth.py's `options_read`). A word so typed
    that names none of its options is refused as click refuses `--frob`, with the dashes to retype."""
    params = [param for param in command.get_params(group) if isinstance(param, click.Option)]
    options = [flag for param in params for flag in (*param.opts, *param.secondary_opts)]
    taking_values = [flag for param in params if not (param.is_flag or param.count) for flag in param.opts]
    read = options_read(words, options, taking_values)
    for at in option_places(read, taking_values):
        if dashes_hint(read[at]) and not group.resilient_parsing:  # Tab completion refuses nothing
            refusal = click.NoSuchOption(read[at], ctx=click.Context(command, group, name))
            # the options closest to the name as typed with `--` (click's own are to '——top-q', dashes and all)
            refusal.possibilities = difflib.get_close_matches(
                option_typed(read[at])[0], [o for o in options if o[:2] == "--"]
            )
            raise refusal
    return read
