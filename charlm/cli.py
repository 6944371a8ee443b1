"""The `charlm` command: the group and its smaller commands (help, corpus, eval, info, export, plot, runs,
serve, inspect); `train` and `sample` live in commands/. Options are generated from the config dataclasses.

The command tree, its help and Tab completion need no model, so nothing imported at the top here loads
torch (seconds at every Tab press): a command imports what runs a model when it runs, Ctrl-C meanwhile
leaving at once (`stopping.leaving_at_once`)."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from . import catalog, console, files, runs, tables
from .commands import completion
from .commands.options import F, HalfWidthIntRange, dashes_read, device_option, options_of
from .commands.sample import sample
from .commands.train import train
from .commands.usage import OneLineUsageError, said_in_one_line
from .config import CORPUS_OPTIONS, Config
from .errors import CharLMError, SaidElsewhere, one_line, one_line_path
from .export_names import HTML_WEIGHTS
from .fields import SHOWN, call, on_command_line, path_typed, said
from .inspection import MAX_CHARS
from .serve.config import ServeConfig
from .stopping import leaving_at_once

if TYPE_CHECKING:
    from .checkpoint import Checkpoint
    from .model import CharLM


class Group(click.Group):
    """Every CharLMError becomes one line on stderr and exit status 1, every usage error one line and
    status 2 (commands/usage.py); `| head` closing the pipe is quiet. Under torchrun one process says
    it (see distributed.py): a bad option, which every rank reads alike, rank 0; each rank started by
    hand says it in its own terminal, naming itself (`process 1 of 2: ...`)."""

    group_class = type  # `charlm corpus` is one too: its commands' usage errors are one line

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with said_in_one_line(ctx):  # the group's own: `charlm --frob`
            return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """The command `args` name and the words it is given, an option typed with an input method's
        dashes (`——top-p`) read as that option (`dashes_read`)."""
        name, command, words = super().resolve_command(ctx, args)
        if command is None or isinstance(command, click.Group):
            return name, command, words
        return name, command, dashes_read(command, name, ctx, words)

    def invoke(self, ctx: click.Context) -> object:
        if ctx.parent is not None:  # `charlm corpus`: the root says its errors, once the usage is worded
            with said_in_one_line(ctx):
                return super().invoke(ctx)
        try:
            with on_command_line(), said_in_one_line(ctx):  # messages name options as the flags this user typed
                return super().invoke(ctx)
        except SaidElsewhere:
            from .launcher import leave_quietly

            leave_quietly(1)
        except click.UsageError as e:
            from .launcher import by_torchrun, first_rank, leave_quietly, rank_name, tell_launcher

            if not first_rank():
                if by_torchrun():  # rank 0 says it in torchrun's one terminal
                    leave_quietly(e.exit_code)
                e.message = f"{rank_name()}: {e.message}"  # a rank started by hand, in a terminal of its own
            tell_launcher(e.format_message())
            raise
        except CharLMError as e:
            raise click.ClickException(str(e)) from None
        except BrokenPipeError:
            console.to_nowhere(sys.stdout)
            sys.exit(0)
        except KeyboardInterrupt as e:  # only training has checkpoints to speak of; a server just stops
            if ctx.invoked_subcommand == "train":  # what the run folder holds: on stdout, as `stopped at step N` is
                click.echo(one_line(str(e)) or "interrupted; checkpoints already written are intact")
            sys.exit(130)
        except OSError as e:  # a file error no stage turned into a CharLMError: still one line
            said = f"{e.filename}: {e.strerror or e}" if e.filename else console.unnamed_write(e)
            raise click.ClickException(one_line(said)) from None
        except MemoryError:
            raise click.ClickException("out of memory; use a smaller --hidden, --layers or --batch-size") from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})  # -h: every command's too
@click.version_option(package_name="charlm")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Character-level language models: train on a novel, sample new text from a seed."""
    console.tolerate_unshowable(sys.stdout)
    warnings.showwarning = show_warning
    # torch 2.14 notes that it checks a sparse tensor as weights_only reads one: no charlm file holds one,
    # and the reader refuses the tensor in its own line, which the note would stand above as a second
    warnings.filterwarnings("ignore", "Validating sparse tensor invariants", UserWarning)
    # and that a body is not of the pickle protocol torch.save writes (charlm's: 2), a file charlm refuses too
    warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
    ctx.with_resource(on_command_line(ctx.invoked_subcommand or ""))  # until it ends: advice names it
    if ctx.invoked_subcommand != "serve":  # a closed terminal ends a server at once: it has nothing to keep
        ctx.with_resource(console.outlive_terminal())


