"""The `charlm` command: train, sample, eval, info. Options of `train` are generated from Config."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
import typing
import warnings
from pathlib import Path

import click

from . import api, catalog, checkpoint, finetune, runs, sampler, sizing, tokens
from .config import CORPUS_OPTIONS, Config, SampleConfig, option_name, parse_temperatures
from .corpus import read_text, read_texts
from .device import precision_text
from .distributed import Ranks
from .errors import CharLMError
from .evaluate import bits_per_char
from .inspection import analysis, page
from .inspection.run import MAX_CHARS, inspect_run
from .reporting import read_metrics
from .scoring import unseen_note
from .serve import serve as run_server
from .serve.config import ServeConfig
from .trainer import SAMPLE_CHARS
from .vocab import UnknownCharacterWarning

# --device's default, by the kind of work (one rule for every command; train's is Config.device): over
# whole texts at once, the best device present; one character a step, the CPU, fastest there for
# charlm's model sizes (docs/scaling.md).
DEVICE_DEFAULTS = {"whole texts": "auto", "one character a step": "cpu"}


def device_option(work: str):
    return click.option(
        "--device", default=DEVICE_DEFAULTS[work], show_default=True, help="cpu, cuda, cuda:N, mps or auto"
    )


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
        except KeyboardInterrupt:  # only training has checkpoints to speak of; a server just stops
            if ctx.invoked_subcommand == "train":
                click.echo("interrupted; checkpoints already written are intact", err=True)
            sys.exit(130)
        except OSError as e:  # a file error no stage turned into a CharLMError: still one line
            raise click.ClickException(f"{e.filename or 'file'}: {e.strerror or e}") from None
        except MemoryError:
            raise click.ClickException("out of memory; use a smaller --hidden, --layers or --batch-size") from None


def options_of(config_class, types: dict | None = None, only: tuple[str, ...] | None = None):
    """One click option per field of a config dataclass (or the fields named in `only`). Default None
    means "not given", so the defaults stay in the dataclass; `types` overrides a field's click type."""

    def decorate(command):
        hints = typing.get_type_hints(config_class)
        for f in reversed(dataclasses.fields(config_class)):
            if only is not None and f.name not in only:
                continue
            kind = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
            help_text = f"{f.metadata['help']}  [default: {f.default}]"
            name = f"--{option_name(f.name)}"
            if kind is bool:
                option = click.option(name, f.name, is_flag=True, default=None, help=help_text)
            else:
                choices = f.metadata.get("choices")
                kind = (types or {}).get(f.name, click.Choice(choices) if choices else kind)
                option = click.option(name, f.name, type=kind, default=None, help=help_text)
            command = option(command)
        return command

    return decorate


@click.group(cls=Group)
@click.version_option(package_name="charlm")
def main() -> None:
    """Character-level language models: train on a novel, sample new text from a seed."""
    warnings.showwarning = lambda message, *args: click.echo(f"warning: {message}", err=True)


@main.group()
def corpus() -> None:
    """Prepare corpora: encode once into a cached, memory-mapped token stream."""


@corpus.command("list")
def corpus_list() -> None:
    """The corpora `charlm corpus get NAME` and `charlm train NAME` know."""
    click.echo(catalog.listing())


@corpus.command("get")
@click.argument("name")
@click.option("--quiet", is_flag=True, help="no progress bar")
def corpus_get(name: str, quiet: bool) -> None:
    """Download (or copy from $CHARLM_CORPUS_MIRROR) and verify corpus NAME; print its path."""
    click.echo(catalog.get(name, quiet))


@corpus.command("prepare")
@click.argument("paths", nargs=-1, required=True)
@options_of(Config, only=CORPUS_OPTIONS)
@click.option("--quiet", is_flag=True, help="no progress bar")
def corpus_prepare(paths: tuple[str, ...], quiet: bool, **options) -> None:
    """Encode PATHS (files or folders of .txt files) into corpora/cache/ and print a summary."""
    config = Config(**{k: v for k, v in options.items() if v is not None})  # validated as `train` does
    prepared = tokens.load_corpus(list(paths), config, quiet=quiet)
    click.echo(f"cache        {tokens.CACHE_ROOT / prepared.key}")
    click.echo(tokens.summary(prepared.meta))


