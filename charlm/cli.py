"""The `charlm` command: train, sample, eval, info. Options of `train` are generated from Config."""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import typing

import click

from . import checkpoint, sampler, trainer
from .config import Config, option_name
from .corpus import read_texts
from .errors import CharLMError


class Group(click.Group):
    """Every CharLMError becomes one line on stderr and exit status 1; `| head` closing the pipe is quiet."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CharLMError as e:
            raise click.ClickException(str(e)) from None
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)


@click.group(cls=Group)
@click.version_option(package_name="charlm")
def main() -> None:
    """Character-level language models: train on a novel, sample new text from a seed."""


def config_options(command):
    """One click option per Config field; default None means "not given", so defaults stay in Config."""
    hints = typing.get_type_hints(Config)
    for f in reversed(dataclasses.fields(Config)):
        kind = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
        help_text = f"{f.metadata['help']}  [default: {f.default}]"
        if kind is bool:
            option = click.option(f"--{option_name(f.name)}", f.name, is_flag=True, default=None, help=help_text)
        else:
            choices = f.metadata.get("choices")
            option = click.option(
                f"--{option_name(f.name)}",
                f.name,
                type=click.Choice(choices) if choices else kind,
                default=None,
                help=help_text,
            )
        command = option(command)
    return command


@main.command()
@click.argument("corpus", nargs=-1)
@click.option("--out", help="run folder: a name (under checkpoints/) or a path  [default: CORPUS-DATE-TIME]")
@click.option(
    "--resume",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[RUN]",
    help="continue a run (default: the most recent); only limits may change",
)
@config_options
def train(corpus: tuple[str, ...], out: str | None, resume: str | None, **options) -> None:
    """Train on CORPUS: text files or folders of .txt files (none: the built-in Shakespeare)."""
    given = {k: v for k, v in options.items() if v is not None}
    if resume is not None:
        run = trainer.resume(resume or None, given, list(corpus))
    else:
        run = trainer.start(Config(**given), list(corpus), out)
    config = run.config
    if not config.quiet:
        click.echo(
            f"training {config.layers}x{config.hidden} {config.cell} ({run.model.num_parameters():,} parameters) "
            f"on {run.corpus.name}: {len(run.corpus.train_text):,} chars, {len(run.vocab)} distinct; "
            f"run folder {run.run_dir}",
            err=True,
        )
    run.fit()
    state = run.run
    if run.stopped_early:
        click.echo(
            f"stopped at step {state.step}; saved {run.run_dir}. Resume with: charlm train --resume {run.run_dir}"
        )
        return
    click.echo(
        f"done: step {state.step}, {state.elapsed:.0f}s, validation {state.val_bpc:.3f} bpc "
        f"(best {state.best_bpc:.3f}); saved in {run.run_dir}"
    )
    if not config.quiet:
        model = checkpoint.load(run.run_dir)
        click.echo(f"--- sample (charlm sample --checkpoint {run.run_dir}) ---")
        click.echo(model.generate("", length=300, temperature=0.8, random_seed=config.random_seed).lstrip("\n"))


_SAMPLE = inspect.signature(sampler.generate).parameters


@main.command()
@click.option("--checkpoint", "target", metavar="RUN_OR_FILE", help="run folder or .pt file  [default: latest run]")
@click.option("--seed", default="", help="text to start from (printed first)")
@click.option("--length", type=int, default=_SAMPLE["length"].default, show_default=True, help="new characters")
@click.option("--temperature", type=float, default=_SAMPLE["temperature"].default, show_default=True)
@click.option("--top-k", type=int, default=None, help="sample only among the K likeliest characters")
@click.option("--greedy", is_flag=True, help="always take the likeliest character")
@click.option("--num-samples", type=int, default=1, show_default=True)
@click.option("--random-seed", type=int, default=None, help="makes the sample reproducible")
def sample(target: str | None, seed: str, num_samples: int, **options) -> None:
    """Generate text from a trained model, streaming it as it is made."""
    sampler.check_options(options["length"], options["temperature"], options["top_k"], num_samples)
    model = checkpoint.load(target)
    if num_samples == 1:

        def stream(_: int, text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        sampler.generate(model, seed, num_samples=1, on_text=stream, **options)
        sys.stdout.write("\n")
        return
    for i, text in enumerate(sampler.generate(model, seed, num_samples=num_samples, **options)):
        click.echo(f"--- sample {i + 1} ---\n{text}")


@main.command("eval")
@click.argument("target", metavar="CHECKPOINT")
@click.argument("files", nargs=-1, required=True)
@click.option("--encoding", default="utf-8", show_default=True)
def evaluate(target: str, files: tuple[str, ...], encoding: str) -> None:
    """Bits per character of FILES under the model of CHECKPOINT (a run folder or .pt file)."""
    model = checkpoint.load(target)
    text = read_texts(files, encoding)
    ids = model.vocab.encode(text, what=", ".join(files))
    if ids.numel() < 2:
        raise CharLMError(f"{files[0]}: need at least 2 characters to score")
    click.echo(f"{trainer.bits_per_char(model, ids):.4f} bits per character over {ids.numel():,} characters")


@main.command()
@click.argument("target", metavar="CHECKPOINT", required=False)
def info(target: str | None) -> None:
    """Config, size and progress of a checkpoint (default: the latest run's best)."""
    path = checkpoint.resolve(target)
    payload = checkpoint.read_checkpoint(path)
    model = checkpoint.model_from_payload(payload)
    best = payload.get("best_bpc")
    click.echo(f"checkpoint   {path}")
    click.echo(f"corpus       {payload['corpus']['name']} {payload['corpus']['sources'] or ''}".rstrip())
    click.echo(f"parameters   {model.num_parameters():,}")
    click.echo(f"vocabulary   {len(model.vocab)} characters")
    click.echo(f"steps        {payload['step']:,} ({payload['elapsed']:.0f}s)")
    click.echo(f"val bpc      {payload['val_bpc']:.4f} (best {best:.4f})" if best is not None else "val bpc      -")
    for key, value in payload["config"].items():
        click.echo(f"{key:<12} {value}")
