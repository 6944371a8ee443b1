"""What Tab completes on the command line (click's shell completion: `eval "$(_CHARLM_COMPLETE=bash_source
charlm)"`): run names, catalog corpora, form names, devices and export formats; where no name fits, file
names (bash's script drops names given with them, so never both). Each Tab press runs charlm, so these
read folder names and small files only, never a checkpoint."""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem

from .. import catalog, runs
from ..device_names import DEVICES
from ..export_names import FORMATS, WEIGHTS
from ..forms import FORM_NAMES


def paths(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """File and folder names, as the shell itself would complete them."""
    return [CompletionItem(incomplete, type="file")]


def starting_with(names: list[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(name) for name in sorted(set(names)) if name.startswith(incomplete)]


def run_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A RUN as `runs.resolve` finds one: a run's name under checkpoints/ or a corpus name (its latest
    run), the renamed text's a run resumed on too; a path (with a `/`) or a .pt file is the shell's file completion."""
    if "/" in incomplete:
        return paths(ctx, param, incomplete)
    folders = runs.run_folders()
    names = [folder.name for folder in folders] + [name for f in folders for name in runs.corpus_names_of_run(f)]
    return starting_with(names, incomplete) or paths(ctx, param, incomplete)


def corpus_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A catalog corpus (`charlm corpus list`)."""
    return starting_with(list(catalog.CATALOG), incomplete)


def corpora(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """What `charlm train` reads: a catalog corpus's name, else a text file or folder."""
    return corpus_names(ctx, param, incomplete) or paths(ctx, param, incomplete)


def form_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Every name `--form` takes (forms.FORM_NAMES)."""
    return starting_with(list(FORM_NAMES), incomplete)


def devices(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return starting_with(list(DEVICES), incomplete)


def export_formats(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return starting_with(list(FORMATS), incomplete)


def export_weights(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return starting_with(list(WEIGHTS), incomplete)


# A config field's completion, for the options commands/options.py builds from the config dataclasses.
# --eval-also takes a RUN as --init-from does (its held-out text), or a FILE: run names, else file names.
BY_FIELD = {"device": devices, "form": form_names, "eval_also": run_names, "tensorboard": paths}
