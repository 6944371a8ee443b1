"""The command line as a user meets it: real processes, real corpora, one-line errors."""

import collections
import contextlib
import errno
import fcntl
import itertools
import json
import os
import pty
import random
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from tqdm import tqdm

from charlm import (
    api,
    bars,
    checkpoint,
    fields,
    outputs,
    runs,
    sampler,
    scoring,
    sizing,
    summary,
    threads,
    tokens,
    train_state,
    trainer,
)
from charlm import cli as cli_module
from charlm import plot as plot_module
from charlm.commands.sample import OutputCopy, converse, json_line
from charlm.config import SampleConfig
from charlm.errors import CharLMError
from charlm.forms import template_of
from charlm.serve import model_loaders
from charlm.vocab import Vocab

from . import forkserver
from .conftest import (
    TINY_ARGS,
    assert_one_line_error,
    cli,
    cli_args,
    ctrl_c_as_the_stop_scores,
    disk_full_once_saved,
    interrupted_at,
    latest,
    make_model,
    run_cli,
    shared_corpus,
    signalled_in_a_scoring,
    start_charlm,
    start_python,
    state_telling,
)
from .permissions import run_as_a_user
from .test_export import run_of
from .test_serve import Counting


def train_fox(text: Path) -> str:
    """`charlm train TEXT --out fox`, tiny and 20 steps, in this folder: the run's name."""
    result = cli("train", str(text), "--out", "fox", "--max-steps", "20", *TINY_ARGS)
    assert result.exit_code == 0, result.output
    return "fox"


@pytest.fixture(scope="module")
def fox_run(tmp_path_factory) -> Path:
    """The run `trained` copies, trained once for the module (on a fox.txt of its own folder): its run folder."""
    folder = tmp_path_factory.mktemp("fox-run")
    text = folder / "fox.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 60, encoding="utf-8")
    here = os.getcwd()
    os.chdir(folder)
    try:
        train_fox(text)
    finally:
        os.chdir(here)
    return folder / runs.CHECKPOINT_ROOT / "fox"


@pytest.fixture
def trained(fox_run) -> str:
    """A tiny run, checkpoints/fox, for a test that reads, samples or resumes it: a copy of `fox_run`, whose
    text is the fox's but not this test's fox_file (`trained_here` is trained on that, for a test that
    moves or changes it)."""
    shutil.copytree(fox_run, runs.CHECKPOINT_ROOT / "fox")
    return "fox"


@pytest.fixture
def trained_here(fox_file) -> str:
    """`charlm train fox.txt --out fox` on this test's fox_file, which the test moves or changes."""
    return train_fox(fox_file)


def test_sample_and_eval_adapt_their_threads_to_the_cpu(trained, fox_file, monkeypatch):
    """Their steps report their speed to the thread governor, which only training started: on 2 cores
    with one busy, `charlm sample` kept torch's thread per core and wrote 94 characters a second
    where one thread writes 1,775."""
    for command in (["sample", "--checkpoint", trained, "--length", "5"], ["eval", trained, str(fox_file)]):
        monkeypatch.setattr(threads._command, "governor", None)
        assert cli(*command).exit_code == 0
        assert threads._command.governor is not None, command


def test_sample_takes_its_run_as_every_other_command_does(trained, tmp_path):
    """`charlm sample RUN` said "Got unexpected extra argument (RUN)", where eval, info, export, inspect
    and serve take the run so: RUN or `--checkpoint RUN` (scripts' spelling), both if they name one."""
    args = ("--seed", "the ", "--length", "20", "--random-seed", "1")
    by_option = cli("sample", "--checkpoint", trained, *args)
    assert by_option.exit_code == 0, by_option.output
    assert cli("sample", trained, *args).output == by_option.output
    assert cli("sample", trained, "--checkpoint", "checkpoints/fox/best.pt", *args).output == by_option.output
    (tmp_path / "seed.txt").write_text("the ", encoding="utf-8")
    from_file = cli("sample", trained, "--seed-file", str(tmp_path / "seed.txt"), *args[2:])
    assert from_file.output == by_option.output
    typed = cli("sample", trained, "--interactive", "--length", "5", input="the\n")
    assert typed.exit_code == 0 and typed.output.startswith("the\n")
    (tmp_path / "other.pt").write_bytes((runs.CHECKPOINT_ROOT / "fox" / "best.pt").read_bytes())
    assert_one_line_error(
        cli("sample", trained, "--checkpoint", str(tmp_path / "other.pt")),
        f"RUN {trained} and --checkpoint {tmp_path / 'other.pt'} name different checkpoints",
    )


def test_train_sample_eval_info(trained, fox_file):
    result = cli("sample", "--checkpoint", trained, "--seed", "the ", "--length", "50", "--random-seed", "1")
    assert result.exit_code == 0 and result.output.startswith("the ") and len(result.output) == 4 + 50 + 1
    again = cli("sample", "--seed", "the ", "--length", "50", "--random-seed", "1")  # latest run by default
    assert again.stdout == result.output
    result = cli("sample", "--seed", "the", "--length", "10", "--num-samples", "3", "--greedy")
    assert result.output.count("--- sample") == 3
    result = cli("eval", trained, str(fox_file))
    assert result.exit_code == 0 and "bits per character over 2,639 characters scored" in result.output
    result = cli("info", trained)
    rows = dict(line.split(None, 1) for line in result.output.splitlines())
    assert rows["model"].startswith("1x32 lstm, ") and rows["model"].endswith(" parameters")
    assert rows["steps"].startswith("20 (") and rows["hidden"] == "32 (given)" and rows["trained_on"].startswith("cpu ")
    values = [line.index(value) for line, value in zip(result.output.splitlines(), rows.values())]
    assert len(set(values)) == 1  # every value starts in one column, however long the label


def test_info_shows_what_shaped_the_model_and_why_not_how_the_run_was_launched(trained):
    """`charlm info` listed every option raw: "quiet False", "threads None", "vocab_size None" on a char
    vocabulary said nothing about the model, and a fitted dropout or cadence did not say it was fitted."""
    rows = dict(line.split(None, 1) for line in cli("info", trained).output.splitlines())
    for noise in ("quiet", "threads", "tensorboard", "detect_anomaly", "save_errors", "checkpoint_every", "device"):
        assert noise not in rows, noise
    assert "vocab_size" not in rows and "spm_model" not in rows and "eval_also" not in rows
    assert "cell" not in rows and "layers" not in rows  # the model row says them
    assert rows["dropout"].endswith("passes over the training text)") and "(given)" not in rows["dropout"]
    assert rows["eval_every"].endswith("(once per pass over the training text, at most 2000 steps apart)")
    assert rows["batch_size"] == "4 (given)"  # TINY_ARGS's
    fitted = summary.reason_text("hidden", 128, f"--hidden 128{sizing.SMALLEST_SHORT} in the budget")
    assert fitted == "the smallest size, is short of characters in the budget"  # not "(, the smallest ..."
    saved = latest(trained)  # a checkpoint away from its run.json: the values, without reasons
    assert dict(summary.rows(saved))["dropout"] == str(saved.config.dropout)


def test_an_adaptive_head_too_narrow_for_its_clusters_is_one_line_naming_hidden_and_head(fox_file):
    """`--head adaptive --hidden 8` trained a model whose rarest cluster was 0 wide, saying only torch's
    "warning: Initializing zero-element tensors is a no-op"."""
    result = cli(
        "train",
        str(fox_file),
        "--out",
        "narrow",
        "--head",
        "adaptive",
        "--cell",
        "gru",
        "--max-steps",
        "2",
        *TINY_ARGS,
        "--hidden",
        "8",
    )
    assert_one_line_error(
        result, "--head adaptive needs --hidden 16 or more", "give --hidden 16 or more, or --head full"
    )
    assert not os.path.exists("checkpoints/narrow")


def test_an_adaptive_head_on_a_vocabulary_under_4_ids_is_one_line_naming_head(tmp_path):
    """`--head adaptive` on a two-character text (3 ids with the unknown one) trained a full head silently,
    and run.json said the head was as "given"."""
    two_characters = tmp_path / "ab.txt"
    two_characters.write_text("abbab" * 400, encoding="utf-8")
    result = cli("train", str(two_characters), "--out", "tiny", "--head", "adaptive", "--max-steps", "2", *TINY_ARGS)
    assert_one_line_error(
        result, "--head adaptive needs 4 ids or more; this text's vocabulary has 3", "give --head full"
    )
    assert not os.path.exists("checkpoints/tiny")


def test_info_says_which_output_layer_the_model_has_and_a_named_corpus_once(trained_here, fox_file):
    """`charlm info` showed only `head auto`, never whether the model got the adaptive head, and a run
    of `charlm train hongloumeng` as "corpus hongloumeng hongloumeng"."""
    info = dict(line.split(None, 1) for line in cli("info", trained_here).output.splitlines())
    size = latest(trained_here).model_config.vocab_size
    why = f"--head auto chose full: a vocabulary of {size} characters (adaptive from 1,000)"  # run.json's reason
    assert info["head"] == f"full, a row of width 32 for each of {size} characters ({why})", info["head"]
    result = cli("train", str(fox_file), "--out", "adaptive", "--head", "adaptive", "--max-steps", "2", *TINY_ARGS)
    assert result.exit_code == 0, result.output
    head = checkpoint.load("adaptive").head.softmax
    edges = [0, *head.cutoffs]
    clusters = [
        f"{end - start} at {layer[0].out_features}" for start, end, layer in zip(edges[1:], edges[2:], head.tail)
    ]
    expected = f"adaptive, {head.shortlist_size} frequent characters at width 32, then clusters of "
    info = dict(line.split(None, 1) for line in cli("info", "adaptive").output.splitlines())
    assert info["head"] == expected + " and ".join(clusters) + " (--head adaptive)", info["head"]
    saved = latest(trained_here)
    assert dict(summary.rows(saved))["corpus"] == str(fox_file.resolve())  # was "fox /.../fox.txt"
    saved.corpus = {**saved.corpus, "name": "hongloumeng", "sources": ["hongloumeng"]}
    assert dict(summary.rows(saved))["corpus"] == "hongloumeng"
    saved.corpus = {**saved.corpus, "name": "chapters", "sources": ["/novel/chapters", "/novel/notes.txt"]}
    assert dict(summary.rows(saved))["corpus"] == "/novel/chapters /novel/notes.txt"
    saved.corpus = {**saved.corpus, "name": "shakespeare", "sources": []}  # the built-in corpus: no sources
    assert dict(summary.rows(saved))["corpus"] == "shakespeare"


def test_info_says_why_head_auto_chose_the_head_as_it_does_for_other_fitted_options(trained):
    """`charlm info` showed `(--head auto)` without why: that --hidden 8 left a big vocabulary the full head
    was only in run.json. A given head says so alone; a fine-tune's says which base it is as in."""
    saved = latest(trained)
    narrow = (
        "--head auto chose full: a vocabulary of 1,200 characters (adaptive from 1,000), but at --hidden 8 the rarest"
    )
    head = dict(summary.rows(saved, {"head": narrow}))["head"]
    assert head.endswith(f" characters ({narrow})"), head
    head = dict(summary.rows(saved, {"head": "as in base run fox"}))["head"]
    assert head.endswith(" characters (--head auto: as in base run fox)"), head
    for reasons in ({"head": "given"}, {}):
        assert dict(summary.rows(saved, reasons))["head"].endswith(" characters (--head auto)")


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_eval_shows_a_progress_bar_unless_quiet(trained, fox_file):
    shown = run_cli("eval", trained, str(fox_file), check=True)
    assert "scoring" in shown.stderr and "100%" in shown.stderr and "char/s" in shown.stderr, shown.stderr
    quiet = run_cli("eval", trained, str(fox_file), "--quiet", check=True)
    assert quiet.stderr == "" and quiet.stdout == shown.stdout


