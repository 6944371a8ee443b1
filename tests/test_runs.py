"""Run folders: names, finding them, one training process per folder."""

import contextlib
import errno
import fcntl
import hashlib
import io
import itertools
import json
import multiprocessing
import ntpath
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path, PureWindowsPath
from types import SimpleNamespace

import pytest
import torch

import charlm
from charlm import (
    api,
    cache_folders,
    checkpoint,
    checkpoint_advice,
    checkpoint_file,
    checkpoint_header,
    corpus,
    errors,
    fields,
    files,
    hub,
    outputs,
    plan,
    plot,
    processes,
    run_claim,
    run_lock,
    run_notes,
    runs,
    runtext,
    sizing,
    summary,
    tables,
    train_state,
    write_checks,
)
from charlm import trainer as trainer_module
from charlm.config import refuse_added_limits
from charlm.errors import CharLMError, one_line_path
from charlm.fields import on_command_line
from charlm.runs import read_metrics

from .conftest import (
    TINY_ARGS,
    TRAIN_ARGS,
    assert_one_line_error,
    at_once_in_rounds,
    cli,
    file_size_limit,
    latest,
    run_cli,
    start_charlm,
    start_training,
    wait_for,
)
from .lock_contender import NAMED, take_and_release_in_rounds, take_lock_in_each_trial
from .permissions import as_a_user
from .test_distributed import cli_options, train_ranks


def test_run_folder_and_name_resolve_to_best_and_latest(fox_file, tiny):
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2})
    assert runs.resolve("run").name == "best.pt"
    assert runs.resolve("checkpoints/run", prefer=runs.LATEST).name == "latest.pt"
    assert runs.resolve(None).parent.name == "run"


def test_a_run_folder_that_cannot_be_looked_into_is_one_line_and_hides_no_other_run(tmp_path):
    """A run folder its user cannot enter (chmod 000, another user's): `charlm runs`, and `charlm sample`
    given no RUN, said `checkpoints/locked/latest.pt: Permission denied` and used none of the other
    runs; naming it said so with nothing to do. Root enters any folder: held to file permissions."""
    for name in ("sound", "locked"):
        (tmp_path / name).mkdir()
        (tmp_path / name / runs.LATEST).touch()
    (tmp_path / "locked").chmod(0)

    def list_and_resolve() -> tuple[list[str], str, str]:
        try:
            runs.resolve(tmp_path / "locked")
        except CharLMError as e:
            refusal = str(e)
        return [p.name for p in runs.run_folders(tmp_path)], runs.resolve(None, root=tmp_path).parent.name, refusal

    try:
        assert as_a_user(list_and_resolve) == (
            ["sound"],
            "sound",
            f"{tmp_path / 'locked'}: cannot read (Permission denied); make it readable, or copy it somewhere it is",
        )
    finally:
        (tmp_path / "locked").chmod(0o755)


def resume_to_step_4() -> str:
    """Resume the run in checkpoints/run to step 4: its refusal, or "resumed"."""
    try:
        charlm.train(resume="run", max_steps=4)
    except CharLMError as e:
        return str(e)
    return "resumed"


def test_a_resume_whose_run_json_cannot_be_read_is_refused_before_it_loses_the_reasons(fox_file, tiny):
    """A run.json its user cannot read (chmod a-r) in a writable run folder was read as none, and the
    resume replaced it with one that kept no reasons (why --hidden, --head, --dropout are what they are,
    `charlm info`'s). It is refused in one line before anything is written. Root reads any file: the
    resume is held to file permissions (tests/permissions.py)."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2})
    info = Path("checkpoints/run") / runs.RUN_INFO
    kept = info.read_bytes()
    info.chmod(0)

    try:
        refusal = as_a_user(resume_to_step_4)
    finally:
        info.chmod(0o644)
    assert refusal == (f"{info}: cannot read (Permission denied); make it readable, or copy it somewhere it is")
    assert info.read_bytes() == kept


@pytest.mark.parametrize("encoding", ["nosuch", "²", "", 8])
def test_a_resume_whose_run_json_names_no_text_encoding_reads_the_text_as_its_checkpoint_says(fox_file, tiny, encoding):
    """run.json's config.encoding, hand-edited to no text encoding, was taken for the text's and refused as
    "--encoding: unknown text encoding 'nosuch'", an option the user never gave: the field is lost, the run
    goes on reading its text as its checkpoint records."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2})
    info = Path("checkpoints/run") / runs.RUN_INFO
    edited = json.loads(info.read_text(encoding="utf-8"))
    edited["config"]["encoding"] = encoding
    info.write_text(json.dumps(edited), encoding="utf-8")
    assert resume_to_step_4() == "resumed"
    assert latest("run").config.encoding == "utf-8" and latest("run").progress.step == 4


def test_charlm_runs_names_the_run_folders_it_cannot_read_after_its_table():
    """A run folder its user cannot enter (chmod 000, another user's) was left out of `charlm runs` without a
    word: said in one line after the table (on stderr, so the table stays the table). Root enters any
    folder: listed as a user (tests/permissions.py)."""
    for name in ("sound", "locked", "shut"):
        (runs.CHECKPOINT_ROOT / name).mkdir(parents=True)
        (runs.CHECKPOINT_ROOT / name / runs.LATEST).touch()
    closed = [runs.CHECKPOINT_ROOT / "locked", runs.CHECKPOINT_ROOT / "shut"]

    def list_runs() -> tuple[int, list[str], str]:
        result = cli("runs")
        return result.exit_code, [line.split()[0] for line in result.stdout.splitlines()[1:]], result.stderr

    for folder in closed:
        folder.chmod(0)
    try:
        assert as_a_user(list_runs) == (
            0,
            ["sound"],
            (
                "left out 2 folders that cannot be read (Permission denied): checkpoints/locked, checkpoints/shut; "
                "make them readable (chmod u+rx) to list them\n"
            ),
        )
        (runs.CHECKPOINT_ROOT / "sound").chmod(0)  # none left to list: not "train one"
        assert as_a_user(lambda: cli("runs").output) == (
            f"Error: no runs under checkpoints/ in {Path.cwd()}; left out 3 folders that cannot be read (Permission "
            "denied): checkpoints/locked, checkpoints/shut, checkpoints/sound; make them readable (chmod u+rx) to "
            "list them\n"
        )
    finally:
        for folder in [*closed, runs.CHECKPOINT_ROOT / "sound"]:
            folder.chmod(0o755)


def test_folders_left_out_for_different_reasons_are_each_said_with_their_own(monkeypatch):
    """`charlm runs` said the first unreadable folder's reason for every folder it left out: one refused
    by a security module (EPERM) was said to be "Permission denied" with the chmod 000 ones."""
    denied, not_permitted = (
        PermissionError(errno.EACCES, "Permission denied"),
        PermissionError(errno.EPERM, "Operation not permitted"),
    )
    left_out = [
        (Path("checkpoints/a"), denied),
        (Path("checkpoints/b"), not_permitted),
        (Path("checkpoints/c"), denied),
    ]
    monkeypatch.setattr(runs, "unreadable_folders", lambda root: left_out)
    assert tables.unread_note() == (
        "left out 3 folders that cannot be read: checkpoints/a (Permission denied), checkpoints/b (Operation not "
        "permitted), checkpoints/c (Permission denied); make them readable (chmod u+rx) to list them"
    )
    monkeypatch.setattr(runs, "unreadable_folders", lambda root: left_out[::2])
    assert tables.unread_note() == (
        "left out 2 folders that cannot be read (Permission denied): checkpoints/a, checkpoints/c; make them "
        "readable (chmod u+rx) to list them"
    )


def test_charlm_runs_of_a_root_it_cannot_read_says_so_not_that_it_holds_no_runs(tmp_path):
    """`charlm runs --root X` of a folder its user cannot read (chmod 000) said "no runs under X/", of a
    folder that may hold many. Root reads any folder: listed as a user (tests/permissions.py)."""
    (tmp_path / "closed" / "run").mkdir(parents=True)
    (tmp_path / "closed" / "run" / runs.LATEST).touch()

    def list_runs() -> tuple[int, str]:
        result = cli("runs", "--root", "closed")
        return result.exit_code, result.output

    (tmp_path / "closed").chmod(0)
    try:
        assert as_a_user(list_runs) == (
            1,
            "Error: --root closed: cannot read (Permission denied); make it readable, or copy it somewhere it is\n",
        )
    finally:
        (tmp_path / "closed").chmod(0o755)


def test_a_command_given_no_run_says_an_unreadable_checkpoints_folder_cannot_be_read(tmp_path):
    """`charlm sample`, `eval` and `inspect` given no RUN, with checkpoints/ chmod 000, said "no runs under
    checkpoints/", of a folder that may hold many; so did a resume given no RUN."""
    (tmp_path / "checkpoints" / "run").mkdir(parents=True)
    (tmp_path / "checkpoints" / "run" / runs.LATEST).touch()

    def refusals() -> list[str]:
        told = [cli(*command).output for command in (["sample"], ["eval"], ["inspect", "--held-out"])]
        return [*told, cli("train", "--resume").output]

    unreadable = f"Error: checkpoints/ in {tmp_path}: cannot read (Permission denied); make it readable, or copy"
    (tmp_path / "checkpoints").chmod(0)
    try:
        told = as_a_user(refusals)
    finally:
        (tmp_path / "checkpoints").chmod(0o755)
    assert all(output.startswith(unreadable) and output.count("\n") == 1 for output in told), told


def test_a_resume_into_a_read_only_run_folder_is_refused_before_it_says_anything(fox_file, tiny):
    """A resume into a run folder that takes no new files (chmod a-w) said `training ..., resumed at step 2`,
    then `checkpoints/run/.lock: cannot write`, naming a file the user never made. It is refused first, in
    one line naming the run folder and what to do. Root writes any folder: resumed as a user."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2, "quiet": False})  # a resume says its start
    folder = Path("checkpoints/run")
    kept = {path.name: path.read_bytes() for path in folder.iterdir()}

    def resume() -> tuple[int, str]:
        result = cli("train", "--resume", "run", "--max-steps", "4")
        return result.exit_code, result.output

    folder.chmod(0o555)
    try:
        assert as_a_user(resume) == (
            1,
            (
                f"Error: {folder}: cannot resume its run: the folder takes no new files (Permission denied), and a "
                "resume writes its checkpoints there; make it writable (chmod u+w checkpoints/run), or copy the run "
                "to a writable folder and resume the copy\n"
            ),
        )
    finally:
        folder.chmod(0o755)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == kept


def test_a_resume_over_a_write_protected_checkpoint_or_run_json_is_refused(fox_file, tiny):
    """latest.pt, best.pt or run.json write-protected by its owner (chmod a-w, "keep this") in a writable run
    folder was replaced by the resume all the same: a rename ignores the file's own permissions, where `>`
    refuses it (and `sample --output` does). The resume is refused before it trains, naming the file. Root
    writes any file: resumed as a user. So is a write-protected metrics.jsonl (once a warning as the resume
    trained, its rows lost) or .lock (once an error after the resume said its start line), which it writes to."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2})
    folder = Path("checkpoints/run")
    (folder / runs.LOCK).touch()  # as a run killed while it trained leaves it

    for name in (runs.LATEST, runs.BEST, runs.RUN_INFO, runs.METRICS, runs.LOCK):
        kept = {path.name: path.read_bytes() for path in folder.iterdir()}
        (folder / name).chmod(0o444)
        try:
            refusal = as_a_user(resume_to_step_4)
        finally:
            (folder / name).chmod(0o644)
        done = "writes to it" if name in (runs.METRICS, runs.LOCK) else "would replace it"
        assert refusal == (
            f"{folder / name}: is write-protected, and resuming the run {done}; make it writable (chmod u+w "
            f"{folder / name}) to go on with the run, or start a new run from this one (init_from='{folder}')"
        )
        assert {path.name: path.read_bytes() for path in folder.iterdir()} == kept


def test_a_resume_on_a_read_only_file_system_says_so_not_to_chmod(tmp_path, monkeypatch):
    """A run folder on a read-only mount (EROFS) was told `chmod u+w`, which cannot help there: it is said
    to be on a read-only file system, and the run to be copied elsewhere to go on."""

    def read_only(place: Path) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(place / "probe"))

    monkeypatch.setattr(write_checks, "probe_new_files", read_only)
    told = "writes its checkpoints there; it is on a read-only file system, where no chmod helps: copy the run to a"
    with pytest.raises(
        CharLMError, match=f"^{re.escape(str(tmp_path))}: .*{told} writable folder and resume the copy$"
    ):
        write_checks.check_resumable(tmp_path)


