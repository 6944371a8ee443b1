"""charlm on a Windows or macOS laptop, simulated on Linux: the locale's text encoding, a console
that cannot show Chinese, Windows' rules for open files and signals, an Apple GPU without float64."""

import contextlib
import dataclasses
import importlib.util
import io
import json
import os
import pty
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

import charlm
from charlm import (
    api,
    checkpoint,
    checkpoint_file,
    console,
    path_names,
    processes,
    run_lock,
    runs,
    scoring,
    train_state,
)
from charlm.cli import main
from charlm.commands.sample import sample_configs
from charlm.config import Config
from charlm.corpus import check_characters
from charlm.errors import CharLMError
from charlm.fields import on_command_line
from charlm.serve.metrics import Metrics
from charlm.stopping import StopFlag

from .conftest import REPO, TINY_ARGS, assert_one_line_error, block_import, cli, file_size_limit, trained_once

# Runs charlm's commands in one process and prints, as JSON, where charlm's own code opened a file in
# text mode without an encoding (EncodingWarning under -X warn_default_encoding): such a file is read
# and written in the locale's encoding, cp1252 or cp936 on Windows, which garbles or refuses Chinese.
# A warning is charlm's when the first frame outside the standard library (pathlib's read_text and
# write_text warn from pathlib) is in charlm/.
ENCODING_SWEEP = r"""
import json, sys, sysconfig, traceback, warnings
from pathlib import Path
import charlm
import charlm
from charlm import runs, scoring
from charlm.cli import main
from charlm.errors import CharLMError
from charlm.serve.metrics import Metrics
from charlm.stopping import StopFlag

package, stdlib = str(Path(charlm.__file__).parent), sysconfig.get_paths()["stdlib"]
found, failed = set(), []
show = warnings._showwarnmsg

def record(message):
    if issubclass(message.category, EncodingWarning):
        for frame in reversed(traceback.extract_stack()[:-1]):
            if not frame.filename.startswith((stdlib, "<frozen")):
                if frame.filename.startswith(package):
                    found.add(f"{Path(frame.filename).relative_to(package)}:{frame.lineno}: {frame.line}")
                    return
                break
    show(message)

warnings._showwarnmsg = record
warnings.simplefilter("always", EncodingWarning)
for args in json.loads(sys.argv[1]):
    try:
        main(args, standalone_mode=False)
    except Exception as e:
        failed.append(f"{args}: {e!r}")
print(json.dumps({"found": sorted(found), "failed": failed}))
"""