@main.command("help")
@click.argument("names", nargs=-1, metavar="[COMMAND]...")
@click.pass_context
def help_command(ctx: click.Context, names: tuple[str, ...]) -> None:
    """The help of COMMAND (`charlm help corpus get`), as `charlm COMMAND --help` prints it; alone, charlm's."""
    command, context = main, ctx.parent
    for given, name in enumerate(names):
        if not isinstance(command, click.Group):
            shown = " ".join(names[:given])
            raise OneLineUsageError(f"{shown} has no commands; {ctx.command_path} {shown} shows its help")
        _, command, _ = command.resolve_command(context, [name])  # a mistyped name: "Did you mean ...?"
        context = click.Context(command, info_name=name, parent=context)
    click.echo(command.get_help(context))


def show_warning(message: Warning | str, *args) -> None:
    """A warning as one line on stderr; under torchrun rank 0's alone, as every rank meets the same
    options and text (else 8 GPUs print each warning 8 times)."""
    from .launcher import first_rank

    if first_rank():
        click.echo(f"warning: {one_line(str(message))}", err=True)


def output_option(default: str, help_text: str) -> Callable[[F], F]:
    """A command's --output file, which Tab completes as a file name."""
    return click.option("--output", default=default, show_default=True, shell_complete=completion.paths, help=help_text)


@main.group()
def corpus() -> None:
    """Prepare corpora: encode once into a cached, memory-mapped token stream."""


@corpus.command("list")
def corpus_list() -> None:
    """The corpora `charlm corpus get NAME` and `charlm train NAME` know."""
    click.echo(tables.catalog_table())


@corpus.command("get")
@click.argument("name", shell_complete=completion.corpus_names)
@click.option(
    "--quiet",
    is_flag=True,
    help="no download bar, no note while another process fetches NAME, no line saying how NAME got here: only the path",
)
def corpus_get(name: str, quiet: bool) -> None:
    """Download (or copy from $CHARLM_CORPUS_MIRROR) and verify corpus NAME unless it is here already and
    passes its check; print its path, and on stderr whether it was fetched (from where) or here already."""
    if name not in catalog.CATALOG:  # not the catalog's own message: that one, `train`'s, offers files too
        raise CharLMError(
            f"{SHOWN.repr(name)} is not a catalog corpus; `charlm corpus list` shows the {len(catalog.CATALOG)} "
            f"there are{catalog.title_hint(name)}"
        )
    path, how = catalog.fetch(name, quiet)
    if not quiet:  # stdout stays the path alone: `$(charlm corpus get NAME)` reads it
        click.echo(how, err=True)
    click.echo(path)


@corpus.command("prepare")
@click.argument("paths", nargs=-1, required=True, shell_complete=completion.corpora)
@options_of(Config, only=CORPUS_OPTIONS)
@click.option(
    "--quiet",
    is_flag=True,
    help="no progress bars (a catalog corpus's download; counting, training tokenizer, encoding), no notes: "
    "only the summary",
)
def corpus_prepare(paths: tuple[str, ...], quiet: bool, **options) -> None:
    """Encode PATHS (files, folders of .txt files or catalog names, as `charlm train` takes them) into
    corpora/cache/ and print a summary."""
    with leaving_at_once():
        from . import tokens
    config = Config(**{k: v for k, v in options.items() if v is not None})  # validated as `train` does
    prepared = tokens.load_corpus(list(paths), config, quiet=quiet)
    click.echo(tables.table([("cache", str(tokens.CACHE_ROOT / prepared.key)), *tokens.prepared_rows(prepared)]))