def test_eval_of_several_files_scores_each_and_all_together(trained, tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("the quick brown fox jumps over the lazy dog\n" * 4, encoding="utf-8")
    second.write_text("a lazy dog and a quick fox by a brown dog\n" * 9, encoding="utf-8")
    alone = {}
    for path in (first, second):
        *_, total = cli("eval", trained, str(path), "--quiet").output.splitlines()
        alone[path] = float(total.split()[0])
    result = cli("eval", trained, str(first), str(second), "--quiet")
    assert result.exit_code == 0, result.output
    header, *rows, total = result.output.splitlines()
    assert header.split() == ["file", "bpc", "characters", "scored"]
    scored = {path: len(path.read_text()) - 1 for path in (first, second)}  # each file's first is only read
    # the counts are of the characters the bits are over: they printed every character, the first too
    assert [row.split() for row in rows] == [[str(path), f"{alone[path]:.4f}", f"{scored[path]:,}"] for path in scored]
    together = sum(alone[path] * scored[path] for path in scored) / sum(scored.values())
    assert total.startswith("bits per character", 7) and abs(float(total.split()[0]) - together) < 2e-4
    assert total.endswith(f"over {sum(scored.values()):,} characters scored")


def test_eval_rows_follow_the_order_the_files_and_runs_were_given_in(trained, tmp_path):
    """`charlm eval RUN b.txt RUN a.txt` listed the files first and the run's held-out text after them:
    a table read in the order the user typed it named the wrong row. Rows keep the order given, a
    folder's files where the folder is."""
    first, folder = tmp_path / "z.txt", tmp_path / "texts"
    folder.mkdir()
    first.write_text("the quick brown fox\n" * 3, encoding="utf-8")
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text(f"a lazy dog {name[0]}\n" * 3, encoding="utf-8")  # no unseen note
    result = cli("eval", trained, str(first), trained, str(folder), "--quiet")
    assert result.exit_code == 0, result.output
    _, *rows, _ = result.output.splitlines()
    named = [str(first), f"{trained} (held-out text)", str(folder / "a.txt"), str(folder / "b.txt")]
    assert [row.rsplit(maxsplit=2)[0] for row in rows] == named


def test_eval_takes_held_out_as_inspect_does(trained, fox_file):
    """`charlm inspect RUN --held-out` (README) taught `charlm eval RUN --held-out`, which was "no such option
    --held-out (did you mean --help?)": eval takes the flag, the run's held-out text as with no FILES, and
    refuses FILES beside it."""
    assert cli("eval", trained, "--held-out", "--quiet").output == cli("eval", trained, "--quiet").output
    assert cli("eval", "--held-out", "--quiet").exit_code == 0
    for files in ([trained, str(fox_file)], [str(fox_file)]):
        assert_one_line_error(cli("eval", *files, "--held-out"), f"give FILES ({fox_file}) or --held-out")


def test_eval_without_files_scores_the_run_s_held_out_text(trained_here, fox_file, tmp_path):
    """`charlm eval RUN` alone was click's "Missing argument 'FILES...'": it scores the text the run held
    out (its validation split), as `charlm eval RUN FILE` of that text does; a corpus changed since is refused."""
    text = fox_file.read_text(encoding="utf-8")
    held_out = tmp_path / "held-out.txt"
    held_out.write_text(text[len(text) - int(len(text) * 0.1) :], encoding="utf-8")  # the last --val-fraction
    result = cli("eval", trained_here, "--quiet")
    assert result.exit_code == 0, result.output
    bpc = cli("eval", trained_here, str(held_out), "--quiet").output.split()[0]
    scored = len(held_out.read_text(encoding="utf-8")) - 1
    assert result.output == f"{bpc} bits per character over {scored:,} characters of the run's held-out text\n"
    fox_file.write_text(text.upper(), encoding="utf-8")
    cached = sorted(tokens.CACHE_ROOT.iterdir())
    assert_one_line_error(
        cli("eval", trained_here, "--quiet"), f"the corpus {fox_file} changed since the run trained on it; give"
    )
    assert sorted(tokens.CACHE_ROOT.iterdir()) == cached  # refused before it was prepared
    fox_file.unlink()
    assert_one_line_error(cli("eval", trained_here, "--quiet"), f"{fox_file}: no such file", "give FILES to score")


def test_eval_without_files_refuses_an_encoding_it_would_not_read_and_names_what_changes_the_run_s(
    trained_here, fox_file
):
    """`charlm eval RUN --encoding utf-16` with no FILES scored the run's text as it always reads it, the
    --encoding unread and unsaid (it reads FILES). It is refused, naming the resume that records the run's
    text in another encoding; that command, run as given, makes a plain `charlm eval RUN` read it."""
    before = cli("eval", trained_here, "--quiet").output
    fox_file.write_text(fox_file.read_text(encoding="utf-8"), encoding="utf-16")
    refused = cli("eval", trained_here, "--encoding", "utf-16", "--quiet")
    record = "charlm train FILE --resume checkpoints/fox --encoding ENC --max-steps 1"
    assert_one_line_error(
        refused, "--encoding utf-16 reads FILES, the texts given to score, and none are given", record
    )
    recorded = cli(*record.replace("FILE", str(fox_file)).replace("ENC", "utf-16").split()[1:], "--quiet")
    assert recorded.exit_code == 0 and "nothing to train" in recorded.output, recorded.output
    assert cli("eval", trained_here, "--quiet").output == before


def test_inspect_held_out_refuses_an_encoding_it_would_not_read_as_eval_does(trained, tmp_path):
    """`charlm inspect RUN --held-out --encoding utf-16` (no FILE, no --train-text) wrote its page from the
    run's text as it always reads it, the --encoding unread and unsaid. It is refused as eval's is."""
    refused = cli("inspect", trained, "--held-out", "--encoding", "utf-16", "--output", "page.html", "--quiet")
    record = "charlm train FILE --resume checkpoints/fox --encoding ENC --max-steps 1"
    assert_one_line_error(refused, "--encoding utf-16 reads FILE and --train-text", "neither is given", record)
    assert not (tmp_path / "page.html").exists()


def test_eval_of_a_run_whose_corpus_moved_says_how_to_go_on_then_reads_it_where_a_resume_recorded_it(
    trained_here, fox_file, tmp_path
):
    """`charlm eval RUN` of a run whose corpus was moved said "no such file ...; give FILES to score instead":
    nothing of the text's new path, nor how to give it. A resume on the text there records the path in
    run.json, where eval finds it though best.pt (one the resume never beat) names the old one."""
    before = cli("eval", trained_here, "--quiet").output
    best = (Path("checkpoints/fox") / runs.BEST).read_bytes()
    moved = tmp_path / "renamed.txt"
    fox_file.rename(moved)
    assert_one_line_error(
        cli("eval", trained_here, "--quiet"),
        f"{fox_file}: no such file or folder, where checkpoints/fox read its corpus; if the text moved, resume on it "
        "at its new path, which the run then records: charlm train NEW --resume checkpoints/fox; give FILES to "
        "score instead (charlm eval checkpoints/fox FILES)",
    )
    resumed = cli("train", str(moved), "--resume", trained_here, "--max-steps", "22", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    (Path("checkpoints/fox") / runs.BEST).write_bytes(best)
    assert checkpoint.read(Path("checkpoints/fox") / runs.BEST).corpus["sources"] == [str(fox_file)]
    assert cli("eval", trained_here, "--quiet").output == before  # the same held-out text, read at its new path


def test_a_finished_run_resumed_on_its_moved_text_records_the_path_and_trains_nothing(trained_here, fox_file, tmp_path):
    """A run whose --max-steps was spent recorded its text's new path only by a resume with a larger limit,
    which trained more: `charlm train NEW --resume RUN` was refused ("give a larger limit"), and `charlm eval
    RUN` still could not find the corpus. Now it records the path (the digest checked), trains nothing and
    says so; another text is still refused, and a resume that names no text still asks for a larger limit."""
    before = cli("eval", trained_here, "--quiet").output
    steps = (Path("checkpoints/fox") / runs.LATEST).read_bytes()
    moved = tmp_path / "renamed.txt"
    fox_file.rename(moved)
    other = tmp_path / "other.txt"
    other.write_text(moved.read_text(encoding="utf-8").upper(), encoding="utf-8")
    assert_one_line_error(
        cli("train", str(other), "--resume", trained_here, "--quiet"), "is not the text checkpoints/fox"
    )
    resumed = cli("train", str(moved), "--resume", trained_here, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert "checkpoints/fox has already trained 20 steps in " in resumed.output
    assert f"its --max-steps 20: nothing to train; its text's path is recorded ({moved})" in resumed.output
    assert (Path("checkpoints/fox") / runs.LATEST).read_bytes() == steps  # not a step trained, nothing saved
    assert cli("eval", trained_here, "--quiet").output == before  # the held-out text, read where run.json records it
    assert_one_line_error(cli("train", "--resume", trained_here), "has already trained 20 steps", "give a larger limit")


def test_eval_without_a_run_scores_under_the_latest_run(trained, fox_file, tmp_path):
    """Every command that takes a RUN uses the latest run without one (README), but `charlm eval` alone
    was click's four-line "Missing argument 'RUN'", `charlm eval chapter.txt` said the text file was
    "not a charlm checkpoint", and `charlm eval chapters/` that the folder of texts "holds no checkpoint"."""
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    shutil.copy(fox_file, chapters / "fox.txt")
    for files in ([], [str(fox_file)], [str(chapters)]):
        result = cli("eval", *files, "--quiet")
        assert result.exit_code == 0, result.output
        assert result.stdout == cli("eval", trained, *files, "--quiet").stdout, files  # stderr names the run
    assert_one_line_error(cli("eval", "checkpoints", "--quiet"), "checkpoints is a folder of runs, not a run")


def test_an_export_given_to_eval_is_a_model_not_a_text_to_score(trained, fox_file):
    """`charlm eval page.html`, a run's html export given as the model to score with, read the page's own
    HTML as the text to score, under the latest run: 11.7 bpc, 107 distinct characters unseen, a figure of
    nothing; `charlm eval model.onnx` was "a binary file, not text". An html or onnx export is a model, which
    charlm does not read back, said as `charlm sample` says it; a page of one's own is still text."""
    assert cli("export", trained, "--format", "html", "--output", "page.html").exit_code == 0
    Path("model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")  # how torch's onnx export begins
    hint = "give a run folder, a .pt checkpoint or a safetensors model folder"
    for export in ("page.html", "model.onnx"):
        assert_one_line_error(cli("eval", export, "--quiet"), f"{export}: not a charlm checkpoint", hint)
        assert_one_line_error(
            cli("train", str(fox_file), "--init-from", trained, "--eval-also", export, "--quiet"),
            "--eval-also ",
            f"{export}: not a charlm checkpoint",
        )
    Path("mine.html").write_text("<!doctype html>\n<p>the quick brown fox</p>\n", encoding="utf-8")
    assert cli("eval", "mine.html", "--quiet").exit_code == 0


def test_a_checkpoint_named_in_capitals_is_a_checkpoint_to_every_command(trained, fox_file):
    """`charlm sample MODEL.PT`, `info` and `export` read it, but `charlm eval MODEL.PT` took it for a text
    to score under the latest run ("a binary file, not text"), and so did --eval-also: `.pt` counted in
    lower case alone, and `charlm serve` did not serve one in a run folder by its run's corpus. Every command
    takes it as the checkpoint it is, as it takes model.pt; `charlm inspect model.pt` (no FILE) said the
    checkpoint was "a binary file, not text", where a run folder given so is said to be a run."""
    shutil.copy(runs.resolve(trained), "MODEL.PT")
    shutil.copy(runs.resolve(trained), "model.pt")
    for model in ("MODEL.PT", "model.pt"):
        scored = cli("eval", model, str(fox_file), "--quiet")
        assert scored.exit_code == 0, scored.output
        assert scored.stdout == cli("eval", trained, str(fox_file), "--quiet").stdout
        held_out = cli("eval", model, "--quiet")
        assert held_out.exit_code == 0 and "held-out text" in held_out.stdout, held_out.output
        tuned = cli("train", str(fox_file), "--init-from", trained, "--eval-also", model, "--max-steps", "1", "--quiet")
        assert tuned.exit_code == 0, tuned.output
        in_run = shutil.copy(runs.resolve(trained), runs.CHECKPOINT_ROOT / trained / model)  # served by its corpus
        assert model_loaders([str(in_run)])[1] == {Path(model).stem: runs.corpus_of_run(Path(in_run).parent)}
        assert_one_line_error(cli("inspect", model), f"{model} is a checkpoint: give a FILE to inspect after it")


def test_eval_and_inspect_without_a_run_name_the_run_they_took(trained, fox_file):
    """`charlm eval chapter.txt` and `charlm inspect novel.txt` took the latest run unsaid: after a poem
    run trained since, an English chapter scored 12.3 bpc, 2,323 of its characters unseen, under a model
    nothing named. They name it on stderr after the figures, so that an error in the files given stays one
    line; with --quiet too, which kept it unsaid: a script recorded a figure of an unknown model. Its stdout
    is the score alone."""
    named = f"the latest run's model: {runs.resolve(trained)} (name a RUN first"
    for args in ([str(fox_file)], []):  # a file, and the run's held-out text
        scored = cli("eval", *args)
        assert scored.exit_code == 0, scored.output
        assert scored.stderr.splitlines()[-1].startswith(named) and named not in scored.stdout
    inspected = cli("inspect", str(fox_file), "--output", "fox.html", "--max-chars", "100")
    assert inspected.exit_code == 0, inspected.output
    assert named in inspected.stderr
    quiet = {}
    for command in (["eval", str(fox_file)], ["inspect", str(fox_file), "--output", "fox.html", "--max-chars", "100"]):
        quiet[command[0]] = cli(*command, "--quiet")
        assert quiet[command[0]].stderr.splitlines()[-1].startswith(named), quiet[command[0]].output
    assert re.fullmatch(r"\d\.\d{4} bits per character over [\d,]+ characters scored\n", quiet["eval"].stdout)
    # fox.txt is the run's text: the one line above says the n-gram was fitted on it
    wrote = quiet["inspect"].stdout.splitlines()
    assert wrote[-1].startswith("wrote fox.html") and len(wrote) == 2 and "was fitted on" in wrote[0]
    assert named not in cli("eval", trained, str(fox_file)).output  # a RUN given is the user's own choice
    assert_one_line_error(cli("eval", str(fox_file), "nope.txt"), "nope.txt: no such file")
    assert_one_line_error(cli("inspect", "nope.txt"), "nope.txt: no such file")


def test_sample_without_a_run_names_the_run_it_took(trained, tmp_path):
    """`charlm sample > poem.txt` took the latest run unsaid, as eval and inspect did before they named it:
    a script kept a text of a model nothing named, which a run trained since changes. It names the run on
    stderr after the text; stdout and --output hold the text alone, and a RUN given is the user's own choice."""
    named = f"the latest run's model: {runs.resolve(trained)} (name a RUN first"
    for extra in ([], ["--json"], ["--num-samples", "2"]):
        result = cli("sample", "--seed", "the", "--length", "10", "--random-seed", "1", "--output", "out.txt", *extra)
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines()[-1].startswith(named), result.stderr
        assert named not in result.stdout and result.stdout == (tmp_path / "out.txt").read_text(encoding="utf-8")
    typed = cli("sample", "--interactive", "--length", "5", input="the\n")
    assert typed.exit_code == 0 and typed.stderr.splitlines()[-1].startswith(named), typed.output
    assert named not in cli("sample", trained, "--length", "5").output


def test_eval_without_files_scores_the_held_out_ids_without_decoding_them(trained, fox_file, tmp_path, monkeypatch):
    """`charlm eval RUN` decoded the whole held-out split into one string through a Python list of its
    ids (745 MB for 30M characters), to encode it again: it scores the split's ids as validation does."""
    text = fox_file.read_text(encoding="utf-8")
    held_out = tmp_path / "held-out.txt"
    held_out.write_text(text[len(text) - int(len(text) * 0.1) :], encoding="utf-8")  # the last --val-fraction
    expected = cli("eval", trained, str(held_out), "--quiet").output.split()[0]

    def no_decode(self, ids):
        raise AssertionError(f"decoded {len(ids)} ids")

    monkeypatch.setattr(Vocab, "decode", no_decode)
    result = cli("eval", trained, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output.split()[0] == expected


def test_eval_shows_bars_while_reading_and_encoding_a_file_unless_quiet(trained, fox_file, monkeypatch):
    """`charlm eval FILE` showed nothing while it read and encoded the file (seconds for 50 MB, more for
    bigger ones), then the scoring bar: the reading has a bar over the file's bytes, the encoding one over
    its characters, once they have taken LEAD_IN_SECONDS (here none: the fox is read at once)."""
    monkeypatch.setattr(bars, "LEAD_IN_SECONDS", 0)  # eval imports it where it runs
    monkeypatch.setattr(scoring, "LEAD_IN_SECONDS", 0)
    size = tqdm.format_sizeof(fox_file.stat().st_size)
    chars = tqdm.format_sizeof(len(fox_file.read_text(encoding="utf-8")))
    shown = cli("eval", trained, str(fox_file))
    assert shown.exit_code == 0, shown.output
    assert "reading: 100%|" in shown.output and f"{size}/{size} bytes" in shown.output
    assert "encoding: 100%|" in shown.output and f"{chars}/{chars} [" in shown.output
    quiet = cli("eval", trained, str(fox_file), "--quiet")
    assert "reading" not in quiet.output and "encoding" not in quiet.output


def bars_drawn(stderr: str) -> set[str]:
    """The names of the progress bars drawn on `stderr` (training's, which has none: "training")."""
    return {name or "training" for name in re.findall(r"(?:^|[\r\n])([^\r\n|]*?):? *\d+%\|", stderr)}


def test_quiet_s_help_names_every_bar_it_hides(trained, fox_file, tmp_path, monkeypatch):
    """`charlm eval --quiet` said "no progress bar" where eval draws up to three (reading, encoding,
    scoring) and two more where the run's corpus is prepared again: every command's --quiet names the
    bars the command draws without it, and hides them all."""
    monkeypatch.setattr(bars, "LEAD_IN_SECONDS", 0)  # eval's reading and encoding bars: drawn at once
    monkeypatch.setattr(scoring, "LEAD_IN_SECONDS", 0)
    other = tmp_path / "other.txt"
    other.write_text("a lazy dog and a quick fox by a brown dog\n" * 9, encoding="utf-8")
    untrained = [arg for arg in TINY_ARGS if arg != "--quiet"]
    commands = [
        ["train", str(other), "--out", "again", "--max-steps", "2", *untrained],
        ["corpus", "prepare", str(other)],
        ["eval", trained, str(other)],
        ["eval", trained],  # the run's held-out text: its corpus prepared again
        ["inspect", trained, str(other), "--output", "page.html", "--max-chars", "50"],
    ]
    for args in commands:
        command = cli_module.main
        for word in itertools.takewhile(lambda arg: not arg.startswith(("-", "/")) and arg != trained, args):
            command = command.commands[word]
        hides = next(option.help for option in command.params if option.name == "quiet")
        drawn = {}
        for quiet in ([], ["--quiet"]):
            shutil.rmtree(tokens.CACHE_ROOT, ignore_errors=True)  # prepared again, under bars of its own
            shutil.rmtree(runs.CHECKPOINT_ROOT / "again", ignore_errors=True)  # trained again
            result = CliRunner().invoke(cli_module.main, [*args, *quiet])
            assert result.exit_code == 0, result.output
            drawn[bool(quiet)] = bars_drawn(result.stderr)
        assert drawn[False] and not drawn[True], (args, drawn)
        assert all(name in hides for name in drawn[False]), (args[0], drawn[False], hides)


def test_eval_names_a_file_it_cannot_read_before_scoring_any(trained, tmp_path, monkeypatch):
    """`charlm eval RUN chapters/` scored every file before a Latin-1 one, for minutes on big ones, then
    printed only the error: the scores were lost. The file is named before any scoring starts."""
    good, bad = tmp_path / "a.txt", tmp_path / "b.txt"
    good.write_text("the quick brown fox jumps over the lazy dog\n", encoding="utf-8")
    bad.write_bytes("caf\u00e9 ol\u00e9\n".encode("latin-1"))
    scored = []
    monkeypatch.setattr(scoring, "text_bits", lambda *args, **kwargs: scored.append(args) or (1.0, 1))
    assert_one_line_error(cli("eval", trained, str(tmp_path), "--quiet"), "b.txt", "--encoding")
    assert scored == []


def write(name: str, data: bytes | None):
    def make(folder):
        path = folder / name
        if data is None:
            path.mkdir()
        else:
            path.write_bytes(data)
        return path

    return make


@pytest.mark.parametrize(
    "make, fragments",
    [
        (lambda d: d / "missing.txt", ["missing.txt: no such file or folder"]),
        (write("empty", None), ["empty: folder holds no .txt files"]),
        (write("e.txt", b""), ["e.txt: file is empty"]),
        (write("b.txt", b"abc\x80"), ["b.txt: not valid utf-8 at byte offset 3", "--encoding"]),
        (write("s.txt", b"short\n"), ["too short", "at least 40 characters"]),
    ],
)
def test_bad_corpus_gets_one_line(tmp_path, make, fragments):
    assert_one_line_error(cli("train", str(make(tmp_path)), *TINY_ARGS, "--max-steps", "2"), *fragments)


def test_bad_sample_options_get_one_line(trained):
    assert_one_line_error(cli("sample", "--seed", "the Ω", "--length", "5"), "--seed", "'Ω'", "never seen")
    assert_one_line_error(cli("sample", "--temperature", "0"), "--temperature must be a finite number above 0")
    assert_one_line_error(cli("sample", "--length", "-1"), "--length must be 0 or more")
    assert_one_line_error(cli("train", "--max-time", "ten minutes"), "--max-time")
    assert_one_line_error(cli("train", "--hidden", "0"), "--hidden must be at least 1")


def test_a_seed_the_model_cannot_read_is_refused_before_anything_is_printed(trained, tmp_path):
    """Issue 26 item 19: `--temperature 0.5,0.8,1.0` printed `--- temperature 0.5 ---`, then the error."""
    out = tmp_path / "samples.txt"
    for extra in (["--temperature", "0.5,0.8,1.0"], ["--num-samples", "2", "--output", str(out)], ["--json"]):
        assert_one_line_error(cli("sample", "--seed", "ROMEO:", "--length", "5", *extra), "--seed")
    assert not out.exists()


@pytest.mark.parametrize("seed", ["99999999999999999999", "-99999999999999999999", "9223372036854775808"])
def test_a_random_seed_out_of_range_gets_one_line(trained, fox_file, seed):
    expected = "--random-seed must be between -9223372036854775808 and 9223372036854775807"
    train = cli("train", str(fox_file), *TINY_ARGS, "--max-steps", "1", "--random-seed", seed)
    assert_one_line_error(train, expected, f"not {seed}")
    assert_one_line_error(cli("sample", "--random-seed", seed), expected, f"not {seed}")


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_a_random_seed_out_of_range_gets_one_line_from_a_real_process(trained):
    assert_one_line_error(run_cli("sample", "--random-seed", "99999999999999999999"), "--random-seed must be between")
    assert run_cli("sample", "--random-seed", "-5", "--length", "5", check=True).stdout  # negative seeds are seeds


@pytest.mark.parametrize("typed", ["0", "0.5,0", "0.5, -1", "nan", "inf"])
def test_a_bad_temperature_is_shown_as_typed(trained, typed):
    assert_one_line_error(
        cli("sample", "--temperature", typed), f"--temperature must be a finite number above 0, not {typed} ("
    )


def test_bad_checkpoints_get_one_line(tmp_path, trained):
    assert_one_line_error(cli("sample", "--checkpoint", "nope.pt"), "nope.pt: no such checkpoint")
    best = tmp_path / "checkpoints" / trained / "best.pt"
    (tmp_path / "cut.pt").write_bytes(best.read_bytes()[:3000])
    assert_one_line_error(cli("sample", "--checkpoint", "cut.pt"), "cut.pt: truncated checkpoint")
    (tmp_path / "notes.pt").write_text("just some text")
    assert_one_line_error(cli("info", "notes.pt"), "notes.pt: not a charlm checkpoint")
    # an export given back to charlm said only that, not what charlm reads instead
    assert cli("export", trained, "--format", "html", "--output", "page.html").exit_code == 0
    hint = "give a run folder, a .pt checkpoint or a safetensors model folder"
    assert_one_line_error(cli("sample", "--checkpoint", "page.html"), "page.html: not a charlm checkpoint", hint)


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_real_process_errors_have_no_traceback(tmp_path):
    assert_one_line_error(run_cli("train", str(tmp_path / "nothing.txt")), "no such file or folder")
    assert_one_line_error(run_cli("sample"), "no runs under checkpoints")


@pytest.mark.slow
def test_chinese_text_with_thousands_of_characters_end_to_end(tmp_path):
    rng = random.Random(0)
    alphabet = [chr(0x4E00 + i) for i in range(3500)]
    lines = ["".join(rng.choices(alphabet, k=rng.randint(5, 30))) + rng.choice("，。！？：“”") for _ in range(4000)]
    (tmp_path / "novel.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("train", "novel.txt", "--out", "zh", "--max-steps", "10", *TINY_ARGS)
    assert result.exit_code == 0, result.output
    info = cli("info", "zh").output
    vocab_size = int(info.split("vocabulary")[1].split()[0].replace(",", ""))
    assert vocab_size > 3000
    seed = lines[0][:4]
    result = cli("sample", "zh", "--seed", seed, "--length", "30", "--random-seed", "0")
    assert result.output.startswith(seed) and len(result.output.rstrip("\n")) == 34
    assert all(0x4E00 <= ord(c) < 0x4E00 + 3500 or c in "，。！？：“”\n" for c in result.output)


@pytest.mark.slow
def test_tinyshakespeare_end_to_end():
    corpus = shared_corpus("tinyshakespeare.txt")
    run_cli(
        "train",
        str(corpus),
        "--out",
        "ts",
        "--max-steps",
        "150",
        "--warmup-steps",
        "10",
        "--hidden",
        "64",
        "--max-time",  # the steps end it: no size probe timing a budget (the same dropout, fitted from them)
        "none",
        "--quiet",
        check=True,
    )
    sample = run_cli("sample", "--checkpoint", "ts", "--seed", "ROMEO:", "--length", "200", check=True).stdout
    assert sample.startswith("ROMEO:") and len(sample) == 207
    # a tenth of the play: the whole 1.1M characters took ~5 s more to score and told no more
    part = Path("part.txt")
    part.write_text(corpus.read_text(encoding="utf-8")[:110_000], encoding="utf-8")
    bpc = float(run_cli("eval", "ts", str(part), check=True).stdout.split()[0])
    assert 1.0 < bpc < 4.0  # far better than uniform over 65 characters (6.02 bits)


@pytest.mark.slow
def test_hongloumeng_end_to_end():
    corpus = shared_corpus("hongloumeng.txt")
    train = ["--out", "hlm", "--max-steps", "40", "--max-time", "none", "--hidden", "64", "--quiet"]  # no size probe
    done = run_cli("train", str(corpus), *train, check=True)
    assert "validation" in done.stdout
    sample = run_cli("sample", "--seed", "宝玉道：", "--length", "100", "--random-seed", "3", check=True).stdout
    assert sample.startswith("宝玉道：") and len(sample) == 105


@pytest.mark.slow
def test_default_corpus_is_shakespeare():
    # in this process: ~3 s less; the steps end it, so no size probe times a budget
    result = cli("train", "--max-steps", "15", "--max-time", "none", "--hidden", "32", "--eval-every", "15")
    assert result.exit_code == 0 and "on shakespeare" in result.stderr and "--- sample" in result.stdout, result.output


def test_the_sample_line_after_training_names_a_run_folder_with_a_space_as_one_shell_word(fox_file):
    """A run folder named after `我的 小说.txt` ended training with `(charlm sample --checkpoint
    checkpoints/我的 小说-...)`: pasted, the shell split the folder in two and sample found no run. The
    command is quoted as the resume command is."""
    options = [arg for arg in TINY_ARGS if arg != "--quiet"]
    result = cli("train", str(fox_file), "--out", "checkpoints/我的 小说", "--max-steps", "5", *options)
    assert result.exit_code == 0, result.output
    said = re.search(r"^--- sample from best\.pt, step 5 \((charlm sample .*)\) ---$", result.stdout, re.MULTILINE)
    assert said and shlex.split(said[1]) == ["charlm", "sample", "--checkpoint", "checkpoints/我的 小说"], result.stdout


def test_resume_without_a_run_name_continues_the_latest_run(trained):
    result = cli("train", "--resume", "--max-steps", "30")
    assert result.exit_code == 0, result.output
    assert "done: step 30" in result.output
    assert_one_line_error(cli("train", "--resume", trained, "--hidden", "64"), "--hidden: 32 -> 64")


def test_a_resumed_runs_first_line_says_where_it_goes_on_from(fox_file):
    """`charlm train --resume` began with the very line a new run begins with: nothing told the user that
    the run was taken up where it stopped, at which step, nor how much of its --max-time was spent."""
    options = [arg for arg in TINY_ARGS if arg != "--quiet"]
    assert cli("train", str(fox_file), "--out", "fox", "--max-steps", "20", *options).exit_code == 0
    result = cli("train", "--resume", "fox", "--max-steps", "30")
    assert result.exit_code == 0, result.output
    start = result.stderr.splitlines()[0]
    ends = r"resumed at step 20 \(\d+s trained\) with --max-steps 30 \(was 20\)$"  # and what it changed
    assert start.startswith("training 1x32 lstm") and re.search(ends, start), start


def test_sample_options_from_the_command_line(trained, tmp_path):
    result = cli("sample", trained, "--seed", "the", "--length", "20", "--temperature", "0.5,1.0", "--random-seed", "1")
    assert result.output.count("--- temperature") == 2 and "--- temperature 0.5 ---\nthe" in result.output
    result = cli(
        "sample", trained, "--seed", "the", "--length", "20", "--num-samples", "2", "--json", "--output", "out.txt"
    )
    objects = [json.loads(line) for line in result.output.splitlines()]
    assert [o["sample"] for o in objects] == [1, 2] and all(o["text"].startswith("the") for o in objects)
    assert (tmp_path / "out.txt").read_text() == result.output
    (tmp_path / "seed.txt").write_text("the quick ")
    result = cli("sample", trained, "--seed-file", "seed.txt", "--length", "5", "--greedy")
    assert result.output.startswith("the quick ") and len(result.output) == 10 + 5 + 1
    assert_one_line_error(cli("sample", "--top-p", "1.5"), "--top-p must be in (0, 1]")
    assert_one_line_error(cli("sample", "--top-k", "0"), "--top-k must be at least 1")
    assert_one_line_error(cli("sample", "--temperature", "0.5,x"), "--temperature: cannot read '0.5,x'")
    assert_one_line_error(cli("sample", "--temperature", "0.5,-1"), "--temperature must be a finite number above 0")
    assert_one_line_error(cli("sample", "--stop", ""), "--stop must not be empty")


def test_each_json_sample_names_the_random_seed_that_makes_it_alone(trained):
    """The samples are numbered from 1 (`--- sample 2 ---`, `"sample": 2`) while the docs said sample i uses
    seed S + i: a user who kept sample 2 of --random-seed 7 and asked --random-seed 9 got another text. Each
    object now says the seed that writes it alone."""
    options = ["--seed", "the", "--length", "30", "--temperature", "1.5", "--json"]
    result = cli("sample", trained, *options, "--num-samples", "3", "--random-seed", "7")
    objects = [json.loads(line) for line in result.output.splitlines()]
    assert [(o["sample"], o["random_seed"]) for o in objects] == [(1, 7), (2, 8), (3, 9)], objects
    for kept in objects:
        alone = cli("sample", trained, *options, "--random-seed", str(kept["random_seed"]))
        assert json.loads(alone.output)["text"] == kept["text"]


def test_a_json_sample_past_the_last_64_bit_seed_names_a_seed_that_makes_it_again(trained):
    """--random-seed 9223372036854775806 --num-samples 3 named its third sample's seed 2**63, which
    --random-seed refuses (a 64-bit integer): the sample could not be made again. Sample i's seed wraps
    as the generator reads it (as 64 bits), to -2**63, which writes it alone."""
    options = ["--seed", "the", "--length", "30", "--temperature", "1.5", "--json"]
    result = cli("sample", trained, *options, "--num-samples", "3", "--random-seed", str(2**63 - 2))
    objects = [json.loads(line) for line in result.output.splitlines()]
    assert [o["random_seed"] for o in objects] == [2**63 - 2, 2**63 - 1, -(2**63)], objects
    for kept in objects:
        alone = cli("sample", trained, *options, "--random-seed", str(kept["random_seed"]))
        assert json.loads(alone.output)["text"] == kept["text"], alone.output


def test_an_unseeded_json_sample_names_the_drawn_seed_that_makes_it_again(trained):
    """Unseeded, each object said `"random_seed": null` though charlm drew its generator's seed: a user who liked
    a sample could not have it again. It names the seed its row drew from (the batch's, not worked out again)."""
    options = ["--seed", "the", "--length", "30", "--temperature", "1.5", "--json"]
    drawn = [json.loads(line) for line in cli("sample", trained, *options, "--num-samples", "2").output.splitlines()]
    first, second = (o["random_seed"] for o in drawn)
    assert isinstance(first, int) and second == first + 1, drawn
    again = cli("sample", trained, *options, "--num-samples", "2", "--random-seed", str(first))
    assert [json.loads(line)["text"] for line in again.output.splitlines()] == [o["text"] for o in drawn]
    alone = cli("sample", trained, *options, "--random-seed", str(second))
    assert json.loads(alone.output)["text"] == drawn[1]["text"]


def test_a_greedy_json_sample_names_no_random_seed(trained):
    """`--greedy --json` named a drawn `random_seed` for each sample, though a greedy sample draws nothing:
    any seed writes it, so the number named nothing. It is null; a sampled one beside it keeps its seed."""
    options = ["--seed", "the", "--length", "20", "--json"]
    greedy = [json.loads(line) for line in cli("sample", trained, *options, "--greedy").output.splitlines()]
    assert [o["random_seed"] for o in greedy] == [None], greedy
    seeded = cli("sample", trained, *options, "--greedy", "--num-samples", "2", "--random-seed", "5")
    assert [json.loads(line)["random_seed"] for line in seeded.output.splitlines()] == [None, None]
    sampled = cli("sample", trained, *options, "--num-samples", "2", "--random-seed", "5")
    assert [json.loads(line)["random_seed"] for line in sampled.output.splitlines()] == [5, 6]


def test_a_sample_kept_stop_line_break_ends_its_printed_line(trained, tmp_path):
    """`--stop '\\n\\n'` printed the kept stop and then a line break of its own: two blank lines after each
    sample. A sample that ends with a line break (its stop's) is printed as it is; one that does not gets one."""
    result = cli("sample", trained, "--seed", "the", "--length", "300", "--stop", "\\n", "--random-seed", "0")
    assert result.output.count("\n") == 1 and result.output.endswith("\n")  # one line, its stop the line break
    result = cli(
        "sample",
        trained,
        "--seed",
        "the",
        "--length",
        "300",
        "--stop",
        "\\n",
        "--num-samples",
        "2",
        "--random-seed",
        "0",
    )
    assert result.output.count("\n") == 4 and "\n\n" not in result.output, result.output  # two labels, two lines
    result = cli("sample", trained, "--seed", "the", "--length", "5", "--greedy")
    assert result.output.count("\n") == 1 and result.output.endswith("\n")  # a sample without one still ends its line


def test_a_stop_the_model_never_writes_is_said_as_typed_to_paste_back(trained):
    """The warning showed `--stop '\\nZ'` in Python's quoting; the shell's is the one a user pastes back."""
    result = cli("sample", trained, "--seed", "the", "--length", "5", "--greedy", "--stop", "\\nZ")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("warning: --stop $'\\nZ': the model never writes 'Z', so"), result.output


def test_sample_json_writes_chinese_as_text_not_escapes(tmp_path):
    """`--json > samples.jsonl` held "\\u5b9d\\u7389" for 宝玉: unreadable in `head` or an editor and
    twice the bytes; the text is now UTF-8, still one JSON object a line."""
    (tmp_path / "zh.txt").write_text("小猫在院子里晒太阳，小狗在门口睡觉。\n" * 30, encoding="utf-8")
    assert cli("train", "zh.txt", *TINY_ARGS, "--max-steps", "3", "--out", "zh").exit_code == 0
    result = cli(
        "sample", "zh", "--seed", "小猫", "--length", "30", "--num-samples", "2", "--json", "--output", "out.jsonl"
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and result.output.splitlines() == lines
    assert all(json.loads(line)["text"].startswith("小猫") and '"text": "小猫' in line for line in lines), lines
    assert not any("\\u" in line for line in lines), lines
    separated = {"text": "甲\u2028乙\u2029丙\x85丁\n"}  # str.splitlines breaks a line at each of these
    assert [json.loads(line) for line in json_line(separated).splitlines()] == [separated]


def test_ban_keeps_its_characters_out_of_every_sample(trained):
    """--ban is a logit_bias of -100 on each of its characters (\\n a line break): never written,
    greedy or sampled; one the model never writes is already banned (`--ban '0123456789'` on a model
    that knows a few digits was an error naming the others), and a warning says the ban changes nothing."""
    result = cli("sample", trained, "--seed", "the", "--length", "300", "--ban", "eo\\n", "--num-samples", "3",
                 "--random-seed", "1", "--json")  # fmt: skip
    texts = [json.loads(line)["text"][len("the") :] for line in result.output.splitlines()]
    assert len(texts) == 3 and all(len(t) == 300 and not set(t) & set("eo\n") for t in texts), result.output
    greedy = cli("sample", trained, "--seed", "the", "--length", "100", "--greedy", "--ban", "e o").output
    assert len(greedy) == len("the") + 100 + 1 and not set(greedy[len("the") : -1]) & set("e o"), greedy
    unknown = cli("sample", trained, "--seed", "the", "--length", "100", "--greedy", "--ban", "e o\u03a9").output
    assert unknown == "warning: --ban: the model never writes '\u03a9', so banning it changes nothing\n" + greedy
    # a decomposed 'é' (e and a combining acute, as a macOS terminal sends it) is one character, which
    # the fox never writes: it banned every 'e'
    drawn = ["sample", trained, "--seed", "the", "--length", "300", "--random-seed", "1"]
    plain = cli(*drawn).output
    accented = cli(*drawn, "--ban", "e\u0301").output
    warned = "warning: --ban: the model never writes '\u00e9', so banning it changes nothing\n"  # as NFC writes it
    assert "e" in plain[len("the") :] and accented == warned + plain, accented


def test_a_ban_of_half_width_punctuation_on_a_chinese_model_says_it_changes_nothing(tmp_path):
    """`--ban ','` on a novel that writes only '，' banned nothing and said nothing: the samples were
    full of '，'. The warning names --ban and the form the model writes."""
    (tmp_path / "zh.txt").write_text("小猫在院子里晒太阳，小狗在门口睡觉。\n" * 30, encoding="utf-8")
    assert cli("train", "zh.txt", *TINY_ARGS, "--max-steps", "3", "--out", "zh").exit_code == 0
    result = cli("sample", "--seed", "小猫", "--length", "5", "--ban", ",")
    assert result.exit_code == 0, result.output
    assert (
        "warning: --ban: the model never writes ',' (did you mean '，'?), so banning it changes nothing"
        in result.output
    )


def test_a_ban_that_cannot_be_used_names_ban_not_logit_bias(trained):
    """Every error a --ban user can meet named Python's `logit_bias`, which they never gave."""
    everything = "".join(checkpoint.load(trained).vocab.chars).replace("\n", "\\n")
    result = cli("sample", "--seed", "the", "--length", "5", "--ban", everything)
    assert_one_line_error(result, "--ban bans every token the model has; leave it at least one")
    assert "logit_bias" not in result.output
    result = cli("sample", "--template", "the _", "--ban", "h")
    assert_one_line_error(result, "--ban bans 'h', but --template must write it; leave it unbanned")
    assert "logit_bias" not in result.output
    result = cli("sample", "--interactive", "--ban", everything)
    assert_one_line_error(result, "--ban bans every token the model has")


@pytest.mark.parametrize(
    ("timeout", "fragment"),
    [
        ("0", "--peer-timeout must be positive, not '0' (give a duration such as 5m or 1h)"),  # told to use none
        ("none", "--peer-timeout needs a duration, such as 5m or 1h"),
        ("99999999999999999999h", "--peer-timeout must be at most 168h"),  # a traceback under torchrun
    ],
)
def test_a_peer_timeout_that_cannot_be_used_is_one_line(fox_file, timeout, fragment):
    assert_one_line_error(cli("train", str(fox_file), "--peer-timeout", timeout, *TINY_ARGS), fragment)


def test_resuming_a_run_whose_limit_is_spent_says_to_give_a_larger_one(trained):
    """It printed `done:` and exited 0 without training a step."""
    assert_one_line_error(
        cli("train", "--resume", trained), "has already trained 20 steps", "--max-steps 20; give a larger limit"
    )
    assert cli("train", "--resume", trained, "--max-steps", "25").exit_code == 0
    assert latest(trained).progress.step == 25


def test_a_limit_given_with_a_plus_is_refused_with_the_whole_runs_figure(trained, fox_file):
    """`--max-steps +10` on a run at step 20 was read as 10, and refused as already spent; `--max-time +10m`
    could not be read. Limits count the whole run: the refusal gives the figure for as much more."""
    elapsed = latest(trained).progress.elapsed
    steps = cli("train", "--resume", trained, "--max-steps", "+10")
    assert_one_line_error(
        steps, "--max-steps +10: limits count the whole run", "20 steps: for 10 more give --max-steps 30"
    )
    whole_time = round(elapsed) + 600
    figure = f"{whole_time // 60}m{whole_time % 60}s" if whole_time % 60 else f"{whole_time // 60}m"
    time = cli("train", "--resume", trained, "--max-time", "＋10m")  # an input method's plus too
    assert_one_line_error(time, "limits count the whole run", f"for 10m more give --max-time {figure}")
    new_run = cli("train", str(fox_file), "--out", "new", "--max-steps", "+5", *TINY_ARGS)
    assert_one_line_error(new_run, "--max-steps +5: limits count the whole run; give --max-steps 5")
    assert latest(trained).progress.step == 20


def test_sample_options_that_conflict_are_refused_not_ignored(trained, tmp_path):
    (tmp_path / "seed.txt").write_text("the quick ")
    assert_one_line_error(
        cli("sample", "--seed", "a", "--seed-file", "seed.txt"), "give --seed or --seed-file, not both"
    )
    for extra in (["--json"], ["--num-samples", "3"], ["--temperature", "0.5,1.0"], ["--seed", "the"]):
        assert_one_line_error(cli("sample", "--interactive", *extra), "--interactive writes one plain sample")
    assert_one_line_error(cli("sample", "--seed-file", "missing.txt"), "--seed-file missing.txt: ")


def test_greedy_with_a_temperature_top_k_or_top_p_is_refused_not_ignored(trained):
    """`--greedy --temperature 0.5,1.0` printed one greedy text twice, labeled `temperature 0.5` and
    `temperature 1.0`, and `--greedy --top-p 0.9` wrote what `--greedy` alone writes: greedy takes the
    likeliest character, whatever they say. What does act on it (a penalty, a ban) is still taken."""
    for extra in (["--temperature", "0.5,1.0"], ["--temperature", "0.5"], ["--top-k", "3"], ["--top-p", "0.9"]):
        assert_one_line_error(
            cli("sample", "--greedy", "--length", "5", *extra), f"--greedy takes the likeliest character, so {extra[0]}"
        )
    assert_one_line_error(
        cli("sample", "--greedy", "--top-k", "3", "--top-p", "0.9"), "so --top-k and --top-p change nothing"
    )
    assert cli("sample", "--greedy", "--length", "5", "--repetition-penalty", "1.2", "--ban", "e").exit_code == 0


def test_sample_takes_openai_presence_and_frequency_penalties(trained, tmp_path):
    """`charlm sample` had no presence or frequency penalty (OpenAI's, which the server now takes too):
    given, they write what charlm.generate writes with them, a negative one read as a number, and one
    outside OpenAI's -2 to 2 is one line naming the option. An untrained model whose state tells its seed
    (`state_telling`): the tiny run's text was the same where the CLI primed "he " for the seed "the "."""
    torch.manual_seed(0)
    model = state_telling(make_model(checkpoint.load(trained).vocab, hidden=32)).eval()
    run = str(run_of(model, tmp_path / "told"))
    options = {"seed": "the ", "length": 40, "random_seed": 3, "presence_penalty": 1.5, "frequency_penalty": -0.5}
    expected = sampler.generate(model, **options)[0]
    assert expected != sampler.generate(model, "the ", length=40, random_seed=3)[0]  # the penalties act
    result = cli("sample", run, *cli_args(options), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["text"] == expected
    for flag, value in (("--presence-penalty", "2.5"), ("--frequency-penalty", "-3")):
        assert_one_line_error(cli("sample", flag, value), f"{flag} must be between -2 and 2 (OpenAI's range), not")


def test_interactive_mode_through_a_pipe(trained):
    process = start_charlm("sample", "--interactive", "--length", "15", "--random-seed", "0", stdin=True)
    stdout, stderr = process.communicate("the quick\nover the\n", timeout=120)  # a process of its own, torch imported
    assert process.returncode == 0 and "Traceback" not in stderr
    lines = stdout.splitlines()
    assert len(lines) >= 2 and lines[0].startswith("the quick") and len(lines[0]) >= len("the quick")
    assert "over the" in stdout
    assert "> " not in stdout + stderr  # no prompt for piped input (README.md and README.zh.md say so)


def test_interactive_transcript_is_the_text_the_model_reads(trained):
    """The carried state is the printed transcript's. A model whose state tells the text (`state_telling`):
    the tiny run's final logits were the same where the first turn primed only its line's last character."""
    model = state_telling(checkpoint.load(trained))
    shown = []

    def emit(text: str, screen: bool = True) -> None:
        shown.append(text)

    conversation = converse(model, SampleConfig(length=15, random_seed=0), ["the quick\n", "over the\n"], emit)
    printed = "".join(shown)
    assert printed.startswith("the quick\n") and "\nover the\n" in printed
    transcript = printed.removesuffix("\n")  # the last line break ends the session: no turn reads it
    with torch.no_grad():  # the carried state is that of the printed text read in one pass
        logits, _ = model(model.vocab.encode(transcript).unsqueeze(0))
    assert torch.allclose(conversation.batch.logits[0], logits[0, -1], atol=1e-4)


def test_an_interactive_line_is_normalized_once():
    """Each typed line was encoded (so normalized) twice: once to check it, again to read it."""
    vocab = Counting("\n ,!你好", normalize="nfkc")
    lines = ["你好，\n", "好！\n"]
    conversation = converse(
        make_model(vocab, layers=1, hidden=8).eval(), SampleConfig(length=3), lines, lambda t, screen=True: None
    )
    assert vocab.counts == collections.Counter({"你好，\n": 1, "\n好！\n": 1})
    assert conversation.read == "\n好!\n"  # read as the model reads it


def test_an_interactive_transcript_and_echo_are_the_text_a_normalizing_model_read():
    """An nfkc model reads a typed "你好，" as "你好,": the transcript (and the echo of a piped line, and
    --output's copy) kept "，", a text the model never read, and it went on in half-width punctuation.
    Both are now what the model read, as `charlm sample` prints a seed."""
    vocab = Counting("\n ,!你好", normalize="nfkc")
    model = make_model(vocab, layers=1, hidden=8).eval()
    shown = []
    conversation = converse(
        model, SampleConfig(length=3, random_seed=0), ["你好，\n", "好！\n"], lambda t, screen=True: shown.append(t)
    )
    printed = "".join(shown)
    assert printed.startswith("你好,\n") and "\n好!\n" in printed and "，" not in printed + conversation.read


def test_an_interactive_line_the_model_cannot_read_is_skipped_not_the_end(trained, capsys):
    model = checkpoint.load(trained)
    shown = []
    conversation = converse(
        model,
        SampleConfig(length=5, random_seed=0),
        ["the\n", "zz\u20ac\n", "over\n"],
        lambda t, screen=True: shown.append(t),
    )
    assert "line 2 of the input: 1 character the model has never seen: '\u20ac'" in capsys.readouterr().err
    assert "\u20ac" not in "".join(shown) and "\nover\n" in "".join(shown) and conversation.read == "\nover\n"


def test_an_unreadable_line_is_told_as_a_terminal_or_a_pipe_can_act_on_it(trained, capsys):
    """From a pipe the message said "type it again", though nobody can retype a piped line: it is skipped."""
    model = checkpoint.load(trained)
    config, lines = SampleConfig(length=5, random_seed=0), ["the\n", "zz\u20ac\n", "over\n"]
    converse(model, config, lines, lambda t, screen=True: None)
    piped = capsys.readouterr().err
    assert piped.startswith("line 2 of the input: ") and piped.endswith("; skipped this line\n"), piped
    assert "again" not in piped
    converse(model, config, lines, lambda t, screen=True: None, at_terminal=True)
    typed = capsys.readouterr().err
    assert typed.startswith("the line: ") and typed.endswith("; type the line again\n"), typed


def test_an_interactive_line_in_another_encoding_is_skipped_not_a_traceback(trained):
    """Under a UTF-8 locale (stdin strict), a Latin-1 line piped in (or a byte a terminal sends) was a
    UnicodeDecodeError traceback that ended the session; it is that line's one-line error now. Its
    position is in the line: it counted the line break carried over from the line before (character 4)."""
    result = cli("sample", trained, "--interactive", "--length", "5", input=b"the\ncaf\xe9\nover\n")
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "line 2 of the input: byte 0xe9 at character 3 is not valid UTF-8" in result.output, result.output
    assert "\nover\n" in result.output


def test_an_acrostic_a_typed_line_breaks_says_to_type_it_with_the_acrostic(capsys):
    """It said "the text's poem begins verse 1 with '丁', not '春'; ... begin the text's verses with it, or
    end it before them for a new poem; type it again without them": no text or "them" a writer knows of."""
    from .test_forms import NEXT, VERSE, chinese_model

    config, typed = SampleConfig(form="五言绝句", acrostic="春夏秋冬", random_seed=0), VERSE + NEXT + "\n"
    converse(chinese_model(), config, [typed], lambda t, screen=True: None, at_terminal=True)
    assert capsys.readouterr().err == (
        f"acrostic 春夏秋冬: the line begins verse 1 of the poem with '{VERSE[0]}', not '春'; an acrostic is the "
        "whole poem's, the verses you write too: begin each with its character; type the line again\n"
    )


def test_the_rest_of_a_verse_typed_after_ctrl_c_goes_on_on_its_line():
    """With --form, Ctrl-C mid-verse then the verse's rest typed: the line break between the turns was kept,
    so the rest began a new poem. It waits for the next line now, and is left out where that goes on with
    the verse: in --output, on the screen and for the model alike."""
    from .test_forms import HAN, chinese_model

    config, copy = SampleConfig(form="五言绝句", random_seed=3), []

    def emit(text: str, screen: bool = True, file: bool = True) -> None:
        copy.append(text if file else "")
        if len(copy) == 3:  # the typed line, the cursor put back after it, the model's first character
            signal.raise_signal(signal.SIGINT)

    begun, rest = HAN[:5] + "，" + HAN[5:7], HAN[50:52] + "。"  # a verse and two characters; the line's last two
    conversation = converse(chinese_model(), config, [begun + "\n", rest + "\n"], emit, echo=False, at_terminal=True)
    text = "".join(copy)
    assert text.startswith(begun) and text[len(begun) + 1 :].startswith(rest), text  # one character of the model's
    assert template_of("五言绝句").fits(text.removesuffix("\n")) and conversation.read == rest + "\n", text


def test_interactive_lines_from_a_windows_file_are_read_as_a_corpus_is(trained, capsys):
    """Each `\r\n` line of a Windows file piped in was refused for its `\r`, which no model knows."""
    model = checkpoint.load(trained)
    shown = []
    conversation = converse(
        model, SampleConfig(length=5, random_seed=0), ["the\r\n", "over\r\n"], lambda t, screen=True: shown.append(t)
    )
    assert capsys.readouterr().err == ""
    assert "".join(shown).startswith("the\n") and conversation.read == "\nover\n"


def test_ctrl_c_while_the_model_writes_stops_that_continuation_not_the_session(trained):
    """Ctrl-C at a terminal ended the session (exit 130) and its state; it now stops the continuation at the
    next character, and the next line goes on from the text shown, read in one pass (a model whose state
    tells the text, as in the transcript's test above)."""
    model = state_telling(checkpoint.load(trained))
    free = "".join(sampler.Conversation(model, SampleConfig(length=12, random_seed=0)).turn("the\n"))
    config, shown = SampleConfig(length=100000, random_seed=0), []

    def emit(text: str, screen: bool = True) -> None:
        shown.append(text)
        if len(shown) in (1 + 5, 9 + 3):  # after the 5th piece of the first turn, the 3rd of the second
            signal.raise_signal(signal.SIGINT)  # the terminal's Ctrl-C

    try:
        conversation = converse(model, config, ["the\n", "over\n"], emit, at_terminal=True)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C while the model wrote ended the session")
    printed = "".join(shown)
    assert printed.startswith("the\n" + free[:5] + "\nover\n"), printed
    transcript = printed.removesuffix("\n")
    assert len(printed) < 30
    with torch.no_grad():  # the carried state is that of the printed text read in one pass
        logits, _ = model(model.vocab.encode(transcript).unsqueeze(0))
    assert torch.allclose(conversation.batch.logits[0], logits[0, -1], atol=1e-4)


def test_ctrl_c_before_the_models_first_character_stops_that_turn_not_the_session(trained):
    """Ctrl-C stopped the model only once it wrote: one sent just after Enter, while the line was read (on
    a busy machine, a visible moment), ended the session (130). It stops that turn now, the prompt back."""
    model = checkpoint.load(trained)
    config, shown = SampleConfig(length=20, random_seed=0), []

    def emit(text: str, screen: bool = True) -> None:
        if text.endswith("over\n"):  # the line read, the model not yet writing
            signal.raise_signal(signal.SIGINT)
        shown.append(text)

    try:
        converse(model, config, ["the\n", "over\n", "the end\n"], emit, at_terminal=True)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C before the model wrote ended the session")
    printed = "".join(shown)
    assert re.search("\nover\n.?\nthe end\n.{20}\n$", printed, re.DOTALL), printed  # one character, stopped


def test_interactive_ends_after_a_line_ctrl_d_sent_mid_line(trained):
    """At a terminal Ctrl-D mid-line (twice: once to send the line, once to end it) gives a line without
    its break; the model continued it, then the session waited for a third Ctrl-D to end."""
    model = checkpoint.load(trained)
    shown = []
    typed = iter(["the\n", "over", "never read\n"])  # what a terminal goes on giving after that line
    conversation = converse(model, SampleConfig(length=5, random_seed=0), typed, lambda t, screen=True: shown.append(t))
    assert conversation.read == "\nover" and "never read" not in "".join(shown)


class Terminal:
    """`charlm sample --interactive ARGS` in a pseudo-terminal, driven as a person does: type a line once the
    prompt is there, read the screen. It waits for what it means (a prompt, the model's turn), never for a
    quiet spell, which a loaded machine gives at any moment; each wait gives up after 60 s."""

    PROMPT = re.compile(rb"(?:^|\n)> ")  # the writer's turn: "> " at a line's start

    def __init__(self, *args: str):
        self.terminal, child = pty.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
        env |= {"LANG": "C", "TERM": "xterm"}  # Python makes LANG=C UTF-8; xterm moves the cursor
        # forked from a process that has imported torch (~1.5 s of CPU sooner), started as at the terminal
        command = ["-m", "sample", "--interactive", *args]
        self.process = forkserver.server(env, terminal=True).start(forkserver.CHARLM, command, env, terminal=child)
        os.close(child)
        self.screen = b""
        self.prompted = 0  # where on the screen the prompt typed at last ends: each is typed at once

    def read(self, seconds: float) -> bool:
        """What the process shows in the next `seconds`; False once it has closed the terminal."""
        end = time.time() + seconds
        while (left := end - time.time()) > 0:
            if select.select([self.terminal], [], [], left)[0]:
                try:
                    data = os.read(self.terminal, 4096)
                except OSError:  # EIO: the process closed the terminal
                    return False
                if not data:
                    return False
                self.screen += data
        return True

    def type(self, keys: bytes) -> None:
        """`keys` at the next prompt. The line editor shows it once it reads keys (readline takes the
        terminal out of line mode first), so they are shown once, after it; keys typed before it (after 3 s
        of a quiet screen while a loaded machine still loaded the model) were echoed before it too. The echo
        is drained as it comes (a long line would fill the terminal's buffer)."""
        deadline = time.time() + 60
        while (prompt := self.PROMPT.search(self.screen, self.prompted)) is None:
            assert self.read(0.05), f"ended before its prompt: {self.screen!r}"
            assert time.time() < deadline, f"no prompt: {self.screen!r}"
        self.prompted = prompt.end()
        for at in range(0, len(keys), 256):
            os.write(self.terminal, keys[at : at + 256])
            self.read(0.01)

    def writing(self) -> bool:
        """Whether the model has the turn: the terminal in line mode and not echoing (`keys_unechoed`)."""
        flags = termios.tcgetattr(self.terminal)[3]
        return bool(flags & termios.ICANON) and not flags & termios.ECHO

    def wait_for_more(self, size: int) -> None:
        """Until the model has the turn, then until the screen has grown by `size` bytes: a Ctrl-C sent
        then stops the model; one sent while the line editor still read the line ended the session."""
        deadline = time.time() + 60
        while not self.writing():
            assert self.read(0.01) and time.time() < deadline, self.screen
        target = len(self.screen) + size
        while len(self.screen) < target:
            assert self.read(0.05) and time.time() < deadline, self.screen

    def end(self) -> tuple[int, str]:
        """The exit status and the screen, once the process has closed the terminal."""
        deadline = time.time() + 60
        while self.read(1):
            if time.time() > deadline:
                self.process.kill()
                pytest.fail(f"still running: {self.screen!r}")
        os.close(self.terminal)
        return self.process.wait(timeout=60), self.screen.decode().replace("\r\n", "\n")

    def hang_up(self) -> int:
        """Close the terminal under the process, as a user closes its window (SIGHUP, its writes failing); its
        exit status."""
        os.close(self.terminal)
        return self.process.wait(timeout=60)


def test_interactive_in_a_terminal_shows_the_typed_line_once(trained, tmp_path):
    terminal = Terminal("--length", "15", "--random-seed", "0", "--output", "copy.txt")
    terminal.type(b"zebra quiz\n")
    terminal.type(b"\x04")  # Ctrl-D
    status, screen_text = terminal.end()
    assert status == 0, terminal.process.stderr.read()
    assert screen_text.count("zebra quiz") == 1, screen_text
    copy = (tmp_path / "copy.txt").read_text()  # the copy holds what the screen shows, less the prompts
    assert screen_text == f"> {copy}> \n" and copy.startswith("zebra quiz\n") and len(copy) == len("zebra quiz\n") + 16


def test_a_writer_sees_whose_turn_it_is_and_keys_typed_ahead_once(trained, tmp_path):
    """No prompt said when the writer's turn came; and keys typed while the model wrote showed twice: echoed
    amid the model's text, and again at the prompt. A "> " prompt now, never in the copy; typed ahead, once."""
    terminal = Terminal("--length", "100000", "--random-seed", "0", "--output", "copy.txt")
    terminal.type(b"the\n")
    terminal.wait_for_more(100)
    os.write(terminal.terminal, b"zebra")  # typed while the model writes
    terminal.wait_for_more(300)
    terminal.process.send_signal(signal.SIGINT)  # stops the model; the prompt comes back
    terminal.type(b" quiz\n")
    terminal.wait_for_more(100)
    terminal.process.send_signal(signal.SIGINT)
    terminal.type(b"\x04")
    status, screen = terminal.end()
    copy = (tmp_path / "copy.txt").read_text()
    assert status == 0 and screen.startswith("> the\n") and "\n> zebra quiz\n" in screen, screen
    assert screen.count("zebra") == 1 and screen.endswith("\n> \n"), screen
    assert copy.startswith("the\n") and "\nzebra quiz\n" in copy and "> " not in copy


def test_a_half_verse_typed_in_a_terminal_is_finished_on_its_line(tmp_path):
    """With --form, a half verse typed and sent with Enter began a new poem on the next line: the line break
    typed to send it was read as the poem's. The model finishes that verse now, after it on the screen."""
    from .test_forms import VERSE, chinese_model

    run_of(chinese_model(), tmp_path / "poems")
    terminal = Terminal(str(tmp_path / "poems"), "--form", "五言绝句", "--random-seed", "0", "--output", "copy.txt")
    fcntl.ioctl(terminal.terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns
    typed = VERSE + "七丄"  # a verse and two characters of the next
    terminal.type(typed.encode() + b"\n")
    terminal.type(b"\x04")
    status, screen = terminal.end()
    copy = (tmp_path / "copy.txt").read_text()
    assert status == 0 and copy.startswith(typed) and template_of("五言绝句").fits(copy.removesuffix("\n")), copy
    assert screen.startswith(f"> {typed}\n\x1b[1F\x1b[J> {copy}"), screen  # back on the typed line


def shown_lines(screen: str) -> list[str]:
    """The lines a terminal shows of `screen` (each shorter than the terminal is wide), after the one cursor
    move charlm makes (`back_after`: up N lines to the first's start, the rest cleared). Any other escape
    code fails the test: this reading would not know what it shows."""
    lines, row = [""], 0
    for part in re.split(r"(\x1b\[\d+F\x1b\[J)", screen):
        if part.startswith("\x1b"):
            row -= int(part[2:].split("F")[0])
            assert row >= 0, screen
            lines[row:] = [""]
            continue
        assert "\x1b" not in part and "\r" not in part, part
        first, *rest = part.split("\n")
        lines[row] += first
        lines += rest
        row += len(rest)
    return lines


def test_the_rest_of_a_verse_typed_after_a_stop_goes_on_on_its_line_on_the_screen(tmp_path):
    """With --form, a turn stopped mid-verse (Ctrl-C, or --length, which stops it at the same character
    every time, where a Ctrl-C lands where the model has got to) and the verse's rest typed: the rest is
    the verse's (test_the_rest_of_a_verse_typed_after_ctrl_c_goes_on_on_its_line), and the screen shows it
    so: one line, the verse whole after one prompt, no line break inside; the screen as --output's copy."""
    from .test_forms import HAN, chinese_model

    run_of(chinese_model(), tmp_path / "poems")
    args = ["--form", "五言绝句", "--length", "1", "--random-seed", "3", "--output", "copy.txt"]
    terminal = Terminal(str(tmp_path / "poems"), *args)
    fcntl.ioctl(terminal.terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns
    begun, rest = HAN[:5] + "，" + HAN[5:7], HAN[50:52] + "。"  # two characters of the verse; its last two
    terminal.type(begun.encode() + b"\n")  # the model writes one character: the verse's third
    terminal.type(rest.encode() + b"\n")
    terminal.type(b"\x04")
    status, screen = terminal.end()
    copy = (tmp_path / "copy.txt").read_text()
    verse, *after = copy.removesuffix("\n").split("\n")
    assert status == 0 and verse == begun + verse[len(begun)] + rest and len(after) == 1, copy
    assert shown_lines(screen) == [f"> {verse}", *after, "> ", ""], screen


def test_co_writing_at_a_terminal_edits_lines_and_ctrl_c_stops_only_the_model(trained, tmp_path):
    """A writer at a terminal: the arrow keys typed escape codes, which the model refused ('\\x1b' never
    seen), backspace over a Chinese character too; a pasted line past the terminal's 4,095 bytes lost
    its end; and Ctrl-C while the model wrote ended the session. It stops that continuation now, the
    prompt back and the session going on; Ctrl-C at the prompt ends it (130), the copy whole."""
    terminal = Terminal("--length", "100000", "--random-seed", "0", "--output", "copy.txt")
    terminal.type("床\x7fthe quik\x1b[Dc\x1b[C\n".encode())  # 床 rubbed out; left arrow, c, right arrow
    terminal.wait_for_more(200)
    terminal.process.send_signal(signal.SIGINT)  # the terminal's Ctrl-C
    pasted = "the lazy dog " * 400
    terminal.type(pasted.encode() + b"\n")
    terminal.wait_for_more(len(pasted) + 200)
    terminal.process.send_signal(signal.SIGINT)
    terminal.type(b"")
    terminal.process.send_signal(signal.SIGINT)  # at the prompt
    status, screen = terminal.end()
    errors = terminal.process.stderr.read().decode()
    assert status == 130 and "never seen" not in errors and "Traceback" not in errors, errors
    copy = (tmp_path / "copy.txt").read_text()
    assert copy.startswith("the quick\n") and f"\n{pasted}\n" in copy, copy[:200]
    assert len(copy) < 50000 and copy.endswith("\n")  # both continuations stopped, each ended by a line break
    first = copy[len("the quick\n") : copy.index(pasted) - 1]
    assert first and first in screen  # shown as written


def test_a_reader_closing_the_pipe_early_is_not_an_error(trained):
    """And the sample ends there: written on into /dev/null (`console.outlive_readers`), a long one took
    its whole time with no one reading it (10 million characters: half an hour)."""
    process = start_charlm("sample", "--length", "10000000")  # a process of its own, torch imported
    assert process.stdout.read(100)  # like `charlm sample | head -c 100`
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == b""


def signalled_at_step(monkeypatch, step: int, *signums: int) -> None:
    """Training sends this process `signums`, as a terminal's keys would, as it starts step `step`."""
    real_step = train_state.train_step

    def step_then_signals(state, share):
        if state.progress.step == step:
            for signum in signums:
                os.kill(os.getpid(), signum)
        return real_step(state, share)

    monkeypatch.setattr(train_state, "train_step", step_then_signals)


def no_room(contents: dict, before_rename=None) -> None:
    """A full disk, to `files.replace_files`: no checkpoint file is written."""
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_run_stopped_by_a_signal_saves_and_exits_with_the_shells_status(fox_file, monkeypatch, signum):
    """A script must tell an interrupted run from a finished one: 130 for Ctrl-C, 143 for SIGTERM."""
    signalled_at_step(monkeypatch, 5, signum)
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, "--max-steps", "1000")
    assert result.exit_code == 128 + signum, result.output
    assert "stopped at step 6" in result.output and "charlm train --resume" in result.output
    assert checkpoint.read(runs.resolve("run", prefer=runs.LATEST)).progress.step == 6


@pytest.mark.parametrize("saved", [True, False])
def test_the_stop_line_says_what_the_run_folder_holds_and_how_to_go_on(fox_file, monkeypatch, saved):
    """The stop line said `Resume with: charlm train --resume RUN` of a run whose every save had failed
    (--save-errors warn), a resume that is refused: a folder without a checkpoint is trained again. It words
    what the folder holds as the second Ctrl-C's line and charlm.train's do."""
    options = ["--max-steps", "1000", "--save-errors", "warn"]
    with monkeypatch.context() as disk:
        if not saved:
            disk.setattr("charlm.files.replace_files", no_room)
        signalled_at_step(disk, 5, signal.SIGINT)
        result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, *options)
    assert result.exit_code == 130, result.output
    ended = result.stdout.splitlines()[-1]
    if saved:
        assert (
            ended
            == "stopped at step 6; checkpoints/run holds step 6: resume with charlm train --resume checkpoints/run"
        )
    else:
        assert ended.startswith("stopped at step 6; not saved: the last checkpoint could not be written (")
        assert ended.endswith("; nothing was saved: train again (--out checkpoints/run is still free)"), ended
        again = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, "--max-steps", "3")  # as it says, with room
        assert again.exit_code == 0, again.output


@pytest.mark.parametrize("at_step", [19, 25])  # the stop lands on step 20's evaluation; between evaluations
def test_a_stops_failed_save_is_said_once_and_as_a_stop(fox_file, monkeypatch, at_step):
    """Under --save-errors warn a full disk's stop warned `training goes on` of a run that stopped, twice
    (the save before the scoring, then after it), and a stop on an evaluation step whose save failed said
    `scoring the held-out text and saving` after the scoring and the failed save, when nothing more was scored or
    saved. Each stop says so once, as its scoring starts, and its failed save is warned as a stop's."""
    monkeypatch.setattr("charlm.files.replace_files", no_room)
    signalled_at_step(monkeypatch, at_step, signal.SIGINT)
    said = [arg for arg in TINY_ARGS if arg != "--quiet"]
    options = ["--eval-every", "20", "--max-steps", "1000", "--save-errors", "warn"]
    result = cli("train", str(fox_file), "--out", "run", *said, *options)
    assert result.exit_code == 130, result.output
    step = at_step + 1
    lines = result.stderr.splitlines()  # a line said below the progress bar starts where the bar ends
    warned = [line[line.index("warning: ") :] for line in lines if "could not write checkpoint" in line]
    stop_warnings = [line for line in warned if "training goes on" not in line]  # step 20's goes on, if before
    assert stop_warnings == warned[-1:], result.stderr
    assert warned[-1].endswith("; the run stops without this step's checkpoint (--save-errors warn)"), warned
    assert warned[-1].startswith("warning: checkpoints/run/best.pt: could not write checkpoint (No space left")
    stopping = [line[line.index("stopping at step") :] for line in lines if "stopping at step" in line]
    again = "Ctrl-C again stops at once, keeping nothing"
    assert stopping == [f"stopping at step {step}: scoring the held-out text and saving; {again}"], result.stderr
    assert result.stderr.index(stopping[0]) < result.stderr.index(warned[-1])  # said before the scoring's save
    assert result.stdout.splitlines()[-1].startswith(f"stopped at step {step}; not saved: the last checkpoint")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_says_at_once_that_the_run_scores_and_saves_before_it_ends(fox_file, monkeypatch, signum):
    """After Ctrl-C the run scores its held-out text and saves, which on a busy machine took 15 s in
    silence: a user pressed Ctrl-C again and lost the steps since the last checkpoint. It says so at once,
    and, for Ctrl-C, what a second one keeps."""
    signalled_at_step(monkeypatch, 25, signum)
    said = [arg for arg in TINY_ARGS if arg != "--quiet"]  # --quiet keeps it unsaid, as the bars
    result = cli("train", str(fox_file), "--out", "run", *said, "--eval-every", "20", "--max-steps", "1000")
    assert result.exit_code == 128 + signum, result.output
    stopping = [line for line in result.stderr.splitlines() if line.startswith("stopping at step 26")]
    assert len(stopping) == 1, result.stderr
    again = "; Ctrl-C again stops at once, keeping it" if signum == signal.SIGINT else ""
    assert stopping[0] == f"stopping at step 26: saved it (checkpoints/run); scoring the held-out text{again}"
    assert "stopped at step 26" in result.stdout


@pytest.mark.parametrize("at_step", [5, 30])
def test_a_second_ctrl_c_says_what_the_run_folder_holds(fox_file, monkeypatch, at_step):
    """Two quick Ctrl-Cs stop at once; before the first checkpoint it said "checkpoints already written
    are intact" when none had been written."""
    signalled_at_step(monkeypatch, at_step, signal.SIGINT, signal.SIGINT)
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, "--eval-every", "20", "--max-steps", "1000")
    assert result.exit_code == 130, result.output
    if at_step < 20:
        assert result.output.endswith(
            "interrupted; nothing was saved: train again (--out checkpoints/run is still free)\n"
        )
    else:
        assert "checkpoints/run holds step 20: resume with charlm train --resume checkpoints/run" in result.output


def test_a_second_ctrl_c_while_the_stop_scores_keeps_the_stop_step(fox_file, monkeypatch):
    """The stop scored its held-out text before it saved: a second Ctrl-C meanwhile (the scoring takes a big
    model tens of seconds) kept step 20, losing the steps since. latest.pt is written first, and kept."""
    ctrl_c_as_the_stop_scores(monkeypatch)
    signalled_at_step(monkeypatch, 25, signal.SIGINT)
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, "--eval-every", "20", "--max-steps", "1000")
    assert result.exit_code == 130, result.output
    assert result.stdout.splitlines()[-1].startswith("interrupted; checkpoints/run holds step 26: resume with")
    assert checkpoint.read(runs.resolve("run", prefer=runs.LATEST)).progress.step == 26


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_as_the_last_step_scores_off_its_cadence_stops_the_command(fox_file, monkeypatch, signum):
    """A Ctrl-C as a run's last step (13, off its --eval-every 10) was scored was lost: `done: step 13`, exit 0, and
    a script went on as if no one had asked it to stop. It stops as a Ctrl-C at step 20, scored on its cadence, does,
    in the words a resume of the spent run refuses with: "nothing is left to train" left out the larger limit. A
    scheduler's SIGTERM there stops it alike, with its own status."""
    signalled_in_a_scoring(monkeypatch, signum)
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, "--eval-every", "10", "--max-steps", "13")
    assert result.exit_code == 128 + signum, result.output
    assert (
        result.stdout.splitlines()[-1]
        == "stopped at step 13; checkpoints/run holds step 13, the run's last: nothing to train; give a larger limit "
        "to go on"
    )
    resumed = cli("train", "--resume", "run")
    assert resumed.exit_code == 1 and "; give a larger limit to go on" in resumed.output, resumed.output
    assert checkpoint.read(runs.resolve("run", prefer=runs.LATEST)).progress.val_step == 13


def test_a_ctrl_c_as_an_evaluation_scores_is_said_then_and_stops_at_that_step(fox_file, monkeypatch):
    """A Ctrl-C as step 10 was scored, on its --eval-every, went unsaid while the scoring lasted (tens of seconds for
    a big model: the silence invites a second press), then trained step 11, scored it too and stopped there. It
    is said as the scoring hears it, once, and the run stops at the step it scored and saves."""
    signalled_in_a_scoring(monkeypatch, signal.SIGINT, nth=1)
    said = [arg for arg in TINY_ARGS if arg != "--quiet"]
    result = cli("train", str(fox_file), "--out", "run", *said, "--eval-every", "10", "--max-steps", "1000")
    assert result.exit_code == 130, result.output
    stopping = [line[line.index("stopping at step") :] for line in result.stderr.splitlines() if "stopping at" in line]
    again = "Ctrl-C again stops at once, keeping nothing"
    assert stopping == [f"stopping at step 10: scoring the held-out text and saving; {again}"], result.stderr
    assert result.stdout.splitlines()[-1] == (
        "stopped at step 10; checkpoints/run holds step 10: resume with charlm train --resume checkpoints/run"
    )
    assert latest("run").progress.step == 10


def test_a_resume_finishes_the_last_steps_scoring_a_second_ctrl_c_cut_short(fox_file, monkeypatch):
    """A second Ctrl-C as a run's last step (13, off its --eval-every 10) was scored kept the step unscored, and
    the stop line's `charlm eval RUN` scored best.pt (step 10) and finished nothing; `--resume RUN` said there was
    nothing to train. The stop line advises the resume, which scores step 13 (nothing trained), logs it,
    keeps it in best.pt where better, and ends as a finished run does."""
    signalled_at_step(monkeypatch, 12, signal.SIGINT)
    ctrl_c_as_the_stop_scores(monkeypatch)
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, "--eval-every", "10", "--max-steps", "13")
    assert result.exit_code == 130, result.output
    assert result.stdout.splitlines()[-1] == (
        "interrupted; checkpoints/run holds step 13, the run's last, its score not finished: resume with "
        "charlm train --resume checkpoints/run to score it"
    )
    # better than step 10's: best.pt takes it
    monkeypatch.setattr(trainer, "bits_per_char", lambda *args, **kwargs: 1.5)
    resumed = cli("train", "--resume", "run")
    assert resumed.exit_code == 0, resumed.output
    assert "done: step 13, 0s, validation 1.500 bpc (best 1.500); saved in checkpoints/run" in resumed.stdout
    assert latest("run").progress.val_step == 13 and checkpoint.read(runs.resolve("run")).progress.step == 13
    row = runs.read_metrics(Path("checkpoints/run"))[-1]
    assert (row["step"], row["val_bpc"]) == (13, 1.5)
    assert row["train_bpc"] is None and row["chars_per_s"] is None  # no step trained: no speed of 0 chars/s drawn
    again = cli("train", "--resume", "run")
    assert again.exit_code == 1 and "; give a larger limit to go on" in again.output, again.output


def test_a_resume_at_a_new_path_that_scores_the_last_step_says_it_recorded_the_path(fox_file, monkeypatch):
    """A resume naming the run's text at a new path, of a run whose last step a second Ctrl-C left unscored, said it
    scored it but not that it recorded the path, which a resume of a finished run says."""
    signalled_at_step(monkeypatch, 12, signal.SIGINT)
    ctrl_c_as_the_stop_scores(monkeypatch)
    options = ["--eval-every", "10", "--max-steps", "13"]
    assert cli("train", str(fox_file), "--out", "run", *TINY_ARGS, *options).exit_code == 130
    moved = fox_file.rename(fox_file.with_name("moved.txt"))
    resumed = cli("train", str(moved), "--resume", "run")
    assert resumed.exit_code == 0, resumed.output
    assert f"its score not finished: nothing to train; its text's path is recorded ({moved})" in resumed.stderr
    assert latest("run").progress.val_step == 13


def test_ctrl_c_at_the_step_where_patience_runs_out_says_how_the_run_trains_on(fox_file, monkeypatch):
    """A Ctrl-C as step 20's evaluation ran out of --patience 1 said `resume with charlm train --resume RUN`: a resume
    that trains nothing, --patience spent. The stop line says so, and how to train on, in the resume's words."""
    scores = itertools.chain([3.0], itertools.repeat(3.5))
    monkeypatch.setattr(trainer, "bits_per_char", lambda *args, **kwargs: next(scores))
    signalled_at_step(monkeypatch, 19, signal.SIGINT)
    options = ["--eval-every", "10", "--patience", "1", "--max-steps", "1000"]
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, *options)
    assert result.exit_code == 130, result.output
    train_on = "to train on, resume with --patience 0 or a --patience above 1"
    assert result.stdout.splitlines()[-1] == (
        f"stopped at step 20; checkpoints/run holds step 20, where --patience ran out: nothing to train; {train_on}"
    )
    resumed = cli("train", "--resume", "run")
    assert train_on in resumed.output and latest("run").progress.step == 20, resumed.output
    assert cli("train", "--resume", "run", "--patience", "0", "--max-steps", "22").exit_code == 0
    assert latest("run").progress.step == 22


def test_ctrl_c_where_patience_and_the_step_limit_run_out_at_once_says_both_are_to_be_raised(fox_file, monkeypatch):
    """A Ctrl-C at step 20, the last of --max-steps 20, whose evaluation ran out of --patience 1 too, said `give a
    larger limit to go on`: a resume with a larger limit then refused on --patience. It says both, and does."""
    scores = itertools.chain([3.0], itertools.repeat(3.5))
    monkeypatch.setattr(trainer, "bits_per_char", lambda *args, **kwargs: next(scores))
    signalled_at_step(monkeypatch, 19, signal.SIGINT)
    options, limit = ["--eval-every", "10", "--patience", "1", "--max-steps", "20"], ["--max-steps", "22"]
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, *options)
    assert result.exit_code == 130, result.output
    train_on = "to train on, resume with a larger limit and --patience 0 or a --patience above 1"
    assert result.stdout.splitlines()[-1] == (
        f"stopped at step 20; checkpoints/run holds step 20, the run's last, where --patience ran out: nothing to "
        f"train; {train_on}"
    )
    limit_raised, patience_raised = (
        cli("train", "--resume", "run", *raised) for raised in (limit, ["--patience", "0"])
    )
    assert "to train on, resume with --patience 0 or a --patience above 1" in limit_raised.output, limit_raised.output
    assert "; give a larger limit to go on" in patience_raised.output, patience_raised.output
    assert latest("run").progress.step == 20
    assert cli("train", "--resume", "run", *limit, "--patience", "0").exit_code == 0
    assert latest("run").progress.step == 22