def test_no_file_is_read_or_written_in_the_locale_encoding(tmp_path):
    """Training, sampling to a file, the exports, info, runs, eval, inspect, plot and the corpus cache
    name their encoding: on Windows the locale's (cp1252, cp936) garbles or refuses Chinese. The run
    lock's PID file did not."""
    text = "".join(f"{chr(0x4E00 + i % 97)}{'，。'[i % 2]}" + "\n" * (i % 7 == 6) for i in range(3000))
    (tmp_path / "zh.txt").write_text(text, encoding="utf-8")
    (tmp_path / "seed.txt").write_text(text[:3], encoding="utf-8")
    # dropout given: no size probe before training, a second of timing that touches no file
    tiny = ["--layers", "1", "--hidden", "16", "--seq-len", "8", "--batch-size", "4", "--dropout", "0", "--quiet"]
    commands = [
        ["train", "zh.txt", "--out", "zh", "--max-steps", "10", "--eval-every", "5", "--sample-every", "1", *tiny],
        ["train", "--resume", "zh", "--max-steps", "12", "--quiet"],
        ["sample", "--checkpoint", "zh", "--seed-file", "seed.txt", "--length", "20", "--output", "out.txt"],
        ["sample", "--checkpoint", "zh", "--length", "20", "--json"],
        ["info", "zh"],
        ["runs"],
        ["export", "zh", "--format", "html"],
        ["export", "zh", "--format", "safetensors"],
        ["eval", "checkpoints/zh/exports/model", "zh.txt", "--quiet"],
        ["inspect", "zh", "zh.txt", "--output", "inspect.html"],
    ]
    if importlib.util.find_spec("matplotlib"):
        commands.append(["plot", "zh", "--output", "curves.png"])
    result = subprocess.run(
        [sys.executable, "-X", "warn_default_encoding", "-c", ENCODING_SWEEP, json.dumps(commands)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["failed"] == []
    assert report["found"] == []


def test_a_console_that_cannot_show_chinese_gets_escapes_and_one_warning(tmp_path):
    """stdout in a legacy code page (Windows with output redirected: cp1252) cannot encode Chinese:
    the closing sample of `charlm train` and `charlm sample` raised UnicodeEncodeError mid-text."""
    text = "".join(f"{chr(0x4E00 + i % 97)}{'，。'[i % 2]}" + "\n" * (i % 7 == 6) for i in range(600))
    (tmp_path / "zh.txt").write_text(text, encoding="utf-8")
    console = CliRunner(charset="cp1252")
    trained = console.invoke(
        main, ["train", "zh.txt", "--out", "zh", "--max-steps", "4", *(arg for arg in TINY_ARGS if arg != "--quiet")]
    )
    sampled = console.invoke(main, ["sample", "--checkpoint", "zh", "--seed", text[:2], "--length", "20"])
    for result in (trained, sampled):
        assert result.exit_code == 0, result.output
        assert "\\u4e" in result.stdout
        warnings = [line for line in result.stderr.splitlines() if "cannot show" in line]
        assert len(warnings) == 1 and "(cp1252)" in warnings[0] and "PYTHONUTF8=1" in warnings[0], result.stderr
    assert sampled.stdout.startswith(text[:2].encode("ascii", "backslashreplace").decode())


def charlm_in_shell(shell_line: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`sh -c SHELL_LINE` with `$CHARLM` for `python -m charlm`: a real process whose surroundings the shell
    sets (a closed stream, a removed folder, a locale); its output as UTF-8 text, whatever it wrote."""
    command = f"{shlex.quote(sys.executable)} -m charlm"
    return subprocess.run(
        ["sh", "-c", shell_line.replace("$CHARLM", command)],
        capture_output=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        timeout=120,
        check=False,
    )


def test_a_c_locale_gets_escapes_not_a_traceback(tmp_path):
    """Under LC_ALL=C with UTF-8 mode off, stdout is ASCII with errors="surrogateescape", not "strict":
    `charlm sample` of a Chinese run raised UnicodeEncodeError at its first character. A file name's
    undecodable byte (a surrogate escape) still goes out as that byte."""
    text = "".join(f"{chr(0x4E00 + i % 97)}{'，。'[i % 2]}" + "\n" * (i % 7 == 6) for i in range(600))
    (tmp_path / "zh.txt").write_text(text, encoding="utf-8")
    charlm.train(
        tmp_path / "zh.txt", out=str(tmp_path / "checkpoints" / "zh"), layers=1, hidden=8, max_steps=1, quiet=True
    )
    result = charlm_in_shell(
        "$CHARLM sample zh --length 20 --random-seed 1", tmp_path, LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0"
    )
    stdout, stderr = result.stdout.decode("ascii"), result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0 and "Traceback" not in stderr, stderr
    assert "\\u4e" in stdout
    assert [line for line in stderr.splitlines() if "cannot show" in line and "(ascii)" in line], stderr


C_LOCALE = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}  # ASCII, UTF-8 mode off


def test_utf8_text_under_a_c_locale_is_said_to_be_the_locales_fault(tmp_path):
    """Under a C locale Python reads the command line as ASCII and cannot name a path in Chinese that did not
    come from it: a UTF-8 `--seed 床` was called "not valid UTF-8; give the text in UTF-8", which it was, the
    corpus a run recorded as 诗.txt "no such file or folder", though it was there, and charlm.train("诗.txt")
    "a character no file name can be written in (a lone surrogate)". All say the locale is the cause. (诗.txt
    typed on the command line is read: it goes back to the OS as the bytes it came as.)"""
    (tmp_path / "诗.txt").write_text("床前明月光，疑是地上霜。\n" * 40, encoding="utf-8")
    charlm.train(
        tmp_path / "诗.txt", out=str(tmp_path / "checkpoints" / "zh"), layers=1, hidden=8, max_steps=1, quiet=True
    )
    from_python = "import sys, charlm\ntry: charlm.train('\\u8bd7.txt', max_steps=1)\nexcept charlm.CharLMError as e: "
    from_python += "sys.stderr.buffer.write(b'Error: ' + str(e).encode() + b'\\n')"
    result = charlm_in_shell(
        f"$CHARLM sample zh --seed 床 --length 5; $CHARLM eval zh; {shlex.quote(sys.executable)} -c "
        f"{shlex.quote(from_python)}",
        tmp_path,
        **C_LOCALE,
    )
    lines = result.stderr.decode("utf-8", "replace").splitlines()
    assert result.stdout == b"" and len(lines) == 3, lines
    assert lines[0].startswith("Error: --seed: the text is UTF-8, but the terminal's locale (ascii) is not"), lines[0]
    assert lines[1].startswith(f"Error: {tmp_path / '诗.txt'}: the terminal's locale (ascii) cannot name it"), lines[1]
    assert lines[2].startswith("Error: charlm.train: paths '诗.txt': the terminal's locale (ascii) cannot"), lines[2]
    for line in lines:
        assert line.endswith("set PYTHONUTF8=1 or a UTF-8 locale (LANG=C.UTF-8)"), line


@pytest.mark.parametrize("option", ["--stop", "--ban"])
def test_utf8_stop_and_ban_under_a_c_locale_are_said_to_be_the_locales_fault(monkeypatch, option):
    """Under a C locale `--ban 春` arrived as three surrogate escapes: the ban held nothing, 春 was still
    written, and the one warning said "the model never writes '\\udce6' '\\udc98' '\\udca5'", which it
    does; `--stop 春` never stopped, said the same way. Both are refused, saying the locale is the cause."""
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")  # how Python reads argv under LC_ALL=C
    result = cli("sample", "no-such-run", option, "春".encode().decode("ascii", "surrogateescape"))
    assert_one_line_error(result, f"{option}: the text is UTF-8, but the terminal's locale (ascii) is not")


@pytest.mark.parametrize(("option", "ascii_text"), [("--stop", "\\n\\n"), ("--ban", "xyz")])
def test_ascii_stop_and_ban_under_a_c_locale_are_read(monkeypatch, option, ascii_text):
    """ASCII reads the same in every locale, yet under a C locale the documented `--stop '\\n\\n'` was
    refused as "the text is UTF-8, but the terminal's locale (ascii) is not": no byte had arrived undecoded."""
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    result = cli("sample", "no-such-run", option, ascii_text)
    assert_one_line_error(result, "no-such-run: no such checkpoint file or run folder")


def test_a_lone_surrogate_path_under_a_c_locale_is_not_the_locales_fault(monkeypatch):
    """`charlm.train('\\ud800.txt')` under a C locale said the locale could not name it and to set
    PYTHONUTF8=1, which only led to the next error: no locale names a lone surrogate."""
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    assert path_names.unnameable("novel\ud800.txt") == (
        "a character no file name can be written in (a lone surrogate); remove it"
    )


def test_bytes_not_utf8_under_a_c_locale_are_named_where_they_are(monkeypatch):
    """Under a C locale the seed 你 followed by a byte 0xff was said to hold "byte 0xe4 at character 0", the
    first byte of 你, which is UTF-8: a user re-saved what was right. The byte is 0xff, after 你, as a
    UTF-8 locale says."""
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    with pytest.raises(CharLMError, match="^--seed: byte 0xff at character 1 is not valid UTF-8"):
        check_characters(("你".encode() + b"\xff").decode("ascii", "surrogateescape"), "--seed")


def test_a_stop_the_model_never_writes_under_a_c_locale_names_its_characters_as_utf8_does(monkeypatch, fox_run):
    """Under a C locale `--stop $'你\\xff'` (not all UTF-8, so taken) was said to hold four characters the
    model never writes, '\\udce4' '\\udcbd' '\\udca0' '\\udcff': the bytes of 你, which a UTF-8 locale
    names '你', as it does here."""
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    stop = ("你".encode() + b"\xff").decode("ascii", "surrogateescape")
    result = cli("sample", str(fox_run), "--stop", stop, "--length", "5")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if "never writes" in line]
    assert len(warned) == 1 and "the model never writes '你' '\\udcff', so no sample stops there" in warned[0], warned


def test_a_ban_the_model_never_writes_under_a_c_locale_is_read_as_utf8_does(monkeypatch, fox_run):
    """Under a C locale `--ban $'你\\xff'` (not all UTF-8, so taken) banned the four bytes '\\udce4' '\\udcbd'
    '\\udca0' '\\udcff', so 你 was still written, and was said to hold four characters the model never
    writes: a UTF-8 locale bans 你 and the byte, and names them '你' '\\udcff', as it does here."""
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    ban = ("你".encode() + b"\xff").decode("ascii", "surrogateescape")
    assert list(sample_configs({}, ban)[0].logit_bias) == ["你", "\udcff"]
    result = cli("sample", str(fox_run), "--ban", ban, "--length", "5")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if "never writes" in line]
    assert len(warned) == 1 and "the model never writes '你' '\\udcff', so banning them" in warned[0], warned


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this OS")
def test_a_full_standard_output_is_named(tmp_path, fox_run):
    """`> /dev/full` (or a full disk under `> out.txt`) said "Error: file: No space left on device": a
    failed write to a stream names no file, and "file" named nothing the user could free or change."""
    shutil.copytree(fox_run, tmp_path / "checkpoints" / "run")
    full = charlm_in_shell("$CHARLM sample run --length 5 > /dev/full", tmp_path)
    assert full.returncode == 1, full.stderr
    said = "Error: standard output: No space left on device; free space where it goes, or send it elsewhere"
    assert full.stderr.decode().splitlines() == [
        f"{said} (--output FILE where a command has it)"
    ]  # not "free space on its disk (or raise the file size limit, ulimit -f)": /dev/full has neither


@pytest.mark.parametrize("reader", ["terminal", "pipe"])
def test_a_standard_stream_whose_reader_is_gone_writes_on_into_dev_null(monkeypatch, reader):
    """A training run's next line once its terminal was closed (EIO) or its `| tee` gone (EPIPE) raised, and
    the run ended there, its stop unfinished. Once gone, the stream goes to /dev/null and writes succeed."""
    kept, written = pty.openpty() if reader == "terminal" else os.pipe()
    with open(written, "w", encoding="utf-8") as stream:
        monkeypatch.setattr(sys, "stdout", stream)
        monkeypatch.setattr(sys, "stderr", io.StringIO())  # no file: left as it is
        console.outlive_readers()
        os.close(kept)
        print("said to no one", flush=True)
        print("and again", flush=True)
        assert os.fstat(written).st_rdev == os.stat(os.devnull).st_rdev
        assert isinstance(sys.stderr, io.StringIO)


def test_a_console_stream_that_is_no_plain_file_keeps_its_own_writer(monkeypatch):
    """Windows' console writes through io._WindowsConsoleIO (WriteConsoleW: any character shows); rebuilt on a
    plain io.FileIO, its UTF-8 bytes were read in the console's code page (cp437, cp936): a Chinese sample and
    the bars' blocks mojibake. Such a stream is left as it is, as a test runner's is (Windows has no hang-up)."""

    class ConsoleIO(io.RawIOBase):  # _WindowsConsoleIO's stand-in: a raw stream of its own, on a descriptor
        def __init__(self, fd: int) -> None:
            self.fd = fd

        def fileno(self) -> int:
            return self.fd

        def writable(self) -> bool:
            return True

        def write(self, data) -> int:
            return os.write(self.fd, data)

    kept, written = os.pipe()
    console_stream = io.TextIOWrapper(io.BufferedWriter(ConsoleIO(written)), "utf-8", line_buffering=True)
    monkeypatch.setattr(sys, "stdout", console_stream)
    console.outlive_readers()
    assert sys.stdout is console_stream
    os.close(kept)
    os.close(written)


def test_standard_output_past_the_file_size_limit_says_to_raise_it(tmp_path):
    """`charlm sample RUN > out.txt` under `ulimit -f` fails with EFBIG, where raising the limit is the remedy
    and no disk is full: a stream said a file's words, "free space on its disk (or raise ...)"."""
    with open(tmp_path / "out.txt", "wb", buffering=0) as out, file_size_limit(10), pytest.raises(OSError) as too_large:
        out.write(b"x" * 100)  # written up to the limit
        out.write(b"x")
    assert console.unnamed_write(too_large.value) == (
        "standard output: File too large; raise the file size limit (ulimit -f), or send it elsewhere "
        "(--output FILE where a command has it)"
    )


def test_closed_standard_streams_are_named_not_a_traceback(tmp_path, fox_run):
    """A process started with stdout or stdin closed (`>&-`, `<&-`) has sys.stdout or sys.stdin None:
    `charlm sample` raised AttributeError on its first write, --interactive and `--seed-file -` on their read."""
    shutil.copytree(fox_run, tmp_path / "checkpoints" / "run")
    closed = charlm_in_shell(
        "$CHARLM sample run --length 5 >&-; $CHARLM sample run --interactive <&-; $CHARLM sample run --seed-file - <&-",
        tmp_path,
    )
    lines = closed.stderr.decode().splitlines()
    assert "Traceback" not in closed.stderr.decode() and len(lines) == 3, lines
    assert "standard output is closed" in lines[0] and "> /dev/null" in lines[0], lines[0]
    for line, option in zip(lines[1:], ("--interactive", "--seed-file -")):
        assert line.startswith(f"Error: {option}: standard input is closed"), line


def test_serve_with_standard_output_closed_is_named_not_a_traceback(tmp_path):
    """`charlm serve >&-` died in uvicorn's log setup, which asks sys.stdout (None) whether it is a
    terminal: a 40-line traceback ending in "Unable to configure formatter 'default'"."""
    closed = charlm_in_shell("$CHARLM serve >&-", tmp_path)
    lines = closed.stderr.decode().splitlines()
    assert closed.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("Error: charlm serve: standard output is closed (>&-)"), lines[0]


def test_a_folder_removed_under_the_shell_is_named(tmp_path):
    """A shell in a folder that was removed since (`cd d && rmdir ../d`) starts charlm with no working
    folder: torch's MKL died loading ("Intel oneMKL FATAL ERROR"), `charlm runs` said "file: No such file"."""
    removed = charlm_in_shell("mkdir gone && cd gone && rmdir ../gone && $CHARLM runs", tmp_path)
    assert removed.returncode == 1 and removed.stdout == b"", removed
    assert removed.stderr.decode().splitlines() == [
        "Error: the current folder was removed; cd to a folder that exists and run charlm again"
    ]


def test_training_where_there_is_no_sighup(fox_file, tiny, monkeypatch):
    """Windows' signal module has no SIGHUP: every training run there failed on it as it began."""
    monkeypatch.delattr(signal, "SIGHUP")
    charlm.train(fox_file, out="run", **tiny)
    orphan = StopFlag(launcher=os.getppid() + 1)  # its launcher is gone, as under a killed torchrun
    with orphan.installed():
        assert orphan.requested and orphan.signum == signal.SIGTERM


@pytest.fixture
def windows_file_rules(monkeypatch):
    """Windows' rules for open files, on Linux: a file this process holds open or memory-mapped (Python's
    open and mmap do not share delete access there) cannot be deleted, renamed or replaced, nor a folder
    holding one renamed; os.rename onto an existing name fails. What is open is what /proc says."""

    def busy(path) -> bool:
        path = os.path.abspath(path)
        held = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own, closed by now
                held.add(os.readlink(f"/proc/self/fd/{fd}"))
        with open("/proc/self/maps", encoding="utf-8") as maps:
            held |= {line.split(maxsplit=5)[5].strip() for line in maps if len(line.split(maxsplit=5)) == 6}
        return any(place == path or place.startswith(path + os.sep) for place in held)

    def refuse_if_busy(real, *names):
        def act(*paths, **kwargs):
            where = os.readlink(f"/proc/self/fd/{kwargs['dir_fd']}") if kwargs.get("dir_fd") is not None else ""
            for path in paths[: len(names)]:
                if busy(os.path.join(where, path)):
                    raise PermissionError(13, "The process cannot access the file: it is in use", str(path))
            if real is os.rename and os.path.exists(os.path.join(where, paths[1])):
                raise FileExistsError(17, "Cannot create a file when that file already exists", str(paths[1]))
            return real(*paths, **kwargs)

        return act

    for name, checked in (("unlink", 1), ("remove", 1), ("rmdir", 1), ("rename", 2), ("replace", 2)):
        monkeypatch.setattr(os, name, refuse_if_busy(getattr(os, name), *range(checked)))


@pytest.fixture(scope="module")
def fox_run(tmp_path_factory) -> Path:
    """One tiny run for the tests of what comes after a training (a resume, an export), trained once: a
    training under Windows' rules is the test of its own above."""
    return trained_once(tmp_path_factory, "portable")


@pytest.fixture
def trained(fox_run) -> Path:
    """A copy of `fox_run` as this test's checkpoints/run."""
    return Path(shutil.copytree(fox_run, runs.CHECKPOINT_ROOT / "run"))


def test_a_corpus_is_prepared_and_trained_on_under_windows_file_rules(fox_file, tiny, windows_file_rules):
    """Preparing renamed the private cache folder into place while its tokens.bin was memory-mapped,
    which Windows refuses: every new corpus failed there ('cannot write the corpus cache'). The run
    lock deleted .lock while holding it open: every run ended in 'Permission denied', its lock held."""
    charlm.train(fox_file, out="run", **tiny)
    assert runs.resolve("run").is_file()
    with run_lock.RunLock(Path("checkpoints/run")):  # the lock was released: it can be taken again
        pass


def test_a_checkpoint_read_while_training_replaces_it_is_replaced_once_the_reader_is_done(
    trained, tiny, windows_file_rules, monkeypatch
):
    """Windows refuses to replace a file another process holds open: a `charlm sample` reading latest.pt
    at the moment training wrote it stopped the run ('could not write checkpoint (...in use)'). The
    write is tried again for a moment; here the reader is done by the writer's first wait."""
    latest = Path("checkpoints/run/latest.pt")
    reader = open(latest, "rb")  # noqa: SIM115 -- held, as a reader in another process holds it
    waits = []
    monkeypatch.setattr(time, "sleep", lambda seconds: (waits.append(seconds), reader.close()))
    charlm.train(resume="run", max_steps=tiny["max_steps"] + 5)
    assert waits and checkpoint.read(latest).progress.step == tiny["max_steps"] + 5
    assert not runs.pending(latest).exists()


def test_a_checkpoint_held_open_all_along_goes_aside_and_the_run_goes_on(
    trained, tiny, windows_file_rules, monkeypatch, capsys
):
    """A reader that holds latest.pt open longer than the writer waits (a program that keeps it open)
    would lose the run's work: the checkpoint is kept as latest.pending.pt, one line says so and how to
    resume, and the run folder names it from then on: sampling it gives the newer model, resuming it goes
    on from its step, and the next write that can replace latest.pt removes the older file aside."""
    latest = Path("checkpoints/run/latest.pt")
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    with open(latest, "rb"):
        charlm.train(resume="run", max_steps=tiny["max_steps"] + 5)
    pending = runs.pending(latest)
    assert checkpoint.read(latest).progress.step == tiny["max_steps"]  # the reader's file, as it was
    assert checkpoint.read(pending).progress.step == tiny["max_steps"] + 5
    warnings = [line for line in capsys.readouterr().err.splitlines() if str(pending) in line]
    assert warnings and all(line.startswith(f"warning: {latest} is held open") for line in warnings)
    assert f"charlm.train(resume='{latest.parent}')" in warnings[-1]
    assert checkpoint.read(runs.resolve("run", prefer=runs.LATEST)).progress.step == tiny["max_steps"] + 5
    charlm.train(resume=str(latest.parent), max_steps=tiny["max_steps"] + 8)  # what the line says to do
    assert checkpoint.read(latest).progress.step == tiny["max_steps"] + 8 and not pending.exists()


def test_a_model_folder_in_use_can_be_exported_into_again(trained, windows_file_rules):
    """Reading a model folder memory-mapped its model.safetensors for as long as the weights read lived
    (`charlm inspect model` holds them while it scores its text): on Windows, which refuses to replace a
    mapped file, exporting the run again into that folder meanwhile failed ('cannot write')."""
    export = ["export", "run", "--format", "safetensors", "--output", "model"]
    assert CliRunner().invoke(main, export).exit_code == 0
    inspected = checkpoint.read(Path("model/model.safetensors"))  # noqa: F841 -- held, as inspect holds it
    again = CliRunner().invoke(main, export)
    assert again.exit_code == 0, again.output


def test_a_lock_held_on_windows_names_its_owner_without_signalling_it(tmp_path, monkeypatch):
    """Probing the owner with os.kill(pid, 0) sent it Ctrl-C on Windows, where signal 0 is CTRL_C_EVENT."""
    sent = []
    monkeypatch.setattr(processes.os, "kill", lambda pid, signum: sent.append((pid, signum)))
    monkeypatch.setattr(processes.sys, "platform", "win32")
    with (
        run_lock.RunLock(tmp_path / "run"),
        pytest.raises(CharLMError, match="in use by another thread of this process"),
    ):
        run_lock.RunLock(tmp_path / "run").__enter__()  # the owner, named as this process's own
    assert sent == []


@pytest.fixture
def no_proc(monkeypatch):
    """An OS without Linux's /proc (macOS, the BSDs): /proc/self/fd/N cannot be read."""
    real_readlink = os.readlink

    def readlink(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_readlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "readlink", readlink)
    return real_readlink


def test_a_run_folder_moved_on_macos_says_where_it_is_now(tmp_path, monkeypatch, no_proc):
    """Where a folder held open went was asked of /proc/self/fd only, which macOS lacks: a run whose
    folder was moved there said it "was removed" and to start a new run. macOS answers fcntl's
    F_GETPATH (fcntl(2): "Get the path of the file descriptor", into a buffer of MAXPATHLEN bytes)."""
    fcntl = pytest.importorskip("fcntl")
    real_fcntl = fcntl.fcntl

    def fcntl_as_macos(fd, command, arg=0):
        if command == 50:  # macOS's F_GETPATH
            path = os.fsencode(no_proc(f"/proc/self/fd/{fd}"))
            return path + bytes(len(arg) - len(path))
        return real_fcntl(fd, command, arg)

    monkeypatch.setattr(fcntl, "F_GETPATH", 50, raising=False)
    monkeypatch.setattr(fcntl, "fcntl", fcntl_as_macos)
    monkeypatch.setattr(sys, "platform", "darwin")
    lock = run_lock.RunLock(tmp_path / "run")
    with lock:
        os.rename(tmp_path / "run", tmp_path / "moved")
        assert lock.lost() == f"the run folder {tmp_path / 'run'} was moved to {tmp_path / 'moved'}"
        assert lock.moved_to() == tmp_path / "moved"


def test_a_run_folder_moved_where_the_os_does_not_say_where_is_not_called_removed(tmp_path, monkeypatch, no_proc):
    """Where the OS does not say where a folder held open is now (FreeBSD without /proc; Windows, which
    does not open folders), a moved run folder was said to be removed, with no word of resuming it."""
    monkeypatch.setattr(sys, "platform", "freebsd14")
    lock = run_lock.RunLock(tmp_path / "run")
    with lock:
        os.rename(tmp_path / "run", tmp_path / "moved")
        assert lock.lost().startswith(f"the run folder {tmp_path / 'run'} was moved or removed (one moved resumes")
        assert "charlm.train(resume=FOLDER)" in lock.lost() and lock.moved_to() is None  # a Python caller's call
        with on_command_line():
            assert "charlm train --resume FOLDER" in lock.lost()


class NoFloat64(TorchFunctionMode):
    """MPS's rule on the CPU: torch refuses float64 on an Apple GPU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in tree_leaves(result)):
            raise TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64")
        return result


def test_training_on_a_device_without_float64(fox_file, tiny, monkeypatch):
    """A MacBook's --device auto is mps, which has no float64: validation added its bits up in float64
    on the model's device, so every training run there failed at its first evaluation (and inspect,
    the server's log-probabilities, with --device mps)."""
    monkeypatch.setattr(scoring, "has_float64", lambda device: False, raising=False)  # this CPU as mps
    with NoFloat64():
        model = charlm.train(fox_file, out="run", **tiny)
        assert len(scoring.surprise(model, "the fox").bits) == 7  # inspect's and the server's scores
    assert runs.read_run_info(Path("checkpoints/run"))


@pytest.fixture
def fake_mps(monkeypatch) -> torch.Generator:
    """An Apple GPU's generator, on Linux: torch.mps's get_rng_state, set_rng_state and manual_seed
    (CPU byte tensors, as torch documents them) over a CPU generator of its own, returned."""
    generator = torch.Generator().manual_seed(5)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda device="mps": generator.get_state())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state, device="mps": generator.set_state(state))
    monkeypatch.setattr(torch.mps, "manual_seed", lambda seed: generator.manual_seed(seed))
    return generator


def test_a_run_on_mps_resumes_with_its_gpu_generator(fox_file, tiny, fake_mps):
    """On an Apple GPU dropout draws from mps's own generator, which checkpoints did not keep (only the
    CPU's and CUDA's): a run resumed on mps went on with other dropout masks than it would have."""
    trainer = api.start_run(Config(**tiny), [str(fox_file)], "run")
    trainer.state.device = torch.device("mps")  # the state is on the CPU: the generators are what is tested
    saved_state = fake_mps.get_state()
    data = checkpoint_file.serialize(trainer.checkpoint().to_payload())
    payload = checkpoint.unpack(data, Path("latest.pt"))  # read back as a file is: weights_only
    saved = checkpoint.Checkpoint.from_payload(payload, Path("latest.pt"))
    torch.rand(3, generator=fake_mps)  # the run went on, drawing dropout masks
    train_state.restore(trainer.state, saved, random_seed=0)
    assert torch.equal(fake_mps.get_state(), saved_state)
    on_cuda = dataclasses.replace(saved, device="cuda:0")  # a CUDA run's generator state means nothing to mps
    train_state.restore(trainer.state, on_cuda, random_seed=0)
    assert not torch.equal(fake_mps.get_state(), saved_state)  # reseeded instead


def test_server_metrics_where_there_is_no_resource_module(monkeypatch):
    """Windows has no `resource` module (nor /proc): GET /metrics failed there with ImportError."""
    block_import(monkeypatch, "resource")
    text = Metrics().render({}, busy=0, max_streams=1)
    assert "charlm_characters_per_second 0" in text and "resident_memory" not in text