def test_a_run_json_a_full_disk_refused_is_a_warning_saying_what_to_do(tmp_path, capsys):
    """run.json that could not be written said `cannot write (File too large)`, not what to do, though
    the run's checkpoints fail on the same disk next."""
    runs.write_run_info(tmp_path, {"corpus": "fox"})
    kept = (tmp_path / runs.RUN_INFO).read_bytes()
    with file_size_limit(10):
        runs.write_run_info(tmp_path, {"corpus": "fox"})
    assert capsys.readouterr().err == (
        f"warning: {tmp_path / runs.RUN_INFO}: cannot write (File too large); free space on its disk (or raise "
        "the file size limit, ulimit -f); training goes on\n"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [runs.RUN_INFO]
    assert (tmp_path / runs.RUN_INFO).read_bytes() == kept


def test_an_empty_run_or_the_folder_of_runs_is_told_what_to_give(fox_file, tiny):
    """`charlm.load("")` said ".: run folder holds no checkpoint"; `--init-from checkpoints` called the
    folder of runs a run folder with no checkpoint."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2})
    for empty in ("", " "):
        with pytest.raises(CharLMError, match="the run to use is empty: give a run folder"):
            runs.resolve(empty)
    with pytest.raises(CharLMError, match="checkpoints is a folder of runs, not a run: name one of them"):
        runs.resolve("checkpoints")
    result = cli("train", str(fox_file), "--init-from", "checkpoints", "--max-steps", "1")
    assert_one_line_error(result, "--init-from checkpoints is a folder of runs, not a run")


def test_a_run_to_resume_that_is_not_there_is_named_as_init_from_s_is(fox_file):
    """`charlm.train(corpus, resume="nope")` said "nope: no such checkpoint file ..." where
    `init_from="nope"` said "init_from: nope: ...": which of the call's paths was wrong went unsaid."""
    for keyword, flag in (("resume", "--resume"), ("init_from", "--init-from")):
        with pytest.raises(CharLMError, match=f"^{keyword}='nope': no such checkpoint file or run folder"):
            charlm.train(fox_file, **{keyword: "nope"}, max_steps=1)
        result = cli("train", str(fox_file), flag, "nope", "--max-steps", "1")
        assert_one_line_error(result, f"Error: {flag} nope: no such checkpoint file or run folder")


def test_a_missing_run_is_said_alike_whichever_option_or_argument_names_it(fox_file):
    """`--eval-also nope` said "--eval-also nope: no such ..." where `--init-from nope` said
    "--init-from: nope: no such ...": one form for all, the option as typed, its value, what is wrong."""
    told = {}
    for flag in ("--init-from", "--resume", "--eval-also"):
        result = cli("train", str(fox_file), flag, "nope", "--max-steps", "1", "--quiet")
        assert_one_line_error(result, f"Error: {flag} nope: ")
        told[flag] = result.output.strip().removeprefix(f"Error: {flag} ")
    for command in (["sample", "nope"], ["eval", "nope", str(fox_file)], ["info", "nope"]):
        told[command[0]] = cli(*command).output.strip().removeprefix("Error: ")
    for keyword in ("init_from", "resume", "eval_also"):
        with pytest.raises(CharLMError) as caught:
            charlm.train(fox_file, **{keyword: "nope"}, max_steps=1)
        told[keyword] = "nope" + str(caught.value).removeprefix(f"{keyword}='nope'")  # Python's keyword=value
    assert len(set(told.values())) == 1 and told["sample"].startswith("nope: no such checkpoint file"), told


def test_a_device_or_named_pipe_given_as_a_run_is_named_as_what_it_is(fox_file, tmp_path):
    """`charlm sample /dev/zero` and `--eval-also /dev/zero` said "no such checkpoint file or run folder",
    though the path is there: a device (or a named pipe) is said to be one, and what to give instead."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for path, kind in (("/dev/zero", "a device"), (str(pipe), "a pipe")):
        said = f"{path} is {kind}, not a checkpoint file or run folder: give a run folder, run name, corpus name"
        with pytest.raises(CharLMError, match=f"^{re.escape(said)}"):
            runs.resolve(path)
        assert_one_line_error(cli("sample", path), said)
    result = cli("train", str(fox_file), "--eval-also", "/dev/zero", "--max-steps", "1", "--quiet")
    assert_one_line_error(result, "--eval-also /dev/zero: a device, not a regular file")  # a text it is not either


def test_a_pipe_or_device_given_alone_to_score_or_inspect_is_named_before_the_latest_run_is_looked_for(tmp_path):
    """`charlm eval FIFO` and `charlm inspect /dev/zero`, with no run trained yet, said "no runs under
    checkpoints/", of a text they could not have read anyway: what it is comes first, as with a run."""
    os.mkfifo(tmp_path / "pipe")
    for path, kind in (("pipe", "a pipe"), ("/dev/zero", "a device")):
        for command in ("eval", "inspect"):
            assert_one_line_error(cli(command, path), f"{path}: {kind}, not a regular file, which charlm needs")
    assert not Path("checkpoints").exists()


def test_a_corpus_name_resolves_to_its_latest_run(fox_file, tiny):
    """`charlm sample --checkpoint fox`: the newest run of corpus fox, by its run.json (an --out run
    too), while a run folder of that very name would win; an unknown name says where it looked."""
    charlm.train(fox_file, out="first", **{**tiny, "max_steps": 2})
    charlm.train(fox_file, out="second", **{**tiny, "max_steps": 2})
    assert runs.resolve("fox").parent.name == "second"
    os.utime(Path("checkpoints/first") / runs.LATEST)  # first is now the run updated last
    assert runs.resolve("fox", prefer=runs.LATEST) == Path("checkpoints/first") / runs.LATEST
    assert cli("sample", "--checkpoint", "fox", "--length", "5", "--random-seed", "1").exit_code == 0
    assert_one_line_error(cli("info", "dog"), "dog: no such checkpoint file or run folder, nor a run or corpus")


@pytest.mark.parametrize(("started", "renamed"), [("唐诗三百首", "唐诗"), ("notes", "diary")])
def test_a_run_resumed_on_its_renamed_text_keeps_its_corpus_name_and_is_found_by_the_new_one_too(
    tmp_path, tiny, started, renamed
):
    """Trained on 唐诗三百首.txt, renamed 唐诗.txt and resumed on it, a run recorded its corpus as 唐诗: `charlm
    eval 唐诗三百首`, the name it was trained under and its folder's, said "no such ... run or corpus". It
    keeps the name it was started under, its sources the new path; the new file's stem finds it too, where
    no run is of that corpus itself, and so does its folder's name where an older charlm renamed its corpus."""
    text = tmp_path / f"{started}.txt"
    text.write_text("床前明月光，疑是地上霜。the quick brown fox\n" * 40, encoding="utf-8")
    charlm.train(text, **{**tiny, "max_steps": 2})
    (folder,) = runs.run_folders()
    moved = text.rename(tmp_path / f"{renamed}.txt")
    charlm.train(moved, resume=started, max_steps=3)
    info = runs.read_run_info(folder)
    assert (
        (info["corpus"], info["sources"]) == (started, [str(moved)]) == (latest(started).corpus["name"], [str(moved)])
    )
    assert cli("eval", started, "--quiet").exit_code == 0
    assert runs.resolve(renamed, prefer=runs.LATEST).parent == folder
    runs.write_run_info(folder, {**info, "corpus": renamed})  # as an older charlm's resume recorded it
    assert runs.resolve(started).parent == runs.resolve(renamed).parent == folder
    other = tmp_path / "other" / f"{renamed}.txt"  # a run of that corpus itself is the one its name finds
    other.parent.mkdir()
    other.write_text("the lazy dog sleeps\n" * 60, encoding="utf-8")
    runs.write_run_info(folder, info)
    charlm.train(other, out="own", **{**tiny, "max_steps": 2})
    os.utime(folder / runs.LATEST)  # the renamed text's run is now the one updated last
    assert runs.resolve(renamed).parent.name == "own" and runs.resolve(started).parent == folder


def test_a_corpus_name_reads_each_runs_run_json_once(tmp_path, monkeypatch):
    """A corpus name no run is of (`runs_of_corpus`: every run or corpus name a command takes) read each run's
    run.json three times, and Tab's names for a run (`corpus_names_of_run`) twice: a root of many runs on a
    network disk paid it for each. Each is read once, and finds what it found."""
    moved = tmp_path / "唐诗.txt"
    recorded = {
        "唐诗三百首-20261204-170201": {"corpus": "唐诗三百首", "sources": [str(moved)]},
        "fox-20261204-170202": {"corpus": "fox"},
        "notes": {"corpus": "notes", "sources": "not a list"},
        "diary-20261204-170203": None,  # none: its folder's name says its corpus
    }
    for name, info in recorded.items():
        (tmp_path / name).mkdir()
        if info:
            runs.write_run_info(tmp_path / name, info)
    folders = [tmp_path / name for name in recorded]
    real_read, reads = runs.read_run_info, []

    def counted_read(run_dir: Path) -> dict | None:
        reads.append(Path(run_dir).name)
        return real_read(run_dir)

    monkeypatch.setattr(runs, "read_run_info", counted_read)
    assert runs.runs_of_corpus("唐诗", folders) == folders[:1]
    assert sorted(reads) == sorted(recorded), reads
    reads.clear()
    assert [runs.corpus_names_of_run(folder) for folder in folders] == [
        {"唐诗三百首", "唐诗"},
        {"fox"},
        {"notes"},
        {"diary"},
    ]
    assert sorted(reads) == sorted(recorded), reads


@pytest.mark.parametrize("name", ["红楼梦", "《紅樓夢》"])
def test_a_corpus_title_given_for_a_run_is_told_the_corpus_name(name):
    """`charlm train 红楼梦` is asked "did you mean 'hongloumeng'?"; `charlm.load('红楼梦')`, `charlm sample
    --checkpoint 红楼梦` and `charlm inspect 红楼梦` said only that no run has that name, where the runs are
    named 'hongloumeng'."""
    with pytest.raises(CharLMError, match=f"^{name}: no such checkpoint .*; did you mean 'hongloumeng'\\?$"):
        charlm.load(name)
    assert_one_line_error(cli("sample", "--checkpoint", name), "; did you mean 'hongloumeng'?")
    assert cli("inspect", name).output.rstrip().endswith("; did you mean 'hongloumeng'?")
    with pytest.raises(CharLMError) as refused:
        runs.resolve("hongloumeng")
    assert "did you mean" not in str(refused.value)


def test_a_new_run_never_overwrites_an_old_one(fox_file, tiny):
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2})
    with pytest.raises(CharLMError, match="already holds a run"):
        charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2})


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_second_training_into_one_folder_is_refused_and_a_dead_owner_is_taken_over(fox_file, tmp_path):
    process = start_training(str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "100000")
    try:
        wait_for(tmp_path / "checkpoints/run/latest.pt")
        # the second training and the take-over run in this process: ~3 s less each than a process of their own
        assert_one_line_error(cli("train", "--resume", "run", "--quiet"), f"in use by process {process.pid}")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    left = (tmp_path / "checkpoints/run/.lock.pid").read_text()  # by the dead
    assert left.partition("-")[0] == str(process.pid)
    resumed = cli("train", "--resume", "run", "--max-steps", str(latest("run").progress.step + 10))
    assert resumed.exit_code == 0 and "done: step" in resumed.stdout, resumed.output


