"""`charlm sample`: text from a trained model, streamed as it is made; several temperatures, JSON for
scripts, or co-writing at a prompt (`--interactive`). What runs the model (torch) is imported where it
is used: `charlm sample --help` and Tab completion need none of it."""

from __future__ import annotations

import codecs
import contextlib
import errno
import importlib.util
import locale
import os
import signal
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

import click

from .. import console, files, path_names, runs, stopping, tables
from ..config import MAX_LOGIT_BIAS, SampleConfig, check_greedy_alone, parse_temperatures
from ..corpus import check_characters, read_seed_file
from ..decode_errors import undecodable
from ..errors import BiasError, CharLMError
from ..fields import said
from ..locales import arrived_as_bytes, read_as_utf8
from .completion import run_names
from .options import device_option, options_of

if TYPE_CHECKING:
    from .. import sampler
    from ..model import CharLM

T = TypeVar("T")


@click.command()
@click.argument("run", metavar="[RUN]", required=False, shell_complete=run_names)
@click.option(
    "--checkpoint",
    "target",
    metavar="RUN",
    shell_complete=run_names,
    help="the same as RUN, the spelling scripts use: a run folder, run name, corpus name, .pt file or model folder",
)
@click.option("--seed", help="text to start from (printed first)  [default: empty: the start of a line]")
@click.option(
    "--seed-file", type=click.Path(dir_okay=False), help="read the seed from this file instead (-: standard input)"
)
@options_of(SampleConfig, types={"temperature": str})  # what to write, then how and where
@click.option(
    "--ban",
    metavar="CHARS",
    help="never write these characters, e.g. --ban '0123456789' or --ban '\\n' (Python's logit_bias of -100 each)",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    help="also write the text to this file (one that exists is replaced when the sample ends)",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help=(
        "one JSON object per sample, for scripts, with the random seed that writes it again (drawn if not given; "
        "null when greedy)"
    ),
)
@click.option(
    "--interactive",
    is_flag=True,
    help=(
        "co-write: type a line (the seed, in --seed's place), the model continues it; Ctrl-C stops it writing, "
        "Ctrl-D ends"
    ),
)
@device_option("one character a step")
def sample(
    run: str | None,
    target: str | None,
    seed: str | None,
    seed_file: str | None,
    output: str | None,
    as_json: bool,
    interactive: bool,
    ban: str | None,
    device: str,
    **given,
) -> None:
    """Generate text from the model of RUN (a run folder, run name, corpus name, .pt file or exported model
    folder; default: the latest run, which it names), streaming it as it is made.

    `--temperature 0.5,0.8,1.0` draws one sample per temperature, each labeled."""
    console.outlive_terminal()  # a terminal closed mid-sample: --output keeps what was made, as on SIGTERM
    target = one_run(run, target)
    configs = sample_configs({k: v for k, v in given.items() if v is not None}, ban)
    if seed is not None and seed_file:
        raise CharLMError("give --seed or --seed-file, not both")
    check_greedy_alone(given)  # a greedy text labeled with temperatures it never used would mislead
    if interactive and (seed is not None or seed_file or as_json or len(configs) > 1 or configs[0].num_samples > 1):
        raise CharLMError(
            "--interactive writes one plain sample from the lines you type: drop --seed, --seed-file, --json, "
            "--num-samples and a list of temperatures"
        )
    console.opened(
        "stdout", "charlm sample", "the text is written there: redirect it (> FILE, or > /dev/null with --output FILE)"
    )
    if interactive:
        console.opened("stdin", "--interactive", "type the lines at a terminal, or pipe them in")
    elif seed_file == "-":
        console.opened("stdin", "--seed-file -", "pipe the seed in, or give --seed")
    seed = read_seed(seed_file) if seed_file else seed or ""
    with stopping.leaving_at_once():
        from .. import checkpoint, constraints, generation, sampler, threads
        from ..device import resolve_device
    resolve_device(device)  # a bad --device is named before the latest run is looked for, as `checkpoint.load` does
    untold = runs.resolve(None) if target is None else None  # once: a run saved meanwhile changes nothing
    model = checkpoint.load(untold or target, device)
    threads.configure(None, model.device)  # its steps report their speed: fewer threads on a busy CPU
    if not interactive:  # a seed the model cannot read (as a form reads it) is refused before anything is printed
        read = sampler.seed_read(model.vocab, seed, constraints.constrain(configs[0], model.vocab))
        try:
            model.vocab.encode(
                generation.primed_text(model.vocab, read), what="--seed", warn=False, already_normalized=True
            )
        except CharLMError as refused:
            typed = seed if not seed_file else ""  # a file's backslash was written there, not by a shell
            raise CharLMError(f"{refused}{typed_line_break_note(typed, model.vocab.knows)}") from None
    with OutputCopy(output) if output is not None else contextlib.nullcontext() as copy:
        emit = emitter(copy)
        try:
            if interactive:
                co_write(model, configs[0], emit)
            else:
                write_samples(model, seed, configs, as_json, emit)
        except BiasError as e:  # the only logit bias here is --ban's: name the option its user gave
            raise e.as_ban() from None
    if untold is not None:  # on stderr after the text, as eval and inspect: stdout and --output hold it alone
        click.echo(runs.latest_note(untold), err=True)