@main.command("eval")
@click.argument("given", nargs=-1, metavar="[RUN] [FILES]...", shell_complete=completion.run_names)
@click.option("--encoding", default=Config.encoding, show_default=True, help="text encoding of FILES")
@click.option(
    "--held-out", is_flag=True, help="score the run's held-out text, as no FILES does (`charlm inspect`'s flag)"
)
@device_option("whole texts")
@click.option(
    "--quiet",
    is_flag=True,
    help="no progress bars (reading, encoding and scoring FILES; preparing the run's corpus again: counting, "
    "training tokenizer, encoding): only the scores, and on stderr the latest run's model taken for no RUN",
)
def evaluate(given: tuple[str, ...], encoding: str, held_out: bool, device: str, quiet: bool) -> None:
    """Bits per character of FILES under the model of RUN (a run folder, run name, corpus name, .pt file
    or exported model folder; default: the latest run, which it names); without FILES, of the run's held-out text (its
    validation split). A run among FILES is its held-out text, as for --eval-also (a file of that name wins):
    `charlm eval BASE TUNED` scores a fine-tune's base on the text `charlm eval TUNED` scores. Each file
    is scored on its own; with several, a line per file in the order given and then all of them together."""
    with leaving_at_once():
        from . import checkpoint, runtext, threads
        from .bars import LEAD_IN_SECONDS, bytes_bar
        from .corpus import read_texts, source_files, total_bytes
        from .device import resolve_device
        from .scoring import text_bits
        from .unseen_notes import unseen_note
    # RUN may be left out, as every command's: a first path that is text (a file, not a model's
    # export, or a folder that is no run) is the first of FILES, scored under the latest run
    first_is_text = bool(given) and runtext.names_text(given[0])
    target, files = (None, given) if not given or first_is_text else (given[0], given[1:])
    if held_out and files:
        raise CharLMError(f"--held-out scores the run's held-out text: give FILES ({', '.join(files)}) or --held-out")
    where = resolve_device(device)  # as checkpoint.load: the device first
    run_texts = [name for name in files if runtext.names_held_out(name)]  # runs: their held-out texts
    paths = source_files([name for name in files if name not in run_texts])  # a pipe: said, not "no runs under"
    path = runs.resolve(target)
    untold = path if target is None else None  # the latest run, named after the figures, quiet or not
    if not files:
        refuse_unread_encoding(encoding, path.parent, "FILES, the texts given to score, and none are given")
    saved = checkpoint.read(path)  # once: the held-out text needs its corpus record as well as its model
    model = checkpoint.model_on(saved, path, where)
    threads.configure(None, model.device)  # its windows report their speed: fewer threads on a busy CPU
    if not files:
        evaluate_held_out(saved, model, path.parent, quiet)
        say_latest(untold)
        return
    # every file read before any is scored: one that is not text, late in the list, is named at once
    with bytes_bar(total_bytes(paths), desc="reading", disable=quiet, delay=LEAD_IN_SECONDS) as bar:
        texts = [read_texts([str(path)], encoding, model.vocab.normalize, progress=bar.update) for path in paths]
    checkpoints: dict[Path, str] = {}  # a run named twice (or by two names) is scored once, as a file is
    for name in run_texts:
        checkpoints.setdefault(runs.resolve(name), name)
    named = [str(path) for path in paths] + [f"{name} (held-out text)" for name in checkpoints.values()]
    instead = "; give its text as a FILE instead"

    def among_files(other: Path) -> str:  # a damaged run's other checkpoint, where FILES gave it; RUN as typed
        return call("eval", path_typed(other), path=path if target is None else target)

    texts += [runtext.held_out_text(run, quiet, None, instead, among_files) for run in checkpoints]
    order = given_order(files, run_texts, paths, list(checkpoints.values()))
    named, texts = [named[at] for at in order], [texts[at] for at in order]
    rows, bits, chars = [], 0.0, 0
    for name, text in zip(named, texts):
        label = Path(name).name if len(named) > 1 else "scoring"
        file_bits, file_chars = text_bits(model, text, name, progress=not quiet, label=label)
        # the count is of the characters the bits are over: not the first, which is read, never scored
        rows.append([name, f"{file_bits / max(file_chars, 1):.4f}", f"{file_chars:,}"])
        bits, chars = bits + file_bits, chars + file_chars
    if len(named) > 1:
        click.echo(tables.table([["file", "bpc", "characters scored"], *rows], right=(1, 2)))
    of = f"of {run_texts[0]}'s held-out text" if run_texts and len(named) == 1 else "scored"  # whose, as eval RUN says
    click.echo(f"{bits / max(chars, 1):.4f} bits per character over {chars:,} characters {of}")
    if unseen := unseen_note(model.vocab, texts, run=str(path.parent) if target is None else target):
        click.echo(unseen)
    say_latest(untold)


