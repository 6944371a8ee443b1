"""Writes docs/cli.md, the option reference, from the click commands themselves, so it stays true.

python docs/make_cli_md.py          # rewrite docs/cli.md
(tests/test_docs.py fails when docs/cli.md differs from what this writes)
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click

from charlm.cli import main

OUTPUT = Path(__file__).with_name("cli.md")
DEFAULT = re.compile(r"\s*\[default: (.*)\]$")
PIPE = "\\|"  # a | inside a Markdown table cell


def option_row(param: click.Parameter) -> str:
    names = " / ".join(f"`{name}`" for name in param.opts)
    if isinstance(param.type, click.Choice):
        names += " " + PIPE.join(param.type.choices)
    elif not getattr(param, "is_flag", False):
        names += (
            f" {param.make_metavar(click.Context(main, **main.context_settings)).replace('|', PIPE)}"
            if param.metavar  # FILE|RUN: its | escaped, as a choice's
            else f" {param.type.name.upper()}"
        )
    text = (getattr(param, "help", None) or "").replace("|", PIPE)
    match = DEFAULT.search(text)
    if match:  # options generated from a config dataclass carry their default in the help text
        default, text = match.group(1), text[: match.start()]
    elif getattr(param, "is_flag", False):
        default = "off"
    else:
        unset = param.default is None or type(param.default).__name__ == "Sentinel"  # click 8.3's UNSET
        default = "" if unset else str(param.default)
    return f"| {names} | {default} | {text.strip()} |"


def command_section(path: list[str], command: click.Command) -> list[str]:
    lines = [f"## `{' '.join(path)}`", ""]
    context = click.Context(
        command, info_name=" ".join(path), **main.context_settings
    )  # -h too: click keeps the help option the first context made
    lines += [f"`{command.get_usage(context).removeprefix('Usage: ')}`", ""]
    if command.help:  # without the docstring's indent: a paragraph indented 4 spaces reads as code
        lines += [inspect.cleandoc(command.help), ""]
    options = [p for p in command.params if isinstance(p, click.Option)]
    if options:
        lines += ["| option | default | meaning |", "| --- | --- | --- |"]
        lines += [option_row(p) for p in options]
        lines.append("")
    return lines


def reference() -> str:
    lines = [
        "# Command reference",
        "",
        "Generated from the commands themselves by `python docs/make_cli_md.py`; `charlm COMMAND --help` prints",
        "the same. The defaults of `charlm train` live in one place, `charlm.Config` (`charlm/config.py`), and",
        "those of sampling in `charlm.SampleConfig`; the Python API takes the same names with underscores.",
        "",
        "`--device` follows one rule (`WHOLE_TEXTS_DEVICE`, `STEP_DEVICE` in `charlm/device_names.py`): work over",
        "whole texts at once (`train`, `eval`) defaults to `auto`, the best device present; work one character",
        "a step (`sample`, `inspect`, `serve`) defaults to `cpu`, fastest there for charlm's model sizes",
        "(docs/scaling.md).",
        "",
        "An option that takes a number, a duration, a list of numbers, a device or a named choice reads",
        "full-width forms, as a Chinese input method types them, as their ASCII ones (`charlm/halfwidth.py`; a",
        "Python caller's `max_time`, `device` and choices too): `--top-p ０．９`, `--temperature 0.5，0.8`,",
        "`--max-time １０ｍ`, `--precision ｂｆ１６`; a named choice reads in any case too (`--normalize NFC`, Unicode's own",
        "name, is `nfc`); a run keeps the value as read (run.json says `10m`, `nfc`). What has no ASCII form",
        "is named in the error with what to type instead: `--max-time 10分钟` says `(retype '分钟' as 'm')` (a",
        "duration's units are s, m and h) and `--max-time 一分钟` `(retype '一' as '1', '分钟' as 'm')` (a",
        "Chinese number from 一 to 九十九, with 两, 半 and 个: `两个半` as `2.5`, `1个半` as `1.5`; `三五`, three to five,",
        "is not named); a unit spelt out in English is named so too: `--max-time 5minutes` and `--max-time '2 hrs'`",
        "say `(retype 'minutes' as 'm')` and `(retype 'hrs' as 'h')`,",
        "`--lr 0。001` `(retype '。' as '.')`, and `--top-p 0.9，--length 3` that `--length` ran into the value, to",
        "be typed after a half-width space; `--length　5` (a full-width space after the option) says",
        "`a full-width space joins --length to its value; type a half-width space after --length`. An option's",
        "dashes as an input method types them (`——top-p 0.9`, `－－top-p`, or macOS's autocorrected `—top-p`),",
        "a web page's en dash (`–top-p`), a minus sign, or its name in full width (`－－ｔｏｐ－ｐ`) are read as",
        "`--top-p` where that is one of the command's options (a seed `——他说` stays text); before no option of",
        "it the error says `(retype '——' as '--')`. Within a number, those dashes are its minus: `--random-seed –5`",
        "(an en dash) is -5 and `--lr 1e−4` (a minus sign, as a paper writes it) is 1e-4.",
        "",
        "`charlm help COMMAND` or `charlm COMMAND -h` prints a command's help. Tab completes commands, options,",
        "run names (as `charlm runs` lists them), corpus names, the names an option takes (`--form`, `--device`,",
        "`--format`, `--precision`, ...), else file names; turn it on once per shell (in ~/.bashrc, ~/.zshrc, or",
        "fish's completions folder):",
        "",
        "```sh",
        'eval "$(_CHARLM_COMPLETE=bash_source charlm)"   # bash',
        'eval "$(_CHARLM_COMPLETE=zsh_source charlm)"    # zsh',
        "_CHARLM_COMPLETE=fish_source charlm > ~/.config/fish/completions/charlm.fish   # fish",
        "```",
        "",
    ]

    def walk(path: list[str], command: click.Command) -> None:
        if isinstance(command, click.Group):
            for name in sorted(command.commands):
                walk([*path, name], command.commands[name])
        else:
            lines.extend(command_section(path, command))

    walk(["charlm"], main)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(reference(), encoding="utf-8")
    print(f"wrote {OUTPUT}")
