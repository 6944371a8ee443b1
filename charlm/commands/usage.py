"""Usage errors (a mistyped option or command, a missing argument, a value of the wrong type) as one
line naming what was wrong and the --help that says what to type: click's own are four lines, its
usage and a hint around the error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO, Any

import click

from ..halfwidth import dashes_hint, joined_value_hint

# An option of one command typed to another that does its job another way, and that way (as api.py's
# TRAIN_INSTEAD says it for a keyword), said after the commands that have it: (command, option) -> what to type.
INSTEAD = {
    ("eval", "--eval-also"): "charlm eval RUN OTHER_RUN_OR_FILE... scores each text",
}


class OneLineUsageError(click.UsageError):
    """A usage error already worded as one line: shown as `Error: ...` alone, exit status 2, however
    click's context is attached to it on the way out."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.format_message()}", file=file, err=file is None)


# `charlm corpus` alone prints its help this way (click 8.2 on); that is help, not an error to reword
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", OneLineUsageError)  # (before 8.2, not an error)


@contextlib.contextmanager
def said_in_one_line(ctx: click.Context) -> Iterator[None]:
    """Rewords a usage error raised within as a OneLineUsageError; `ctx` is the group whose own options
    or commands were being read, for the errors click raises without naming a command."""
    try:
        yield
    except (OneLineUsageError, NO_ARGS_IS_HELP):
        raise
    except click.UsageError as e:
        raise OneLineUsageError(error_line(e, ctx)) from None


def error_line(error: click.UsageError, group: click.Context) -> str:
    """The line that says `error`: what was wrong (the option or command named as typed, the closest
    known one offered), then the --help of the command it was typed to."""
    if error.ctx is not None:
        command = error.ctx.command_path
    else:  # click's parser names no command: the one the group was starting, if any
        command = " ".join(filter(None, [group.command_path, group.invoked_subcommand]))
    help_command = f"{command} --help"
    if isinstance(error, click.NoSuchOption):
        if hint := joined_value_hint(error.option_name, command_options(error.ctx)):
            return f"{error.option_name}: {hint}"
        hint, guesses = dashes_hint(error.option_name), error.possibilities  # `——top-q`: an input method's dashes
        if owners := commands_with(error.option_name, (error.ctx or group).find_root()):
            typed_to = error.ctx.command.name if error.ctx else None
            hint = "; ".join(filter(None, [owners, INSTEAD.get((typed_to, error.option_name))]))
            # a name typed right: no typo to guess at, but this command's own name for it (--output: --out)
            guesses = [
                guess for guess in guesses or [] if error.option_name[2:] in guess or guess[2:] in error.option_name
            ]
        return f"no such option {error.option_name}{closest(guesses, hint)}; {help_command} lists them"
    if isinstance(getattr(error, "command_name", None), str):  # click 8.4's NoSuchCommand
        return f"no such command {error.command_name}{closest(error.possibilities)}; {help_command} lists them"
    if isinstance(error, click.MissingParameter) and error.param is not None:
        missing = f"{error.param.param_type_name} {parameter_name(error.param)}"
        return f"missing {missing}; {help_command} says what to give"
    if isinstance(error, click.BadParameter) and error.param is not None:
        return f"{parameter_name(error.param)}: {as_clause(error.message)}; {help_command} says what it takes"
    return f"{as_clause(error.format_message())}; {help_command} says what to type"


def command_options(ctx: click.Context | None) -> list[str]:
    """The option flags of the command `ctx` was reading (none where click named no command)."""
    return [flag for param in ctx.command.params for flag in param.opts] if ctx else []


def commands_with(option: str, root: click.Context) -> str:
    """`a charlm train option` for an option only other commands have (`charlm sample --lr`), read from
    click's command tree under the program's context `root` (its own --version left out); "" if none."""
    owners = sorted(
        path
        for path, command in commands_under(root.command)
        if path and any(option in param.opts + param.secondary_opts for param in command.params)
    )
    if not owners:
        return ""
    return f"a {root.command_path} {' and '.join(filter(None, [', '.join(owners[:-1]), owners[-1]]))} option"


def commands_under(command: click.Command, path: str = "") -> Iterator[tuple[str, click.Command]]:
    """`command` and every command of its groups, each with its words after the program's (`corpus get`)."""
    yield path, command
    for name, subcommand in getattr(command, "commands", {}).items():
        yield from commands_under(subcommand, f"{path} {name}".strip())


def closest(possibilities: list[str] | None, hint: str = "") -> str:
    """` (did you mean X?)` for the known name closest to a mistyped one (difflib's best first), if any,
    after what to retype in it (`hint`), if anything."""
    said = [hint] if hint else []
    said += [f"did you mean {possibilities[0]}?"] if possibilities else []
    return f" ({'; '.join(said)})" if said else ""


def parameter_name(param: click.Parameter) -> str:
    """An option as typed (its longest flag, `--max-chars`), an argument as its help shows it (`NAME`)."""
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name


def as_clause(message: str) -> str:
    """click's sentence as a clause of one line: lower case first, no full stop, no line breaks."""
    message = " ".join(message.split()).rstrip(".")
    return message[:1].lower() + message[1:]