def test_a_resume_of_a_run_whose_limit_and_patience_ran_out_at_once_says_both_are_to_be_raised(fox_file, monkeypatch):
    """A run whose --patience 1 ran out at step 20, the last of its --max-steps 20: a plain resume was refused with
    `give a larger limit to go on`, and a resume with one then refused on --patience. Refused, or taken up to record
    its text's path, it says both, in the words the stop line uses."""
    scores = itertools.chain([3.0], itertools.repeat(3.5))
    monkeypatch.setattr(trainer, "bits_per_char", lambda *args, **kwargs: next(scores))
    options = ["--eval-every", "10", "--patience", "1", "--max-steps", "20"]
    assert cli("train", str(fox_file), "--out", "run", *TINY_ARGS, *options).exit_code == 0
    train_on = "; to train on, resume with a larger limit and --patience 0 or a --patience above 1"
    assert_one_line_error(cli("train", "--resume", "run"), "has already trained 20 steps", "--max-steps 20", train_on)
    text_given = cli("train", str(fox_file), "--resume", "run")
    said_why = [line for line in text_given.output.splitlines() if ": nothing to train; " in line]
    assert len(said_why) == 1 and said_why[0].endswith(train_on), text_given.output
    assert_one_line_error(cli("train", "--resume", "run", "--patience", "0"), "; give a larger limit to go on")
    assert latest("run").progress.step == 20