def lock_holder(folder: Path) -> subprocess.Popen:
    """A process that holds `folder`'s RunLock until it is killed (or its standard input ends)."""
    return subprocess.Popen(
        [sys.executable, "-c", f"from charlm.run_lock import RunLock\nwith RunLock({str(folder)!r}): input()"],
        stdin=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_lock_of_a_live_process_is_kept(fox_file, tiny, tmp_path):
    folder = tmp_path / "checkpoints/run"
    holder = lock_holder(folder)
    try:
        wait_for(folder / ".lock.pid")
        with pytest.raises(CharLMError, match=f"in use by process {holder.pid} "):
            charlm.train(fox_file, out="run", **tiny)
    finally:
        holder.kill()
        holder.wait()
    assert (folder / ".lock").exists()  # left by the dead, with its PID:
    assert (folder / ".lock.pid").read_text().partition("-")[0] == str(holder.pid)
    charlm.train(fox_file, out="run", **tiny)  # its owner is gone: taken over
    assert not (folder / ".lock").exists() and not (folder / ".lock.pid").exists()


def test_a_resume_refused_by_another_process_says_only_the_refusal(fox_file, tiny, tmp_path, capsys):
    """A resume of a run another process holds printed its start line ("training ... resumed at step 2
    with --max-steps 4 (was 2)") and then the refusal: the lock was tried after the line. The command,
    and charlm.train, say the refusal alone."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2, "quiet": True})
    folder = tmp_path / "checkpoints/run"
    holder = lock_holder(folder)
    try:
        wait_for(folder / ".lock.pid")
        assert_one_line_error(cli("train", "--resume", "run", "--max-steps", "4"), f"in use by process {holder.pid} ")
        capsys.readouterr()
        with pytest.raises(CharLMError, match=f"in use by process {holder.pid} "):
            charlm.train(resume="run", max_steps=4)
        assert capsys.readouterr().err == ""
    finally:
        holder.kill()
        holder.wait()


def test_a_run_another_thread_of_the_process_trains_is_refused_naming_the_thread_not_the_process(fox_file, tiny):
    """Two threads of one process training into one `out` at once: the second was told the folder `is in use
    by process PID (another charlm train); wait for it or stop it`, that PID its own: stopping it stops the
    caller (a notebook's kernel). A real thread holds the run's lock while this one starts the run."""
    folder, held, done = Path("checkpoints/run"), threading.Event(), threading.Event()

    def hold() -> None:
        with run_lock.RunLock(folder):
            held.set()
            done.wait(timeout=60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(timeout=60)
        with pytest.raises(CharLMError) as refused:
            charlm.train(fox_file, out="run", **tiny)
    finally:
        done.set()
        holder.join(timeout=60)
    assert str(refused.value) == (
        f"{folder} is in use by another thread of this process (its charlm.train); wait for that call to "
        "return, or train into another folder (out=FOLDER)"
    )


def test_a_run_folder_made_read_only_mid_run_keeps_the_runs_error_and_frees_its_lock(tmp_path):
    """A run folder made read-only (chmod a-w) while training: the checkpoint's one-line error (which
    says from which step to resume) was replaced by `.lock.pid: Permission denied` from the lock's
    release, before its unlock: the lock files cannot go, the unlock still must. Root writes any folder:
    the run is held to file permissions (tests/permissions.py)."""
    folder = tmp_path / "run"

    def train_into_a_folder_made_read_only() -> tuple[str, bool]:
        try:
            with run_lock.RunLock(folder):
                folder.chmod(0o555)
                raise CharLMError("could not write checkpoint")
        except Exception as e:  # noqa: BLE001  (which one reached the caller is the point)
            raised = f"{type(e).__name__}: {e}"
        with open(folder / runs.LOCK, "rb") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another open file: refused while it is held
            except BlockingIOError:
                return raised, False
        return raised, True

    try:
        assert as_a_user(train_into_a_folder_made_read_only) == ("CharLMError: could not write checkpoint", True)
    finally:
        folder.chmod(0o755)


def test_a_run_refused_the_moment_another_took_the_lock_names_it(tmp_path, monkeypatch):
    """Two runs started at once: the one refused could meet the other between its taking the lock and
    writing its PID, and said "in use by another process" (seen in
    test_two_resumes_on_a_moved_corpus_at_once_one_trains_while_eval_and_runs_read_the_run on a loaded
    machine). Here the owner takes the lock and names itself 0.3 s later: the refusal names it. The
    refusal waits for the name as long as a loaded machine may take to write it (a wait met returns)."""
    monkeypatch.setattr(run_lock, "OWNER_NAMED_WITHIN", 30.0)
    folder = tmp_path / "run"
    folder.mkdir()
    takes_then_names = (
        "import filelock, time\nfrom charlm import processes\n"
        f"lock = filelock.FileLock({str(folder / '.lock')!r}, timeout=0); lock.acquire()\n"
        "print('held', flush=True); time.sleep(0.3)\n"
        f"open({str(folder / '.lock.pid')!r}, 'w').write(processes.process_name()); input()"
    )
    command = [sys.executable, "-c", takes_then_names]
    owner = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline() == "held\n"
        with pytest.raises(CharLMError, match=f"in use by process {owner.pid} "), run_lock.RunLock(folder):
            pass
    finally:
        owner.kill()
        owner.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the OS does not say when a process started")
def test_a_killed_runs_pid_given_to_another_process_is_not_read_as_training(tmp_path):
    """A run killed by SIGKILL leaves `.lock.pid`; once the OS gave its PID to an unrelated process, the
    dead run read as "still training" (`charlm runs`, `charlm sample RUN`, eval, export) for as long as
    that process lived. A process that started at another time than the owner recorded is not the owner;
    a live owner still reads as training. `.lock.pid` names its owner as every file names its process
    (`processes.process_name`, PID-START; it wrote "PID START"), and one of the last release, "PID", is still read."""
    folder = tmp_path / "checkpoints/live"
    holder = lock_holder(folder)
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        wait_for(folder / ".lock.pid")
        assert (folder / ".lock.pid").read_text() == f"{holder.pid}-{processes.process_started(holder.pid)}\n"
        assert runs.training_pid(folder) == holder.pid
        dead, older = tmp_path / "checkpoints/dead", tmp_path / "checkpoints/older"
        for run, named in ((dead, f"{unrelated.pid}-1"), (older, f"{unrelated.pid}")):
            run.mkdir()
            (run / ".lock").touch()
            (run / ".lock.pid").write_text(f"{named}\n")
        assert runs.training_pid(dead) is None  # its owner started 1 tick after boot: killed, its PID given on
        assert runs.training_pid(older) == unrelated.pid  # no start time to tell: the PID's process is taken for it
        with pytest.raises(CharLMError, match="holds no checkpoint"):  # not "is still training"
            runs.resolve(dead)
    finally:
        for process in (holder, unrelated):
            process.kill()
            process.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the OS does not say a process is a zombie")
def test_a_run_killed_and_not_yet_reaped_is_not_read_as_training(tmp_path):
    """Right after `kill -9` of a run before its first checkpoint, its parent (a shell, a job runner) has not
    yet reaped it: the zombie still answers kill(pid, 0), with its PID and start time, so the dead run read
    as "still training" until it was reaped. A zombie holds no lock (the OS dropped it as the process died)."""
    folder = tmp_path / "checkpoints/killed"
    holder = lock_holder(folder)
    try:
        wait_for(folder / ".lock.pid")
        assert runs.training_pid(folder) == holder.pid
        holder.send_signal(signal.SIGKILL)  # and not waited for: a zombie until the finally below
        stat = Path(f"/proc/{holder.pid}/stat")
        deadline = time.monotonic() + 10
        while stat.read_bytes().rpartition(b")")[2].split()[0] != b"Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runs.training_pid(folder) is None
        with pytest.raises(CharLMError, match="holds no checkpoint"):  # not "is still training"
            runs.resolve(folder)
    finally:
        holder.kill()
        holder.wait()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_processes_taking_one_lock_at_once_get_it_one_at_a_time(tmp_path):
    """20 trials into a fresh folder, 20 into one whose lock a killed trainer left; 3 contenders each."""
    contenders = 3
    folders = [tmp_path / "trials" / f"{kind}{i}" for i in range(20) for kind in ("fresh", "stale")]
    pid = dead_pid()
    for folder in folders:
        folder.mkdir(parents=True)
        if folder.name.startswith("stale"):  # the PID of a process that is gone
            (folder / ".lock").write_text(f"{pid}\n")
            (folder / ".lock.pid").write_text(f"{pid}\n")
    spawn = multiprocessing.get_context("spawn")
    ready, start_time = spawn.Barrier(contenders + 1), spawn.Value("d", 0.0)
    processes = [
        spawn.Process(target=take_lock_in_each_trial, args=([str(f) for f in folders], ready, start_time))
        for _ in range(contenders)
    ]
    for process in processes:
        process.start()
    ready.wait(timeout=120)  # every contender is running
    start_time.value = time.monotonic() + 0.3
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    holds: dict[str, list[tuple[float, float]]] = {str(f): [] for f in folders}
    for report in (tmp_path / "trials").glob("held-*"):
        for line in report.read_text().splitlines():
            folder, began, ended = line.rsplit(" ", 2)
            holds[folder].append((float(began), float(ended)))
    for folder, spans in holds.items():
        assert spans, f"{folder}: no process took the lock"
        spans.sort()
        overlapping = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
        assert not overlapping, f"{folder}: {len(spans)} processes held the lock at once"


def test_processes_racing_for_a_lock_held_no_time_are_refused_only_naming_a_live_owner(tmp_path):
    """Processes released together round after round, each taking one folder's lock and releasing it at
    once: a release removed `.lock` before its unlock, and a contender that had opened it just before then
    locked the removed file, which filelock (timeout 0) reports as taken: the contender waited a second for
    an owner to name itself and was refused "in use by another process", though nobody held the lock."""
    contenders, rounds = 4, 60
    spawn = multiprocessing.get_context("spawn")
    together, reports = spawn.Barrier(contenders), spawn.Queue()
    race = (str(tmp_path / "run"), rounds, together, reports)
    processes = [spawn.Process(target=take_and_release_in_rounds, args=race) for _ in range(contenders)]
    for process in processes:
        process.start()
    refusals = dict(reports.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert sorted(refusals) == sorted(process.pid for process in processes)
    for pid, refused in refusals.items():
        for message in refused:
            owner = re.search(NAMED + r"(\d+) ", message)
            assert owner and int(owner[1]) in refusals.keys() - {pid}, message


class FrozenClock:
    """`time` as charlm.run_claim sees it, stopped at one second: every run starts in it."""

    NOW = 1_800_000_000.0

    def __getattr__(self, name):
        return getattr(time, name)

    def time(self) -> float:
        return self.NOW

    def strftime(self, form: str, moment=None) -> str:
        return time.strftime(form, moment or time.localtime(self.NOW))


def test_runs_started_in_one_second_get_their_own_folders_in_time_order(fox_file, tiny, monkeypatch):
    monkeypatch.setattr(run_claim, "time", FrozenClock())
    for _ in range(4):
        charlm.train(fox_file, **{**tiny, "max_steps": 3})
    base = f"fox-{time.strftime('%Y%m%d-%H%M%S', time.localtime(FrozenClock.NOW))}"
    assert [folder.name for folder in runs.run_folders()] == [base, f"{base}-02", f"{base}-03", f"{base}-04"]
    next_second = f"fox-{time.strftime('%Y%m%d-%H%M%S', time.localtime(FrozenClock.NOW + 1))}"
    assert f"{base}-99" < next_second  # still in time order among runs of the following seconds


def test_a_claim_its_run_left_when_killed_is_no_run_and_the_next_run_removes_it(fox_file, tiny):
    """A run killed before its folder held run.json left checkpoints/fox-DATE, empty, for good. Its claim
    (hidden; with run.json where it was killed as it moved into place) is listed by no command, a bare
    --resume goes on with the run before it, and the next run removes it; a live process's claim stays."""
    charlm.train(fox_file, out="before", **{**tiny, "max_steps": 2})
    dead, live = Path("checkpoints/.fox-20260101-000000.claim"), Path("checkpoints/.fox-20260101-000001.claim")
    for claim, claimer in ((dead, str(dead_pid())), (live, processes.process_name())):
        claim.mkdir(parents=True)
        (claim / run_claim.CLAIMER).write_text(claimer)
        (claim / runs.RUN_INFO).write_text(json.dumps({"corpus": "fox", "config": {}}))
    assert [line.split()[0] for line in cli("runs").output.splitlines()] == ["run", "before"]
    assert cli("train", "--resume", "--max-steps", "3", "--quiet").exit_code == 0
    charlm.train(fox_file, **{**tiny, "max_steps": 2})
    names = sorted(p.name for p in Path("checkpoints").iterdir())
    assert names == sorted([live.name, "before", runs.latest_run().name])


def test_an_empty_folder_an_older_charlm_left_is_passed_over_and_kept(fox_file, tiny):
    """A run killed as it started, before claims, left checkpoints/fox-DATE empty. It is no run: no command
    lists it or goes on with it, and a run named in another second never meets it. No run removes it: an
    empty folder may be one made for --out, and it holds no data to lose or space to free."""
    charlm.train(fox_file, out="before", **{**tiny, "max_steps": 2})
    left = Path("checkpoints/fox-20990101-000000")  # named after every run, so the latest by name too
    left.mkdir()
    assert [line.split()[0] for line in cli("runs").output.splitlines()] == ["run", "before"]
    assert runs.latest_run() == runs.run_to_resume() == Path("checkpoints/before")
    charlm.train(fox_file, **{**tiny, "max_steps": 2})
    assert left.is_dir() and len(runs.run_folders()) == 2


# In a process of its own: `run_claim.claim_run_folder`, stalled (to be killed) the moment a folder for its claim is made.
CLAIM_STALLED_AT_MKDIR = """
import os, pathlib, sys, time
from charlm import run_claim
real_mkdir = os.mkdir
def mkdir(path, *args, **kwargs):
    real_mkdir(path, *args, **kwargs)
    if ".claim" in os.fspath(path):
        pathlib.Path(sys.argv[1]).touch()
        time.sleep(60)
os.mkdir = mkdir
run_claim.claim_run_folder("fox")
"""


def kill_when_stalled(script: str, mark: Path) -> None:
    """Run `script` (one of the *_STALLED_AT_MKDIR) in a process of its own and SIGKILL it once it stalls."""
    env = {**os.environ, "PYTHONPATH": str(Path(charlm.__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-c", script, str(mark)], env=env)
    try:
        wait_for(mark, timeout=30)
    finally:
        process.kill()
        process.wait()


def test_a_run_killed_as_it_made_its_claim_leaves_nothing_the_next_run_keeps(tmp_path):
    """A run killed (SIGKILL) between making its claim's folder and writing its .claimer in it left a
    claim naming no claimer, which no run removes (one made a moment ago looks the same): 1 in ~25 runs
    killed at random in their first 3 s. The claim appears with its claimer in it, in one rename."""
    kill_when_stalled(CLAIM_STALLED_AT_MKDIR, tmp_path / "stalled")
    folder = runs.default_run_folder("fox", *run_claim.claim_run_folder("fox"))
    assert list(Path("checkpoints").iterdir()) == [run_claim.claim_of(folder)]
    assert run_claim.claimed(folder)


def test_threads_claiming_run_folders_at_once_each_get_one_of_their_own():
    """Two threads of one process starting `charlm.train` on one corpus at once (a sweep in a thread pool)
    made their claims in one folder, named by the process: a thread that found the other's there removed
    it as its own, and the other's run failed: `.fox-DATE.claim: cannot write the run folder (No such file
    or directory)` (about half of the 40 claims here). Real threads claim at once, 8 at a time, in rounds."""
    threads, rounds = 8, 5
    claims, errors = at_once_in_rounds(
        lambda _: runs.default_run_folder("fox", *run_claim.claim_run_folder("fox")), threads, rounds
    )
    assert errors == []
    assert len(set(claims)) == threads * rounds and all(run_claim.claimed(folder) for folder in claims)
    assert sorted(Path("checkpoints").iterdir()) == sorted(run_claim.claim_of(folder) for folder in claims)


# In a process of its own: `write_checks.check_can_make`, stalled (to be killed) the moment it made its write probe.
PROBE_STALLED_AT_MKDIR = (
    CLAIM_STALLED_AT_MKDIR.replace('".claim"', '".probe"')
    .replace('run_claim.claim_run_folder("fox")', 'write_checks.check_can_make(pathlib.Path("checkpoints"))')
    .replace("from charlm import run_claim", "from charlm import write_checks")
)


def test_a_write_probe_a_killed_run_left_is_removed_by_the_next_run_and_a_live_ones_stays(tmp_path):
    """A run killed (SIGKILL) in the instant it tried the folder it would write to left its probe,
    `.probe.tmp-RANDOM`, which nothing ever removed. The probe is named by its process now, as a claim
    being made is: the next run removes a killed one's, and keeps one of a process still running."""
    kill_when_stalled(PROBE_STALLED_AT_MKDIR, tmp_path / "stalled")
    assert len(list(Path.cwd().glob(".probe*"))) == 1  # what the killed run left, where checkpoints/ would be made
    running = subprocess.Popen(["sleep", "60"])
    try:
        live = Path.cwd() / f".probe.tmp-{processes._process_name(running.pid)}"
        live.mkdir()
        write_checks.check_can_make(Path("checkpoints"))
        assert list(Path.cwd().glob(".probe*")) == [live]
    finally:
        running.kill()
        running.wait()


def test_an_old_write_probe_named_by_no_process_is_removed_once_stale_and_a_fresh_one_stays(tmp_path):
    """Earlier versions named their write probe `.probe.tmp-RANDOM` (tempfile.mkdtemp): one a killed run
    left names no process, so `remove_leftovers` kept it for good. An empty one untouched for an hour is
    removed now; a fresh one (another version's run may be probing now) and one holding a file stay."""
    old, fresh, holding = (tmp_path / f".probe.tmp-{name}" for name in ("k3j_x9qa", "a8zzq1_w", "qq2b7cde"))
    for folder in (old, fresh, holding):
        folder.mkdir()
    (holding / "notes.txt").write_text("someone's")
    an_hour_ago = time.time() - 3700
    for folder in (old, holding):
        os.utime(folder, (an_hour_ago, an_hour_ago))
    write_checks.check_can_make(tmp_path / "checkpoints")
    assert sorted(tmp_path.glob(".probe*")) == sorted([fresh, holding])


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_two_trainings_started_together_train_in_two_folders(fox_file):
    processes = [
        start_training(str(fox_file), *TRAIN_ARGS, "--max-steps", "5", "--random-seed", str(seed)) for seed in (1, 2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    saved_in = {out.split("saved in ")[1].strip() for out, _ in outputs}
    assert len(saved_in) == 2 and {str(folder) for folder in runs.run_folders()} == saved_in
    assert {latest(folder).config.random_seed for folder in saved_in} == {1, 2}


def test_a_run_that_fails_before_training_leaves_no_folder(fox_file, tiny, tmp_path):
    with pytest.raises(CharLMError, match="too short"):
        charlm.train(fox_file, **{**tiny, "batch_size": 4096})
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


@pytest.mark.parametrize(
    ("in_the_way", "out", "said"),
    [("checkpoints", None, "where the run folder goes"), ("a_file", "a_file/run", "in the way of a_file/run")],
)
def test_a_file_where_the_run_folder_goes_is_one_line_naming_it(fox_file, tmp_path, monkeypatch, in_the_way, out, said):
    """`checkpoints: File exists` and `a_file/run: Not a directory`, and from charlm.train a bare OSError;
    then the line came only after the size probe had measured for seconds: it now comes before."""
    (tmp_path / in_the_way).write_text("mine\n")

    def no_probe(*args, **kwargs):
        raise AssertionError("the size probe ran before the run folder was checked")

    monkeypatch.setattr(sizing, "Probe", no_probe)
    with pytest.raises(CharLMError) as error:
        charlm.train(fox_file, out=out, layers=1, max_time="30s", quiet=True)
    assert str(error.value) == f"{in_the_way} is a file {said}; move it, or write the run elsewhere (out)"
    assert (tmp_path / in_the_way).read_text() == "mine\n"


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_ranks_under_torchrun_share_the_folder_rank_0_claims(fox_file, tmp_path):
    train_ranks("train", str(fox_file), *cli_options(max_steps=5))  # as torchrun starts them, ~2 s sooner
    assert len(list((tmp_path / "checkpoints").iterdir())) == 1 and len(runs.run_folders()) == 1


def test_no_runs_says_where_it_looked(tmp_path):
    where = f"no runs under checkpoints/ in {Path.cwd()};"
    assert_one_line_error(cli("sample"), where)
    assert_one_line_error(cli("runs"), where)
    assert_one_line_error(cli("runs", "--root", str(tmp_path / "elsewhere")), f"no runs under {tmp_path}/elsewhere/;")


def test_runs_root_that_is_a_file_or_a_run_says_so(fox_file, tmp_path):
    """`charlm runs --root FILE` said "no runs under FILE/", as if the folder were empty; a run folder
    as --root said the same, where the folder above it holds the runs."""
    assert_one_line_error(cli("runs", "--root", str(fox_file)), f"--root {fox_file} is a file, not a folder")
    run = tmp_path / "checkpoints" / "run"
    run.mkdir(parents=True)
    (run / runs.LATEST).write_bytes(b"")
    assert_one_line_error(
        cli("runs", "--root", str(run)),
        f"is a run, not a folder of runs: give the folder above it, --root {run.parent}",
    )


@pytest.mark.parametrize("name", [runs.BEST, runs.LATEST])
def test_a_run_named_as_a_checkpoint_file_leaves_the_folder_of_runs_a_folder_of_runs(name):
    """`charlm train --out best.pt` made checkpoints/best.pt/, and from then on `charlm runs` refused
    checkpoints/ as "a run, not a folder of runs": a folder is no checkpoint."""
    for run in (name, "other"):
        Path("checkpoints", run).mkdir(parents=True)
        Path("checkpoints", run, runs.LATEST).write_bytes(b"")
    result = cli("runs")
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()[1:]] == sorted([name, "other"])
    assert runs.run_folders() == [Path("checkpoints", n) for n in sorted([name, "other"])]


def test_an_empty_runs_root_is_refused_not_read_as_the_current_folder(tmp_path):
    """`charlm runs --root "$DIR"` with DIR unset listed the runs of the current folder (Path("") is "."),
    a folder the user did not mean, as if it were the one asked for."""
    run = tmp_path / "old-run"
    run.mkdir()
    runs.write_run_info(run, {"corpus": "fox", "config": {}})
    (run / runs.LATEST).write_bytes(b"")
    assert_one_line_error(cli("runs", "--root", ""), "--root is empty: give the folder that holds the runs")


def test_an_empty_run_folder_says_what_to_do():
    """`charlm sample empty` said "run folder holds no checkpoint (best.pt or latest.pt)", no way on; then
    "train one into it (--out empty)", which trains into checkpoints/empty, not the folder named: the
    --out it says leads to that folder (./empty: a path as typed, `run_folder`)."""
    Path("empty").mkdir()
    Path("checkpoints", "mine").mkdir(parents=True)
    for target, out in (("empty", os.path.join(".", "empty")), ("mine", Path("checkpoints", "mine"))):
        assert runs.run_folder(str(out)).absolute() == Path(target if target == "empty" else out).absolute()
        assert_one_line_error(
            cli("sample", target),
            f"{out if target == 'mine' else target}: run folder holds no checkpoint",
            f"name another run (`charlm runs` lists them), or train one into it (--out {out})",
        )
    with pytest.raises(CharLMError, match=re.escape(f"train one into it (out={os.path.join('.', 'empty')!r})")):
        runs.resolve("empty")


@pytest.mark.parametrize("folder", [".", "..", "/"])
def test_an_empty_folder_no_run_may_go_into_is_not_told_to_train_into_it(folder, tmp_path, monkeypatch):
    """`charlm sample ..` was told "or train one into it (--out ..)", which --out refuses. Run two folders
    down, so that `..` holds no other test's runs (pytest's folder of every test's tmp_path may)."""
    (here := tmp_path / "parent" / "here").mkdir(parents=True)
    monkeypatch.chdir(here)
    result = cli("sample", folder)
    assert_one_line_error(result, f"{folder}: run folder holds no checkpoint", "name another run")
    assert "--out" not in result.output


def test_no_runs_hints_at_what_every_command_takes():
    """`train --resume RUN`, `info RUN`, `export RUN` have no --checkpoint: the hint was `sample`'s alone."""
    for args in (("train", "--resume"), ("info",), ("export", "--format", "onnx"), ("sample",)):
        result = cli(*args)
        assert_one_line_error(result, "no runs under checkpoints/", "or name a run folder or .pt file")
        assert "--checkpoint" not in result.output, args


def test_a_run_without_a_limit_is_refused_before_it_claims_a_folder(fox_file, tmp_path):
    result = cli("train", str(fox_file), "--layers", "1", "--hidden", "16", "--max-time", "none", "--quiet")
    assert_one_line_error(result, "give the run a limit: --max-steps N or --max-time DURATION")
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_a_checkpoint_names_its_run_by_folder_or_by_file():
    assert runs.run_name_of(Path("checkpoints/novel-20260101-120000") / runs.BEST) == "novel-20260101-120000"
    assert runs.run_name_of(Path("elsewhere/run") / runs.LATEST) == "run"
    assert runs.run_name_of(Path("models/small.pt")) == "small"
    exported = Path("checkpoints/novel-20260101-120000") / runs.EXPORTS / "model" / "model.safetensors"
    assert runs.run_name_of(exported) == "novel-20260101-120000"  # not "model", which every export is called
    assert runs.run_name_of(Path("shared/novel-small/model.safetensors")) == "novel-small"


@pytest.mark.parametrize(
    ("out", "shown"),
    [("", "''"), (".", "."), ("..", ".."), ("checkpoints/..", "checkpoints/.."), ("./checkpoints/x/..", None)]
    + [("/", "/"), ("ROOT", None)],
)
def test_an_out_that_names_no_folder_of_its_own_is_refused(fox_file, tmp_path, out, shown):
    """`--out ''` made checkpoints/ itself the run folder, its files among the other runs' folders. The
    --out is said as a shell reads it back (`--out .`), not as Python's repr writes it (`--out '.'`)."""
    out = str(tmp_path / "checkpoints") if out == "ROOT" else out
    result = cli("train", str(fox_file), "--out", out, "--layers", "1", "--hidden", "16", "--max-steps", "2", "--quiet")
    assert_one_line_error(result, f"--out {shown or out} names no run folder of its own")
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    assert not list(tmp_path.glob("*.pt"))


def test_a_stray_best_pt_or_another_tools_run_json_where_charlm_starts_refuses_no_run(fox_file, tmp_path):
    """An --out inside a run's folder is refused (test_finetune.py); a folder above the run counted as a
    run for a file named best.pt (other PyTorch tools leave one) or any run.json, which refused every
    run started there: only a charlm run's own run.json makes a folder a run."""
    (tmp_path / runs.BEST).write_bytes(b"another tool's weights")
    (tmp_path / runs.RUN_INFO).write_text('{"name": "another tool"}', encoding="utf-8")
    for out in ([], ["--out", "named"]):  # a run's own name, and one given
        result = cli("train", str(fox_file), *out, "--layers", "1", "--hidden", "16", "--max-steps", "2", "--quiet")
        assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "checkpoints").glob(f"*/{runs.LATEST}"))) == 2


def test_resuming_from_a_checkpoint_behind_latest_is_refused(fox_file, tiny, tmp_path):
    """A run stopped by --patience keeps best.pt behind latest.pt; `--resume RUN/best.pt` replaced
    latest.pt with its own continuation, and the steps past best.pt were lost without a word."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    folder = tmp_path / "checkpoints/run"
    early = (folder / runs.LATEST).read_bytes()
    charlm.train(resume="run", max_steps=20)
    (folder / runs.BEST).write_bytes(early)  # best at step 10, latest at 20
    kept = (folder / runs.LATEST).read_bytes()
    result = cli("train", "--resume", str(folder / runs.BEST), "--max-steps", "30")
    assert_one_line_error(
        result, "run/best.pt is at step 10, behind its run's latest.pt at step 20", "--resume", "--init-from"
    )
    assert (folder / runs.LATEST).read_bytes() == kept
    (folder / runs.LATEST).write_bytes(kept[:-10])  # a damaged latest.pt: best.pt is the way back
    assert cli("train", "--resume", str(folder / runs.BEST), "--max-steps", "15").exit_code == 0
    assert latest("run").progress.step == 15


def test_the_resume_command_is_the_launch_s_own(monkeypatch):
    """Under torchrun the run resumes under torchrun: `charlm train --resume RUN` alone would go on in one
    process, without the others."""
    for name in ("TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with on_command_line():
        assert runs.resume_command("checkpoints/run") == "charlm train --resume checkpoints/run"
    assert runs.resume_command("checkpoints/run") == "charlm.train(resume='checkpoints/run')"  # a Python caller's
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    monkeypatch.setenv("WORLD_SIZE", "8")
    with on_command_line():
        assert runs.resume_command("run") == "torchrun --nproc-per-node 8 -m charlm train --resume run"
        monkeypatch.setenv("WORLD_SIZE", "16")  # two machines: their rendezvous options are the user's
        assert runs.resume_command("run") == "torchrun (as before) -m charlm train --resume run"
    assert runs.resume_command("run") == "charlm.train(resume='run')"  # charlm.train resumes in its own process


def test_a_chinese_corpus_name_is_written_as_text_and_read_back(tmp_path):
    """run.json wrote 红楼梦 as \\u7ea2\\u697c\\u68a6, unreadable to a person opening the file."""
    corpus = tmp_path / "红楼梦.txt"
    corpus.write_text("宝玉道：你好。黛玉笑了。\n" * 80, encoding="utf-8")
    result = cli("train", str(corpus), "--max-steps", "2", *TRAIN_ARGS)
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "checkpoints").glob("红楼梦-*")
    text = (folder / runs.RUN_INFO).read_text(encoding="utf-8")
    assert '"corpus": "红楼梦"' in text and "\\u" not in text, text
    assert json.loads(text)["sources"] == [str(corpus)]
    listed = cli("runs").output
    assert folder.name in listed and "红楼梦" in listed.splitlines()[1], listed


@pytest.mark.parametrize(
    ("damage", "steps", "best"),
    [
        ({"step": 1e300, "val_bpc": 1e308}, "?", "?"),
        ({"step": -5, "val_bpc": -1.0}, "?", "?"),
        ({"step": 3, "val_bpc": float("nan")}, "3", "-"),  # NaN is not a number a run writes: left out
    ],
)
def test_runs_shows_a_damaged_records_numbers_as_a_question_mark(fox_file, damage, steps, best):
    """A metrics.jsonl edited by hand or damaged (a step of 1e300, a bpc of 1e308, negative ones)
    printed 300-digit numbers that widened the whole table."""
    assert cli("train", str(fox_file), "--out", "fox", "--max-steps", "2", *TRAIN_ARGS).exit_code == 0
    folder = Path("checkpoints/fox")
    (folder / "metrics.jsonl").write_text(json.dumps(damage) + "\n", encoding="utf-8")
    info = json.loads((folder / runs.RUN_INFO).read_text(encoding="utf-8"))
    info.update(parameters=1e300, config={**info["config"], "hidden": 10**300})
    (folder / runs.RUN_INFO).write_text(json.dumps(info), encoding="utf-8")
    _, row = cli("runs").output.splitlines()
    assert row.split()[:5] == ["fox", "fox", "1x?", "lstm", steps] and row.split()[5] == best, row
    assert len(row) < 100, row


def test_runs_lists_a_hand_made_run_json_of_any_size_or_kind_at_once(tmp_path):
    """A run.json whose corpus was a 300 MB string held `charlm runs` for minutes and 16 GB (every row
    padded to that width); a named pipe there held it forever. Such a record is not one charlm wrote:
    its corpus shows as `?` and the other runs are listed all the same."""
    damaged = {
        "long": json.dumps({"corpus": "a" * 300, "base": {"run": "b" * 300}}),
        "huge": json.dumps({"corpus": "fox", "sources": ["x" * (5 << 20)]}),
        "sound": json.dumps({"corpus": "fox"}),
    }
    for name, text in damaged.items():
        folder = tmp_path / "checkpoints" / name
        folder.mkdir(parents=True)
        (folder / runs.LATEST).touch()
        (folder / runs.RUN_INFO).write_text(text, encoding="utf-8")
    if hasattr(os, "mkfifo"):
        (tmp_path / "checkpoints" / "pipe").mkdir()
        (tmp_path / "checkpoints" / "pipe" / runs.LATEST).touch()
        os.mkfifo(tmp_path / "checkpoints" / "pipe" / runs.RUN_INFO)
    rows = [line.split()[:2] for line in cli("runs").output.splitlines()[1:]]
    assert rows == [["huge", "?"], ["long", "?"], *[["pipe", "?"]] * hasattr(os, "mkfifo"), ["sound", "fox"]], rows
    assert runs.read_run_info(tmp_path / "checkpoints" / "huge") is None


KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from charlm import files
files.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # killed with the file written, before its rename
files.replace_files({Path(sys.argv[1]): b"half a checkpoint"})
"""


def test_the_temporary_files_of_writers_killed_mid_write_go_when_the_run_is_taken_over(tmp_path):
    """Each `kill -9` during a checkpoint write left a `.latest.pt.tmp-PID` of a checkpoint's size, and
    nothing removed them: a run killed and resumed often filled its disk with them."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / runs.LATEST).write_bytes(b"the last checkpoint")
    (folder / ".notes.tmp-1").write_bytes(b"not a checkpoint's")
    for name in (runs.LATEST, runs.LATEST, runs.BEST, "latest.pending.pt"):
        killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(folder / name)], check=False)
        assert killed.returncode == -signal.SIGKILL
    assert len(list(folder.glob(".*.pt.tmp-*"))) == 3  # the second write of latest.pt removed the first's
    with run_lock.RunLock(folder):
        assert sorted(p.name for p in folder.iterdir()) == [".lock", ".lock.pid", ".notes.tmp-1", runs.LATEST]
    assert (folder / runs.LATEST).read_bytes() == b"the last checkpoint"


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_a_resume_that_another_process_overtook_while_it_started_is_refused(fox_file, tiny, monkeypatch):
    """Two `--resume` at once: the one that lost the lock race read latest.pt (step 10) before the
    other took the lock, and took the lock once the other had finished (step 20): it trained on from
    step 10 and wrote latest.pt over the other's ten steps. Made to happen in turn: two resumes started
    at once (the test below) almost always meet at the lock, and reach this check only when one is
    slowed for as long as the other trains."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    real_load = api.load_run_text  # a resume's reading of its text (`load_corpus` where --encoding is given)

    def load_while_another_resume_trains(*args, **kwargs):  # after reading latest.pt, before the lock
        other = run_cli("train", "--resume", "run", "--max-steps", "20", "--quiet")
        assert other.returncode == 0, other.stderr
        return real_load(*args, **kwargs)

    monkeypatch.setattr(api, "load_run_text", load_while_another_resume_trains)
    with pytest.raises(CharLMError) as refused:
        charlm.train(resume="run", max_steps=30)
    assert str(refused.value) == (
        "checkpoints/run went on to step 20 (another process trained it) while this resume started from step 10; "
        "checkpoints/run holds step 20: resume with charlm.train(resume='checkpoints/run')"  # a Python caller's call
    )
    assert latest("run").progress.step == 20 and [r["step"] for r in read_metrics("checkpoints/run")] == [10, 20]


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_two_resumes_started_at_once_train_the_run_once_whichever_reaches_the_lock_first(fox_file, tiny):
    """Two `--resume` processes started at once, each to go on ten steps: one trains them, the other is
    refused in one line (the run in use by the first, or gone on while it started), and no step is
    trained twice or written over."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    resumes = [start_charlm("train", "--resume", "run", "--max-steps", "20", "--quiet") for _ in range(2)]
    try:
        ended = [(process.pid, *process.communicate(timeout=120), process.returncode) for process in resumes]
    finally:
        for process in resumes:
            process.kill()
            process.wait()
    trained = [pid for pid, _, _, code in ended if code == 0]
    refused = [err.strip() for _, _, err, code in ended if code != 0]
    assert len(trained) == 1 and len(refused) == 1, ended
    in_use = f"Error: checkpoints/run is in use by process {trained[0]} (another charlm train)"
    overtaken = "Error: checkpoints/run went on to step 20 (another process trained it) while this resume started"
    assert refused[0].startswith((in_use, overtaken)) and "\n" not in refused[0], refused
    assert latest("run").progress.step == 20 and [r["step"] for r in read_metrics("checkpoints/run")] == [10, 20]


def test_a_resume_reads_its_checkpoint_once_when_nothing_overtook_it(fox_file, tiny, monkeypatch):
    """The check that no other process trained the run while a resume started read latest.pt whole a
    second time (checksum, unpickling): seconds and a second copy in memory for a big model. The file the
    resume read, unchanged, is not read again; the test above shows a replaced one still is."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    reads = []
    monkeypatch.setattr(trainer_module, "read_checkpoint", lambda path: reads.append(path))
    charlm.train(resume="run", max_steps=20)
    assert reads == [] and latest("run").progress.step == 20


def test_a_new_run_whose_out_another_run_took_while_it_started_is_refused(fox_file, tiny, monkeypatch):
    """Two `--out run` at once: the second found the folder free, then took the lock once the first had
    finished, and trained a new run over the first's (its metrics.jsonl dropped, latest.pt replaced)."""
    real_build = train_state.build

    def build_while_another_run_trains(*args, **kwargs):  # after the folder was found free, before the lock
        monkeypatch.setattr(train_state, "build", real_build)
        charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})  # the other run, whole, in this process
        return real_build(*args, **kwargs)

    monkeypatch.setattr(train_state, "build", build_while_another_run_trains)
    trained = "checkpoints/run already holds a run, which another process trained while this one started; "
    with pytest.raises(CharLMError, match=trained + "continue it with resume='checkpoints/run', or pick another out$"):
        charlm.train(fox_file, out="run", **{**tiny, "max_steps": 20, "random_seed": 7})
    assert latest("run").config.random_seed == 1337 and latest("run").progress.step == 10