@main.command()
@click.argument("corpus", nargs=-1)
@click.option("--out", help="run folder: a name (under checkpoints/) or a path  [default: CORPUS-DATE-TIME]")
@click.option(
    "--resume",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[RUN]",
    help="continue a run (default: the most recent); only limits and the learning rate may change",
)
@click.option(
    "--init-from",
    metavar="RUN",
    help="fine-tune: a new run whose weights start from RUN's (its architecture; new characters added)"
    "  [default: none: new weights]",
)
@options_of(Config)
def train(corpus: tuple[str, ...], out: str | None, resume: str | None, init_from: str | None, **options) -> None:
    """Train on CORPUS: text files, folders of .txt files or catalog names (none: the built-in Shakespeare).

    Under `torchrun --nproc_per_node N -m charlm train ...` the N processes train one model together."""
    given = {k: v for k, v in options.items() if v is not None}
    if init_from is not None and resume is not None:
        raise CharLMError(finetune.WITH_RESUME)
    ranks = Ranks.from_env()
    if resume is None:
        # a batch that does not split fails before the processes meet (a GPU's fitted batch is a multiple of 16)
        ranks.shard(Config(**given).batch_size or sizing.DEFAULT_BATCH_SIZE)
    with ranks.group():
        train_ranks(corpus, out, resume, given, ranks, init_from)


def train_ranks(
    corpus: tuple[str, ...],
    out: str | None,
    resume: str | None,
    given: dict,
    ranks: Ranks,
    init_from: str | None = None,
) -> None:
    """`train` as one rank of the job (a plain process is rank 0 of 1); only rank 0 prints."""
    if resume is not None:
        trainer = api.resume_run(resume or None, given, list(corpus), ranks)
    elif init_from is not None:
        trainer = api.start_finetune(init_from, given, list(corpus), out, ranks)
    else:
        trainer = api.start_run(Config(**given), list(corpus), out, ranks)
    config, model, run_dir = trainer.config, trainer.model, trainer.run_dir
    if not ranks.leader:
        trainer.fit()
        return
    if not config.quiet:
        click.echo(
            f"training {model.architecture()} ({model.num_parameters():,} parameters) "
            f"on {trainer.corpus.name}: {len(trainer.corpus.train_ids):,} tokens, vocabulary "
            f"{trainer.corpus.vocab.size_text()}; {trainer.device} {precision_text(trainer.device, trainer.precision)}"
            f"{f' x {ranks.world} processes' if ranks.active else ''}; run folder {run_dir}",
            err=True,
        )
        if trainer.base:
            vocab = trainer.corpus.vocab
            added = (
                f"{len(vocab) - trainer.base.vocab_size:,} new characters"
                if vocab.one_char_per_id
                else "its sentencepiece tokenizer kept (new characters are spelled as bytes)"
            )
            click.echo(f"fine-tuning from {trainer.base.describe()}; {added}", err=True)
    trainer.fit()
    progress = trainer.progress
    saved = f"saved in {run_dir}"
    if trainer.save_error:
        kept = f"{run_dir} holds step {trainer.saved_step}" if trainer.saved_step else f"{run_dir} holds no checkpoint"
        saved = f"not saved: the last checkpoint could not be written ({trainer.save_error}); {kept}"
    if trainer.stopped_early:
        click.echo(f"stopped at step {progress.step}; {saved}. Resume with: charlm train --resume {run_dir}")
        sys.exit(128 + trainer.stop_signal)  # the shell's status for the signal, so a script sees it did not finish
    click.echo(
        f"done: step {progress.step}, {progress.elapsed:.0f}s, validation {progress.val_bpc:.3f} bpc "
        f"(best {progress.best_bpc:.3f}); {saved}"
    )
    if not config.quiet and trainer.saved_step:
        best = checkpoint.read(runs.resolve(run_dir))
        click.echo(f"--- sample from best.pt, step {best.progress.step} (charlm sample --checkpoint {run_dir}) ---")
        text = api.generate(best.model(), "", length=SAMPLE_CHARS, temperature=0.8, random_seed=config.random_seed)
        click.echo(text.lstrip("\n"))