def test_a_second_ctrl_c_after_the_stops_save_failed_says_it_was_not_saved(fox_file, monkeypatch):
    """Under --save-errors warn the stop's save before the scoring failed (its warning waits for the scoring's
    end), and a second Ctrl-C meanwhile ended `interrupted; RUN holds step 20` without a word of the stop's
    step not saved, or why. It says so, as the stop line would have."""
    disk_full_once_saved(monkeypatch, Path("checkpoints/run"))
    ctrl_c_as_the_stop_scores(monkeypatch)
    signalled_at_step(monkeypatch, 25, signal.SIGINT)
    options = ["--eval-every", "20", "--max-steps", "1000", "--save-errors", "warn"]
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, *options)
    assert result.exit_code == 130, result.output
    ended = result.stdout.splitlines()[-1]
    assert ended.startswith("interrupted; not saved: the last checkpoint could not be written (checkpoints/run/"), ended
    assert ended.endswith("; checkpoints/run holds step 20: resume with charlm train --resume checkpoints/run"), ended
    assert checkpoint.read(runs.resolve("run", prefer=runs.LATEST)).progress.step == 20


@pytest.mark.parametrize("when", ["before training", "second Ctrl-C"])
def test_every_line_a_stopped_run_ends_with_is_on_stdout_as_the_done_line_is(fox_file, monkeypatch, when):
    """`stopped at step N; RUN holds step N: resume with ...` went to stdout, where a script reads the run's
    outcome (docs/scaling.md), but a second Ctrl-C's `interrupted; RUN holds step N: resume with ...`, and the line of one before training
    started, went to stderr: a script that read stdout got no resume command. The lines under the bar
    (`stopping at step N: scoring ...`) are the bar's, on stderr."""

    def interrupted_while_planned(*args):
        raise KeyboardInterrupt

    if when == "before training":
        monkeypatch.setattr(api, "start_trainer", interrupted_while_planned)
        ended = "interrupted before training started"
    else:
        signalled_at_step(monkeypatch, 25, signal.SIGINT, signal.SIGINT)
        ended = "interrupted; checkpoints/run holds step 20: resume with charlm train --resume checkpoints/run"
    said = [arg for arg in TINY_ARGS if arg != "--quiet"]
    result = cli("train", str(fox_file), "--out", "run", *said, "--eval-every", "20", "--max-steps", "1000")
    assert result.exit_code == 130, result.output
    assert result.stdout.splitlines()[-1].startswith(ended), result.stdout
    assert ended not in result.stderr and "stopped at step" not in result.stderr
    assert all(line.startswith("stopping at step 26") for line in result.stderr.splitlines() if "stop" in line)