def test_a_run_that_died_before_its_first_checkpoint_says_to_train_again(fox_file, tiny):
    """A run killed before its first checkpoint leaves run.json alone: `--resume` said only "run folder
    holds no checkpoint", with nothing to do about it; training into that folder again works."""
    folder = fox_file.parent / "checkpoints/dead"
    folder.mkdir(parents=True)
    (folder / runs.RUN_INFO).write_text('{"corpus": "fox"}')
    said = "its run stopped before its first checkpoint, so it holds none (best.pt or latest.pt); train again"
    assert_one_line_error(
        cli("train", "--resume", "dead"),
        f"{Path('checkpoints/dead')}: {said} (into this folder: --out checkpoints/dead)",
    )
    with pytest.raises(CharLMError, match=re.escape(f"{said} (into this folder: out='checkpoints/dead')")):
        charlm.load("dead")
    charlm.train(fox_file, out=str(folder), **{**tiny, "max_steps": 2})
    assert (folder / "latest.pt").is_file() and charlm.load("dead").config.layers >= 1
    here = Path("here")  # outside checkpoints/: `--out here` would train into checkpoints/here, `./here` here
    here.mkdir()
    (here / runs.RUN_INFO).write_text('{"corpus": "fox"}')
    assert_one_line_error(cli("sample", "here"), f"{said} (into this folder: --out {os.path.join('.', 'here')})")