@main.command()
@click.option("--checkpoint", "target", metavar="RUN_OR_FILE", help="run folder or .pt file  [default: latest run]")
@click.option("--seed", default="", help="text to start from (printed first); empty: the start of a line")
@click.option("--seed-file", type=click.Path(dir_okay=False), help="read the seed from this file instead")
@click.option("--output", type=click.Path(dir_okay=False), help="also write the text to this file")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per sample, for scripts")
@click.option("--interactive", is_flag=True, help="co-write: type a line, the model continues it; Ctrl-D ends")
@device_option("one character a step")
@options_of(SampleConfig, types={"temperature": str})
def sample(
    target: str | None,
    seed: str,
    seed_file: str | None,
    output: str | None,
    as_json: bool,
    interactive: bool,
    device: str,
    **given,
) -> None:
    """Generate text from a trained model, streaming it as it is made.

    `--temperature 0.5,0.8,1.0` draws one sample per temperature, each labeled."""
    given = {k: v for k, v in given.items() if v is not None}
    if "stop" in given:  # let a shell user write --stop '\n\n'
        given["stop"] = given["stop"].replace("\\n", "\n").replace("\\t", "\t")
    temperatures = parse_temperatures(given.pop("temperature")) if "temperature" in given else (None,)
    configs = [SampleConfig(**given, **({"temperature": t} if t is not None else {})) for t in temperatures]
    if seed_file:
        seed = read_text(Path(seed_file))
    model = checkpoint.load(target, device)
    if not interactive:  # a seed the model cannot read is refused before anything is printed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnknownCharacterWarning)
            model.vocab.encode(seed or model.vocab.start_text(), what="--seed")
    with contextlib.ExitStack() as stack:
        copy = stack.enter_context(open(output, "w", encoding="utf-8")) if output else None

        def emit(text: str, screen: bool = True) -> None:
            if screen:
                sys.stdout.write(text)
                sys.stdout.flush()
            if copy:
                copy.write(text)

        if interactive:
            if sys.stdin.isatty():
                click.echo("type a line and press Enter; the model continues it. Ctrl-D ends.", err=True)
            # A terminal shows what is typed itself; printing it again would show it twice.
            converse(model, configs[0], sys.stdin, emit, echo=not (sys.stdin.isatty() and sys.stdout.isatty()))
            return
        for config in configs:
            label = f"temperature {config.temperature}" if len(configs) > 1 else None
            if as_json:
                for i, text in enumerate(sampler.generate(model, seed, **dataclasses.asdict(config))):
                    emit(json.dumps({"sample": i + 1, "temperature": config.temperature, "text": text}) + "\n")
            elif config.num_samples == 1:
                emit(f"--- {label} ---\n" if label else "")
                for pieces in sampler.stream_samples(model, seed, config):
                    emit(pieces[0])
                emit("\n")
            else:
                for i, text in enumerate(sampler.generate(model, seed, **dataclasses.asdict(config))):
                    emit(f"--- sample {i + 1}{', ' + label if label else ''} ---\n{text}\n")


def converse(model, config: SampleConfig, lines, emit, echo: bool = True) -> sampler.Conversation:
    """Co-writing: each typed line, its line break included, is fed to the model, which continues it;
    a line break ends the turn and is fed with the next line. So the model always reads exactly the
    text shown. `echo`: print the typed lines (not when the terminal has shown them already)."""
    conversation = sampler.Conversation(model, config)
    line_break = ""
    for line in lines:
        emit(line, screen=echo)
        for piece in conversation.turn(line_break + line):
            emit(piece)
        emit("\n")
        line_break = "\n"
    return conversation


@main.command("eval")
@click.argument("target", metavar="CHECKPOINT")
@click.argument("files", nargs=-1, required=True)
@click.option("--encoding", default="utf-8", show_default=True, help="text encoding of FILES")
@device_option("whole texts")
@click.option("--quiet", is_flag=True, help="no progress bar")
def evaluate(target: str, files: tuple[str, ...], encoding: str, device: str, quiet: bool) -> None:
    """Bits per character of FILES under the model of CHECKPOINT (a run folder or .pt file)."""
    model = checkpoint.load(target, device)
    text = read_texts(files, encoding, model.vocab.normalize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownCharacterWarning)  # reported below, counted
        ids = model.vocab.encode(text, what=", ".join(files), unseen=True)
    if ids.numel() < 2:
        raise CharLMError(f"{files[0]}: need at least 2 characters to score")
    bpc = bits_per_char(model, ids, progress=not quiet)
    click.echo(f"{bpc:.4f} bits per character over {len(text):,} characters")
    if unseen := unseen_note(model.vocab, text[1:]):  # the first character is read, never scored
        click.echo(unseen)


@main.command()
@click.argument("target", metavar="CHECKPOINT", required=False)
def info(target: str | None) -> None:
    """Config, size and progress of a checkpoint (default: the latest run's best)."""
    path = runs.resolve(target)
    from .export import listed

    rows = [("checkpoint", str(path)), *checkpoint.read(path).summary()]
    rows += [("exports", line) for line in listed(path.parent)]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label:<{width}}  {value}")


@main.command("export")
@click.argument("target", metavar="RUN", required=False)
@click.option(
    "--format", "format_", required=True, help="html (a page that samples in the browser), onnx or safetensors"
)
@click.option("--output", help="file (html, onnx) or folder (safetensors) to write  [default: RUN/exports/]")
@click.option("--weights", help="html: the weights' stored precision, fp32, fp16 or int8  [default: fp16]")
def export_command(target: str | None, format_: str, output: str | None, weights: str | None) -> None:
    """Export the model of RUN (default: the latest run) to run without charlm: one HTML page,
    an ONNX file, or a safetensors model folder. See docs/export.md."""
    from . import export

    if weights is not None and weights not in export.WEIGHTS:
        raise CharLMError(f"--weights {weights}: unknown; use one of {', '.join(export.WEIGHTS)}")
    click.echo(f"wrote {export.export(target, format_, output, weights)}")