def given_order(files: tuple[str, ...], run_texts: list[str], paths: list[Path], run_names: list[str]) -> list[int]:
    """The order of `charlm eval`'s rows (`paths`, then the held-out texts of `run_names`) as the user gave
    FILES: a file where it (or its folder) was first given, a run where it was, a folder's files in its order.
    A table read in the order typed would otherwise name the wrong row."""
    from .corpus import source_files

    given_at: dict[Path, int] = {}
    for at, name in enumerate(files):
        for path in [] if name in run_texts else source_files([name]):
            given_at.setdefault(path, at)
    places = [given_at[path] for path in paths] + [files.index(name) for name in run_names]
    return sorted(range(len(places)), key=places.__getitem__)


def say_latest(untold: Path | None) -> None:
    """Name the latest run that `charlm eval` or `charlm inspect` given no RUN took (`untold`: its checkpoint,
    None where the user named one), on stderr after the figures: an error before them stays one line. Under
    --quiet too, which drops progress, not what the figures are of: a script's `score=$(charlm eval --quiet
    FILE)` keeps the score alone and its log the model it came from, which a run trained since changes."""
    if untold is not None:
        click.echo(runs.latest_note(untold), err=True)


def refuse_unread_encoding(encoding: str, run_dir: Path, reads: str) -> None:
    """Refuse an --encoding given where nothing it reads is (`reads`: what it reads, and that none is given):
    X would go unread and unsaid, the run's own text read in the encoding its run records. Says how that
    encoding is changed (a resume records it, as runtext says). `charlm eval` and `charlm inspect`."""
    if click.get_current_context().get_parameter_source("encoding") == ParameterSource.DEFAULT:
        return
    resume = call("train", "FILE", said("resume", run_dir), said("encoding", metavar="ENC"), said("max_steps", 1))
    raise CharLMError(
        f"{said('encoding', encoding)} reads {reads}; the run's own text is read in the encoding its run "
        f"records: to read it in another, resume the run on its text in that one, which trains nothing ({resume})"
    )


def evaluate_held_out(saved: Checkpoint, model: CharLM, run_dir: Path, quiet: bool) -> None:
    """`charlm eval RUN` alone: the text the run in `run_dir` measured its validation bpc on, prepared
    again from the sources it records, scored whole."""
    from . import runtext
    from .scoring import ids_bits

    ids = runtext.held_out_ids(saved.corpus, saved.config, run_dir, saved.base_vocab(), quiet)
    bits, chars = ids_bits(model, ids, "the run's held-out text", progress=not quiet, label="scoring")
    click.echo(f"{bits / max(chars, 1):.4f} bits per character over {chars:,} characters of the run's held-out text")


@main.command()
@click.argument("target", metavar="[RUN]", required=False, shell_complete=completion.run_names)
def info(target: str | None) -> None:
    """Config, size and progress of RUN's checkpoint (a run folder, run name, corpus name, .pt file or
    exported model folder; default: the latest run's best)."""
    with leaving_at_once():
        from . import export, summary
    path = runs.resolve(target)
    chosen = target is None or not Path(target).is_file()  # by its run, not the file the user named
    path, saved, damage = summary.shown_checkpoint(path, chosen)
    reasons, lineage = runs.read_reasons(path.parent), runs.lineage(path.parent)
    rows = [("checkpoint", str(path)), *summary.rows(saved, reasons, lineage, runs.read_resumes(path.parent))]
    rows += [*damage, *(("exports", line) for line in export.listed(path.parent))]
    click.echo(tables.table(rows))