def one_run(run: str | None, option: str | None) -> str | None:
    """The run given as RUN or as `--checkpoint RUN` (older scripts' spelling): both may be given if
    they name one checkpoint; two different ones would leave the user guessing which one wrote."""
    if run is None or option is None or run == option:
        return run if run is not None else option
    if runs.resolve(run).resolve() != runs.resolve(option).resolve():
        raise CharLMError(f"RUN {run} and --checkpoint {option} name different checkpoints: give one of them")
    return run


def sample_configs(given: dict, ban: str | None = None) -> list[SampleConfig]:
    """The sampling options given, one config per temperature of a `--temperature` list; `--ban`'s
    characters (a combining mark with the one before it) as a logit bias of -100 each. `\\n` and `\\t` in --stop and --ban are a line break and
    a tab, so a shell user can write `--stop '\\n\\n'` for a blank line. A C locale's UTF-8 text is refused:
    read as its bytes, a ban of 春 would ban nothing and a stop never stop; in text that is not all UTF-8 (taken)
    a ban's UTF-8 characters are read as a UTF-8 locale reads them."""
    for option, text in (("--stop", given.get("stop")), ("--ban", ban)):
        if text and (locale_fault := arrived_as_bytes(text)):
            raise CharLMError(f"{option}: {locale_fault}")
    if "stop" in given:  # as --ban's below: 你 as a UTF-8 locale reads it, named so where the model never writes it
        given["stop"] = read_as_utf8(unescaped(given["stop"]))
    if ban:
        from ..decoding import characters

        # 你 as a UTF-8 locale reads it, not the three bytes a C locale read it as, which would ban nothing
        given["logit_bias"] = dict.fromkeys(characters(read_as_utf8(unescaped(ban))), -MAX_LOGIT_BIAS)
    temperatures = parse_temperatures(given.pop("temperature")) if "temperature" in given else (None,)
    return [SampleConfig(**given, **({"temperature": t} if t is not None else {})) for t in temperatures]