@main.command()
@click.argument("run_names", nargs=-1, required=True, metavar="RUN...")
@click.option("--output", default="curves.png", show_default=True, help="PNG file to write")
def plot(run_names: tuple[str, ...], output: str) -> None:
    """Validation and training bpc of RUNs against time and characters seen, in one PNG."""
    from .plot import plot_runs

    folders = [runs.resolve(run, prefer=runs.LATEST).parent for run in run_names]
    click.echo(f"wrote {plot_runs(folders, output)}")


@main.command("runs")
@click.option("--root", default=str(runs.CHECKPOINT_ROOT), show_default=True, help="folder holding the runs")
def list_runs(root: str) -> None:
    """A table of the runs under checkpoints/: corpus, size, steps, best bpc, last update."""
    folders = runs.run_folders(Path(root))
    if not folders:
        raise CharLMError(f"no runs under {runs.where(Path(root))}; train one with `charlm train`")
    width = max(len("run"), *(len(folder.name) for folder in folders))
    click.echo(f"{'run':<{width}} {'corpus':<18} {'model':<22} {'steps':>9} {'best bpc':>9}  last update")
    for folder in folders:
        info = runs.read_run_info(folder) or {}
        config = info.get("config", {})
        rows = read_metrics(folder)
        best = min((r["val_bpc"] for r in rows if r.get("val_bpc") is not None), default=None)
        model = f"{config.get('layers', '?')}x{config.get('hidden', '?')} {config.get('cell', '')}".strip()
        if "parameters" in info:
            model += f" {info['parameters'] / 1e6:.1f}M"
        updated = time.strftime("%Y-%m-%d %H:%M", time.localtime((folder / runs.LATEST).stat().st_mtime))
        click.echo(
            f"{folder.name:<{width}} {info.get('corpus', '?'):<18} {model:<22} "
            f"{rows[-1]['step'] if rows else 0:>9,} {f'{best:.4f}' if best is not None else '-':>9}  {updated}"
        )


@main.command()
@click.argument("targets", nargs=-1, metavar="[RUN]...")
@options_of(ServeConfig)
def serve(targets: tuple[str, ...], **given) -> None:
    """Serve models over HTTP: an OpenAI-compatible API and a page to write with, at http://HOST:PORT/.

    Each RUN (a run folder, run name or .pt file; default: the latest run) is a model whose id is its
    run name. Needs `pip install 'charlm[serve]'`."""
    run_server(list(targets), ServeConfig(**{k: v for k, v in given.items() if v is not None}))


@main.command("inspect")
@click.argument("paths", nargs=-1, metavar="[RUN] [FILE]")
@click.option("--output", default="report.html", show_default=True, help="HTML page to write")
@click.option(
    "--max-chars",
    default=MAX_CHARS,
    show_default=True,
    type=click.IntRange(min=1),
    help="characters to inspect",
)
@click.option("--held-out", is_flag=True, help="inspect the run's held-out text (its validation split), not a FILE")
@click.option("--train-text", help="fit the n-gram baseline on this file  [default: the run's training split]")
@device_option("one character a step")
@click.option("--quiet", is_flag=True, help="no progress bar, no tables: only the page")
def inspect_command(
    paths: tuple[str, ...],
    output: str,
    max_chars: int,
    held_out: bool,
    train_text: str | None,
    device: str,
    quiet: bool,
) -> None:
    """What the model of RUN (default: the latest run) learned, seen on FILE, as one HTML page:
    surprise per character, cells that follow quotes or the line, gate saturation, bits saved over an
    n-gram. `charlm inspect FILE`, `charlm inspect RUN FILE` or `charlm inspect [RUN] --held-out`."""
    wanted = 0 if held_out else 1
    if len(paths) not in (wanted, wanted + 1) or (held_out and len(paths) > 1) or (not held_out and not paths):
        raise CharLMError("give [RUN] FILE, or [RUN] --held-out")
    target = paths[0] if len(paths) > wanted else None
    file = None if held_out else paths[-1]

    inspection, title = inspect_run(target, file, held_out, train_text, max_chars, device, quiet)
    Path(output).write_text(page.render(inspection, title), encoding="utf-8")
    if not quiet:
        click.echo(analysis.summary(inspection))
    click.echo(f"wrote {output}")