def test_a_run_training_now_before_its_first_checkpoint_is_said_to_be_training(tmp_path):
    """`charlm sample --checkpoint r`, `charlm.load` and `charlm eval` on a run that trains now and has not
    written its first checkpoint said "its run stopped before its first checkpoint ... train again"."""
    folder = tmp_path / "checkpoints/live"
    holder = lock_holder(folder)
    training = f"its run (process {holder.pid}) is still training and has written no checkpoint yet"
    try:
        wait_for(folder / ".lock.pid")
        # claimed, locked, no run.json yet: training, with no word of when its first checkpoint comes
        with pytest.raises(CharLMError, match=re.escape(f"{Path('checkpoints/live')}: {training}; wait for it")):
            charlm.load("live")
        info = {"corpus": "fox", "config": {"eval_every": 5000, "checkpoint_every": "3m"}}
        (folder / runs.RUN_INFO).write_text(json.dumps(info))
        first = "(the first comes at step 5000, or after 3m of training if sooner); wait for it, or stop the run"
        assert_one_line_error(cli("sample", "--checkpoint", "live"), training, first)
        assert_one_line_error(cli("eval", "live", str(folder / runs.RUN_INFO)), training, first)
        assert_one_line_error(cli("sample", "--checkpoint", "fox"), training)  # its corpus's only run
        assert_one_line_error(cli("sample"), training)  # the only run there is
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(CharLMError, match="its run stopped before its first checkpoint"):  # its owner is dead
        charlm.load("live")


@pytest.mark.parametrize(
    "hand_edited, first",
    [
        ({"eval_every": 5000, "checkpoint_every": "²"}, " (the first comes at step 5000); wait"),  # int() raised
        ({"eval_every": 5000, "checkpoint_every": "9" * 5000}, " (the first comes at step 5000); wait"),
        ({"checkpoint_every": "1" * 30}, "; wait"),
        ({"eval_every": 10**30, "checkpoint_every": "soon"}, "; wait"),
        ({"eval_every": True, "checkpoint_every": "3m"}, " (the first comes after 3m of training); wait"),
    ],
    ids=["superscript_two", "5000_digits", "30_digits", "no_duration", "eval_every_true"],
)
def test_a_hand_edited_run_json_of_a_run_training_now_loses_the_fields_it_cannot_read(tmp_path, hand_edited, first):
    """When a run training now writes its first checkpoint came from run.json's checkpoint_every read by
    isdigit() and int(): '²' or 5,000 digits was a traceback where the run was named; 30 digits named a
    step no run reaches. A field that reads as no step count (or no duration) says nothing, as a damaged
    run.json's other fields do."""
    folder = tmp_path / "checkpoints/live"
    folder.mkdir(parents=True)
    (folder / runs.LOCK).touch()
    (folder / runs.LOCK_PID).write_text(processes.process_name())  # this process: a live one
    (folder / runs.RUN_INFO).write_text(json.dumps({"corpus": "fox", "config": hand_edited}))
    assert_one_line_error(cli("sample", "--checkpoint", "live"), f"has written no checkpoint yet{first}")


@pytest.mark.parametrize(
    "fields, step",
    [
        ({"checkpoint_every": "1_000"}, 1000),
        ({"checkpoint_every": "١٠٠٠"}, 1000),
        ({"checkpoint_every": "１０００"}, 1000),
        ({"eval_every": 5 * 10**18}, 5 * 10**18),
    ],
    ids=["underscores", "arabic_indic_digits", "full_width", "19_digits"],
)
def test_run_json_step_counts_are_read_as_the_run_reads_them(fields, step):
    """When a run training now writes its first checkpoint read run.json's step counts by the rule of process
    names (ASCII digits, 18 at most): a run that takes `--checkpoint-every ١٠٠٠` as 1,000 steps, or
    `--eval-every` of 19 digits, was said to say nothing of its first checkpoint."""
    config = charlm.Config(**fields)  # a run takes them
    assert (config.eval_every or config.checkpoint_interval()[0]) == step
    assert runs.first_checkpoint(fields) == f" (the first comes at step {step})"


def test_eval_also_a_run_before_its_first_checkpoint_says_so_not_that_no_file_is_there(fox_file, tmp_path):
    """--eval-also RUN, of a run training in another process and not checkpointed yet (or killed before its
    first checkpoint), said "--eval-also /cwd/RUN: no such file or folder; check the path": a path the user
    never typed, of a file (5 of 12 fine-tunes started beside a run that was being killed). It says what
    `charlm sample RUN` says of that run."""
    folder = tmp_path / "checkpoints/live"
    holder = lock_holder(folder)
    train = ["train", str(fox_file), *TRAIN_ARGS, "--max-steps", "2", "--eval-also", "live"]
    try:
        wait_for(folder / ".lock.pid")
        training = f"its run (process {holder.pid}) is still training and has written no checkpoint yet"
        assert_one_line_error(cli(*train), f"--eval-also {Path('checkpoints/live')}: {training}; wait for it")
    finally:
        holder.kill()
        holder.wait()
    (folder / runs.RUN_INFO).write_text('{"corpus": "fox"}')
    assert_one_line_error(cli(*train), "--eval-also checkpoints/live: its run stopped before its first checkpoint")


@pytest.mark.parametrize("name", ["x" * 256, "长" * 86], ids=["latin", "chinese"])
def test_an_out_name_too_long_for_a_file_system_is_refused_by_name(fox_file, name):
    """`--out` of 300 characters ended in ".../latest.pt: File name too long", with nothing to do."""
    result = cli("train", str(fox_file), "--out", name, "--max-steps", "1", "--quiet")
    assert_one_line_error(result, f"--out: a name of {len(name.encode())} bytes ({name[:20]}...), over the 255")
    assert not (fox_file.parent / "checkpoints").exists() or not list((fox_file.parent / "checkpoints").iterdir())


def test_an_out_path_too_long_for_its_files_is_refused_before_the_corpus_is_read(fox_file, monkeypatch):
    """An `--out` of 25 folders of 200 bytes failed with ".../latest.pt: File name too long" once the
    corpus was prepared (minutes for a big one); it is refused first, naming the option."""
    out = "/".join(["d" * 200] * 25)
    monkeypatch.setattr(charlm.api, "load_corpus", None)  # reading the corpus fails the test
    result = cli("train", str(fox_file), "--out", out, "--max-steps", "1", "--quiet")
    assert_one_line_error(result, f"--out: a path of {len(out)} bytes (dddddddddddddddddddd...), too long")


def test_an_out_that_holds_a_run_is_refused_before_the_corpus_is_read(fox_file, tiny, monkeypatch):
    """`charlm train big.txt --out my-run` over an earlier run prepared the corpus first, then refused."""
    charlm.train(fox_file, out="mine", **{**tiny, "max_steps": 2})
    monkeypatch.setattr(charlm.api, "load_corpus", None)  # reading the corpus fails the test
    result = cli("train", str(fox_file), "--out", "mine", "--max-steps", "1", "--quiet")
    assert_one_line_error(result, f"{Path('checkpoints/mine')} already holds a run; continue it with --resume")


def test_a_corpus_named_near_the_longest_file_name_gets_a_run_name_that_fits(fox_file, tiny):
    """The run's name is the corpus's and 16 characters of date and time: a corpus file of 250 bytes made
    one no file system takes, and the run failed before its first step."""
    long_file = fox_file.with_name("长" * 83 + ".txt")  # 249 bytes of name before .txt
    long_file.write_text(fox_file.read_text())
    charlm.train(long_file, **{**tiny, "max_steps": 2})
    (run,) = (fox_file.parent / "checkpoints").iterdir()
    assert len(os.fsencode(run.name)) <= 255 and run.name.startswith("长" * 60) and (run / "latest.pt").is_file()


def test_a_run_killed_between_its_first_best_and_latest_checkpoints_keeps_its_folder(fox_file, tiny):
    """best.pt is written before latest.pt: a run killed between the two at its first checkpoint holds
    best.pt alone, and a new run given that --out was let in, which wrote over the killed run's best.pt."""
    charlm.train(fox_file, out="run", **tiny)
    (Path("checkpoints/run") / runs.LATEST).unlink()
    step = checkpoint_step(Path("checkpoints/run") / runs.BEST)
    with pytest.raises(CharLMError, match="already holds a run; continue it with resume='checkpoints/run'"):
        charlm.train(fox_file, out="run", **{**tiny, "max_steps": tiny["max_steps"] + 5})
    assert checkpoint_step(Path("checkpoints/run") / runs.BEST) == step
    charlm.train(fox_file, resume="checkpoints/run", max_steps=tiny["max_steps"] + 5, quiet=True)
    assert latest("run").progress.step == tiny["max_steps"] + 5