def unescaped(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t")


def typed_line_break_note(seed: str, knows: Callable[[str], bool]) -> str:
    """Why a `--seed '春望\\n杜甫\\n'` is refused, for an error to end with: the shell passes its `\\n` on as a
    backslash and an n (only bash's and zsh's $'...' make it a line break), and the model never saw a backslash."""
    if "\\n" not in seed or knows("\\"):
        return ""
    return (
        "; its \\n is a backslash and an n, not a line break: in bash or zsh write the seed as $'...\\n...' "
        "(the $ before the quote makes \\n a line break), or put the seed, its lines as they are, in a file "
        "for --seed-file"
    )


def read_seed(seed_file: str) -> str:
    """The seed in a file, or on standard input for `-` (`... | charlm sample --seed-file -`)."""
    if seed_file == "-":
        data = sys.stdin.buffer.read()
        try:
            seed = data.decode("utf-8")
        except UnicodeDecodeError as e:  # said as a file's is: where, and the encoding it looks like (GBK)
            raise CharLMError(f"--seed-file {undecodable(Path('-'), 'utf-8', e, data, 0, False)}") from None
        if not seed.strip():
            raise CharLMError("--seed-file -: standard input holds no text; pipe the seed in, or give --seed")
        return seed
    try:
        path_names.check_nameable(seed_file)
        return read_seed_file(Path(seed_file))
    except CharLMError as e:
        raise CharLMError(f"--seed-file {e}") from None


def emitter(copy: OutputCopy | None) -> Callable[..., None]:
    """Writes text to the screen as it comes (flushed: a sample streams) and to --output's file, if any.
    `screen=False`: to the file only (a typed line the terminal has shown already); `file=False`: to the
    screen only (moving the cursor). A pipe's reader gone with no file to write (`| head -c 100` done) ends it,
    as BrokenPipeError (status 0)."""

    def emit(text: str, screen: bool = True, file: bool = True) -> None:
        if screen:
            sys.stdout.write(text)
            sys.stdout.flush()
            if copy is None and console.ended_by_reader(sys.stdout):
                raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
        if copy and file:
            copy.write(text)

    return emit


def write_samples(
    model: CharLM, seed: str, configs: list[SampleConfig], as_json: bool, emit: Callable[..., None]
) -> None:
    """Each config's samples, labeled by temperature when there are several: a JSON object per sample
    (with the --random-seed that writes it alone, as its number from 1 does not say; drawn, when none was
    given, so a sample liked can be made again; none for a greedy sample, which any seed writes), one sample
    streamed as it is made, or several, each whole under its own label. Only JSON names the seed: plain
    output is the text alone, as a pipe or --output wants."""
    from .. import sampler

    for config in configs:
        label = f"temperature {config.temperature}" if len(configs) > 1 else None
        if not as_json and config.num_samples == 1:
            emit(f"--- {label} ---\n" if label else "")
            last = ""
            with sampler.samples_held(model, seed, config) as (steps, _):  # printing needs no autograd
                for pieces in steps:
                    emit(pieces[0])
                    last = pieces[0] or last
            emit(line_ended(last))
            continue
        texts, seeds, interruption = made_before_interrupted(model, seed, config)
        for i, text in enumerate(texts if any(texts) else []):
            if as_json:
                seed_named = None if config.greedy else seeds[i]  # a greedy sample draws nothing: any seed writes it
                fields = {"sample": i + 1, "random_seed": seed_named, "temperature": config.temperature}
                emit(json_line({**fields, "text": text}))
            else:
                emit(f"--- sample {i + 1}{', ' + label if label else ''} ---\n{text}{line_ended(text)}")
        if interruption is not None:
            raise interruption


def line_ended(text: str) -> str:
    """The line break that ends a printed sample, so that the next label or the shell's prompt starts a
    line: none after the one a sample ends with (`--stop '\\n\\n'`'s kept stop, then ours, was two blank lines)."""
    return "" if text.endswith("\n") else "\n"


def made_before_interrupted(
    model: CharLM, seed: str, config: SampleConfig
) -> tuple[list[str], list[int | None], KeyboardInterrupt | SystemExit | None]:
    """The config's samples, made side by side and printed whole, their generators' seeds (`samples_held`),
    and what cut them short, to be raised once they are printed: Ctrl-C, or SIGTERM (the exit
    `charlm.__main__` raises for it). Raised at once, either would throw away what was made so far (minutes
    of `--num-samples 8 --length 20000`, nothing shown)."""
    from .. import sampler

    texts: list[list[str]] = [[] for _ in range(config.num_samples)]
    seeds: list[int | None] = [None] * config.num_samples  # cut short before the rows drew any, nothing is made
    try:
        with sampler.samples_held(model, seed, config) as (steps, seeds):
            sampler.gather(steps, texts)
    except (KeyboardInterrupt, SystemExit) as e:
        return ["".join(parts) for parts in texts], seeds, e
    return ["".join(parts) for parts in texts], seeds, None


def json_line(row: dict) -> str:
    """`row` as one line of JSON, its text as text, not \\u escapes, so Chinese in `--json > samples.jsonl`
    stays readable (console.py escapes what a console cannot show)."""
    return files.json_text(row) + "\n"


def co_write(model: CharLM, config: SampleConfig, emit: Callable[..., None]) -> None:
    """`--interactive` at a terminal or from a pipe: the lines come from stdin. A byte its encoding
    cannot read (a Latin-1 file under a UTF-8 locale) is that line's one-line error, not a traceback."""
    at_terminal = sys.stdin.isatty()
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")
    if at_terminal:
        click.echo("type a line and press Enter; the model continues it. Ctrl-C stops it; Ctrl-D ends.", err=True)
    # A terminal shows what is typed itself; printing it again would show it twice.
    on_screen = at_terminal and sys.stdout.isatty()
    lines = typed_lines(on_screen) if at_terminal else sys.stdin
    try:
        converse(model, config, lines, emit, echo=not on_screen, at_terminal=at_terminal)
    finally:
        if at_terminal:  # the terminal echoing keys again
            lines.close()


PROMPT = "> "  # the writer's turn: shown at a terminal only, never in --output's copy or the model's text


def typed_lines(on_screen: bool) -> Iterator[str]:
    """The lines typed at a terminal, each with its line break, each after PROMPT (on stderr when the
    text goes to a file: `> story.txt` holds the text alone). Ctrl-D ends.

    With the text on the screen they are edited with readline where it reads what Python does: the arrow
    keys move in the line (else they type escape codes, which the model refuses) and a line may be longer
    than the terminal's own 4,095 bytes (which cuts a longer pasted paragraph's end). The keys typed while
    the model writes are not echoed then: readline shows them at the next prompt, and the terminal's echo
    would show them a second time, amid the model's text. Without readline the terminal edits the line itself."""
    edited = on_screen and readline_reads_as_python()
    if edited:
        import readline  # noqa: F401 -- once imported, input() edits lines with it
    shown_on = sys.stdout if on_screen else sys.stderr
    try:  # a Ctrl-C anywhere here, not only in input(), still leaves the shell's prompt a line of its own
        while True:
            if edited:
                line = input(PROMPT)
                with keys_unechoed():  # at once: a key typed before echo is off shows amid the model's text
                    yield line + "\n"
                continue
            shown_on.write(PROMPT)
            shown_on.flush()
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            yield line
    except (EOFError, KeyboardInterrupt) as end:
        shown_on.write("\n")  # the shell's prompt on a line of its own, not after ours
        shown_on.flush()
        if isinstance(end, KeyboardInterrupt):
            raise


@contextlib.contextmanager
def keys_unechoed() -> Iterator[None]:
    """The terminal not echoing the keys typed (they wait for the next prompt); Ctrl-C still stops."""
    import termios  # POSIX only, as readline is

    terminal = sys.stdin.fileno()
    saved = termios.tcgetattr(terminal)
    quiet = list(saved)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(terminal, termios.TCSANOW, quiet)  # TCSANOW, not TCSAFLUSH: the keys typed are kept
    try:
        yield
    finally:
        termios.tcsetattr(terminal, termios.TCSANOW, saved)


def back_after(typed: str, shown: str, before: str | None = None) -> str:
    """The escape codes that put the cursor back after a line the terminal showed, `typed` after PROMPT,
    which Enter left for the line below: rewritten as `shown` (the model's reading), the model's text goes
    on after it, as the model reads it; after `before`, the screen's line above, where the line goes on
    with its verse. Nothing where the terminal's width is unknown or it moves no cursor."""
    if os.environ.get("TERM") == "dumb":
        return ""
    try:
        columns = os.get_terminal_size(sys.stdout.fileno()).columns
    except OSError:
        return ""
    if columns <= 0:
        return ""

    def rows(text: str) -> int:
        return max(1, -(-tables.width(text) // columns))

    up = rows(PROMPT + typed) + (rows(before) if before is not None else 0)
    return f"\x1b[{up}F\x1b[J{PROMPT if before is None else before}{shown}"


def readline_reads_as_python() -> bool:
    """Whether readline is there (not on Windows) and its locale's encoding is stdin's: under LC_ALL=C
    Python reads UTF-8 but readline takes a Chinese character's bytes for Meta keys, garbling it."""
    if importlib.util.find_spec("readline") is None or not hasattr(locale, "nl_langinfo"):
        return False
    try:
        return codecs.lookup(locale.nl_langinfo(locale.CODESET)).name == codecs.lookup(sys.stdin.encoding).name
    except LookupError:
        return False


class OutputCopy:
    """--output's file, a context manager. It is never a checkpoint (outputs.py); a write that fails on
    the way (a full disk, a file size limit) is one line naming the option and the file and what to do,
    not `file: File too large`, and leaves the file as it was.

    A file that holds an earlier text gets the new one through a temporary file beside it (files.py),
    renamed over it when sampling ends or is cut short by Ctrl-C or SIGTERM (what was made is kept), so
    a sample killed mid-way (SIGKILL, a power cut) leaves the earlier sample whole, where a write in place
    would empty it. A link is written through, as by every command (files.written_through): the file it
    names is replaced, the link stays a link. A new file, a pipe, a device, this process's own standard output (`--output /dev/stdout`) is
    written as the text comes: there is nothing to lose, and `tail -f` shows the text growing (a killed
    sample keeps it); so is a file whose folder refuses new files (chmod a-w: no temporary file can be
    made beside it), as `>` would write it. Its missing folders are made, as export, inspect and plot
    make theirs (files.replace_files)."""

    def __init__(self, path: str):
        from .. import outputs

        self.failed = False
        self.path = outputs.output_file(path)
        self.target = replaced_whole(self.path)
        self.scratch = None if self.target is None else files.temporary(self.target)
        if self.target is not None:
            files.remove_leftovers(self.target)  # what a sample killed mid-way left beside it
        self.file = self.attempt(self.open)

    def open(self) -> TextIO:
        files.written_through(self.path).parent.mkdir(parents=True, exist_ok=True)  # as every --output's writer
        if self.scratch is not None:
            try:
                return open(self.scratch, "w", encoding="utf-8")
            except PermissionError:  # its folder refuses new files, not (yet) the file: in place, as `>` writes
                self.scratch = None
        return open(self.path, "w", encoding="utf-8")

    def __enter__(self):
        return self

    def write(self, text: str) -> None:
        self.attempt(lambda: self.file.write(text))

    def __exit__(self, kind: type[BaseException] | None, *_) -> None:
        """Put the text in place when sampling ended or was interrupted; on an error or a failed write,
        keep the file's earlier text (nothing new was finished)."""
        keep = not self.failed and (kind is None or issubclass(kind, (KeyboardInterrupt, SystemExit)))
        try:
            self.attempt(lambda: self.finish(keep))
        finally:
            if self.scratch is not None and (not keep or self.failed):
                self.scratch.unlink(missing_ok=True)

    def finish(self, keep: bool) -> None:
        if not keep or self.scratch is None:
            self.file.close()
            return
        self.file.flush()
        if self.target.exists():  # the earlier file's permissions, not the temporary file's
            os.chmod(self.scratch, stat.S_IMODE(self.target.stat().st_mode))
        files.sync_file(self.file.fileno())
        self.file.close()
        files.replace(self.scratch, self.target)
        files.sync_folder(self.target.parent)

    def attempt(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except OSError as e:
            self.failed = True
            raise files.cannot_write(said("output", self.path), e) from None


def replaced_whole(path: Path) -> Path | None:
    """The regular file an --output at `path` replaces through a temporary file (`OutputCopy`): `path`,
    or the file a link at `path` names; None where the text is written as it comes: a new file, a pipe,
    a device, or the file this process's standard output or error is (`--output /dev/stdout > so.txt`,
    which the shell holds open: replaced, it would get the text and the screen's copy be lost)."""
    try:
        target = files.written_through(path)
        if not target.is_file():
            return None
        found = os.stat(target)
    except OSError:
        return None
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed, or not a file (a test's capture)
            if os.path.samestat(found, os.fstat(stream.fileno())):
                return None
    return target


def converse(
    model: CharLM,
    config: SampleConfig,
    lines: Iterable[str],
    emit: Callable[..., None],
    echo: bool = True,
    at_terminal: bool = False,
) -> sampler.Conversation:
    """Co-writing: each typed line, its line break included, is fed to the model, which continues it;
    a line break ends the turn and is fed with the next line. So the model always reads exactly the
    text shown: a line is shown (and copied to --output) as the model read it, "，" as "," under nfkc.
    `echo`: print the typed lines (not when the terminal has shown them already).
    A line ending in `\\r\\n` (a Windows file piped in) ends in `\\n`, as a corpus or a --seed-file is
    read: its `\\r` is a character no model trained on charlm's reading knows, which would refuse every line.
    A line the model cannot read is skipped: `at_terminal`, the user may type it again; from a pipe,
    nobody can, so the message names the line by its number and says the session went on without it."""
    from .. import sampler

    conversation = sampler.Conversation(model, config)
    # The line break between turns waits for the next line (on the screen, in --output and for the model):
    # with a form, a line that goes on with the verse a turn stopped in goes on on its line; the break kept
    # would begin a new poem with the verse's rest. `on_line`: the screen's last line, written again then.
    held, on_line = "", ""
    try:
        for number, line in enumerate(lines, 1):
            # At a terminal a Ctrl-C from the line's Enter on stops this turn, not the session, even before
            # the model's first character (while the line is read), a moment a writer cannot see. From a
            # pipe nobody can type on: Ctrl-C ends it.
            with stopping.StopFlag().installed(only=(signal.SIGINT,)) if at_terminal else no_stop() as stop:
                line = line.replace("\r\n", "\n")
                what = "the line" if at_terminal else f"line {number} of the input"
                try:  # checked alone first, so a bad byte's position counts in the line, not the line break carried over
                    check_characters(line, what)
                    line_break = "" if held and conversation.goes_on_with_verse(line) else held
                    pieces = conversation.turn(line_break + line, what)
                except CharLMError as e:  # one bad line does not end the session and its state
                    click.echo(f"{e}; type the line again" if at_terminal else f"{e}; skipped this line", err=True)
                    continue
                joined, held = held and not line_break, ""
                shown = conversation.read.removeprefix(line_break)
                emit(line_break + shown, screen=echo)  # the screen at a terminal has its line break already
                if not echo and (joined or not shown.endswith("\n")):  # the line goes on on a line above
                    emit(back_after(line.removesuffix("\n"), shown, on_line if joined else None), file=False)
                on_line = ((on_line if joined else PROMPT) + shown + written(pieces, emit, stop)).rpartition("\n")[2]
                held = "\n"
                if not echo:
                    emit("\n", file=False)  # the prompt on a line of its own
            if not line.endswith("\n"):  # Ctrl-D mid-line sent it: the input has ended, but a terminal
                break  # would wait for one more Ctrl-D, a third, before it said so
    finally:
        emit(held, screen=echo)  # the text ends with its line break, the session stopped or not
    return conversation


def written(pieces: Iterable[str], emit: Callable[..., None], stop: stopping.StopFlag) -> str:
    """The model's continuation, shown as it comes, and returned. At a terminal Ctrl-C (`stop`) stops it at
    the next character and the prompt is back, the session and its state going on; a second Ctrl-C, or
    one at the prompt, ends it."""
    text = []
    for piece in pieces:
        emit(piece)
        text.append(piece)
        if stop.requested:  # the model has read what it wrote, all of it shown: the next turn goes on from there
            break
    return "".join(text)


@contextlib.contextmanager
def no_stop() -> Iterator[stopping.StopFlag]:
    """A StopFlag nothing asks: from a pipe Ctrl-C ends the session as Python's own handler does."""
    yield stopping.StopFlag()