@main.command("export")
@click.argument("target", metavar="[RUN]", required=False, shell_complete=completion.run_names)
@click.option(
    "--format",
    "format_",
    shell_complete=completion.export_formats,
    help="html (a page that samples in the browser), onnx or safetensors  [required]",
)
@click.option(
    "--output",
    shell_complete=completion.paths,
    help="file (html, onnx) or folder (safetensors) to write, replaced if it exists  "
    "[default: RUN/exports/; beside a model folder RUN]",
)
@click.option(
    "--weights",
    shell_complete=completion.export_weights,
    help=f"html: the weights' stored precision, fp32, fp16 or int8  [default: {HTML_WEIGHTS}]",
)
def export_command(target: str | None, format_: str | None, output: str | None, weights: str | None) -> None:
    """Export the model of RUN (default: the latest run) to run without charlm: one HTML page,
    an ONNX file, or a safetensors model folder. See docs/export.md."""
    with leaving_at_once():
        from . import export, outputs
    if format_ is None:  # not click's required=True: its message does not say which formats exist
        raise CharLMError(f"--format: give one of {', '.join(export.FORMATS)}")
    notes = []  # that it replaced a file the user had, if it did (asked before writing)
    written = export.export(target, format_, output, weights, lambda out: notes.append(outputs.replacing_note(out)))
    click.echo(one_line(f"wrote {written}{''.join(notes)}"))


@main.command()
@click.argument("run_names", nargs=-1, metavar="[RUN]...", shell_complete=completion.run_names)
@output_option("curves.png", "PNG file to write (replaced if it exists)")
def plot(run_names: tuple[str, ...], output: str) -> None:
    """Validation and training bpc of RUNs (default: the latest run) against time and characters seen,
    in one PNG; a dotted line marks each resume that changed an option or the hardware, labelled with what it
    set. A RUN with no curves yet is left out, and said so on one line."""
    with leaving_at_once():
        from . import outputs
        from .plot import curves_of, plot_runs
    # "" is outputs.output_file's to refuse; os.path.isdir, not Path.is_dir, which raises for a name too long
    if output and (Path(output).suffix.lower() != ".png" or os.path.isdir(output)):
        raise CharLMError(f"{said('output', output)}: charlm plot writes a PNG; give a file name ending in .png")
    outputs.output_file(output)
    targets = list(run_names) or [None]
    curves, left_out = curves_of(targets)
    replacing = outputs.replacing_note(output)
    try:
        click.echo(one_line(f"wrote {plot_runs(curves, output)}{replacing}"))
    except OSError as e:
        raise files.cannot_write(said("output", output), e) from None
    if left_out:
        click.echo(
            one_line(f"left out {len(left_out)} of {len(targets)} runs: {'; '.join(map(str, left_out))}"), err=True
        )


@main.command("runs")
@click.option(
    "--root",
    default=str(runs.CHECKPOINT_ROOT),
    show_default=True,
    shell_complete=completion.paths,
    help="folder holding the runs",
)
def list_runs(root: str) -> None:
    """A table of the runs under checkpoints/: corpus (and the runs a fine-tune came from, its base first), size, steps, best bpc, last update; and, while a run's checkpoint is damaged (cut short by a kill), which."""
    click.echo(tables.runs_table(root))
    if note := tables.unread_note(root):  # after the table, which stays a table to read
        click.echo(note, err=True)


@main.command()
@click.argument("targets", nargs=-1, metavar="[RUN]...", shell_complete=completion.run_names)
@options_of(ServeConfig)
def serve(targets: tuple[str, ...], **given) -> None:
    """Serve models over HTTP: an OpenAI-compatible API and a page to write with, at http://HOST:PORT/.

    Each RUN (a run folder, run name, corpus name, .pt file or exported model folder; default: the
    latest run) is a model whose id is its run name. Needs `pip install 'charlm[serve]'`."""
    console.opened("stdout", "charlm serve", "its address and log go there: redirect it (> FILE, or > /dev/null)")
    from .serve import serve as run_server

    run_server(list(targets), ServeConfig(**{k: v for k, v in given.items() if v is not None}))