def test_a_run_holding_best_pt_alone_is_listed_and_is_the_latest_run(fox_file, tiny):
    """A run killed between its first best.pt and latest.pt counts as a run (a new --out is refused),
    but `charlm runs` did not list it and `charlm sample` with no run named did not find it."""
    charlm.train(fox_file, out="older", **{**tiny, "max_steps": 2})
    charlm.train(fox_file, out="killed", **{**tiny, "max_steps": 2})
    (Path("checkpoints/killed") / runs.LATEST).unlink()
    later = os.stat(Path("checkpoints/older") / runs.LATEST).st_mtime + 10
    os.utime(Path("checkpoints/killed") / runs.BEST, (later, later))
    rows = [line.split()[0] for line in cli("runs").output.splitlines()[1:]]
    assert rows == ["killed", "older"], rows
    assert runs.latest_run() == Path("checkpoints/killed")


def test_the_latest_run_is_the_one_whose_checkpoint_kept_aside_was_written_last(fox_file, tiny):
    """A run whose last checkpoint went aside (latest.pending.pt: latest.pt held open) was not the latest run
    when another run's latest.pt was written between the two: `charlm sample`, `eval` and `--resume` given
    no run took that other run, and `charlm runs` showed the time of the file every command passes over."""
    charlm.train(fox_file, out="other", **{**tiny, "max_steps": 2})
    charlm.train(fox_file, out="trained", **{**tiny, "max_steps": 2})
    trained = Path("checkpoints/trained")
    aside = runs.pending(trained / runs.LATEST)
    aside.write_bytes((trained / runs.LATEST).read_bytes())
    start = os.stat(trained / runs.LATEST).st_mtime
    for path, stamp in ((trained / runs.BEST, start), (Path("checkpoints/other") / runs.LATEST, start + 60)):
        os.utime(path, (stamp, stamp))
    os.utime(aside, (start + 120, start + 120))
    assert runs.latest_run() == runs.run_to_resume() == trained
    assert runs.resolve(None, prefer=runs.LATEST) == aside
    row = next(line for line in cli("runs").output.splitlines() if line.startswith("trained "))
    assert row.endswith(time.strftime("%Y-%m-%d %H:%M", time.localtime(start + 120))), row


def test_a_resume_given_no_run_does_not_train_an_older_run_when_the_newest_was_killed_early(fox_file, tiny):
    """`charlm train text.txt` killed before its first checkpoint (its folder holds run.json and the dead
    process's lock files), then `charlm train --resume`: it trained on the run before it, which the user
    did not mean, writing that run's latest.pt with steps it was never asked for."""
    charlm.train(fox_file, out="older", **tiny)
    killed = Path("checkpoints/killed")
    killed.mkdir()
    (killed / runs.RUN_INFO).write_text(json.dumps({"config": {"eval_every": 10}}), encoding="utf-8")
    (killed / runs.LOCK).touch()
    (killed / runs.LOCK_PID).write_text("999999999-1\n", encoding="ascii")  # a process long gone
    later = os.stat(Path("checkpoints/older") / runs.LATEST).st_mtime + 10
    os.utime(killed / runs.RUN_INFO, (later, later))
    before = files.identity(Path("checkpoints/older") / runs.LATEST)
    with pytest.raises(CharLMError) as refused:
        charlm.train(resume=True, max_steps=tiny["max_steps"] + 5, quiet=True)
    assert str(refused.value) == (
        "checkpoints/killed: the most recent run stopped before its first checkpoint, so it holds none "
        "(best.pt or latest.pt); train it again (out='checkpoints/killed'), or name the run to go on with "
        "(resume='checkpoints/older')"
    )
    assert files.identity(Path("checkpoints/older") / runs.LATEST) == before
    charlm.train(resume="older", max_steps=tiny["max_steps"] + 5, quiet=True)  # named, it goes on
    assert latest("older").progress.step == tiny["max_steps"] + 5


def checkpoint_step(path: Path) -> int:
    return charlm.checkpoint.read(path).progress.step


def test_a_run_that_stops_while_the_runs_are_listed_is_no_error(tmp_path, monkeypatch):
    """A run found training, whose lock was gone by the time the folders were sorted (it just stopped),
    raised FileNotFoundError out of `charlm sample` with no run named."""
    (tmp_path / "just-stopped").mkdir()
    monkeypatch.setattr(runs, "training_pid", lambda run_dir: 4242)  # found training, its .lock gone since
    assert runs.training_folders(tmp_path) == [tmp_path / "just-stopped"]
    assert runs.last_written(tmp_path / "just-stopped") is None


# A process writing run.json over and over, in turns the run's record of its corpus at the old path and at
# the new: as a resume on a moved corpus writes it while other processes read it.
REWRITER = """
import sys
from charlm import runs
folder, writes = sys.argv[1], int(sys.argv[2])
for i in range(writes):
    runs.write_run_info(folder, {"corpus": "fox", "digest": "d", "sources": [sys.argv[3 + i % 2]], "pad": "x" * 4000})
"""


def test_run_json_read_while_another_process_rewrites_it_is_always_whole(tmp_path):
    """`charlm eval`, `charlm runs`, a resume read run.json while a resume records its corpus's new path
    there: each read is a whole run.json, the old or the new (written aside and renamed into place),
    never a torn or empty one, which would read as a run with no record (its corpus, reasons, size)."""
    folder, old, new = tmp_path / "run", tmp_path / "old.txt", tmp_path / "new.txt"
    folder.mkdir()
    new.write_text("the text at its new path\n", encoding="utf-8")
    runs.write_run_info(folder, {"corpus": "fox", "digest": "d", "sources": [str(old)], "pad": "x" * 4000})
    writer = subprocess.Popen([sys.executable, "-c", REWRITER, str(folder), "300", str(new), str(old)])
    seen, wheres = set(), set()
    try:
        while writer.poll() is None:
            info = runs.read_run_info(folder)
            assert info is not None and info["pad"] == "x" * 4000, info  # whole, or it would not parse
            seen.add(info["sources"][0])
            record = {"sources": [str(old)], "digest": "d"}  # a checkpoint's, naming the old path: gone
            try:
                wheres.add(tuple(runtext.run_sources(record, folder)))
            except CharLMError as e:  # run.json's old record: the old path is gone, said in one line
                assert str(e).startswith(f"{old}: no such file or folder, where {folder} read its corpus"), e
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == 0
    assert seen == {str(old), str(new)} and wheres == {(str(new),)}  # both read while the other wrote


def held_out_length(eval_output: str) -> str:
    """The characters `charlm eval RUN` scored, from its line: "... bits per character over N characters ..."."""
    found = re.search(r"bits per character over ([\d,]+) characters of the run's held-out text", eval_output)
    assert found, eval_output
    return found[1]


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_two_resumes_on_a_moved_corpus_at_once_one_trains_while_eval_and_runs_read_the_run(fox_file, tiny, tmp_path):
    """Two `charlm train NEW --resume RUN` at once on a corpus that moved: one takes the run, the other is
    refused in one line naming it; meanwhile `charlm eval RUN` scores the held-out text (read at its new
    path once the resume has recorded it, refused in one line saying how to go on until then) and
    `charlm runs` lists the run."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    scored = cli("eval", "run", "--quiet").output
    moved = tmp_path / "moved" / "fox.txt"
    moved.parent.mkdir()
    fox_file.rename(moved)
    resume = ("train", str(moved), "--resume", "run", "--max-steps", "100000", "--quiet")
    processes = [start_charlm(*resume), start_charlm(*resume)]
    deadline, evaluated = time.monotonic() + 120, []
    try:
        while not evaluated or all(process.poll() is None for process in processes):
            assert time.monotonic() < deadline, "neither resume was refused, or eval never read the new path"
            result = cli("eval", "run", "--quiet")
            if result.exit_code == 0:
                evaluated.append(result.output)
            else:
                assert_one_line_error(result, f"{fox_file}: no such file or folder", "resume on it at its new path")
            listed = cli("runs")
            assert listed.exit_code == 0 and "run" in listed.output, listed.output
        refused = next(process for process in processes if process.poll() is not None)
        trained = next(process for process in processes if process is not refused)
        assert trained.poll() is None  # still training
        out, err = refused.communicate(timeout=10)
        error = subprocess.CompletedProcess([], refused.returncode, out, err)
        assert_one_line_error(error, f"checkpoints/run is in use by process {trained.pid} (another charlm train)")
    finally:
        for process in processes:
            process.kill()
            process.wait()
    # the same held-out text, read where the resume recorded it: its length (the score itself moves as soon
    # as the training resume saves a better best.pt, which a loaded machine gives it time to)
    assert {held_out_length(output) for output in evaluated} == {held_out_length(scored)}
    assert runs.read_run_info(Path("checkpoints/run"))["sources"] == [str(moved)]


@pytest.mark.parametrize(
    ("out", "said"),
    [
        (" ", "--out ' ' names no run folder of its own"),
        ("notes\nrun", r"--out $'notes\nrun': a line break or other control character in the run folder's path"),
        ("a\tb", r"--out $'a\tb': a line break or other control character"),
        ("notes\n/..", r"--out $'notes\n/..' names no run folder of its own"),
        ("it's/..", """--out 'it'"'"'s/..' names no run folder of its own"""),
    ],
    ids=["blank", "line break", "tab", "line break, no folder", "quote, no folder"],
)
def test_an_out_that_is_blank_or_breaks_lines_is_refused(fox_file, out, said):
    """`--out " "` made a run folder named by a space, blank in `charlm runs`; `--out $'notes\\nrun'` one
    whose every message (done:, errors, the runs table) broke in two. Both are refused, before training, the
    name shown as typed: `--out 'notes\\nrun'` read back in a shell is a backslash and an n, not a line break."""
    assert_one_line_error(cli("train", str(fox_file), *TRAIN_ARGS, "--out", out), said, "e.g. --out my-run")
    assert not Path("checkpoints").exists()


def test_a_corpus_file_named_with_a_line_break_names_its_run_without_one(tmp_path, tiny):
    """A corpus file named `notes\\nday.txt` named its run `notes\\nday-DATE-TIME`: the done: line and
    `charlm runs` split in two. The line break is an underscore in the run's name."""
    corpus = tmp_path / "notes\nday.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 60, encoding="utf-8")
    charlm.train(corpus, **tiny)
    (run,) = runs.run_folders()
    assert run.name.startswith("notes_day-"), run.name


@pytest.mark.parametrize("where", ["loop", "dangling", "loop/run"])
def test_an_out_through_a_symbolic_link_to_nothing_is_one_line(fox_file, tmp_path, where):
    """`--out loop` where loop is a link to itself ended in pathlib's RuntimeError traceback (Symlink
    loop); a link whose target is gone would fail to be made a folder. Both say what the link is."""
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    os.symlink(tmp_path / "gone" / "run", tmp_path / "dangling")
    shown = where.split("/")[0]
    assert_one_line_error(
        cli("train", str(fox_file), *TRAIN_ARGS, "--out", str(tmp_path / where)),
        f"{tmp_path / shown} is a symbolic link that leads to no folder",
        "create its target, remove the link, or write the run elsewhere (--out)",
    )


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc, whose folders hold no new folders")
def test_an_out_where_no_folder_can_be_made_is_refused_before_the_run_is_planned(fox_file):
    """`charlm train FILE --out /proc/run` fitted the run's options and printed its "training ..." line
    (minutes with --max-time) before making the folder failed. The folder is tried first: one line."""
    assert_one_line_error(
        cli("train", str(fox_file), "--layers", "1", "--seq-len", "8", "--max-steps", "20", "--out", "/proc/run"),
        "/proc/run: cannot write the run folder (No such file or directory); no folder there can hold it",
    )
    assert not any(Path("/proc").glob(".probe*")) and not Path("checkpoints").exists()


def test_an_eval_also_through_a_symbolic_link_loop_is_one_line(fox_file, tmp_path):
    """`--eval-also loop` (a link to itself) ended in pathlib's RuntimeError traceback (Symlink loop)."""
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    result = cli("train", str(fox_file), *TRAIN_ARGS, "--max-steps", "2", "--eval-also", "loop", "--out", "run")
    assert_one_line_error(result, "--eval-also loop: a loop of links")


def test_an_eval_also_link_to_nothing_is_named_as_typed_and_said_to_be_a_link(fox_file, tiny, tmp_path):
    """`--eval-also held.txt`, a link whose target was moved, was told "--eval-also /abs/moved.txt: no such
    checkpoint file or run folder, nor a run or corpus of that name": a path the user never typed, and
    no word of a link. It names the link, where it leads, and what to do, as a corpus file's link is."""
    os.symlink(tmp_path / "moved.txt", tmp_path / "held.txt")
    said = f"held.txt: a link to {tmp_path / 'moved.txt'}, which is not there; restore that file"
    result = cli("train", str(fox_file), *TRAIN_ARGS, "--max-steps", "2", "--eval-also", "held.txt", "--out", "run")
    assert_one_line_error(result, f"--eval-also {said}")
    with pytest.raises(CharLMError, match=re.escape("eval_also='held.txt'" + said.removeprefix("held.txt"))):
        charlm.train(fox_file, **{**tiny, "max_steps": 2}, eval_also="held.txt", out="run")
    assert not Path("checkpoints/run").exists()