def test_ctrl_c_on_a_server_says_nothing_of_checkpoints(monkeypatch):
    def interrupted(targets, config):
        raise KeyboardInterrupt

    from charlm import serve as serve_package

    monkeypatch.setattr(serve_package, "serve", interrupted)  # what the command imports when it runs
    result = cli("serve")
    assert result.exit_code == 130 and "checkpoint" not in result.output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_keeps_what_several_samples_had_made(trained, tmp_path, monkeypatch, as_json, signum):
    """`--num-samples` and `--json` print each sample whole, once made: Ctrl-C threw away everything made
    so far, minutes of it for long samples. What was made is printed (and copied), and it exits 130.
    SIGTERM (`charlm.__main__`'s handler) still threw it all away, and emptied --output's file."""
    from charlm import sampler
    from charlm.__main__ import leave_unwinding

    made = sampler.steps_inside

    def interrupted(batch):
        yield from itertools.islice(made(batch), 5)
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(sampler, "steps_inside", interrupted)
    extra = ["--json"] if as_json else []
    previous = signal.signal(signal.SIGTERM, leave_unwinding)
    try:
        result = cli(
            "sample", "--seed", "the", "--num-samples", "2", "--random-seed", "3", "--output", "so.txt", *extra
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 128 + signum and "Traceback" not in result.output
    if as_json:
        texts = [json.loads(line)["text"] for line in result.output.splitlines()]
    else:
        texts = [line for line in result.output.splitlines() if not line.startswith("--- sample")]
    assert [len(text) for text in texts] == [3 + 5, 3 + 5] and all(text.startswith("the") for text in texts)
    assert (tmp_path / "so.txt").read_text(encoding="utf-8") == result.output


@pytest.mark.parametrize("earlier", [None, "the earlier sample\n"], ids=["new", "replaced"])
def test_a_sample_whose_terminal_is_closed_keeps_what_it_made_in_its_output(trained, tmp_path, earlier):
    """A closed terminal (SIGHUP) killed `charlm sample --output`: a new file lost the text still buffered
    (none of 2,000 shown kept), an earlier file kept its old text, the new one lost, and a
    temporary file as big beside it. It now ends as on SIGTERM, status 129, the file holding what was made."""
    output = tmp_path / "so.txt"
    if earlier is not None:
        output.write_text(earlier, encoding="utf-8")
    args = ["-m", "sample", trained, "--length", "2000000", "--output", "so.txt"]
    status, screen = forkserver.hung_up(forkserver.CHARLM, args, lambda shown: len(shown) > 2000)
    shown = screen.decode().replace("\r\n", "\n")[:-1]  # the last character may be in flight, or half a line break
    assert [path.name for path in tmp_path.glob("*so.txt*")] == ["so.txt"]
    assert output.read_text(encoding="utf-8").startswith(shown)
    assert status == 128 + signal.SIGHUP


@pytest.mark.parametrize("at", ["writing", "prompt"])
def test_co_writing_whose_terminal_is_closed_keeps_its_transcript_in_its_output(trained, tmp_path, at):
    """A closed terminal (SIGHUP) while the model wrote a continuation: giving the terminal its echo back
    failed (it is gone), a termios.error traceback and exit 1, and --output kept its earlier text, the
    transcript lost. It now ends as at the prompt, as on SIGTERM: status 129, the transcript in --output."""
    (tmp_path / "copy.txt").write_text("earlier\n", encoding="utf-8")
    length = "100000" if at == "writing" else "5"
    terminal = Terminal("--length", length, "--random-seed", "0", "--output", "copy.txt")
    terminal.type(b"the\n")
    if at == "writing":
        terminal.wait_for_more(300)
    else:
        terminal.type(b"")  # at the next prompt
    screen = terminal.screen.decode().replace("\r\n", "\n")
    shown = screen.removeprefix("> ").removesuffix("> ")[:-1]  # the last character may be in flight
    status = terminal.hang_up()
    errors = terminal.process.stderr.read().decode()
    assert status == 128 + signal.SIGHUP and "Traceback" not in errors, errors
    copy = (tmp_path / "copy.txt").read_text(encoding="utf-8")
    assert copy.startswith("the\n") and copy.startswith(shown), copy[:200]
    assert [path.name for path in tmp_path.glob("*copy.txt*")] == ["copy.txt"]


# Run before `python -m charlm`: a page's write stalls once its text is in its temporary file, saying so.
STALLED_MID_WRITE = """
import time
from charlm import files
def stalled(fd):
    print("writing", flush=True)
    time.sleep(60)
files.sync_file = stalled
"""


@pytest.mark.parametrize(
    ("command", "output"), [("export html", "page.html"), ("inspect", "page.html"), ("plot", "page.png")]
)
def test_a_page_whose_terminal_is_closed_mid_write_leaves_no_temporary(trained, fox_file, tmp_path, command, output):
    """A closed terminal (SIGHUP) killed an export, inspect or plot writing its page (or picture), leaving a
    temporary file as big beside it. It now unwinds as on SIGTERM, status 129: the temporary removed, no page written."""
    args = [*OUTPUT_COMMANDS[command], output]
    status, _ = forkserver.hung_up(
        STALLED_MID_WRITE + forkserver.CHARLM, ["-m", *args], lambda shown: b"writing" in shown
    )
    assert [path.name for path in tmp_path.glob("*page.*")] == []
    assert status == 128 + signal.SIGHUP


# Run before `python -m charlm`: a corpus's preparation stalls once its private cache folder is written, saying so.
STALLED_PUBLISHING = """
import time
from charlm import tokens
def stalled(*args):
    print("publishing", flush=True)
    time.sleep(60)
tokens.publish = stalled
"""


def test_a_corpus_preparation_whose_terminal_is_closed_leaves_no_private_folder(fox_file, tmp_path):
    """A closed terminal (SIGHUP) killed `charlm corpus prepare` (eval's and inspect's of a run's text too),
    leaving its private cache folder, the corpus encoded, until the next preparation. It now unwinds as on
    SIGTERM, status 129: the folder removed."""
    args = ["-m", "corpus", "prepare", "fox.txt"]
    status, _ = forkserver.hung_up(STALLED_PUBLISHING + forkserver.CHARLM, args, lambda shown: b"publishing" in shown)
    assert list((tmp_path / "corpora" / "cache").iterdir()) == []
    assert status == 128 + signal.SIGHUP


# `python -m charlm ARGS` whose last atexit callback (run as the interpreter shuts down, after the command) is
# where the signal SIGNUM lands: a Ctrl-C, or a kill, as the command ends.
SIGNALLED_AT_EXIT = """
import atexit, os, signal, sys, time
signum = int(sys.argv.pop(1))
atexit.register(lambda: (os.kill(os.getpid(), signum), time.sleep(2)))
from charlm.__main__ import main
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_as_a_command_ends_exits_with_its_status_and_no_traceback(tmp_path, signum):
    """Ctrl-C or SIGTERM landing as the interpreter shut down after a command (torch's atexit finalizers)
    printed "Exception ignored in atexit callback", a traceback and KeyboardInterrupt (or SystemExit: 143),
    and exited as though no signal came (2 of 10 commands signalled at random in their first second).
    The command is done: it exits at once with the shell's status for the signal, its output written."""
    env = {**os.environ, "PYTHONPATH": str(Path(cli_module.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", SIGNALLED_AT_EXIT, str(int(signum)), "runs", "--help"],
        check=False, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (128 + signum, "")
    assert result.stdout.startswith("Usage: ") and "--root" in result.stdout


OUTPUT_COMMANDS = {
    "export html": ["export", "fox", "--format", "html", "--output"],
    "export onnx": ["export", "fox", "--format", "onnx", "--output"],
    "sample": ["sample", "--checkpoint", "fox", "--length", "5", "--output"],
    "inspect": ["inspect", "fox", "fox.txt", "--quiet", "--output"],
    "plot": ["plot", "fox", "--output"],
}


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
@pytest.mark.parametrize("target", ["checkpoints/fox/best.pt", "copy.png", "checkpoints/fox/run.json", "record.png"])
def test_no_output_overwrites_a_checkpoint_or_a_runs_record(trained, tmp_path, command, target):
    """`charlm export RUN --format html --output checkpoints/RUN/best.pt` replaced the run's weights
    with a page and said `wrote`; every command's --output could. So could a link to a run's record
    (record.png -> run.json): sample wrote through it over the run's run.json."""
    (tmp_path / "copy.png").write_bytes((tmp_path / "checkpoints/fox/best.pt").read_bytes())  # a checkpoint by any name
    (tmp_path / "record.png").symlink_to("checkpoints/fox/run.json")  # a run's record by a link's name
    kept = (tmp_path / target).read_bytes()
    what = "is a record of the run" if target.endswith(".json") else "is a charlm checkpoint"
    if target == "record.png":
        what = "links to a record of the run"
    if command == "plot" and not target.endswith(".png"):
        what = "charlm plot writes a PNG"
    assert_one_line_error(cli(*OUTPUT_COMMANDS[command], target), f"--output {target}: {what}")
    assert (tmp_path / target).read_bytes() == kept


@pytest.mark.parametrize("command", [*OUTPUT_COMMANDS, "export safetensors"])
def test_an_empty_output_is_refused_not_ignored(trained, tmp_path, command):
    """`charlm sample --output "$FILE"` with FILE unset wrote the sample to the screen only and said nothing:
    the copy the writer asked for was never made. An export went to the run's exports/ and said so,
    and plot said `--output : charlm plot writes a PNG`."""
    args = OUTPUT_COMMANDS.get(command) or ["export", "fox", "--format", "safetensors", "--output"]
    kind = "folder" if command == "export safetensors" else "file"
    assert_one_line_error(cli(*args, ""), f"--output is empty; give a {kind} name")
    assert not (tmp_path / "checkpoints" / "fox" / "exports").exists()


def test_an_output_that_is_a_pipe_is_written_not_read_first():
    """The check for a checkpoint read an --output's first bytes: `charlm sample --output /dev/stdout | less`
    hung reading its own pipe, and a pipe with text waiting lost that text to the check."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"a reader's text, not the check's")
        outputs.output_file(f"/dev/fd/{write_end}")
        os.close(write_end)
        assert os.read(read_end, 100) == b"a reader's text, not the check's"
    finally:
        os.close(read_end)
        with contextlib.suppress(OSError):
            os.close(write_end)


@pytest.mark.parametrize("command", ["export html", "export onnx", "inspect"])  # sample's click checks; plot's test
def test_an_output_that_is_a_folder_is_refused_naming_the_option(trained, tmp_path, command):
    """`charlm inspect ... --output reports` worked for its seconds to minutes, then said only
    `reports: Is a directory`; so did an onnx export."""
    (tmp_path / "reports").mkdir()
    assert_one_line_error(cli(*OUTPUT_COMMANDS[command], "reports"), "--output", "reports", "folder")


@pytest.mark.parametrize("command", ["export html", "export safetensors", "sample", "inspect", "plot"])
def test_an_output_name_too_long_for_the_file_system_is_one_line(trained, command):
    """An --output name over the 255 bytes a file name may have said `Error: xxx...xxx.png: File name too
    long` (the look for a folder or checkpoint there raised it), without naming the option or what to do."""
    name = "x" * 300 + (".png" if command == "plot" else "")
    args = OUTPUT_COMMANDS.get(command) or ["export", "fox", "--format", "safetensors", "--output"]
    said = f"a name of {len(name)} bytes, over the 255 a file name may have; give a shorter one"
    result = cli(*args, name)
    assert_one_line_error(result, "--output 'xxxxx", f"xxx{name[-4:]}': {said}")
    assert len(result.output) < 250  # the name shortened, as a wrong value is shown


def test_a_safetensors_export_into_a_run_folder_is_refused(trained, tmp_path):
    before = sorted(p.name for p in (tmp_path / "checkpoints/fox").iterdir())
    result = cli("export", "fox", "--format", "safetensors", "--output", "checkpoints/fox")
    assert_one_line_error(result, "--output checkpoints/fox: is a run folder")
    assert sorted(p.name for p in (tmp_path / "checkpoints/fox").iterdir()) == before


@pytest.mark.parametrize("output", ["curves.txt", "curves", "a_folder", "a_folder.png"])
def test_plot_writes_only_a_png_file(trained, tmp_path, output):
    """`--output c.txt` was matplotlib's ValueError; `--output adir` said `wrote adir` and wrote adir.png."""
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_folder.png").mkdir()
    assert_one_line_error(cli("plot", "fox", "--output", output), f"--output {output}: charlm plot writes a PNG")
    assert not list(tmp_path.glob("*.png")) or (tmp_path / "a_folder.png").is_dir()
    assert not list(tmp_path.glob("curves*")) and not list(tmp_path.glob("a_folder*.png/*"))


# `python -m charlm ARGS` (for `start_python`) in a process whose writes past 2,000 bytes fail (EFBIG), as
# `ulimit -f` makes them: its RLIMIT_FSIZE set as it starts (Python ignores SIGXFSZ, so a write returns the error)
FILE_SIZE_LIMITED = "import resource\nresource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))\n" + forkserver.CHARLM


@pytest.mark.parametrize("length", ["3000", "20000"])  # the limit met at the file's close, and mid-stream
def test_sample_output_that_cannot_be_written_names_the_option_and_file(trained, length):
    """Under a file size limit `charlm sample --output so.txt` said `Error: file: File too large`, then
    `--output so.txt: cannot write (File too large)` without what to do, as export, inspect and plot say;
    and the earlier so.txt was lost: emptied, then cut at the limit."""
    Path("so.txt").write_text("an earlier sample, kept\n", encoding="utf-8")
    process = start_python(FILE_SIZE_LIMITED, "sample", "--checkpoint", "fox", "--length", length, "--output", "so.txt")
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 1 and "Traceback" not in stderr
    remedy = "free space on its disk (or raise the file size limit, ulimit -f)"
    assert stderr.strip().splitlines() == [f"Error: --output so.txt: cannot write (File too large); {remedy}"]
    assert Path("so.txt").read_text(encoding="utf-8") == "an earlier sample, kept\n"
    assert [p.name for p in Path().glob(".so.txt*")] == []


def test_a_sample_killed_midway_keeps_the_outputs_earlier_text(trained, tmp_path):
    """`charlm sample --output so.txt` emptied so.txt as it started: killed mid-sample (SIGKILL, a power cut),
    it left neither the earlier sample nor a new one. The earlier text stays until a sample is finished,
    and the killed sample's temporary file goes when the next one writes so.txt."""
    import select

    (tmp_path / "so.txt").write_text("an earlier sample, kept\n", encoding="utf-8")
    command = ["sample", "--checkpoint", "fox", "--output", "so.txt"]
    process = start_charlm(*command, "--length", "10000000")  # a process of its own, torch imported
    try:
        assert select.select([process.stdout], [], [], 60)[0], "the sample did not start"
        assert process.stdout.read(100)  # it is sampling, so.txt open
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert (tmp_path / "so.txt").read_text(encoding="utf-8") == "an earlier sample, kept\n"
    assert len(list(tmp_path.glob(".so.txt.tmp-*"))) == 1  # the killed sample's
    finished = run_cli(*command, "--length", "20", "--random-seed", "1", check=True)
    assert (tmp_path / "so.txt").read_text(encoding="utf-8") == finished.stdout
    assert [p.name for p in tmp_path.glob(".so.txt*")] == []


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def a_file_in(folder: Path, name: str = "c.txt") -> Path:
    (folder / name).write_text("a file\n", encoding="utf-8")
    return folder / name


def plot_unwritten(folder: Path, request) -> tuple[str, Path]:
    request.getfixturevalue("monkeypatch").setattr(plot_module, "curves_of", lambda targets: ([], []))
    request.getfixturevalue("monkeypatch").setattr(plot_module, "plot_runs", no_space)
    return cli("plot", "--output", str(folder / "c.png")).output, folder / "c.png"


def runs_root_a_run(folder: Path, request) -> tuple[str, Path]:
    (folder / runs.BEST).touch()
    return cli("runs", "--root", str(folder)).output, folder


def inspect_unwritten(folder: Path, request) -> tuple[str, Path]:
    trained = request.getfixturevalue("trained")
    request.getfixturevalue("monkeypatch").setattr("charlm.files.replace_files", no_space)
    return cli(
        "inspect", trained, "--held-out", "--max-chars", "50", "--quiet", "--output", str(folder / "c.html")
    ).output, (folder / "c.html")


def sample_unwritten(folder: Path, request) -> tuple[str, Path]:
    with pytest.raises(CharLMError) as refused:
        OutputCopy(folder / "c.txt").attempt(no_space)
    return str(refused.value), folder / "c.txt"


OPTIONS_ON_PATHS = {  # name: what is said of a path in `folder` given to an option, that path; the option
    "plot_not_a_png": (lambda folder, request: (cli("plot", "--output", str(a_file_in(folder))).output, folder / "c.txt"), "--output"),
    "plot_unwritten": (plot_unwritten, "--output"),
    "runs_root_a_file": (lambda folder, request: (cli("runs", "--root", str(a_file_in(folder))).output, folder / "c.txt"), "--root"),
    "runs_root_a_run": (runs_root_a_run, "--root"),
    "inspect_unwritten": (inspect_unwritten, "--output"),
    "sample_unwritten": (sample_unwritten, "output"),  # said to a Python caller
}  # fmt: skip


@pytest.mark.parametrize("name", ["x ", "x\ny"], ids=["space_at_end", "line_break"])
@pytest.mark.parametrize("case", OPTIONS_ON_PATHS.values(), ids=OPTIONS_ON_PATHS.keys())
def test_an_option_on_a_path_is_named_as_the_user_would_type_it(tmp_path, request, name, case):
    """`--output {output}` put the path raw after its option: `--output x /c.txt` reads as two words, and a
    line break split the message; the option and its path are said as `fields.said` says them, a shell
    word on the command line (`--output 'x /c.txt'`), a Python string to a Python caller."""
    message, option = case
    folder = tmp_path / name
    folder.mkdir()
    said, path = message(folder, request)
    words = f"{option} {fields.typed(path)}" if option.startswith("--") else f"{option}={str(path)!r}"
    assert words in said, said


def test_a_sample_output_that_is_a_link_replaces_the_file_it_names_whole(tmp_path):
    """`--output link.txt`, a link to kept/so.txt, was written through in place: so.txt was emptied as the
    sample began (a sample killed mid-way left it cut). The file it names now keeps its earlier text until
    the sample ends, then is replaced whole; the link stays a link."""
    so = tmp_path / "kept" / "so.txt"
    so.parent.mkdir()
    so.write_text("an earlier sample, kept\n", encoding="utf-8")
    (tmp_path / "link.txt").symlink_to("kept/so.txt")
    with OutputCopy("link.txt") as copy:
        copy.write("a new sample\n")
        assert so.read_text(encoding="utf-8") == "an earlier sample, kept\n"
    assert (tmp_path / "link.txt").is_symlink() and os.readlink(tmp_path / "link.txt") == "kept/so.txt"
    assert so.read_text(encoding="utf-8") == "a new sample\n" and list(so.parent.iterdir()) == [so]


LINKED_OUTPUTS = {**OUTPUT_COMMANDS, "export safetensors": ["export", "fox", "--format", "safetensors", "--output"]}


def linked_output(tmp_path: Path, command: str, named: str) -> tuple[Path, Path]:
    """`command`'s --output, a link (out.png, or for a model folder `out`) to `named`: the link and the
    file or folder it names."""
    folder = command == "export safetensors"
    link = tmp_path / ("out" if folder else "out.png")
    link.symlink_to(named)
    return link, tmp_path / named


@pytest.mark.parametrize("command", LINKED_OUTPUTS)
def test_every_output_that_is_a_link_is_written_through_and_stays_a_link(trained, fox_file, tmp_path, command):
    """`charlm export RUN --output link.html` replaced the link with a page of its own and left the file
    it named as it was, where `charlm sample --output link.txt` wrote the file and kept the link; so did
    inspect and plot (a page linked into a website's folder, a plot into a report's). Every command writes
    what a link names, whole, and the link stays."""
    link, named = linked_output(tmp_path, command, "kept/earlier")
    named.parent.mkdir()
    if command == "export safetensors":
        named.mkdir()  # an empty folder: a model folder may go there
    else:
        named.write_bytes(b"earlier")
    result = cli(*LINKED_OUTPUTS[command], link.name)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == "kept/earlier"
    if command == "export safetensors":
        assert sorted(p.name for p in named.iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    else:
        assert named.read_bytes() not in (b"", b"earlier") and list(named.parent.iterdir()) == [named]


@pytest.mark.parametrize("command", LINKED_OUTPUTS)
def test_an_output_link_to_nothing_makes_what_it_names(trained, fox_file, tmp_path, command):
    """A link whose file is not there (yet): sample made the file it names, export, inspect and plot
    replaced the link, and a safetensors export said `File exists; a file is in the way of its folder`.
    Each makes what the link names, with its missing folders, as `>` makes a link's file."""
    link, named = linked_output(tmp_path, command, "later/made/here")
    result = cli(*LINKED_OUTPUTS[command], link.name)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == "later/made/here"
    assert named.is_dir() if command == "export safetensors" else named.stat().st_size > 0


@pytest.mark.parametrize("command", LINKED_OUTPUTS)
def test_an_output_link_round_a_loop_is_refused_in_one_line(trained, tmp_path, command):
    """A link that leads round a loop of links names no file: export, inspect and plot replaced it, and
    sample said `cannot write (Too many levels of symbolic links)` with nothing to do about it."""
    link, _ = linked_output(tmp_path, command, "loop")
    (tmp_path / "loop").symlink_to(link.name)
    result = cli(*LINKED_OUTPUTS[command], link.name)
    assert_one_line_error(result, f"--output {link.name}: cannot write", "round a loop of links: remove it")
    assert os.readlink(link) == "loop" and os.readlink(tmp_path / "loop") == link.name


@pytest.mark.skipif(sys.platform != "linux", reason="chmod a-w on a folder, as Linux keeps it")
def test_a_sample_output_whose_folder_refuses_new_files_is_written_in_place(tmp_path):
    """An --output file its user may write, in a folder that refuses new files (chmod a-w), was refused:
    `cannot write (Permission denied)`, of the temporary file beside it, where `>` writes the file. It is
    written in place. Root writes any folder: as root, the writer runs without root's overrides."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    (folder / "so.txt").write_text("an earlier sample\n", encoding="utf-8")
    folder.chmod(0o555)
    write = "from charlm.commands.sample import OutputCopy\nwith OutputCopy('so.txt') as c: c.write('new\\n')"
    try:
        result = run_as_a_user([sys.executable, "-c", write], cwd=folder)
    finally:
        folder.chmod(0o755)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert (folder / "so.txt").read_text(encoding="utf-8") == "new\n"
    assert [p.name for p in folder.iterdir()] == ["so.txt"]


@pytest.mark.skipif(sys.platform != "linux", reason="root held to chmod, as Linux drops its capabilities")
def test_a_sample_output_over_a_write_protected_file_is_refused(trained, tmp_path):
    """`--output so.txt` where so.txt is write-protected (chmod a-w) in a writable folder was replaced
    silently (a rename ignores the file's own permissions), where `>` refuses it. It is refused in one
    line naming the option and the file, and the file keeps its text. As root, the sample runs without
    root's overrides of file permissions."""
    kept = tmp_path / "so.txt"
    kept.write_text("an earlier sample\n", encoding="utf-8")
    kept.chmod(0o444)
    result = run_as_a_user(
        [sys.executable, "-m", "charlm", "sample", "--checkpoint", trained, "--output", "so.txt", "--length", "20"]
    )
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: --output so.txt: is write-protected; make it writable (chmod u+w), or give another file"
    ]
    assert kept.read_text(encoding="utf-8") == "an earlier sample\n"
    assert sorted(p.name for p in tmp_path.glob("*so.txt*")) == ["so.txt"]


def test_a_sample_into_a_new_file_writes_it_as_the_text_comes_and_a_kill_keeps_it(trained, tmp_path):
    """A new --output file has no earlier text to keep: it is written as the text comes, so `tail -f`
    shows it growing and a sample killed mid-way leaves what it wrote (through a temporary file it
    appeared only at the end, and a killed sample left nothing)."""
    process = start_charlm("sample", "--checkpoint", "fox", "--output", "new.txt", "--length", "10000000")
    try:
        new, deadline = tmp_path / "new.txt", time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline and not (new.exists() and new.stat().st_size):
            time.sleep(0.05)
        written = new.read_text(encoding="utf-8") if new.exists() else ""
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert written, "new.txt stayed empty while the sample ran"
    assert (tmp_path / "new.txt").read_text(encoding="utf-8").startswith(written)  # the kill kept it
    assert list(tmp_path.glob(".new.txt*")) == []


def test_help_lists_the_options_every_user_needs_first():
    """`charlm train --help` listed --max-time 28th, after the tokenizer's and the optimizer's options,
    though every run needs it; `charlm sample --help` put --output, --json and --device before --length."""
    train = [line.split()[0] for line in cli("train", "--help").output.splitlines() if line.startswith("  --")]
    assert train[:6] == ["--out", "--resume", "--init-from", "--max-time", "--max-steps", "--patience"]
    assert train.index("--hidden") < train.index("--quiet") < train.index("--seq-len") < train.index("--lr")
    sample = [line.split()[0] for line in cli("sample", "--help").output.splitlines() if line.startswith("  --")]
    assert sample[:6] == ["--checkpoint", "--seed", "--seed-file", "--length", "--temperature", "--num-samples"]


# What `charlm --help`, `charlm COMMAND -h`, `charlm help X`, `--version` and a Tab press do, in one
# process; then the charlm frames that were importing torch, if anything did, and the heavy modules loaded.
ANSWERS_WITHOUT_A_MODEL = r"""
import json, os, sys, traceback
from importlib.abc import MetaPathFinder

class Watch(MetaPathFinder):
    stack = None
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and Watch.stack is None:
            Watch.stack = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack() if "charlm" in f.filename]

sys.meta_path.insert(0, Watch())
from charlm.cli import main

def answer(args, **env):
    os.environ.update(env)
    try:
        main(args, prog_name="charlm", complete_var="_CHARLM_COMPLETE")
    except SystemExit:
        pass
    for name in env:
        del os.environ[name]

commands = [[name] for name in main.commands] + [["corpus", name] for name in main.commands["corpus"].commands]
for words in [[], *commands]:
    answer([*words, "--help"]); answer([*words, "-h"]); answer(["help", *words])
answer(["--version"])
answer(["sample", "--bogus"]); answer(["sampel"])  # usage errors: no model either
for line in ("charlm sa", "charlm sample ", "charlm sample --form 七", "charlm serve --device c",
             "charlm corpus get t", "charlm train t", "charlm eval run novel.t", "charlm inspect --output r"):
    answer([], _CHARLM_COMPLETE="bash_complete", COMP_WORDS=line, COMP_CWORD=str(len(line.split(" ")) - 1))
unneeded = ("torch", "numpy", "tqdm", "urllib.request")  # torch imports the last two; a bar or a download needs them
print(json.dumps({"stack": Watch.stack, "loaded": [name for name in unneeded if name in sys.modules]}),
      file=sys.stderr)
"""


def test_help_version_usage_errors_and_tab_completion_load_no_torch(tmp_path):
    """Every Tab press, every --help and --version imported torch (and numpy), about 1.3 s each, for
    answers that need no model: the command tree, its options and their defaults, completion's names.
    So did a usage error (`charlm sample --bogus`), for the torchrun rank check that says it once.
    tqdm (for progress bars) and urllib.request (for `charlm corpus get`) took another 50 ms of each."""
    (tmp_path / "checkpoints" / "novel-20260101-120000").mkdir(parents=True)
    (tmp_path / "checkpoints" / "novel-20260101-120000" / "latest.pt").touch()
    env = {**os.environ, "PYTHONPATH": str(Path(cli_module.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", ANSWERS_WITHOUT_A_MODEL],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(done.stderr.splitlines()[-1])
    assert "Usage: charlm sample" in done.stdout and "plain,novel" in done.stdout and "plain,七绝" in done.stdout
    assert "no such option --bogus" in done.stderr and "no such command sampel" in done.stderr
    assert report == {"stack": None, "loaded": []}, report


LOADS_TORCH = ["info", "nope"]  # a command that runs a model: torch is its first import (--help needs none)


def test_ctrl_c_while_torch_is_still_loading_exits_without_a_traceback(tmp_path):
    """The package imported torch before the command could catch anything: a traceback of torch's import."""
    slow = tmp_path / "slow" / "torch"
    slow.mkdir(parents=True)
    loading = tmp_path / "loading"
    (slow / "__init__.py").write_text(f"import pathlib, time\npathlib.Path({str(loading)!r}).touch()\ntime.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(slow.parent), str(Path(cli_module.__file__).parents[1])])}
    process = subprocess.Popen(
        [sys.executable, "-m", "charlm", *LOADS_TORCH],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for _ in range(600):
            if loading.exists() or process.poll() is not None:
                break
            time.sleep(0.05)
        assert loading.exists(), "the command never reached torch's import"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in err, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["int", "term", "hup"])
def test_a_signal_inside_a_c_extensions_loading_exits_without_a_traceback(tmp_path, signum):
    """Ctrl-C while numpy's C core initialised raised KeyboardInterrupt inside it: numpy then said
    `ImportError: cannot load module more than once per process`, a traceback and status 1 (torch's
    pybind11 aborted instead). The fake torch here turns what the signal raises into that ImportError. A
    hang-up, since commands unwind on it (`stopping.unwind_on_hang_up`), raised there too."""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    loading = tmp_path / "loading"
    (fake / "__init__.py").write_text(
        f"import pathlib, time\npathlib.Path({str(loading)!r}).touch()\ntry:\n    time.sleep(60)\n"
        "except BaseException:\n    raise ImportError('cannot load module more than once per process')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(Path(cli_module.__file__).parents[1])])}
    status, err = interrupted_at(loading, LOADS_TORCH, env, signum)
    assert status == 128 + signum and err == "", err


def test_a_command_run_in_process_gives_the_hang_up_back_as_it_found_it(fox_file):
    """`charlm.cli.main` called in a process of one's own (a script, CliRunner) left its hang-up handler
    installed, which raised SystemExit(129) in whatever the process did at its next SIGHUP."""
    before = signal.getsignal(signal.SIGHUP)
    assert cli("corpus", "prepare", str(fox_file)).exit_code == 0
    assert signal.getsignal(signal.SIGHUP) is before


def test_a_missing_file_says_to_check_the_path_for_every_command_that_reads_one(fox_file):
    """`nope.txt: no such file or folder` (eval, inspect, train, corpus prepare) and `--seed-file nope.txt:
    cannot read (No such file or directory)` said what was wrong, not what to do, nor where a relative
    path was looked for. (A bare name, which train also reads as a catalog corpus's, is told the catalog;
    --eval-also, which takes a run too, that it names neither, as `charlm eval NAME` says, and where.)"""
    trained = str(run_of(make_model("".join(sorted(set(fox_file.read_text())))), Path("fox")))
    where = f"; check the path (relative to {Path.cwd()})"
    missing = f"nope.txt: no such file or folder{where}"
    commands = [
        (["eval", trained, "nope.txt"], missing),
        (["inspect", trained, "nope.txt", "--output", "page.html"], missing),
        (["inspect", trained, str(fox_file), "--train-text", "nope.txt", "--output", "page.html"], missing),
        (
            ["sample", "--checkpoint", trained, "--seed-file", "nope.txt"],
            f"nope.txt: cannot read (No such file or directory){where}",
        ),
        (["train", "nope.txt", *TINY_ARGS, "--max-steps", "2"], missing),
        (["corpus", "prepare", "nope.txt"], missing),
        (
            ["train", str(fox_file), "--eval-also", "nope.txt", *TINY_ARGS, "--max-steps", "2"],
            (
                "--eval-also nope.txt: no such checkpoint file or run folder, nor a run or corpus of that name under "
                f"checkpoints/ in {Path.cwd()} (`charlm runs` lists them)"
            ),
        ),
    ]
    for args, says in commands:
        result = cli(*args)
        assert_one_line_error(result, says)
        assert result.output.rstrip().endswith(says), (args, result.output)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_pipe_or_a_device_is_said_to_be_one_not_a_missing_file(fox_file, tmp_path):
    """`charlm train <(cat a.txt b.txt)`, `charlm eval RUN /dev/stdin` under a pipe and /dev/null said
    "no such file or folder; check the path" of a path that exists: say what it is and what to do. So does
    --eval-also, which said to give a run as if it took no text."""
    trained = str(run_of(make_model("".join(sorted(set(fox_file.read_text())))), Path("fox")))
    os.mkfifo(tmp_path / "pipe")
    for path, kind in ((str(tmp_path / "pipe"), "a pipe"), (os.devnull, "a device")):
        says = f"{path}: {kind}"
        for args in (
            ["eval", trained, path],
            ["inspect", trained, path],
            ["train", path, *TINY_ARGS, "--max-steps", "2"],
            ["train", str(fox_file), "--eval-also", path, *TINY_ARGS, "--max-steps", "2"],  # a text, not a run
        ):
            assert_one_line_error(cli(*args), says, "not a regular file", "save the text to a file first")


def test_a_seed_pasted_with_windows_line_breaks_is_read_as_its_seed_file_is(trained, tmp_path):
    """--seed refused the \\r of a CRLF pasted from Windows (a character no model knows: every file's
    CRLF is read as a newline), while --seed-file read the same text. Both are now read as a file is;
    a lone \\r stays, and is named where the model never saw one."""
    (tmp_path / "seed.txt").write_bytes(b"the quick\r\nbrown ")
    from_file = cli("sample", "--seed-file", "seed.txt", "--length", "8", "--greedy")
    typed = cli("sample", "--seed", "the quick\r\nbrown ", "--length", "8", "--greedy")
    plain = cli("sample", "--seed", "the quick\nbrown ", "--length", "8", "--greedy")
    assert typed.exit_code == 0 and typed.output == from_file.output == plain.output, typed.output
    assert_one_line_error(cli("sample", "--seed", "the\rquick"), "--seed: 1 character the model has never seen: '\\r'")


def test_a_seed_typed_with_a_backslash_n_is_told_how_to_break_its_line(tmp_path):
    """`--seed '春望\\n杜甫\\n'` (the docs' $'...' without its $, or a shell with no $'...') was refused with
    "2 characters the model has never seen: '\\\\' 'n'" and no word of why: the shell passed a backslash
    and an n. The error says so, and how to type the line break; a seed the model reads is still read."""
    from .test_forms import HAN, chinese_model

    run_of(chinese_model(), tmp_path / "poems")
    typed = cli("sample", str(tmp_path / "poems"), "--seed", f"{HAN[1]}\\n{HAN[3]}\\n", "--form", "五言绝句")
    assert_one_line_error(
        typed,
        "--seed: 2 characters the model has never seen: '\\\\' 'n'",
        "its \\n is a backslash and an n, not a line break",
        "$'",
        "--seed-file",
    )
    elsewhere = cli("sample", str(tmp_path / "poems"), "--seed", f"{HAN[1]}\\", "--length", "2")
    assert_one_line_error(elsewhere, "never seen: '\\\\'")
    assert "line break" not in elsewhere.output  # no \n typed: nothing to say of one
    broken = cli("sample", str(tmp_path / "poems"), "--seed", f"{HAN[1]}\n{HAN[3]}\n", "--form", "五言绝句")
    assert broken.exit_code == 0, broken.output


def test_a_seed_file_of_dash_is_standard_input(trained, tmp_path):
    """`... | charlm sample --seed-file -` said "-: cannot read (No such file or directory)"."""
    (tmp_path / "seed.txt").write_bytes(b"the quick\r\nbrown ")
    from_file = cli("sample", "--seed-file", "seed.txt", "--length", "8", "--greedy")
    piped = cli("sample", "--seed-file", "-", "--length", "8", "--greedy", input=b"the quick\r\nbrown ")
    assert piped.exit_code == 0 and piped.output == from_file.output, piped.output
    for given, expected in (
        (b"  \n", "--seed-file -: standard input holds no text"),
        (b"\xff", "--seed-file -: not valid utf-8 at byte offset 0 (byte 0xff); convert it to UTF-8"),
        # as a file is told: where, and the encoding it looks like (GBK from a Chinese Windows console)
        (
            "宝玉".encode("gbk"),
            "--seed-file -: not valid utf-8 at byte offset 0 (byte 0xb1); convert it to UTF-8 (it looks like gb18030 text)",
        ),
    ):
        assert_one_line_error(cli("sample", "--seed-file", "-", input=given), expected)


def test_every_command_takes_h_for_help_and_charlm_help_names_one():
    """`charlm train -h` said "No such option '-h'"; `charlm help train` said "No such command 'help'"."""
    group = cli_module.main
    commands = [[name] for name in group.commands] + [["corpus", name] for name in group.commands["corpus"].commands]
    for words in [[], *commands]:
        short, long = cli(*words, "-h"), cli(*words, "--help")
        assert short.exit_code == 0 and short.output == long.output and "Usage:" in short.output, words
        assert cli("help", *words).output == long.output, words
    assert "Error: no such command trian (did you mean train?); " in cli("help", "trian").output
    assert (
        "Error: corpus get has no commands; main help corpus get shows its help"
        in cli("help", "corpus", "get", "x").output
    )


@pytest.mark.parametrize(
    ("words", "said"),
    [
        (["train", "--hiden", "3"], "no such option --hiden (did you mean --hidden?); charlm train --help lists them"),
        (["frob"], "no such command frob; charlm --help lists them"),
        (["--frob"], "no such option --frob; charlm --help lists them"),
        (
            ["eval", "run", "--eval-also", "other"],  # train's option: eval scores more texts by naming them
            "no such option --eval-also (a charlm train option; charlm eval RUN OTHER_RUN_OR_FILE... scores each text)",
        ),
        (["sample", "run", "--lr", "0.1"], "no such option --lr (a charlm train option); "),  # no guess at --help
        (["train", "fox", "--seed", "3"], "--seed (a charlm sample option; did you mean --random-seed?); "),
        (["export", "run", "--device", "cpu"], "--device (a charlm eval, inspect, sample, serve and train option"),
        (["corpus", "get", "x", "--tokenizer", "bpe"], "--tokenizer (a charlm corpus prepare and train option"),
        (["--lr", "0.1", "train"], "no such option --lr (a charlm train option"),  # typed before the command
        (["corpus", "frob"], "no such command frob; charlm corpus --help lists them"),
        (["corpus", "get"], "missing argument NAME; charlm corpus get --help says what to give"),
        (["serve", "--port", "x"], "--port: 'x' is not a valid integer; charlm serve --help says what it takes"),
        (["train", "--head", "foo"], "--head: 'foo' is not one of "),  # click's wording of the choices
        (["sample", "--length"], "option '--length' requires an argument; charlm sample --help says what to type"),
        (["corpus", "get", "--quiet=3", "x"], "'--quiet' does not take a value; charlm corpus get --help says"),
        (["help", "corpus", "get", "x"], "corpus get has no commands; charlm help corpus get shows its help"),
    ],
)
def test_a_usage_error_is_one_line_naming_what_to_type_and_its_help(words, said):
    """click's usage errors were four lines (`charlm train --hiden 3`: its usage, "Try 'charlm train
    --help' for help.", a blank line, then "Error: No such option '--hiden'. (Did you mean one of:
    '--head', '--help', '--hidden'?)"), where every other error is one line. Now one line names the
    option or command as typed, the closest known one, and the --help of the command it was typed to;
    the status is still click's 2. Another command's option (`charlm sample RUN --lr 0.1`) was a bare "no
    such option --lr (did you mean --help?)": the line names the commands that have it instead."""
    result = CliRunner().invoke(cli_module.main, words, prog_name="charlm")
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: "), result.stderr
    assert said in result.stderr, result.stderr


@pytest.mark.parametrize("local", ["abc", "0", ""])
def test_a_local_world_size_set_to_junk_is_one_line(tmp_path, monkeypatch, local):
    """LOCAL_WORLD_SIZE (torchrun's) set by hand to junk or 0 ended `charlm train` in a ValueError or
    ZeroDivisionError traceback from the threads rule's share of the cores."""
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    monkeypatch.setattr(threads._command, "governor", None)  # as in a new process: an earlier test's governor stays
    monkeypatch.setattr(threads._command, "pinned", None)
    corpus = tmp_path / "fox.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    trained = cli("train", str(corpus), *TINY_ARGS, "--max-steps", "2")
    assert_one_line_error(trained, f"LOCAL_WORLD_SIZE={local!r}", "unset it")