@main.command("inspect")
@click.argument("paths", nargs=-1, metavar="[RUN] [FILE]", shell_complete=completion.run_names)
@output_option("report.html", "HTML page to write (replaced if it exists)")
@click.option(
    "--max-chars",
    default=MAX_CHARS,
    show_default=True,
    type=HalfWidthIntRange(min=1),
    help="characters to inspect",
)
@click.option("--held-out", is_flag=True, help="inspect the run's held-out text (its validation split), not a FILE")
@click.option(
    "--train-text",
    metavar="FILE",
    shell_complete=completion.paths,
    help="fit the n-gram baseline on this file  [default: the run's training split]",
)
@click.option("--encoding", default=Config.encoding, show_default=True, help="text encoding of FILE and --train-text")
@device_option("one character a step")
@click.option(
    "--quiet",
    is_flag=True,
    help="no progress bars (preparing the run's corpus again: counting, training tokenizer, encoding; the n-gram "
    "model), no tables: only the page, its notes (unseen characters left out of its figures), and on stderr the "
    "latest run's model taken for no RUN",
)
def inspect_command(
    paths: tuple[str, ...],
    output: str,
    max_chars: int,
    held_out: bool,
    train_text: str | None,
    encoding: str,
    device: str,
    quiet: bool,
) -> None:
    """What the model of RUN (default: the latest run, which it names) learned, seen on FILE, as one HTML page:
    surprise per character, cells that follow quotes or the line, gate saturation, bits saved over an
    n-gram. `charlm inspect FILE`, `charlm inspect RUN FILE` or `charlm inspect [RUN] --held-out`."""
    with leaving_at_once():
        from . import outputs
        from .corpus import source_files
        from .device import resolve_device
        from .inspection import analysis, page
        from .inspection.run import inspect_run
    files_named = 0 if held_out else 1  # FILE, after an optional RUN
    if len(paths) not in (files_named, files_named + 1):
        raise CharLMError("give [RUN] FILE, or [RUN] --held-out")
    resolve_device(device)  # a bad --device is named before any run is looked for
    target = paths[0] if len(paths) > files_named else None
    file = None if held_out else paths[-1]
    # FILE alone may name the run instead: its folder, its checkpoint, or a run or corpus name that is no file here
    file_is_a_run = file and (runs.is_run_folder(file) or not Path(file).exists() and runs.names_a_run(file))
    file_is_a_checkpoint = file and Path(file).is_file() and runs.is_checkpoint_name(file)
    if target is None and (file_is_a_run or file_is_a_checkpoint):
        what = "a run" if file_is_a_run else "a checkpoint"
        raise CharLMError(f"{one_line_path(file)} is {what}: give a FILE to inspect after it, or --held-out")
    if target is None and file and not file_is_a_run and not os.path.lexists(file):  # not "no runs under ..."
        raise CharLMError(
            f"{one_line_path(file)}: no such file or folder to inspect, nor a run or corpus of that name"
            f"{files.missing_path_remedy(file)}, or name a run (`charlm runs` lists them){catalog.title_hint(file)}"
        )
    if target is None and file:  # a pipe or device is said to be one, not "no runs under ..."
        source_files([file])
    if held_out and train_text is None:
        reads = "FILE and --train-text, the texts given to inspect and to fit the n-gram on, and neither is given"
        refuse_unread_encoding(encoding, runs.resolve(target).parent, reads)
    outputs.output_file(output)  # refused before the minutes of inspecting
    latest = None if target else runs.resolve(None)  # once: a run saved meanwhile changes nothing
    target, untold = target or str(latest), latest

    inspection, title = inspect_run(target, file, held_out, train_text, max_chars, device, quiet, encoding)
    # Whole or not at all (a full disk says so); two inspects at once leave one whole page.
    replacing = outputs.replacing_note(output)
    files.write_files({Path(output): files.utf8(page.render(inspection, title))}, said("output", output))
    if not quiet:
        click.echo(analysis.summary(inspection))
    elif inspection.notes:  # what the page's figures leave out stays, as eval --quiet keeps its unseen note
        click.echo("\n".join(inspection.notes))
    say_latest(untold)
    click.echo(one_line(f"wrote {output}{replacing}"))


main.add_command(train)
main.add_command(sample)