@pytest.mark.slow  # seconds of a real process training beside this one
def test_every_command_reading_a_run_another_process_trains_reads_it_whole(fox_file, tmp_path):
    """`charlm sample`, eval, info, runs, plot, export (a page, a model folder) and inspect of a run a real
    process trains, replacing its checkpoints and run.json and appending to metrics.jsonl at every step:
    each reads whole files and finishes, and the run trains on in its folder, its lock its own."""
    args = ("--out", "live", *TINY_ARGS, "--max-steps", "100000", "--eval-every", "1", "--patience", "0")
    process = start_training(str(fox_file), *args)
    readers = [
        ("sample", "live", "--length", "20", "--random-seed", "1"),
        ("eval", "live", str(fox_file), "--quiet"),
        ("info", "live"),
        ("runs",),
        ("plot", "live", "--output", "curves.png"),
        ("export", "live", "--format", "html", "--output", "page.html"),
        ("export", "live", "--format", "safetensors", "--output", "model"),
        ("inspect", "live", str(fox_file), "--output", "report.html", "--max-chars", "200"),
    ]
    try:
        wait_for(tmp_path / "checkpoints" / "live" / "metrics.jsonl")
        began = latest("live").progress.step
        for _ in range(2):
            for command in readers:
                result = cli(*command)
                assert result.exit_code == 0, (command, result.output)
        assert latest("live").progress.step > began  # it trained, and saved, all along
        lock = (tmp_path / "checkpoints" / "live" / runs.LOCK_PID).read_text()
        assert process.poll() is None and lock.partition("-")[0] == str(process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    assert "checkpoints/live holds step" in out + err, out + err  # its stop line: whole checkpoints, saved


def test_a_folder_where_the_run_lock_goes_is_named_not_blamed_on_the_file_system(fox_file):
    """A folder named .lock in a run folder was "cannot lock the run folder (Is a directory): its file
    system does not lock files; train into a folder on a local disk": advice for NFS, not for a folder
    in the way. It is named as what stands where the file goes."""
    Path("checkpoints/run/.lock").mkdir(parents=True)
    assert_one_line_error(
        cli("train", str(fox_file), *TRAIN_ARGS, "--max-steps", "2", "--out", "run"),
        "checkpoints/run/.lock: cannot write (Is a directory); a folder stands where the file goes: move it",
    )


def test_a_lineage_knows_a_folder_met_before_reached_through_a_link(tmp_path):
    """A lineage ends "(cycle)" at a folder it met before, which it told by its path alone: a run looked
    at through a link, or a base recorded through one (as a run records the paths it is given), went
    round the loop (a hand edit) once more, `b <- a <- b (cycle)`, `a <- a (cycle)`."""
    for name, base in (("a", "b"), ("b", "a"), ("self", "self-link")):
        runs.write_run_info(tmp_path / name, {"base": {"run": base, "path": str(tmp_path / base / runs.BEST)}})
    (tmp_path / "a-link").symlink_to("a")
    (tmp_path / "self-link").symlink_to("self")
    assert runs.lineage(tmp_path / "a") == runs.lineage(tmp_path / "a-link") == "b <- a (cycle)"
    assert runs.lineage(tmp_path / "self") == "self-link (cycle)"


def test_two_threads_resuming_one_run_at_once_refuse_one_with_what_a_resume_can_do(fox_file, tiny, monkeypatch):
    """Two threads of one process resuming one run at once (released together): the one refused was told
    to `train into another folder (out=FOLDER)`, which a resume refuses (`out` names a new run's folder);
    a run that holds a checkpoint is waited for, or a new run started from its weights. The one that takes
    the lock holds it until the other is refused: done first, it would leave the other nothing to meet."""
    charlm.train(fox_file, out="run", **tiny)
    take, other_refused = run_lock.RunLock.__enter__, threading.Event()

    def take_and_hold_until_the_other_is_refused(lock: run_lock.RunLock) -> None:
        try:
            take(lock)
        except CharLMError:
            other_refused.set()
            raise
        other_refused.wait(timeout=60)

    monkeypatch.setattr(run_lock.RunLock, "__enter__", take_and_hold_until_the_other_is_refused)
    trained, refused = at_once_in_rounds(lambda i: charlm.train(resume="run", max_steps=60, quiet=True), 2, 1)
    waited_for = f"{Path('checkpoints/run')} is in use by another thread of this process (its charlm.train)"
    instead = "start a new run from its weights (init_from='checkpoints/run', out=FOLDER)"
    assert len(trained) == 1 and refused == [f"{waited_for}; wait for that call to return, or {instead}"]
    assert latest("run").progress.step == 60 and not list(Path("checkpoints/run").glob(".*"))


def test_a_run_folder_renamed_to_a_blank_is_quoted_in_the_lines_that_name_it(fox_file, tiny, capsys):
    """A run folder renamed by hand to " " and resumed ended on `saved in checkpoints/ `: its name was
    invisible, where `charlm runs` shows it quoted."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2, "eval_every": 2})
    Path("checkpoints/run").rename("checkpoints/ ")
    charlm.train(resume="checkpoints/ ", max_steps=4, quiet=False)
    said = capsys.readouterr().err
    assert "run folder checkpoints/' '" in said and "; saved in checkpoints/' ':" in said, said


RENAMED = Path("checkpoints/run ")  # a run folder renamed by hand to a name ending in a space
RENAMED_SHOWN = "checkpoints/'run '"


def test_a_name_with_a_space_at_an_end_is_shown_quoted():
    """`checkpoints/run ` showed as `checkpoints/run`: a space at a name's end is invisible in a message,
    where the name without it is another folder."""
    assert one_line_path(RENAMED) == RENAMED_SHOWN and one_line_path(" run/x") == "' run'/x"
    assert one_line_path("checkpoints/run\u3000") == "checkpoints/'run\\u3000'"  # an ideographic space, named
    assert one_line_path("checkpoints/r\nun") == "checkpoints/r\\nun" and one_line_path("/a b/c") == "/a b/c"


def test_a_byte_of_a_name_not_in_the_locales_encoding_is_shown_as_typed_shows_it():
    """A file named with a byte that is not UTF-8 (`caf$'\\xff'.pt`, which Python holds as U+DCFF) reached the
    terminal raw: printed, it raised UnicodeEncodeError or showed as `\\udcff`, where `fields.typed` says `\\xff`."""
    name = "caf\udcff.pt"
    assert errors.one_line(name) == "caf\\xff.pt" and one_line_path(f"r\udc80/{name}") == "r\\x80/caf\\xff.pt"
    assert str(CharLMError(f"{name}: gone")) == "caf\\xff.pt: gone" and fields.typed(name) == "$'caf\\xff.pt'"
    assert errors.one_line("\ud800") == "\\ud800"  # a lone surrogate that is no byte, as Python writes it
    assert_one_line_error(cli("sample", "--checkpoint", name), "Error: caf\\xff.pt: no such checkpoint file")


def said_of(message: Callable[[], object]) -> str:
    """The message `message` returns or raises, as a user reads it."""
    try:
        return str(message())
    except CharLMError as e:
        return str(e)


@pytest.mark.parametrize(
    "message",
    [
        lambda: plan.already_held(RENAMED),
        lambda: run_lock.RunLock(RENAMED).refused(None),
        lambda: run_lock.RunLock(RENAMED).refused(os.getpid()),
        lambda: runs.still_training(RENAMED, 1234),
        lambda: plan.limits_spent(charlm.Config(max_steps=10), train_state.Progress(step=10), RENAMED),
        lambda: plan.check_kept_eval_also(charlm.Config(eval_also="gone.txt"), RENAMED),
        lambda: refuse_added_limits({"max_steps": "+10", "max_time": None}, 20, 0.0, RENAMED),
        lambda: api.interrupted_note(run_notes.Kept(RENAMED, 5), stopped_at=7),
        lambda: run_notes.stopped_note(run_notes.Kept(RENAMED, 5), None),
        lambda: run_notes.not_saved_message("latest.pt: cannot write", 7, RENAMED, 5),
    ],
    ids=[
        "already_held",
        "lock_held",
        "lock_held_by_this_process",
        "still_training",
        "limits_spent",
        "eval_also_gone",
        "added_limit",
        "interrupted_saved",
        "interrupted_at_once",
        "not_saved",
    ],
)
def test_a_message_naming_a_run_folder_renamed_to_end_in_a_space_shows_where_it_ends(message):
    """plan.already_held and the other lines naming a run folder printed it raw: `checkpoints/run  already
    holds a run`, its trailing space lost among the words; errors.one_line_path shows it quoted."""
    assert RENAMED_SHOWN in said_of(message), said_of(message)


def test_a_run_stopped_before_its_first_checkpoint_names_its_renamed_folder_as_the_caller_types_it():
    """What a run stopped with nothing saved says to do is train into its folder again: the folder is named as
    the option's value, quoted as the caller types it, its trailing space kept."""
    assert api.interrupted_note(run_notes.Kept(RENAMED, None)).endswith("(out='checkpoints/run ' is still free)")
    with on_command_line():
        assert run_notes.stopped_note(run_notes.Kept(RENAMED, None), None).endswith(
            "(--out 'checkpoints/run ' is still free)"
        )


STEP = 12345  # a step number past a thousand, where a message may write it as 12,345


@pytest.mark.parametrize(
    "message",
    [
        lambda: run_lock.stopped_message("the run folder run was removed", STEP),
        lambda: runs.first_checkpoint({"eval_every": STEP}),
        lambda: checkpoint_file.aside_note(Path("run/latest.pt"), STEP),
        lambda: summary.resume_text({"step": STEP, "changed": {"lr": {"was": 0.002, "now": 0.001}}}),
        lambda: plan.limits_spent(charlm.Config(max_steps=STEP), train_state.Progress(step=STEP), Path("run")),
        lambda: refuse_added_limits({"max_steps": "+0", "max_time": None}, STEP, 0.0, Path("run")),
        lambda: run_notes.stopped_note(run_notes.Kept(Path("run"), STEP), STEP),
        lambda: run_notes.stopping_note(STEP, None, Path("run"), STEP),
        lambda: run_notes.not_saved_message("latest.pt: cannot write", STEP, Path("run"), STEP),
    ],
    ids=[
        "folder_lost",
        "first_checkpoint",
        "set_aside",
        "info_resumed",
        "limits_spent",
        "added_limit",
        "stopped",
        "stopping",
        "not_saved",
    ],
)
def test_a_message_writes_a_step_number_as_a_script_reads_it(message):
    """Steps were written two ways: `stopped at step 1200; RUN holds step 1200`, but `training stopped at step
    1,200` (a folder lost), `resumed at step 1,200`: a script reading `stopped at step N` (docs/scaling.md)
    with \\d+ read 1. Every message writes a step as --max-steps and metrics.jsonl take it, without commas."""
    said = said_of(message)
    assert str(STEP) in said and f"{STEP:,}" not in said, said


def test_a_lost_lock_names_its_renamed_run_folder_quoted(tmp_path):
    """RunLock.lost named the folder raw: a folder moved to `moved ` read as moved to `moved`."""
    lock = run_lock.RunLock(tmp_path / "run ")
    with lock:
        (tmp_path / "run ").rename(tmp_path / "moved ")
        assert lock.lost().endswith(f"/'run ' was moved to {one_line_path(tmp_path)}/'moved '"), lock.lost()
        (tmp_path / "moved ").rename(tmp_path / "run ")
        (tmp_path / "run " / ".lock").unlink()
        assert "/'run '/.lock was removed or replaced" in lock.lost(), lock.lost()


def test_a_resume_refused_its_write_protected_folder_names_it_quoted(monkeypatch):
    """write_checks.check_resumable named the run folder raw in both refusals."""
    (RENAMED).mkdir(parents=True)
    (RENAMED / runs.LATEST).write_bytes(b"")
    monkeypatch.setattr(write_checks.os, "access", lambda path, mode: False)  # root may write anything
    assert said_of(lambda: write_checks.check_resumable(RENAMED)).startswith(f"{RENAMED_SHOWN}/latest.pt: ")

    def refused(place: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(write_checks, "probe_new_files", refused)
    assert said_of(lambda: write_checks.check_resumable(RENAMED)).startswith(f"{RENAMED_SHOWN}: cannot resume")
    Path("notes.txt ").write_text("")
    assert said_of(lambda: write_checks.check_can_make(Path("notes.txt "))).startswith("'notes.txt ' is a file")


def test_a_run_folder_made_by_another_process_meanwhile_is_named_quoted():
    """run_claim.move_into_place named the folder raw when another process made it first."""
    run_claim.claim_of(RENAMED).mkdir(parents=True)
    (RENAMED / "notes").mkdir(parents=True)  # made meanwhile, and not empty: not replaced
    said = said_of(lambda: run_claim.move_into_place(RENAMED, {}))
    assert said.startswith(f"{RENAMED_SHOWN} was made by another process"), said


def test_a_shown_path_keeps_the_platforms_separator(monkeypatch):
    """On Windows one_line_path showed a user's `C:\\runs\\x` as `C:/runs/x`, in the same line as the
    `--resume C:\\runs\\x` to paste back: the path as typed, with each name still shown apart."""
    monkeypatch.setattr(errors, "Path", PureWindowsPath)
    monkeypatch.setattr(errors, "os", SimpleNamespace(sep=ntpath.sep), raising=False)
    assert one_line_path("C:\\runs\\x ") == "C:\\runs\\'x '" and one_line_path("C:/runs/ ") == "C:\\runs\\' '"


def a_folder_of_runs(folder: Path) -> Path:
    (folder / "a").mkdir(parents=True)
    (folder / "a" / runs.BEST).write_bytes(b"")
    return folder


def an_empty_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


def a_run_stopped_before_its_first_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / runs.RUN_INFO).write_text("{}")
    return folder


def a_folder_of_exports(folder: Path) -> Path:
    (folder / "model").mkdir(parents=True)
    (folder / "model" / hub.WEIGHTS).write_bytes(b"")
    return folder


def a_folder_inside_a_run(folder: Path) -> Path:
    (folder / "inner").mkdir(parents=True)
    (folder / runs.RUN_INFO).write_text('{"config": {}}')
    return folder / "inner"


def a_named_pipe(folder: Path) -> Path:
    folder.parent.mkdir(parents=True)
    os.mkfifo(folder)
    return folder


def a_checkpoint_file(body: bytes, size: int | None = None, digest: str | None = None, version: int = 3):
    """Makes the checkpoint file `best.pt` in a folder, `body` under a header saying `size`, `digest`, `version`."""

    def made(folder: Path) -> Path:
        header = {"version": version, "bytes": len(body) if size is None else size}
        header["sha256"] = digest or hashlib.sha256(body).hexdigest()
        folder.mkdir(parents=True)
        (folder / runs.BEST).write_bytes(checkpoint_header.MAGIC + json.dumps(header).encode() + b"\n" + body)
        return folder / runs.BEST

    return made


def a_file_of(data: bytes) -> Callable[[Path], Path]:
    def made(folder: Path) -> Path:
        folder.mkdir(parents=True)
        (folder / runs.BEST).write_bytes(data)
        return folder / runs.BEST

    return made


def a_list_saved() -> bytes:
    saved = io.BytesIO()
    torch.save([1], saved)
    return saved.getvalue()


def read_checkpoint(path: Path) -> None:
    checkpoint_file.verified(checkpoint_file.read_bytes(path), path, checkpoint_advice.remedy)


def a_damaged_payload(path: Path) -> None:
    checkpoint.Checkpoint.from_payload({}, path)


PATH_FIRST_MESSAGES = {  # name: (what makes the path in a folder, what reads it)
    "folder_of_runs": (a_folder_of_runs, runs.resolve),
    "holds_no_checkpoint": (an_empty_folder, runs.resolve),
    "stopped_before_first_checkpoint": (a_run_stopped_before_its_first_checkpoint, runs.resolve),
    "holds_exported_models": (a_folder_of_exports, runs.resolve),
    "inside_a_run_folder": (a_folder_inside_a_run, runs.resolve),
    "not_a_file": (a_named_pipe, runs.resolve),
    "not_there": (lambda folder: folder, runs.resolve),
    "no_such_checkpoint_file": (lambda folder: folder / runs.BEST, read_checkpoint),
    "truncated_header": (a_file_of(b""), read_checkpoint),
    "not_a_checkpoint": (a_file_of(b"<html>\n"), read_checkpoint),
    "damaged_header": (a_file_of(checkpoint_header.MAGIC + b"{}\n"), read_checkpoint),
    "format_not_read": (a_checkpoint_file(b"x", version=1), read_checkpoint),
    "truncated": (a_checkpoint_file(b"x", size=2), read_checkpoint),
    "grown": (a_checkpoint_file(b"xy", size=1), read_checkpoint),
    "checksum": (a_checkpoint_file(b"x", digest="0" * 64), read_checkpoint),
    "refused": (a_checkpoint_file(b"not a zip"), read_checkpoint),
    "no_checkpoint_in_body": (a_checkpoint_file(a_list_saved()), read_checkpoint),
    "damaged_payload": (a_file_of(b""), a_damaged_payload),
}


@pytest.mark.parametrize("name", ["run ", "r\nun"], ids=["space_at_end", "line_break"])
@pytest.mark.parametrize("message", PATH_FIRST_MESSAGES.values(), ids=PATH_FIRST_MESSAGES.keys())
def test_a_message_opening_with_a_typed_path_shows_it_as_one_line_path_and_after_the_option(name, message):
    """runs.resolve and checkpoint_file's messages opened with the path raw (`checkpoints/run  is a folder
    of runs`), and fields.about_option, which puts the option in front of a message opening with its value,
    did not see a path with a line break there (shown `\\n`): `resume='r\\nun': r\\nun is a folder of runs`."""
    make, read = message
    given = make(Path("checkpoints") / name)
    said = said_of(lambda: read(given))
    assert said.startswith(one_line_path(given)) and said[len(one_line_path(given))] in " :", said
    for command_line in (False, True):
        with on_command_line() if command_line else contextlib.nullcontext():
            about = str(fields.about_option("resume", given, CharLMError(said)))
            assert about == fields.said("resume", given) + said[len(one_line_path(given)) :], about


@pytest.mark.parametrize("value", ["run", Path("checkpoints") / "run", "run "], ids=["name", "path", "space_at_end"])
@pytest.mark.parametrize("rest", ["2: no such checkpoint file", "/best.pt: truncated checkpoint", "x is a folder"])
def test_an_option_is_put_before_its_own_path_only_not_before_one_its_value_begins(value, rest):
    """about_option took a message opening with the value's characters as opening with its path: `run` typed,
    a message about `run2` read `--resume run2: ...`, the option said with a value nobody typed."""
    error = CharLMError(f"{one_line_path(value)}{rest}")
    for command_line in (False, True):
        with on_command_line() if command_line else contextlib.nullcontext():
            about = str(fields.about_option("resume", value, error))
            assert about.startswith(fields.said("resume", value)) and str(error) in about, about


def a_saved_dict() -> bytes:
    saved = io.BytesIO()
    torch.save({}, saved)
    return saved.getvalue()


def made(folder: Path, files_there: dict[str, bytes | str]) -> Path:
    """`folder` made, holding `files_there` (a name: its bytes or text); returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files_there.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        written = (folder / name).write_bytes if isinstance(data, bytes) else (folder / name).write_text
        written(data)
    return folder


def remedies(folder: Path, damaged: str, readable: str) -> tuple[str, list[Path]]:
    a_checkpoint_file(a_saved_dict())(folder)
    (folder / runs.BEST).rename(folder / readable)
    return checkpoint_advice.remedy(folder / damaged), [folder / readable]


def whats_left(folder: Path) -> tuple[str, list[Path]]:
    made(folder, {f"{runs.EXPORTS}/model/{hub.WEIGHTS}": b""})
    return checkpoint_advice.whats_left(folder), [folder / runs.EXPORTS / "model"]


def unpacked(path: Path) -> dict:
    return checkpoint.unpack(checkpoint_file.read_bytes(path), path)


def a_link(folder: Path, target: str) -> tuple[str, list[Path]]:
    made(folder, {})
    (folder / "a.txt").symlink_to(target)
    return said_of(lambda: corpus.source_files([str(folder / "a.txt")])), [folder / "a.txt", Path(target)]


def a_pipe_in(folder: Path) -> tuple[str, list[Path]]:
    made(folder, {})
    os.mkfifo(folder / "a.txt")
    return said_of(lambda: corpus.source_files([str(folder)])), [folder / "a.txt", folder]


def a_seed_of(data: bytes) -> Callable[[Path], tuple[str, list[Path]]]:
    return lambda folder: (
        said_of(lambda: corpus.read_seed_file(made(folder, {"a.txt": data}) / "a.txt")),
        [folder / "a.txt"],
    )


def a_model_folder(files_there: dict[str, bytes | str], named: str) -> Callable[[Path], tuple[str, list[Path]]]:
    def message(folder: Path) -> tuple[str, list[Path]]:
        return said_of(lambda: hub.read_files(made(folder, files_there))), [folder / named]

    return message


def a_cache(files_there: dict[str, bytes | str], named: str) -> Callable[[Path], tuple[str, list[Path]]]:
    def message(folder: Path) -> tuple[str, list[Path]]:
        return said_of(lambda: cache_folders.load_prepared(made(folder, files_there))), [folder / named]

    return message


def a_model_that_fails(error: Exception) -> Callable[[Path], tuple[str, list[Path]]]:
    def fails():
        raise error

    def message(folder: Path) -> tuple[str, list[Path]]:
        saved = SimpleNamespace(model=fails)
        return said_of(lambda: checkpoint.model_on(saved, folder / runs.BEST, torch.device("cpu"))), [
            folder / runs.BEST
        ]

    return message


def an_output_in_a_run(folder: Path) -> tuple[str, list[Path]]:
    made(folder, {runs.RUN_INFO: "{}"})
    return said_of(lambda: outputs.output_file(folder / runs.RUN_INFO)), [folder]


def no_curves(folder: Path) -> tuple[str, list[Path]]:
    return said_of(lambda: plot.curve_rows(made(folder, {runs.METRICS: ""}))), [folder]


def nothing_to_inspect(folder: Path) -> tuple[str, list[Path]]:
    return cli("inspect", str(folder / "a.txt")).output, [folder / "a.txt"]


PATHS_IN_MESSAGES = {  # name: the message of a folder's path, and the paths in it
    "other_checkpoint_to_resume": lambda folder: remedies(folder, runs.LATEST, runs.BEST),
    "other_checkpoint_to_sample": lambda folder: remedies(folder, runs.BEST, runs.LATEST),
    "beside_a_copy": lambda folder: remedies(folder, "copy.pt", runs.BEST),
    "kept_aside": lambda folder: (checkpoint_advice.remedy(runs.pending(folder / runs.LATEST)), [folder / runs.LATEST]),
    "whats_left": whats_left,
    "no_text_files": lambda folder: (said_of(lambda: corpus.source_files([str(made(folder, {}))])), [folder]),
    "no_such_file": lambda folder: (said_of(lambda: corpus.source_files([str(folder)])), [folder]),
    "dangling_link": lambda folder: a_link(folder, str(folder / "gone")),
    "loop_of_links": lambda folder: a_link(folder, str(folder / "a.txt")),
    "pipe_in_a_folder": a_pipe_in,
    "empty_file": a_seed_of(b""),
    "binary_file": a_seed_of(b"a\x00b"),
    "not_utf8": a_seed_of(b"a\xffb"),
    "cut_in_a_character": a_seed_of("aé".encode()[:-1]),
    "model_folder_unread": a_model_folder({hub.CONFIG: "{}", f"{hub.VOCAB}/in-its-place": ""}, hub.VOCAB),
    "model_folder_missing_a_file": a_model_folder({hub.CONFIG: "{}"}, ""),
    "model_folder_damaged": a_model_folder({hub.CONFIG: "{", hub.VOCAB: "", hub.WEIGHTS: b""}, hub.CONFIG),
    "not_a_model_folder": a_model_folder({hub.CONFIG: "{}", hub.VOCAB: "", hub.WEIGHTS: b""}, hub.CONFIG),
    "cache_unread": a_cache({}, "meta.json"),
    "cache_damaged": a_cache({"meta.json": "{"}, ""),
    "cache_vocab_damaged": a_cache({"meta.json": '{"dtype": "uint8"}', "vocab.json": "{}"}, "vocab.json"),
    "model_refused": a_model_that_fails(CharLMError("no such layer")),
    "model_damaged": a_model_that_fails(KeyError("lstm")),
    "early_checkpoint": lambda folder: (
        said_of(lambda: unpacked(a_checkpoint_file(a_saved_dict(), version=2)(folder))),
        [folder / runs.BEST],
    ),
    "output_a_run_record": an_output_in_a_run,
    "no_curves": no_curves,
    "nothing_to_inspect": nothing_to_inspect,
}


@pytest.mark.parametrize("name", ["x ", "x\ny"], ids=["space_at_end", "line_break"])
@pytest.mark.parametrize("message", PATHS_IN_MESSAGES.values(), ids=PATHS_IN_MESSAGES.keys())
def test_a_path_within_a_message_is_shown_as_one_line_path(name, message):
    """A folder renamed to end in a space showed raw in these messages (`use x /latest.pt in its place`),
    as another folder, `x`; with a line break, it split the line where one_line did not escape it."""
    said, paths = message(Path("checkpoints") / name)
    for path in paths:
        assert one_line_path(path) in said, (one_line_path(path), said)


@pytest.mark.parametrize("name", ["output='a/b '", "--output 'a/b '"])
def test_an_options_words_are_named_as_written_not_as_a_path(name):
    """files.cannot_read and cannot_write are given an option's words as a str: quoting its parts as a path's
    (`output='a/'b ''`) would garble them; a Path is shown as one_line_path shows it."""
    error = OSError(errno.EACCES, "Permission denied")
    for refusal in (files.cannot_read, files.cannot_write):
        assert str(refusal(name, error)).startswith(f"{name}: cannot")
        assert str(refusal(Path("a") / "b ", error)).startswith("a/'b ': cannot")


def test_a_run_folder_typed_as_a_path_is_that_path_whatever_pathlib_drops(fox_file):
    """`--out ./x` and `--out x/` trained into checkpoints/x: pathlib drops the './' and the trailing '/',
    and "a path with a folder part" was read from what it left. Text with a separator is a path, a bare
    name one under checkpoints/, for every option or command naming a run: `--resume ./z` (no ./z here)
    went on with checkpoints/z."""
    for out in ("./x", "y/"):
        cli("train", str(fox_file), "--out", out, "--max-steps", "1", *TINY_ARGS)
        assert runs.holds_checkpoint(Path(out)) and not Path("checkpoints", Path(out).name).exists(), out
        resumed = cli("train", "--resume", out, "--max-steps", "2", *TINY_ARGS)
        assert resumed.exit_code == 0 and read_metrics(Path(out))[-1]["step"] == 2, resumed.output
        assert cli("sample", out, "--length", "5").exit_code == 0
    cli("train", str(fox_file), "--out", "z", "--max-steps", "1", *TINY_ARGS)
    for named in ("./z", "z/"):
        assert_one_line_error(cli("train", "--resume", named, "--max-steps", "2"), f"--resume {named}: no such")
        assert_one_line_error(cli("sample", named), f"{named}: no such", "checkpoints/z is named z, as typed without")
        assert_one_line_error(cli("info", named), f"{named}: no such")
        init_from = cli("train", str(fox_file), "--init-from", named, "--out", "w", "--max-steps", "1")
        assert_one_line_error(init_from, f"--init-from {named}: no such")
    # a run's file named by the run's name, as the docs write RUN/best.pt: no z/ here, so the run's
    assert cli("sample", "z/best.pt", "--length", "5").exit_code == 0
    assert_one_line_error(
        cli("sample", "./z/best.pt"), "./z/best.pt: no such", "checkpoints/z/best.pt is named z/best.pt"
    )
    Path("z").mkdir()  # a folder of texts named as the run: `--out z` trained checkpoints/z, which `z` names
    assert cli("sample", "z", "--length", "5").exit_code == 0 and runs.resolve("z").parent == Path("checkpoints/z")
    assert runs.resolve("x").parent == Path("x")  # a name not under checkpoints/ is the one here
    assert (
        runs.out_into(Path("x")) == os.path.join(".", "x") and runs.out_into(Path("checkpoints/z")) == "checkpoints/z"
    )


def test_a_folder_of_runs_whose_run_is_named_best_pt_is_no_run_itself(tmp_path):
    """`--out x/best.pt` makes a run folder named best.pt: a folder of that name counted as x's checkpoint,
    so `charlm runs --root .` listed x as a run (`x ? ?x? 0 - best.pt unreadable`)."""
    run = tmp_path / "x" / "best.pt"
    run.mkdir(parents=True)
    (run / "latest.pt").write_bytes(b"")
    assert runs.run_folders(tmp_path) == [] and runs.run_folders(tmp_path / "x") == [run]
    assert not runs.holds_checkpoint(tmp_path / "x")
    assert "unreadable" not in cli("runs", "--root", str(tmp_path)).output


def test_a_run_started_quiet_speaks_when_resumed_without_quiet(fox_file):
    """--quiet says how much one command prints, not how its run trains: kept in the checkpoint, a run started
    --quiet from a script stayed silent when resumed by hand, and the command line has no --no-quiet."""
    speaking = [arg for arg in TINY_ARGS if arg != "--quiet"]
    cli("train", str(fox_file), "--out", "q", "--max-steps", "1", *speaking, "--quiet")
    resumed = cli("train", "--resume", "q", "--max-steps", "2", *speaking)
    assert resumed.exit_code == 0 and "resumed at step 1" in resumed.output, resumed.output
    quiet_again = cli("train", "--resume", "q", "--max-steps", "3", *speaking, "--quiet")
    assert quiet_again.exit_code == 0 and "resumed at step" not in quiet_again.output, quiet_again.output
