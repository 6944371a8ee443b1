"""Training: the TBPTT loop, its budget and schedule, resume, and never losing a run to kills,
signals, full disks or NaN."""

import dataclasses
import errno
import itertools
import json
import os
import random
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import charlm
from charlm import (
    api,
    checkpoint,
    checkpoint_file,
    files,
    processes,
    run_lock,
    run_notes,
    runs,
    tokens,
    train_state,
    trainer,
)
from charlm.errors import CharLMError
from charlm.fields import on_command_line
from charlm.model import CharLM, FullHead

from . import forkserver
from .conftest import (
    TRAIN_ARGS,
    cli,
    disk_full_once_saved,
    file_size_limit,
    latest,
    run_cli,
    start_python,
    start_training,
    wait_for,
)
from .conftest import assert_one_line_error as one_line_error


def train_here(*args: str) -> None:
    """`charlm train ARGS` in this process, which must succeed: the runs a test compares its processes with
    (their start is not what it checks) without the ~3 s of a process importing torch."""
    result = cli("train", *args)
    assert result.exit_code == 0, result.output


def assert_same_weights(a: checkpoint.Checkpoint, b: checkpoint.Checkpoint) -> None:
    assert a.progress.step == b.progress.step
    for name, tensor in a.weights.items():
        assert torch.equal(tensor, b.weights[name]), name


# -- the loop ----------------------------------------------------------------------------------
def test_overfits_a_tiny_text_to_near_zero_loss(fox_file, tiny):
    tiny.update(hidden=64, seq_len=16, batch_size=8, lr=1e-2, max_steps=150, eval_every=50, dropout=0.0)
    model = charlm.train(fox_file, out="fox", **tiny)
    saved = latest("fox")
    assert saved.progress.step == 150
    assert saved.progress.best_bpc < 0.1
    assert charlm.generate(model, "the quick", length=30, greedy=True).startswith("the quick brown fox jumps over")


def test_state_is_carried_across_steps_and_detached(fox_file, tiny, monkeypatch):
    """The state a step starts with is the previous step's final state, with no history."""
    seen = []
    original = CharLM.forward

    def spy(self, ids, state=None, targets=None):
        logits, new_state = original(self, ids, state, targets)
        if torch.is_grad_enabled():
            seen.append((state, new_state))
        return logits, new_state

    monkeypatch.setattr(CharLM, "forward", spy)
    charlm.train(fox_file, out="spy", **{**tiny, "max_steps": 5, "dropout": 0.0})
    assert seen[0][0] is None  # the first window of an epoch starts from zeros
    for (_, produced), (received, _) in itertools.pairwise(seen):
        assert all(r.grad_fn is None for r in received)
        assert all(torch.equal(r, p.detach()) for r, p in zip(received, produced))


def test_same_random_seed_gives_the_same_run(fox_file, tiny):
    a = charlm.train(fox_file, out="a", **tiny)
    b = charlm.train(fox_file, out="b", **tiny)
    c = charlm.train(fox_file, out="c", **{**tiny, "random_seed": 7})
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_the_thread_count_the_governor_picks_changes_no_weight(fox_file, tiny, monkeypatch):
    """charlm changes its CPU thread count as it trains, on measured speed (threads.py), so two runs of
    one seed switch at other steps: the weights must not depend on it. Products big enough for torch
    to split them over threads (128 cells: 512 gates x 16 streams x 25 characters)."""
    sized = {**tiny, "hidden": 128, "batch_size": 16, "seq_len": 25, "max_steps": 4, "dropout": 0.2}
    pinned = charlm.train(fox_file, out="pinned", **{**sized, "threads": 1})
    counts = []

    def switch(*_) -> None:  # after every step, 1 <-> 2 threads
        counts.append(3 - torch.get_num_threads())
        torch.set_num_threads(counts[-1])

    monkeypatch.setattr(trainer.threads, "record", switch)
    switching = charlm.train(fox_file, out="switching", **{**sized, "threads": 2})
    assert counts[:4] == [1, 2, 1, 2]  # switched at every step (and the evaluation after)
    assert all(torch.equal(x, y) for x, y in zip(pinned.state_dict().values(), switching.state_dict().values()))


def test_max_time_stops_the_run(fox_file, tiny):
    # patience 0: the repeated fox line is memorized within a second on a fast machine, and the early stop
    # for an only-overfitting run (tested on its own) would end the run before its time did. dropout
    # given: a time budget with it unset is first timed for seconds to fit it (plan.decide), no part of this
    charlm.train(fox_file, out="timed", **{**tiny, "max_steps": None, "max_time": "1s", "patience": 0, "dropout": 0.0})
    saved = latest("timed")
    assert 1.0 <= saved.progress.elapsed < 10.0 and saved.progress.step >= 1  # on to its time, then stopped


def test_samples_while_training_do_not_change_the_run(fox_file, tiny, capsys):
    with_samples = charlm.train(fox_file, out="a", **{**tiny, "sample_every": 1})
    without = charlm.train(fox_file, out="b", **tiny)
    samples = (fox_file.parent / "checkpoints/a/samples.txt").read_text()
    assert samples.count("--- sample at step") == 2 and "--- sample at step 20" in capsys.readouterr().out
    assert not (fox_file.parent / "checkpoints/b/samples.txt").exists()
    assert all(torch.equal(x, y) for x, y in zip(with_samples.state_dict().values(), without.state_dict().values()))


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
def test_detect_anomaly_turns_on_torch_anomaly_mode(fox_file, tiny, monkeypatch):
    seen = []
    real = train_state.train_step

    def spy(state, spent):
        seen.append(torch.is_anomaly_enabled())
        return real(state, spent)

    monkeypatch.setattr(train_state, "train_step", spy)
    charlm.train(fox_file, out="a", **{**tiny, "max_steps": 3, "detect_anomaly": True})
    charlm.train(fox_file, out="b", **{**tiny, "max_steps": 3})
    assert seen == [True] * 3 + [False] * 3


# -- resume --------------------------------------------------------------------------------


def test_resume_continues_step_data_position_and_state(fox_file, tiny):
    flat = {**tiny, "min_lr_ratio": 1.0}  # a flat learning rate, so 10 steps then 15 more are the 25-step run
    charlm.train(fox_file, out="whole", **{**flat, "max_steps": 25})
    charlm.train(fox_file, out="run", **{**flat, "max_steps": 10})
    before = latest("run")
    charlm.train(resume="run", max_steps=25)
    after, whole = latest("run"), latest("whole")
    assert before.progress.step == 10 and after.progress.step == 25
    # 2,376 training characters in 4 streams of 594: windows of 8 over 593 inputs, 75 per epoch
    seq, stream = tiny["seq_len"], (len(fox_file.read_text()) * 9 // 10) // tiny["batch_size"]
    assert (before.training.position, after.training.position) == (10 * seq, 25 * seq) and stream - 1 > 25 * seq
    assert after.training.epoch == whole.training.epoch == 0
    assert after.progress.chars == whole.progress.chars == 25 * seq * tiny["batch_size"]
    for carried, uninterrupted in zip(after.training.hidden, whole.training.hidden):
        assert torch.equal(carried, uninterrupted)  # every stream's state, exactly as if never stopped
    assert_same_weights(after, whole)


def test_resume_refuses_changed_model_options(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    with pytest.raises(CharLMError, match="hidden: 32 -> 64"):
        charlm.train(resume="run", hidden=64)


def test_resume_refuses_a_changed_corpus_before_preparing_it(fox_file, tiny):
    """The changed corpus was prepared (minutes for a big one, and a cache entry left) before it was refused."""
    charlm.train(fox_file, out="run", **tiny)
    fox_file.write_text("a different text altogether\n" * 90)
    cached = sorted(tokens.CACHE_ROOT.iterdir())
    with pytest.raises(CharLMError, match="changed since the run trained on it; put it back as it was to resume"):
        charlm.train(resume="run", max_steps=30)
    assert sorted(tokens.CACHE_ROOT.iterdir()) == cached


def test_a_resume_on_its_text_changed_names_it_as_typed_and_a_fine_tune_on_it_that_works(tmp_path, tiny):
    """A resume on a changed text said "the corpus ['/path'] changed ...; start a new run with --out NEW": a
    Python list, and advice refused (--out with --resume), where a new run on the new text from the run's
    weights is a fine-tune. The paths are now shell words to paste, and the command given runs."""
    book = tmp_path / "my book.txt"
    book.write_text("the quick brown fox jumps over the lazy dog\n" * 60, encoding="utf-8")
    charlm.train(book, out="run", **{**tiny, "max_steps": 2})
    with book.open("a", encoding="utf-8") as text:
        text.write("a new chapter\n")
    refused = cli("train", "--resume", "run", "--max-steps", "4")
    fine_tune = f"charlm train '{book}' --init-from checkpoints/run"
    one_line_error(refused, f"Error: the corpus '{book}' changed since the run trained on it; put it back", fine_tune)
    assert refused.output.strip().endswith(fine_tune)
    tuned = cli(*shlex.split(fine_tune)[1:], "--out", "tuned", "--max-steps", "2", "--quiet")
    assert tuned.exit_code == 0 and latest("tuned").corpus["sources"] == [str(book)], tuned.output


def shell_words(command: str) -> list[str]:
    """The words bash reads from `command` as a user pastes it (its quotes and $'...' undone)."""
    read = subprocess.run(["bash", "-c", f"printf '%s\\0' {command}"], capture_output=True, check=True)
    return os.fsdecode(read.stdout).split("\0")[:-1]


def test_the_commands_messages_give_for_a_run_folder_named_oddly_paste_into_a_shell(fox_file, tiny):
    """A run folder named with a space was given bare in the commands messages tell a user to run
    (`continue it with --resume checkpoints/my run`): pasted, the shell split it in two; one renamed with a
    line break showed it as one_line's `\\n`, which a shell reads as "n" (`charlm eval checkpoints/my\\nrun
    FILES`). Each path is one shell word now (quoted, or in $'...'), and each command runs as pasted."""
    charlm.train(fox_file, out="my run", **{**tiny, "max_steps": 2})
    resume = "--resume 'checkpoints/my run'"
    one_line_error(cli("train", str(fox_file), "--out", "my run"), f"continue it with {resume}, or")
    resumed = cli("train", *shell_words(resume), "--max-steps", "4")
    assert resumed.exit_code == 0 and latest("my run").progress.step == 4, resumed.output
    Path("checkpoints/my run").rename("checkpoints/my\nrun")
    with fox_file.open("a", encoding="utf-8") as text:
        text.write("a new chapter\n")
    score = "charlm eval $'checkpoints/my\\nrun' FILES"
    one_line_error(cli("eval", "checkpoints/my\nrun", "--quiet"), f"({score})")
    scored = cli(*shell_words(score.replace("FILES", str(fox_file)))[1:], "--quiet")
    assert scored.exit_code == 0 and "bits per character" in scored.output, scored.output


def test_a_run_whose_corpus_moved_resumes_on_it_at_its_new_path_as_if_it_never_moved(fox_file, tiny, tmp_path):
    """A corpus file moved or renamed (folders reorganised, the run copied to another machine) left its run
    unable to go on: resumed alone, its path was gone; given at its new path, "trained on [...]; resume
    without a corpus". The text at its new path is taken, being the run's (its digest), and recorded."""
    flat = {**tiny, "min_lr_ratio": 1.0, "max_steps": 4, "eval_every": 2}  # a few steps: each costs on a busy CPU
    charlm.train(fox_file, out="whole", **flat)
    charlm.train(fox_file, out="run", **{**flat, "max_steps": 2})
    moved = tmp_path / "reorganised" / "renamed.txt"
    moved.parent.mkdir()
    fox_file.rename(moved)
    with pytest.raises(
        CharLMError, match=rf"^{fox_file}: no such file .* charlm.train\(NEW, resume='checkpoints/run'\)$"
    ):
        charlm.train(resume="run", max_steps=4)
    charlm.train(moved, resume="run", max_steps=4)
    after, whole = latest("run"), latest("whole")
    assert after.progress.val_bpc == whole.progress.val_bpc  # the same held-out text, the same weights on it
    assert_same_weights(after, whole)
    assert after.corpus["sources"] == runs.read_run_info(Path("checkpoints/run"))["sources"] == [str(moved)]
    charlm.train(resume="run", max_steps=5)  # no path needed any more
    assert latest("run").progress.step == 5


def test_a_corpus_named_by_a_link_is_recorded_by_the_links_path_and_resumes_on_it(fox_file, tiny, tmp_path):
    """Trained on 唐诗三百首.txt, a link to poems/tangshi300.txt, a run was named 唐诗三百首 but recorded (and
    `charlm info` showed) the corpus as the target's path, one the user never typed. The link's path is
    recorded now, its folder resolved; the run resumes through it, and a run recorded the old way (the
    target's path) resumes as before, on either path."""
    target = tmp_path / "poems" / "tangshi300.txt"
    target.parent.mkdir()
    fox_file.rename(target)
    link = tmp_path / "唐诗三百首.txt"
    link.symlink_to(Path("poems") / "tangshi300.txt")
    short = {**tiny, "max_steps": 2}
    charlm.train(Path("poems") / ".." / link.name, out="run", **short)
    given = str(tmp_path.resolve() / link.name)
    info = dict(line.split(None, 1) for line in cli("info", "run").output.splitlines())
    assert info["corpus"] == given and latest("run").corpus["sources"] == [given]
    assert runs.read_run_info(Path("checkpoints/run"))["sources"] == [given]
    charlm.train(resume="run", max_steps=3)  # through the link it records
    charlm.train(link, resume="run", max_steps=4)
    assert latest("run").progress.step == 4 and latest("run").corpus["sources"] == [given]
    old = latest("run")  # recorded as charlm did before: the link's target
    old.corpus = {**old.corpus, "sources": [str(target.resolve())]}
    folder = Path("checkpoints/run")
    checkpoint.save(old, [folder / runs.BEST, folder / runs.LATEST])
    runs.write_run_info(folder, {**runs.read_run_info(folder), "sources": old.corpus["sources"]})
    charlm.train(resume="run", max_steps=5)
    charlm.train(link, resume="run", max_steps=6)  # the text is the run's: its new path is recorded
    assert latest("run").progress.step == 6 and latest("run").corpus["sources"] == [given]


def test_a_resume_on_a_folder_whose_files_were_added_removed_or_changed_names_them(tmp_path, tiny):
    """A folder of chapters with one added, one renamed and one edited was refused as "changed" alone: which
    of 200 files was left to guess. The cache folder of the run's text names what it read."""
    folder = tmp_path / "chapters"
    folder.mkdir()
    for number in range(6):
        (folder / f"chapter{number}.txt").write_text(f"chapter {number}: the quick brown fox\n" * 8)
    charlm.train(folder, out="run", **{**tiny, "max_steps": 2})
    (folder / "chapter6.txt").write_text("a new chapter\n")
    (folder / "chapter2.txt").rename(folder / "chapter02.txt")
    refused = cli("train", "--resume", "run", "--max-steps", "4")
    one_line_error(
        refused, "changed since the run trained on it (chapter02.txt, chapter6.txt added; chapter2.txt gone)"
    )
    one_line_error(
        cli("train", str(folder), "--resume", "run", "--max-steps", "4"),
        f"trained on ({folder}: chapter02.txt, chapter6.txt added; chapter2.txt gone): a resume needs the same text",
    )
    (folder / "chapter6.txt").unlink()
    (folder / "chapter02.txt").rename(folder / "chapter2.txt")
    with (folder / "chapter4.txt").open("a") as chapter:
        chapter.write("an added line\n")
    one_line_error(cli("train", "--resume", "run", "--max-steps", "4"), "trained on it (chapter4.txt changed)")


def test_a_resume_on_another_text_or_its_files_in_another_order_is_refused_in_one_line(tmp_path, tiny):
    """Only the run's own text, its files in the order it read them, is its text: a folder moved keeps its
    files' order; the same files named in another order, or another text, are refused, in a line that said
    "byte for byte" where the same text in other bytes (CRLF line ends, another --encoding) resumes."""
    lines = "the quick brown fox jumps over the lazy dog\n" * 30
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text(lines, encoding="utf-8")
    (tmp_path / "texts" / "b.txt").write_text(lines.upper(), encoding="utf-8")
    charlm.train(tmp_path / "texts", out="run", **{**tiny, "max_steps": 10})
    (tmp_path / "texts").rename(tmp_path / "moved")
    a, b = str(tmp_path / "moved" / "a.txt"), str(tmp_path / "moved" / "b.txt")
    one_line_error(
        cli("train", b, a, "--resume", "run", "--max-steps", "12"),
        f"{b} {a} is not the text checkpoints/run trained on ({tmp_path / 'texts'}: the same files, in another "
        "order): a resume needs the same text, from files in the order the run read them (their line ends and "
        "--encoding may differ); a new text",
        f"a new text is a fine-tune, a new run from this one's weights: charlm train {b} {a} --init-from checkpoints/run",
    )
    one_line_error(cli("train", a, "--resume", "run", "--max-steps", "12"), f"{a} is not the text")
    assert cli("train", str(tmp_path / "moved"), "--resume", "run", "--max-steps", "12").exit_code == 0
    ok = cli("train", a, b, "--resume", "run", "--max-steps", "14")  # the folder's files, named in its order
    assert ok.exit_code == 0, ok.output
    assert latest("run").progress.step == 14 and latest("run").corpus["sources"] == [a, b]


def test_a_resume_on_its_text_re_encoded_goes_on_and_a_changed_text_is_still_refused(fox_file, tiny):
    """The run's text with CRLF line ends and a UTF-8 byte order mark (an editor's save on Windows) is the
    text charlm read, but its other bytes were refused as "another text", the digest being of the bytes.
    Now the text as read decides (its digest kept in the cache and the checkpoint), at its path or a new
    one, and `charlm eval RUN` reads it; a text with one letter changed is still refused in one line."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    before = cli("eval", "run", "--quiet").output
    fox_file.write_bytes(b"\xef\xbb\xbf" + fox_file.read_bytes().replace(b"\n", b"\r\n"))
    charlm.train(resume="run", max_steps=12)
    moved = fox_file.rename(fox_file.with_name("moved.txt"))
    moved.write_bytes(moved.read_bytes()[3:].replace(b"\r\n", b"\n"))  # as first written, at a new path
    charlm.train(moved, resume="run", max_steps=14)
    assert latest("run").progress.step == 14 and latest("run").corpus["sources"] == [str(moved)]
    assert cli("eval", "run", "--quiet").output.endswith(before.split(" bits per character")[1])
    moved.write_text(moved.read_text(encoding="utf-8").replace("lazy", "lazz", 1), encoding="utf-8")
    one_line_error(cli("train", "--resume", "run", "--max-steps", "16"), "changed since the run trained on it")
    one_line_error(cli("train", str(moved), "--resume", "run", "--max-steps", "16"), "is not the text checkpoints/run")


def test_a_run_on_utf16_text_resumes_on_it_saved_as_utf8_and_reads_it_so_from_then_on(fox_file, tiny):
    """A UTF-16 text saved as UTF-8 (what charlm's error about UTF-16 asks) could not be resumed: the run read
    it as its --encoding utf-16 said, and `--encoding utf-8` was refused as a changed option. Another encoding
    is now taken where it reads the run's text (its digest), and recorded: in run.json at once, where a resume
    that trains nothing leaves the checkpoints as they were, and `charlm eval RUN` and later resumes read it so."""
    text = fox_file.read_text(encoding="utf-8")
    fox_file.write_text(text, encoding="utf-16")
    charlm.train(fox_file, out="run", encoding="utf-16", **{**tiny, "max_steps": 10})
    before = cli("eval", "run", "--quiet").output
    fox_file.write_text(text, encoding="utf-8")
    recorded = cli("train", str(fox_file), "--resume", "run", "--encoding", "utf-8", "--max-steps", "10")
    assert "nothing to train" in recorded.output and latest("run").config.encoding == "utf-16"  # no step, no save
    assert runs.read_run_info(Path("checkpoints/run"))["config"]["encoding"] == "utf-8"
    assert cli("eval", "run", "--quiet").output == before  # best.pt says utf-16; run.json reads the file now
    charlm.train(resume="run", max_steps=12)
    assert latest("run").progress.step == 12 and latest("run").config.encoding == "utf-8"
    fox_file.write_text(text.replace("lazy", "lazz", 1), encoding="utf-16")
    one_line_error(cli("train", "--resume", "run", "--encoding", "utf-16", "--max-steps", "14"), "changed since")
    one_line_error(cli("train", str(fox_file), "--resume", "run", "--encoding", "utf-16"), "is not the text")


def test_a_bare_resume_reads_its_utf16_text_saved_as_utf8_and_records_it(fox_file, tiny):
    """A bare `--resume` of a UTF-16 run whose file was saved as UTF-8 in place (what charlm's errors ask)
    said "cannot be read as utf-16 ...; convert it to UTF-8": it was. The run's text in UTF-8 (its digest)
    is read so, and the run goes on recording utf-8; a text edited as well as converted is still refused."""
    text = fox_file.read_text(encoding="utf-8")
    fox_file.write_text(text, encoding="utf-16")
    charlm.train(fox_file, out="run", encoding="utf-16", **{**tiny, "max_steps": 10})
    fox_file.write_text(text, encoding="utf-8")
    resumed = cli("train", "--resume", "run", "--max-steps", "12")
    assert resumed.exit_code == 0, resumed.output
    assert latest("run").progress.step == 12 and latest("run").config.encoding == "utf-8"
    assert runs.read_run_info(Path("checkpoints/run"))["config"]["encoding"] == "utf-8"
    fox_file.write_text(text.replace("lazy", "lazz", 1), encoding="utf-8")
    one_line_error(cli("train", "--resume", "run", "--max-steps", "14"), "changed since")


def test_eval_of_a_run_whose_folder_holds_a_link_to_nothing_is_not_told_of_encodings(tmp_path, tiny):
    """`charlm eval RUN` of a run whose corpus folder gained a .txt link to nothing added "(in another
    encoding, a resume that trains nothing records the one that reads it: ...)" to the link's line: that
    advice is for a text that does not decode, not for a missing file."""
    book = tmp_path / "book"
    book.mkdir()
    (book / "ch1.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 30, encoding="utf-8")
    charlm.train(book, out="run", **{**tiny, "max_steps": 2})
    (book / "ch2.txt").symlink_to(tmp_path / "gone.txt")
    refused = cli("eval", "run", "--quiet")
    one_line_error(refused, "ch2.txt: a link to")
    assert "another encoding" not in refused.output


def test_a_resume_whose_encoding_misreads_the_run_s_own_files_says_only_the_encoding_differs(tmp_path, tiny):
    """A resume of a UTF-8 Chinese run with --encoding latin-1 was refused as "the corpus ... changed", and
    with --encoding utf-16 told to convert the file to UTF-8 (it is): the files are the run's, as it read them.
    The line says only the encoding differs and to drop it; an edited text is still a changed one."""
    poems = tmp_path / "poems.txt"
    poems.write_text("床前明月光，疑是地上霜。举头望明月，低头思故乡。\n" * 40, encoding="utf-8")
    charlm.train(poems, out="run", **{**tiny, "max_steps": 2})
    misread = (
        f"does not read from {poems} the text checkpoints/run trained on, though they are the run's own files, "
        "which it read as utf-8: only the encoding differs; resume without --encoding, which reads them as the run did"
    )
    for encoding in ("latin-1", "utf-16"):
        one_line_error(
            cli("train", "--resume", "run", "--encoding", encoding, "--max-steps", "4"),
            f"Error: --encoding {encoding} {misread}",
        )
    one_line_error(
        cli("train", "poems.txt", "--resume", "run", "--encoding", "latin-1", "--max-steps", "4"),
        "from poems.txt the text",
    )
    assert cli("train", "--resume", "run", "--max-steps", "3").exit_code == 0 and latest("run").progress.step == 3
    poems.write_text("床前明月光，疑是地上霜。\n" * 40, encoding="utf-8")
    one_line_error(
        cli("train", "--resume", "run", "--encoding", "latin-1", "--max-steps", "4"), "changed since the run"
    )


def test_eval_of_a_run_whose_text_was_saved_as_utf8_in_place_reads_it_and_another_encoding_is_told_how(fox_file, tiny):
    """`charlm eval RUN` of a UTF-16 run whose file was saved as UTF-8 in place, as charlm's errors ask, said
    "convert it to UTF-8 or pass another --encoding": it was, and eval's --encoding reads its FILES only. The
    run's text in UTF-8 is read (its digest checked); in another encoding, the line names the resume that
    records it, which trains nothing; a changed text is still refused."""
    text = fox_file.read_text(encoding="utf-8")
    fox_file.write_text(text, encoding="utf-16")
    charlm.train(fox_file, out="run", encoding="utf-16", **{**tiny, "max_steps": 2})
    before = cli("eval", "run", "--quiet").output
    fox_file.write_text(text, encoding="utf-8")
    assert cli("eval", "run", "--quiet").output == before
    fox_file.write_text(text.replace("lazy", "lazz", 1), encoding="utf-8")
    one_line_error(cli("eval", "run", "--quiet"), "changed since the run trained on it; give FILES to score")
    fox_file.write_text(text, encoding="utf-32")
    refused = cli("eval", "run", "--quiet")
    record = f"charlm train {fox_file} --resume checkpoints/run --encoding ENC --max-steps 1"
    one_line_error(
        refused,
        f"the run's corpus is needed (in another encoding, a resume that trains nothing records the one that reads it: {record}); give FILES",
    )
    recorded = cli(*shlex.split(record.replace("ENC", "utf-32"))[1:])
    assert "nothing to train" in recorded.output and latest("run").progress.step == 2
    assert cli("eval", "run", "--quiet").output == before


def without_text_digest(*paths: Path) -> None:
    """Cache meta.json files and checkpoints as charlm wrote them before it kept the text's digest."""
    for path in paths:
        if path.suffix == ".json":
            path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "text"}))
        else:
            payload = checkpoint.unpack(checkpoint_file.read_bytes(path), path)
            payload["run"]["corpus"].pop("text")
            path.write_bytes(checkpoint_file.serialize(payload))


def test_a_run_whose_checkpoint_keeps_no_text_digest_resumes_on_its_own_bytes_then_keeps_it(fox_file, tiny):
    """A run trained before the text's digest was kept (its cache's meta.json and checkpoint have none)
    still resumes on its unchanged file; its text re-encoded first is refused, as it always was. A resume
    on its own bytes gives its cache and checkpoint the digest: from then on its text re-encoded goes on."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    cache = Path(tokens.prepare([[fox_file]], quiet=True).folder, "meta.json")
    without_text_digest(cache, Path("checkpoints/run/latest.pt"), Path("checkpoints/run/best.pt"))
    original = fox_file.read_bytes()
    fox_file.write_bytes(original.replace(b"\n", b"\r\n"))
    with pytest.raises(CharLMError, match="changed since the run trained on it"):
        charlm.train(resume="run", max_steps=12)
    with pytest.raises(CharLMError, match="changed options \\(encoding: utf-8 -> latin-1\\)"):  # the bytes: no other
        charlm.train(resume="run", max_steps=12, encoding="latin-1")
    assert latest("run").progress.step == 10 and "text" not in latest("run").corpus
    fox_file.write_bytes(original)
    charlm.train(resume="run", max_steps=12)
    assert "text" in latest("run").corpus and "text" in json.loads(cache.read_text())
    fox_file.write_bytes(original.replace(b"\n", b"\r\n"))
    charlm.train(resume="run", max_steps=14)
    assert latest("run").progress.step == 14


def test_a_new_run_on_a_cache_prepared_without_the_text_digest_keeps_it(fox_file, tiny):
    """A run trained now on a corpus cache an older charlm prepared (its meta.json without the text's
    digest) kept none either: its text saved again with CRLF line ends was refused on resume as another
    text, where a run on a new cache goes on. The cache is given the digest, and the run keeps it."""
    cache = Path(tokens.prepare([[fox_file]], quiet=True).folder, "meta.json")
    without_text_digest(cache)
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    fox_file.write_bytes(fox_file.read_bytes().replace(b"\n", b"\r\n"))
    charlm.train(resume="run", max_steps=12)
    assert latest("run").progress.step == 12


def test_resume_with_a_lower_learning_rate_is_allowed_but_not_a_new_shape(fox_file, tiny):
    charlm.train(fox_file, out="run", **tiny)
    charlm.train(resume="run", max_steps=30, lr=1e-3)
    with pytest.raises(CharLMError, match=r"layers: 1 -> 2; seq_len: 8 -> 9"):
        charlm.train(resume="run", layers=2, seq_len=9)


def resumed_rows(run: str) -> list[str]:
    """`charlm info RUN`'s `resumed` rows, each without its label."""
    result = cli("info", run)
    assert result.exit_code == 0, result.output
    return [line.split(None, 1)[1] for line in result.output.splitlines() if line.startswith("resumed ")]


def test_a_resume_that_changes_options_says_so_and_run_json_and_info_keep_each_one(fox_file, tiny, capsys):
    """`--resume RUN --lr 1e-3` was taken without a word, and `charlm info` showed the new rate as the run's,
    with no trace of the old one or of the step it changed at: a kink in the loss curve went unexplained."""
    charlm.train(fox_file, out="run", **tiny)
    capsys.readouterr()
    charlm.train(resume="run", max_steps=30, lr=1e-3, quiet=False)  # quiet: how the run talks, not recorded
    started = capsys.readouterr().err.splitlines()[0]
    assert re.search(
        r", resumed at step 20 \(\d+s trained\) with max_steps=30 \(was 20\), lr=0.001 \(was 0.005\)$", started
    )
    first = json.loads(Path("checkpoints/run", runs.RUN_INFO).read_text(encoding="utf-8"))["resumes"]
    assert [(r["step"], r["changed"]) for r in first] == [
        (20, {"max_steps": {"was": 20, "now": 30}, "lr": {"was": 0.005, "now": 0.001}})
    ]
    assert isinstance(first[0]["elapsed"], float) and time.strptime(first[0]["time"], "%Y-%m-%d %H:%M:%S")
    with on_command_line():
        charlm.train(resume="run", max_steps=40, quiet=False)
    assert capsys.readouterr().err.splitlines()[0].endswith("trained) with --max-steps 40 (was 30)")
    second = json.loads(Path("checkpoints/run", runs.RUN_INFO).read_text(encoding="utf-8"))
    assert second["resumes"][0] == first[0] and second["resumes"][1]["changed"] == {"max_steps": {"was": 30, "now": 40}}
    assert second["config"]["lr"] == 0.001 and second["reasons"]["hidden"] == "given"  # the other fields as they were
    rows = resumed_rows("run")
    assert len(rows) == 2 and re.fullmatch(
        r"at step 20 \(\d+s trained, [-\d]+ [:\d]+\): --max-steps 30 \(was 20\), --lr 0.001 \(was 0.005\)", rows[0]
    )
    assert rows[1].endswith(": --max-steps 40 (was 30)")


def test_a_resume_that_changes_nothing_records_nothing_and_an_old_run_json_still_reads(fox_file, tiny):
    """A run.json written before resumes were recorded has no `resumes`: info and a resume read it as none.
    A resume that changes nothing adds no record, and drops one a resume from the same step left, whose
    changes no checkpoint kept (it trained nothing: its text given again, its limits spent)."""
    charlm.train(fox_file, out="run", **tiny)
    info_file = Path("checkpoints/run", runs.RUN_INFO)
    old = json.loads(info_file.read_text(encoding="utf-8"))
    old.pop("resumes", None)
    info_file.write_text(json.dumps(old), encoding="utf-8")
    assert resumed_rows("run") == []
    charlm.train(fox_file, resume="run", lr=1e-3)  # its limits spent: nothing trained, the change recorded
    assert [r["changed"] for r in json.loads(info_file.read_text(encoding="utf-8"))["resumes"]] == [
        {"lr": {"was": 0.005, "now": 0.001}}
    ]
    charlm.train(fox_file, resume="run")  # from the same checkpoint, which keeps --lr 0.005: nothing changed
    now = json.loads(info_file.read_text(encoding="utf-8"))
    for record in (now, old):  # --quiet is each command's own (`config.UNRECORDED`), this one's not given
        record["config"].pop("quiet")
    assert now["resumes"] == [] and {k: v for k, v in now.items() if k not in ("resumes", "updated")} == {
        k: v for k, v in old.items() if k != "updated"
    }
    assert resumed_rows("run") == []


def test_a_resume_on_other_hardware_says_so_once_and_the_same_hardware_says_nothing(
    fox_file, tiny, capsys, monkeypatch
):
    """A resume on another machine (here: 4 cores where the run had 2; another device, precision or torchrun's
    number of processes alike) with no option given left no trace, yet its speed figures are that machine's
    and, under torchrun, its batches are laid out anew. One row says it; the same machine adds nothing."""
    monkeypatch.setattr(charlm.threads, "available_cores", lambda: 2)
    charlm.train(fox_file, out="run", **{**tiny, "device": "cpu", "precision": "fp32"})
    monkeypatch.setattr(charlm.threads, "available_cores", lambda: 4)
    capsys.readouterr()
    with on_command_line():
        charlm.train(resume="run", max_steps=30, quiet=False)
    started = capsys.readouterr().err.splitlines()[0]
    assert started.endswith(
        "trained) with --max-steps 30 (was 20); on other hardware: cpu fp32 on 4 cores (was cpu fp32 on 2 cores)"
    ), started
    record = runs.read_resumes(Path("checkpoints/run"))
    assert [(r["step"], r["hardware"]) for r in record] == [
        (20, {"was": "cpu fp32 on 2 cores", "now": "cpu fp32 on 4 cores"})
    ]
    charlm.train(resume="run", max_steps=40)  # the same 4 cores, an option changed: no hardware said
    assert "hardware" not in runs.read_resumes(Path("checkpoints/run"))[1]
    monkeypatch.setattr(charlm.threads, "available_cores", lambda: 2)
    charlm.train(fox_file, resume="run")  # nothing but the hardware changed (nothing trained: limits spent)
    rows = resumed_rows("run")
    assert len(rows) == 3 and rows[0].endswith(
        ": --max-steps 30 (was 20); on other hardware: cpu fp32 on 4 cores (was cpu fp32 on 2 cores)"
    ), rows
    assert "hardware" not in rows[1] and rows[2].endswith(
        ": on other hardware: cpu fp32 on 2 cores (was cpu fp32 on 4 cores)"
    )


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights_as_an_uninterrupted_one(fox_file, tmp_path):
    """Ctrl-C a real training process, resume it, and compare with a run that was never stopped."""
    options = [
        "--layers",
        "1",
        "--hidden",
        "32",
        "--seq-len",
        "8",
        "--batch-size",
        "4",
        "--dropout",
        "0.2",
        "--max-steps",
        "200",  # stopped at step 25 or soon after: 175 steps of margin before the run would end
        "--max-time",
        "none",
        "--eval-every",
        "25",
        "--threads",
        "1",  # as conftest's TINY: the governor's counts would part two runs' last bits on an AVX2 CPU
        "--quiet",
    ]
    train_here(str(fox_file), "--out", "whole", *options)
    process = start_training(str(fox_file), "--out", "cut", *options)
    deadline = time.time() + 120
    while not (tmp_path / "checkpoints/cut/latest.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err  # interrupted: the shell's status for SIGINT
    stopped_at = latest("cut").progress.step
    assert 0 < stopped_at < 200, "the run should have been stopped part way"
    assert "charlm train --resume" in out and "Traceback" not in err
    train_here("--resume", "cut")
    whole, resumed = latest("whole"), latest("cut")
    assert resumed.progress.step == whole.progress.step == 200
    assert_same_weights(whole, resumed)


# -- never lose a run ------------------------------------------------------------------------


class SavedStep:
    """The step of the checkpoint at `path` (-1 while there is none), read again only when a new file has
    replaced it: a read costs milliseconds of the cores the training process needs."""

    def __init__(self, path: Path) -> None:
        self.path, self.version, self.step = path, None, -1

    def __call__(self) -> int:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return -1
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if version != self.version:
            self.version, self.step = version, checkpoint.read(self.path).progress.step
        return self.step


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_weights(fox_file, tmp_path):
    args = [*TRAIN_ARGS, "--max-steps", "320", "--eval-every", "100", "--checkpoint-every", "20"]
    train_here(str(fox_file), "--out", "whole", *args)
    rng = random.Random(0)
    kills = []
    command = [str(fox_file), "--out", "cut", *args]
    saved_step = SavedStep(tmp_path / "checkpoints/cut/latest.pt")
    # Each process is killed once its checkpoints pass a step drawn from its own part of the run, at
    # a random moment after (mid-step, mid-write or between): steps, not seconds, so that a fast
    # machine cannot finish the run before the last kill (one did: [1020, 1920, 2500] with sleeps).
    # Two kills: a new run's and a resumed run's; a third was one more try of the resumed run's.
    for low, high in ((50, 120), (180, 260)):
        process = start_training(*command)
        target = rng.randrange(low, high)
        deadline = time.time() + 120
        while saved_step() < target:
            assert process.poll() is None and time.time() < deadline, f"no checkpoint past step {target}"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills.append(latest("cut").progress.step)
        command = ["--resume", "cut"]
    assert all(0 < step < 320 for step in kills), kills
    assert len(set(kills)) == 2, f"each kill should land at a different step: {kills}"
    train_here("--resume", "cut")
    assert_same_weights(latest("whole"), latest("cut"))


@pytest.mark.slow  # a real process training while another run is started in its folder
def test_a_new_run_into_a_folder_training_now_says_it_trains_rather_than_to_resume_it(fox_file, tmp_path):
    """A second `charlm train --out RUN` while RUN trained was told to continue it with --resume RUN: a
    resume refused, the folder in use. It is told the run trains now, by which process, and to wait or stop it."""
    process = start_training(str(fox_file), "--out", "busy", *TRAIN_ARGS, "--eval-every", "4", "--max-steps", "100000")
    try:
        wait_for(tmp_path / "checkpoints/busy/latest.pt")
        result = cli("train", str(fox_file), "--out", "busy", *TRAIN_ARGS, "--max-steps", "1")
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    said = f"checkpoints/busy already holds a run training now (process {process.pid}); wait for it or stop it, then "
    one_line_error(result, said + "continue it with --resume checkpoints/busy, or pick another --out")


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_sigint_saves_at_a_step_boundary_and_says_how_to_resume(fox_file, tmp_path):
    process = start_training(str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "100000")
    wait_for(tmp_path / "checkpoints/run/.lock")
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err
    step = latest("run").progress.step
    assert f"stopped at step {step}" in out and "charlm train --resume checkpoints/run" in out
    assert not (tmp_path / "checkpoints/run/.lock").exists()


# Run in a process before `python -m charlm`: SIGHUP ignored, as `nohup charlm train ...` starts it.
UNDER_NOHUP = "import signal\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\n"


@pytest.mark.slow  # a real process, training and signalled
@pytest.mark.parametrize("nohup", [False, True], ids=["at-a-terminal", "under-nohup"])
def test_a_hang_up_saves_and_stops_a_run_unless_nohup_ignores_it(fox_file, tmp_path, nohup):
    """A closed terminal or a dropped ssh session (SIGHUP) killed a plain `charlm train` unsaved: every step
    since its last checkpoint was lost (torchrun's ranks alone saved). It stops as SIGTERM stops it: saved,
    the resume command said, exit 129. Under nohup the hang-up is ignored and the run trains on."""
    args = ["train", str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "100000"]
    process = start_python((UNDER_NOHUP if nohup else "") + forkserver.CHARLM, *args)
    try:
        wait_for(tmp_path / "checkpoints/run/.lock", timeout=60)
        process.send_signal(signal.SIGHUP)
        if nohup:
            time.sleep(1.0)
            assert process.poll() is None, "a hang-up nohup ignores stopped the run"
            process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    signum = signal.SIGINT if nohup else signal.SIGHUP
    step = latest("run").progress.step
    assert process.returncode == 128 + signum and "Traceback" not in err, (out, err)
    assert out.splitlines()[-1].startswith(f"stopped at step {step}; checkpoints/run holds step {step}: resume with")


@pytest.mark.slow  # a real process, training at a terminal that is then closed
def test_a_run_whose_terminal_is_closed_saves_scores_and_stops_as_at_a_terminal(fox_file, tmp_path):
    """A closed terminal hangs the run up (SIGHUP), and from then on every write there fails (EIO): the stop
    line raised, so the run exited 1, latest.pt written but its final scoring and best.pt left to chance. It
    ends as it does at a terminal still open: saved, scored, status 129; what it says goes nowhere."""
    shown = [arg for arg in TRAIN_ARGS if arg != "--quiet"]  # the bar and the stop lines: the writes that fail
    args = ["-m", "train", str(fox_file), "--out", "run", *shown, "--max-steps", "100000", "--eval-every", "100000"]
    training = re.compile(rb"[1-9]\d*/100000").search  # the bar counts steps
    status, _ = forkserver.hung_up(forkserver.CHARLM, args, training)
    step = latest("run").progress.step
    assert status == 128 + signal.SIGHUP
    assert checkpoint.read(tmp_path / "checkpoints/run/best.pt").progress.step == step  # scored, kept
    assert not (tmp_path / "checkpoints/run/.lock").exists()


# Run in a process before `python -m charlm`: `charlm train` stalls at OWNER.NAME, saying so in MARK.
STALL_AT = """
import importlib, pathlib, time
owner = importlib.import_module({module!r})
for part in {owner!r}.split(".")[:-1]:
    owner = getattr(owner, part)

def stall(*args, **kwargs):
    pathlib.Path({mark!r}).touch()
    time.sleep(60)

setattr(owner, {owner!r}.split(".")[-1], stall)
"""


def stalled_training(module: str, owner: str, mark: Path, fox_file: Path) -> forkserver.Forked:
    """`python -m charlm train` on `fox_file` that stalls at MODULE's OWNER (`STALL_AT`): forked from a
    process that has imported torch and charlm (`start_python`), ~3 s of CPU sooner than a process with a
    sitecustomize hook, and patched before the command runs, as the hook patched the modules it imported."""
    stall = STALL_AT.format(module=module, owner=owner, mark=str(mark))
    return start_python(stall + forkserver.CHARLM, "train", str(fox_file), *TRAIN_ARGS, "--max-steps", "20")


@pytest.mark.slow  # a real process, stalled and signalled
@pytest.mark.parametrize(
    ("module", "owner", "signum"),
    [
        ("charlm.plan", "decide", signal.SIGINT),
        ("charlm.trainer", "Trainer.__init__", signal.SIGINT),
        ("charlm.plan", "decide", signal.SIGTERM),
        ("charlm.trainer", "Trainer.__init__", signal.SIGHUP),  # a terminal closed: its folder claimed by then
        ("charlm.distributed", "Ranks.broadcast_object", signal.SIGINT),  # its folder claimed: torchrun's ranks wait
    ],
    ids=["planning", "building", "planning-sigterm", "building-sighup", "handing-over"],
)
def test_a_signal_before_training_starts_says_nothing_was_written_and_leaves_no_folder(
    fox_file, tmp_path, module, owner, signum
):
    """Ctrl-C while a new run was planned said "interrupted; checkpoints already written are intact", of a
    run that had written none; and one while its model was built, or its plan handed over to the ranks,
    left the run folder claimed for it (checkpoints/fox-DATE, or .fox-DATE.claim), behind. SIGTERM then exited 143 without a word. Each says nothing was
    written, with the shell's status for its signal, and nothing is left to clean up."""
    process = stalled_training(module, owner, tmp_path / "stalled", fox_file)
    try:
        wait_for(tmp_path / "stalled", timeout=60)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    status = process.returncode
    said = "interrupted before training started; no run folder or checkpoint was written, so nothing needs cleaning up"
    assert status == 128 + signum and out.splitlines()[-1:] == [said], (out, err)  # on stdout, as `stopped at step N`
    assert not list(Path("checkpoints").glob("*"))  # a claim (.fox-DATE.claim) too


# Run in a process before `python -m charlm`: `charlm train` sends itself SIGTERM as it starts step 5, then
# stalls in the scoring that stop makes, saying so in MARK: a docker stop's 10 s, or systemd's SIGKILL after
# SIGTERM, running out while a big model scores its held-out text.
TERMINATED_THEN_STALLED = """
import os, pathlib, signal, time
from charlm import train_state, trainer
real_step, real_score, stopping = train_state.train_step, trainer.bits_per_char, []

def step_then_terminated(state, share):
    if state.progress.step == 5:
        os.kill(os.getpid(), signal.SIGTERM)
        stopping.append(True)
    return real_step(state, share)

def stalled_once_stopping(*args, **kwargs):
    if stopping:
        pathlib.Path({mark!r}).touch()
        time.sleep(60)
    return real_score(*args, **kwargs)

train_state.train_step, trainer.bits_per_char = step_then_terminated, stalled_once_stopping
"""


@pytest.mark.slow  # a real process, signalled, stalled and killed
def test_a_run_killed_while_its_stop_scores_keeps_the_stop_step_and_resumes_exactly(fox_file, tmp_path):
    """A signal stop scored the held-out text before it wrote latest.pt: killed while scoring (docker's 10 s,
    systemd's SIGKILL after SIGTERM), a big model's run lost every step since its last checkpoint. It writes
    latest.pt first, best.pt and metrics.jsonl left to the scoring, and a resume from it is the whole run's."""
    options = [*TRAIN_ARGS, "--eval-every", "4", "--max-steps", "12"]
    hook = TERMINATED_THEN_STALLED.format(mark=str(tmp_path / "scoring"))
    process = start_python(hook + forkserver.CHARLM, "train", str(fox_file), "--out", "cut", *options)
    try:
        wait_for(tmp_path / "scoring", timeout=60)
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert latest("cut").progress.step == 6  # stopped as step 6 ended; 4 before
    assert checkpoint.read(tmp_path / "checkpoints/cut/best.pt").progress.step == 4
    rows = [json.loads(line) for line in (tmp_path / "checkpoints/cut/metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "val_bpc" in row] == [4]
    train_here("--resume", "cut")
    train_here(str(fox_file), "--out", "whole", *options)
    assert_same_weights(latest("whole"), latest("cut"))


# Run in a process before `python -m charlm`: `charlm train` stalls in its second scoring, the last step's (the
# first is step 10's), saying so in MARK; once a Ctrl-C has asked the run to stop, it scores, says so in SCORED,
# and stalls: a big model's last scoring takes tens of seconds.
STALLED_IN_THE_LAST_SCORING = """
import pathlib, signal, time
from charlm import trainer
real_score, scored = trainer.bits_per_char, []

def stalled_in_the_second_scoring(*args, **kwargs):
    scored.append(args)
    if len(scored) == 2:
        pathlib.Path({mark!r}).touch()
        while not signal.getsignal(signal.SIGINT).asked:
            time.sleep(0.01)
        real_score(*args, **kwargs)
        pathlib.Path({scored!r}).touch()
        time.sleep(60)
    return real_score(*args, **kwargs)

trainer.bits_per_char = stalled_in_the_second_scoring
"""


@pytest.mark.slow  # a real process, stalled and signalled twice
def test_two_ctrl_cs_as_the_last_step_scores_keep_the_last_step(fox_file, tmp_path):
    """Two Ctrl-Cs as a run's last step (13, off its --eval-every 10) was scored quit before it was saved: the run
    kept step 10 and lost the steps since, and said `resume` of a run whose limits were spent. The last step is
    saved before its scoring, which the second Ctrl-C cuts short, as the stop line says. The first went unsaid
    until the scoring ended, which invited the second: the scoring hears it, and the run says at once what it does."""
    options = [*TRAIN_ARGS, "--eval-every", "10", "--max-steps", "13"]
    hook = STALLED_IN_THE_LAST_SCORING.format(mark=str(tmp_path / "scoring"), scored=str(tmp_path / "scored"))
    said = [arg for arg in options if arg != "--quiet"]
    process = start_python(hook + forkserver.CHARLM, "train", str(fox_file), "--out", "run", *said)
    try:
        wait_for(tmp_path / "scoring", timeout=60)
        process.send_signal(signal.SIGINT)
        wait_for(tmp_path / "scored", timeout=30)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in err, err
    stopping = "stopping at step 13: saved it (checkpoints/run); scoring the held-out text; Ctrl-C again stops at once"
    assert f"{stopping}, keeping it\n" in err, err  # said as it scored, before the second Ctrl-C
    assert out.splitlines()[-1] == (
        "interrupted; checkpoints/run holds step 13, the run's last, its score not finished: "
        "resume with charlm train --resume checkpoints/run to score it"
    )
    assert latest("run").progress.step == 13


@pytest.mark.slow  # a real process, stalled and killed
def test_a_run_killed_while_its_model_was_built_leaves_no_folder_a_run_would_be_taken_for(fox_file, tmp_path, tiny):
    """`charlm train` killed (SIGKILL) after it claimed checkpoints/fox-DATE, before run.json was in it,
    left that folder empty for good: a folder of no run. The folder appears under its name only with
    run.json in it; its hidden claim, the run's whole trace, is removed by the next run."""
    process = stalled_training("charlm.trainer", "Trainer.__init__", tmp_path / "stalled", fox_file)
    try:
        wait_for(tmp_path / "stalled", timeout=60)
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert [p.name for p in Path("checkpoints").iterdir() if not p.name.startswith(".")] == []
    one_line_error(cli("runs"), "no runs under checkpoints/")
    charlm.train(fox_file, **tiny)
    assert [p.name for p in Path("checkpoints").iterdir()] == [runs.latest_run().name]


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=False, capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()}); the simulated test covers it")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow
def test_a_full_disk_keeps_the_previous_checkpoint(fox_file, small_disk):
    run = small_disk / "run"
    train_here(str(fox_file), "--out", str(run), *TRAIN_ARGS, "--max-steps", "10")  # the resume is the real process
    before = (run / "latest.pt").read_bytes()
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - 4096))
    result = run_cli("train", "--resume", str(run), "--max-steps", "20")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "No space left on device" in result.stderr and "the previous one is intact" in result.stderr
    assert (run / "latest.pt").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == [
        "best.pt",
        "latest.pt",
        "metrics.jsonl",
        "run.json",
    ]  # no temporary, no lock


def test_a_full_disk_mid_run_says_what_to_do_and_the_run_resumes_once_there_is_room(fox_file, tiny):
    """A checkpoint that could not be written stopped the run without saying what to do or how to go on."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    run = Path("checkpoints/run")
    with file_size_limit((run / "latest.pt").stat().st_size // 2), pytest.raises(CharLMError) as error:
        charlm.train(resume="run", max_steps=30)
    assert (
        str(error.value)
        == (  # step 20 improved: best.pt, written first, is the file that failed
            "checkpoints/run/best.pt: could not write checkpoint (File too large); the previous one is intact; free "
            "space on its disk (or raise the file size limit, ulimit -f); training stopped at step 20; checkpoints/run "
            "holds step 10: resume with charlm.train(resume='checkpoints/run')"  # the call a Python caller makes, not a command
        )
    )
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "latest.pt", "metrics.jsonl", "run.json"]
    assert latest("run").progress.step == 10
    charlm.train(resume="run", max_steps=30)
    assert latest("run").progress.step == 30


def test_a_first_checkpoint_half_written_says_best_pt_holds_it_and_the_run_resumes_from_it(fox_file, tiny, monkeypatch):
    """The disk filled between the first best.pt and latest.pt: the run said `no checkpoint was written`
    and gave no way on, though best.pt held the step, and training into the folder again was refused
    (`already holds a run`)."""
    real = files.replace_files

    def no_room_for_latest(contents: dict, before_rename=None) -> None:
        if any(path.name == runs.LATEST for path in contents):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(contents, before_rename)

    monkeypatch.setattr(files, "replace_files", no_room_for_latest)
    with pytest.raises(CharLMError) as error:
        charlm.train(fox_file, out="run", **tiny)
    assert str(error.value) == (
        "checkpoints/run/latest.pt: could not write checkpoint (No space left on device); best.pt holds this step; "
        "free space on its disk (or raise the file size limit, ulimit -f); training stopped at step 10; "
        "checkpoints/run holds step 10: resume with charlm.train(resume='checkpoints/run')"
    )
    monkeypatch.setattr(files, "replace_files", real)
    charlm.train(resume="checkpoints/run", max_steps=12)
    assert latest("run").progress.step == 12


def test_a_first_checkpoint_not_written_at_all_says_to_train_again_in_the_folder_it_left_free(
    fox_file, tiny, monkeypatch
):
    """The first checkpoint refused whole (no best.pt either) ended `...; training stopped at step 10` with no
    way on, where a run stopped then says that nothing was saved and its folder takes the run again."""
    real = files.replace_files

    def no_room(contents: dict, before_rename=None) -> None:
        if any(path.name in (runs.BEST, runs.LATEST) for path in contents):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(contents, before_rename)

    monkeypatch.setattr(files, "replace_files", no_room)
    with pytest.raises(CharLMError) as error:
        charlm.train(fox_file, out="run", **tiny)
    assert str(error.value).endswith(
        "free space on its disk (or raise the file size limit, ulimit -f); training stopped at step 10; "
        "nothing was saved: train again (out='checkpoints/run' is still free)"
    ), error.value
    monkeypatch.setattr(files, "replace_files", real)
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 12})  # free, as said
    assert latest("run").progress.step == 12


def test_samples_that_cannot_be_written_are_a_warning_not_the_end_of_the_run(fox_file, tiny, capsys):
    """samples.txt, unlike metrics.jsonl, stopped the run when it could not be written: a traceback-less
    `Error: ...: Is a directory` at the first sample, the rest of the run untrained."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    (Path("checkpoints/run") / runs.SAMPLES).mkdir()  # a write that fails, whoever runs the test
    charlm.train(resume="run", max_steps=30, sample_every=1, quiet=False)
    assert latest("run").progress.step == 30
    assert (
        capsys.readouterr().err.count(
            "samples.txt: cannot write (Is a directory); a folder stands where the file goes: move it, or write elsewhere; training goes on"
        )
        == 1
    )


def test_write_errors_stop_the_run_or_warn_and_go_on(fox_file, tiny, monkeypatch, capsys):
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    good = latest("run")
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(CharLMError, match="Input/output error.*training stopped at step 20"):
        charlm.train(resume="run", max_steps=30)
    charlm.train(resume="run", max_steps=30, save_errors="warn")  # warns, trains on, nothing saved
    assert "write elsewhere; training goes on (save_errors='warn')" in capsys.readouterr().err
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert_same_weights(latest("run"), good)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(fox_file, tiny, monkeypatch):
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 20, "lr": 3e-3})  # suggested: a quarter of it
    good = latest("run")
    calls = {"n": 0}
    real = FullHead.nats

    def poisoned(self, out, targets):
        calls["n"] += 1
        nats = real(self, out, targets)
        return nats * float("nan") if calls["n"] > 5 else nats

    monkeypatch.setattr(FullHead, "nats", poisoned)
    resume = r"charlm\.train\(resume='checkpoints/run', lr=0\.00075\)"  # a Python caller's call, not a command
    with pytest.raises(CharLMError, match=rf"diverged .*after step 20.*: resume with {resume}$"):
        charlm.train(resume="run", max_steps=60)
    assert_same_weights(latest("run"), good)
    assert all(torch.isfinite(t).all() for t in latest("run").weights.values())


def test_a_last_step_that_blows_the_weights_up_keeps_the_good_checkpoints_and_a_lower_lr_resumes(fox_file, tiny):
    """The loss is computed before the step's update: a step whose update threw the weights past what a
    checkpoint reader takes (an absurd lr) had a finite loss, so the run saved its weights over latest.pt
    and best.pt at its end and said nothing; every command then refused both files."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 10})
    run = Path("checkpoints/run")
    before = {name: (run / name).read_bytes() for name in (runs.BEST, runs.LATEST)}
    resume = (
        "checkpoints/run holds step 10: resume with charlm.train(resume='checkpoints/run', lr=0.005)"  # the default
    )
    with pytest.raises(
        CharLMError, match=r"^training diverged \(embed\.weight became NaN, infinite or past 1e\+12 after step 10\)"
    ) as error:
        charlm.train(resume="run", max_steps=11, lr=1e30)
    assert str(error.value).endswith(resume)
    assert {name: (run / name).read_bytes() for name in before} == before
    charlm.train(resume="run", max_steps=12, lr=5e-3)
    assert latest("run").progress.step == 12


def test_a_run_diverged_from_its_start_at_an_absurd_lr_is_told_the_default(fox_file):
    """lr/4 of --lr 1e6 (2.5e+05) diverges again: the default is the lower rate to try."""
    result = cli("train", str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "20", "--lr", "1e6")
    one_line_error(result, "training diverged", "start again with a lower --lr, e.g. 0.005")
    assert not Path("checkpoints/run/best.pt").exists() and not Path("checkpoints/run/latest.pt").exists()


# -- every run ends scored ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "limits", [{"max_steps": 20, "checkpoint_every": 10}, {"max_steps": 20, "checkpoint_every": 20}]
)
def test_the_final_weights_are_scored_even_when_the_last_step_is_also_a_save(fox_file, tiny, limits):
    charlm.train(fox_file, out="run", **{**tiny, "eval_every": 2000, **limits})
    saved = latest("run")
    assert saved.progress.step == 20 and saved.progress.val_bpc is not None
    assert saved.progress.best_bpc == saved.progress.val_bpc
    best = checkpoint.read(runs.resolve("run", prefer=runs.BEST))
    assert best.progress.step == 20


def test_the_cli_summary_of_a_run_whose_last_step_was_a_save(fox_file):
    """It crashed (a TypeError formatting a missing val_bpc); in this process, an exception is a status 1."""
    result = cli("train", str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "100", "--checkpoint-every", "50")
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "done: step 100" in result.stdout and "validation" in result.stdout


def test_a_trained_model_comes_back_ready_for_inference(fox_file, tiny):
    model = charlm.train(fox_file, out="run", **tiny)
    assert not model.training and not any(m.training for m in model.modules())


class Killed(BaseException):
    """The process dying where it is raised: nothing after it runs, no handler catches it."""


def test_a_kill_between_the_two_checkpoint_files_leaves_best_pt_holding_the_best(fox_file, tiny, monkeypatch):
    """latest.pt was written before best.pt: a kill between them, at the final evaluation, left a run
    that said its best was its last step (and was over: nothing to resume) while best.pt, which
    `charlm sample` reads, held the evaluation before."""
    real_replace, writes = files.replace_files, []

    def die_at_the_fourth_write(contents, before_rename=None):
        writes.append(contents)
        if len(writes) == 4:  # the second file of the improved evaluation at step 4, the last
            raise Killed
        real_replace(contents, before_rename)

    monkeypatch.setattr(files, "replace_files", die_at_the_fourth_write)
    with pytest.raises(Killed):
        charlm.train(fox_file, out="run", **{**tiny, "max_steps": 4, "eval_every": 2})
    monkeypatch.setattr(files, "replace_files", real_replace)
    best = Path("checkpoints/run") / runs.BEST
    assert checkpoint.read(best).progress.step >= latest("run").progress.best_step
    charlm.train(resume="run")
    assert checkpoint.read(best).progress.step == latest("run").progress.best_step == 4


def test_a_run_whose_last_saves_failed_says_what_was_and_was_not_saved(fox_file, monkeypatch):
    first = cli("train", str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "10")
    assert first.exit_code == 0, first.output

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    result = cli("train", "--resume", "run", "--max-steps", "30", "--save-errors", "warn")
    assert result.exit_code == 0, result.output
    assert "saved in" not in result.output
    assert "not saved" in result.output and "checkpoints/run holds step 10" in result.output
    assert latest("run").progress.step == 10


@pytest.mark.parametrize("refused", ["every checkpoint", "latest.pt"])
def test_a_run_that_warned_of_every_save_ends_saying_which_best_it_kept(fox_file, monkeypatch, refused):
    """With --save-errors warn on a full disk the run ended in a traceback (the done: line formatted a best
    bpc of None): none saved, or best.pt saved but latest.pt not, whose best was then put back as unsaved.
    None saved ended "RUN holds no checkpoint", with no way on, where the stop line says to train again."""
    real = files.replace_files

    def no_room(contents: dict, before_rename=None) -> None:
        if refused == "every checkpoint" or any(path.name == runs.LATEST for path in contents):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(contents)

    monkeypatch.setattr(files, "replace_files", no_room)
    options = ["--max-steps", "20", "--eval-every", "10", "--save-errors", "warn"]
    result = cli("train", str(fox_file), "--out", "run", *TRAIN_ARGS, *options)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    done = next(line for line in result.output.splitlines() if line.startswith("done: step 20"))
    if refused == "every checkpoint":
        assert "(best none saved); not saved" in done  # as the stop line words it (run_notes.stopped_note)
        assert done.endswith("; nothing was saved: train again (--out checkpoints/run is still free)")
        monkeypatch.setattr(files, "replace_files", real)
        assert cli("train", str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "10").exit_code == 0
    else:
        best = checkpoint.read(Path("checkpoints/run/best.pt")).progress
        assert f"(best {best.best_bpc:.3f}); not saved" in done and "checkpoints/run holds step 20" in done


@pytest.mark.parametrize("max_steps", [20, 25])  # the last step is an evaluation's; between evaluations
def test_a_finished_runs_failed_last_save_does_not_say_training_goes_on(fox_file, monkeypatch, max_steps):
    """Under --save-errors warn a full disk's last save, just before the `done:` line, warned `training goes
    on` of a run that had ended. It is warned once, as the end it is, in a signal stop's words."""

    def no_room(contents: dict, before_rename=None) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "replace_files", no_room)
    options = ["--max-steps", str(max_steps), "--eval-every", "10", "--checkpoint-every", "5", "--save-errors", "warn"]
    result = cli("train", str(fox_file), "--out", "run", *TRAIN_ARGS, *options)
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "could not write checkpoint" in line]
    assert all(line.endswith("; training goes on (--save-errors warn)") for line in warned[:-1]), warned
    assert warned[-1].endswith("; the run stops without this step's checkpoint (--save-errors warn)"), warned
    assert len(warned) == max_steps // 5, warned  # the last step's save, once: not its --checkpoint-every one too
    assert result.stdout.splitlines()[-1].startswith(f"done: step {max_steps}, "), result.stdout


def test_the_generator_state_of_a_gpu_is_saved_and_restored(fox_file, tiny, monkeypatch):
    """Dropout on a GPU draws from the CUDA generator: a resume must continue its stream, not restart it.
    (No GPU here: torch.cuda's generator functions are stood in for, on a trainer told it runs on cuda:0.)"""
    states = {"saved": torch.arange(16, dtype=torch.uint8), "restored": None}

    def set_state(state, device):
        states["restored"] = (state.clone(), device)

    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: states["saved"])
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_state)
    first = api.start_run(charlm.Config(**tiny), [str(fox_file)], out="run")
    first.state.device = torch.device("cuda", 0)
    saved = first.checkpoint()
    assert torch.equal(saved.training.device_rngs, states["saved"].unsqueeze(0))
    second = api.start_run(charlm.Config(**tiny), [str(fox_file)], out="other")
    second.state.device = torch.device("cuda", 0)
    second.restore(saved)
    restored, device = states["restored"]
    assert torch.equal(restored, states["saved"]) and device == torch.device("cuda", 0)


def test_a_checkpoint_of_another_corpus_handed_to_restore_is_refused(fox_file, tiny, tmp_path):
    """`runtext.run_corpus` reads a resume's own corpus, so only a caller of `Trainer.restore` can hand it
    another's checkpoint: the weights would go on training, with the other text's ids, on this one."""
    other_text = tmp_path / "other.txt"
    other_text.write_text("a wholly other text, of other words\n" * 40, encoding="utf-8")
    saved = api.start_run(charlm.Config(**tiny), [str(other_text)], out="run").checkpoint()
    resumed = api.start_run(charlm.Config(**tiny), [str(fox_file)], out="other")
    with pytest.raises(CharLMError, match="its checkpoint is of another corpus than the one read for it"):
        resumed.restore(saved)


def test_a_resume_that_reseeds_seeds_the_generator_of_the_gpu_it_runs_on(fox_file, tiny, monkeypatch):
    """A run resumed on another device type reseeds its GPU's generator: cuda:1's for a run on cuda:1.
    torch.cuda.manual_seed seeds the current device's, cuda:0 in a process that never set one, and left
    cuda:1's as training's start had seeded it. (No GPU here: two stand-in generators, on a trainer told
    it runs on cuda:1.)"""
    generators = (torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    monkeypatch.setattr(torch.cuda, "default_generators", generators)
    on_the_cpu = charlm.Config(**tiny, device="cpu")  # a CPU run's on a GPU machine too: no CUDA state to restore
    saved = api.start_run(on_the_cpu, [str(fox_file)], out="run").checkpoint()
    resumed = api.start_run(on_the_cpu, [str(fox_file)], out="other")
    resumed.state.device = torch.device("cuda", 1)
    resumed.restore(saved)
    reseed = resumed.config.random_seed + saved.progress.step
    assert [g.initial_seed() for g in generators] == [1, reseed]


def test_a_run_with_an_adaptive_head_trains_resumes_and_samples(fox_file, tiny):
    tiny.update(head="adaptive", hidden=48, lr=1e-2, max_steps=120, eval_every=60, dropout=0.0)
    model = charlm.train(fox_file, out="run", **tiny)
    saved = latest("run")
    assert saved.model_config.head_cutoffs and saved.progress.best_bpc < 1.0
    assert charlm.generate(model, "the quick", length=30, greedy=True).startswith("the quick brown fox")
    assert torch.equal(charlm.load("run").head.rank, model.head.rank)
    charlm.train(resume="run", max_steps=130)
    assert latest("run").progress.step == 130


def test_a_run_much_slower_than_its_size_probe_says_so(fox_file, tiny, monkeypatch, capsys):
    monkeypatch.setattr(trainer, "SETTLED", (0.0, 0.0))  # compare at the first step
    timed = {**tiny, "quiet": False, "max_time": "1h"}  # the probe only runs for a time budget
    run = api.start_run(charlm.Config(**timed), [str(fox_file)], out="run")
    fitted = {**run.plan.reasons, "hidden": "fits the budget"}  # as if the probe chose hidden=32
    run.plan = dataclasses.replace(run.plan, probed_chars_per_second=1e12, reasons=fitted)  # an impossibly fast machine
    run.fit()
    err = capsys.readouterr().err
    assert "of the 1,000,000,000,000 the size probe measured for hidden=32" in err  # as a Python caller wrote it
    assert "than the size rule planned (give hidden to choose yourself)" in err
    quick = api.start_run(charlm.Config(**timed), [str(fox_file)], out="quick")
    quick.plan = dataclasses.replace(quick.plan, probed_chars_per_second=1.0)  # slower than any run: no warning
    quick.fit()
    assert "size probe" not in capsys.readouterr().err


def test_a_slow_run_of_a_given_size_names_the_dropout_fitted_to_its_speed(fox_file, tiny, monkeypatch, capsys):
    """`charlm train --hidden 64 --max-time 60s` on a machine that got busier was told the model would see
    fewer characters per parameter "than the size rule planned (give --hidden to choose yourself)": its
    size was given, and the probe had timed it for the passes --dropout was fitted to."""
    monkeypatch.setattr(trainer, "SETTLED", (0.0, 0.0))  # compare at the first step
    run = api.start_run(charlm.Config(**{**tiny, "quiet": False, "max_time": "1h"}), [str(fox_file)], out="run")
    assert run.plan.reasons["hidden"] == "given" and run.plan.probed_chars_per_second  # dropout fitted to its speed
    run.plan = dataclasses.replace(run.plan, probed_chars_per_second=1e12)  # an impossibly fast machine
    run.fit()
    err = capsys.readouterr().err
    assert "of the 1,000,000,000,000 the speed probe measured for hidden=32" in err
    assert f"fewer passes over its text than dropout={run.config.dropout:g} was fitted to (give dropout to" in err
    assert "size rule" not in err


def test_a_best_checkpoint_that_could_not_be_written_is_replaced_by_the_next_better_one(fox_file, tiny, monkeypatch):
    """Validation 4.0, 3.0 (its write fails), 3.5, 3.6: best.pt must end at 3.5, the best on disk."""
    scripted = iter([4.0, 3.0, 3.5, 3.6])
    monkeypatch.setattr(trainer, "bits_per_char", lambda model, ids, limit, each_window: next(scripted))
    real_save = trainer.save

    def failing_at_40(saved, paths, before_rename=None):
        if saved.progress.step == 40:
            raise checkpoint.NotSaved("disk error", [])
        return real_save(saved, paths, before_rename)

    monkeypatch.setattr(trainer, "save", failing_at_40)
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 80, "eval_every": 20, "save_errors": "warn"})
    best = checkpoint.read(runs.resolve("run", prefer=runs.BEST))
    assert (best.progress.step, best.progress.best_bpc) == (60, 3.5)


def test_a_best_checkpoint_kept_aside_when_latest_pt_failed_is_not_replaced_by_a_worse_one(fox_file, tiny, monkeypatch):
    """Validation 4.0, 3.0, 3.5: at 3.0 best.pt was held open (kept aside as best.pending.pt) and latest.pt
    met a full disk. The run judged best.pt unwritten (the file at best.pt was unchanged), put 4.0 back
    as its best, and 3.5 then replaced the kept 3.0: the write now says what it wrote."""
    scores = []

    def scripted(model, ids, limit, each_window):
        scores.append([4.0, 3.0, 3.5][len(scores)])
        return scores[-1]

    real = files.replace_files

    def held_open_then_full(contents: dict, before_rename=None) -> None:
        (path,) = contents
        if scores == [4.0, 3.0] and path.name == runs.BEST:
            raise PermissionError(errno.EACCES, "Permission denied")  # Windows: a reader holds it open
        if scores == [4.0, 3.0] and path.name == runs.LATEST:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(contents, before_rename)

    monkeypatch.setattr(trainer, "bits_per_char", scripted)
    monkeypatch.setattr(files, "replace_files", held_open_then_full)
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 60, "eval_every": 20, "save_errors": "warn"})
    best = checkpoint.read(runs.resolve("run", prefer=runs.BEST)).progress
    assert (best.step, best.best_bpc) == (40, 3.0)
    assert latest("run").progress.best_bpc == 3.0


def test_a_run_whose_validation_stops_improving_stops_early_once(fox_file, tiny, monkeypatch, capsys):
    """Validation 4.0, 3.0, then only worse: with --patience 2 the run stops after the second worse
    evaluation, says so once (not --quiet), and best.pt holds step 20; --patience 0 trains on to the end."""
    monkeypatch.setattr(trainer, "bits_per_char", lambda model, ids, limit, each_window: next(scripted))
    scripted = iter([4.0, 3.0, 3.5, 3.6, 3.7, 3.8])
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 100, "eval_every": 10, "patience": 2, "quiet": False})
    assert latest("run").progress.step == 40 and latest("run").progress.worse_evaluations == 2
    best = checkpoint.read(runs.resolve("run", prefer=runs.BEST)).progress
    assert (best.step, best.best_bpc, best.best_step) == (20, 3.0, 20)
    assert capsys.readouterr().err.count("validation has not improved for 2 evaluations") == 1
    scripted = itertools.chain([4.0, 3.0], itertools.repeat(3.5))
    charlm.train(fox_file, out="patient", **{**tiny, "max_steps": 100, "eval_every": 10, "patience": 0})
    assert latest("patient").progress.step == 100


def test_an_evaluation_that_runs_out_of_patience_and_fails_its_save_does_not_say_training_goes_on(
    fox_file, tiny, monkeypatch, capsys
):
    """Under --save-errors warn, the evaluation that ran out of --patience on a full disk warned `training goes
    on`, then stopped the run: --patience decided only after the save. Its failure is warned as the end it is."""
    monkeypatch.setattr(trainer, "bits_per_char", lambda model, ids, limit, each_window: next(scripted))
    scripted = iter([4.0, 3.0, 3.5, 3.6, 3.7, 3.8])
    disk_full_once_saved(monkeypatch, Path("checkpoints/run"))
    options = {"max_steps": 100, "eval_every": 10, "patience": 2, "save_errors": "warn", "quiet": False}
    charlm.train(fox_file, out="run", **{**tiny, **options})
    said = capsys.readouterr().err.splitlines()
    warned = [line for line in said if line.startswith("warning:") and "could not write checkpoint" in line]
    assert len(warned) == 3 and latest("run").progress.step == 10, said  # steps 20, 30, 40: patience stops at 40
    assert all(line.endswith("; training goes on (save_errors='warn')") for line in warned[:-1]), warned
    assert warned[-1].endswith("; the run stops without this step's checkpoint (save_errors='warn')"), warned
    assert sum("validation has not improved for 2 evaluations" in line for line in said) == 1, said


def test_a_run_that_runs_out_of_patience_with_no_best_saved_says_so(fox_file, tiny, monkeypatch, capsys):
    """Under --save-errors warn with every write failing (a full disk from the start), best.pt never held a best,
    so the run kept none (best_bpc None); --patience running out then formatted it as a figure and crashed with a
    TypeError traceback. Its line says none was saved, as `done:` does, and promises no best.pt."""
    monkeypatch.setattr(trainer, "bits_per_char", lambda model, ids, limit, each_window: next(scripted))
    scripted = iter([4.0, 3.0, 3.5, 3.6, 3.7, 3.8])

    def full_disk(saved, paths, before_rename=None):
        raise checkpoint.NotSaved("No space left on device", [])

    monkeypatch.setattr(trainer, "save", full_disk)
    options = {"max_steps": 100, "eval_every": 10, "patience": 2, "save_errors": "warn", "quiet": False}
    charlm.train(fox_file, out="run", **{**tiny, **options})
    said = capsys.readouterr().err
    assert "validation has not improved for 2 evaluations (best none saved, now 3.600)" in said, said
    assert "stopping early (patience=0 trains on)" in said and "best.pt keeps" not in said, said


def test_a_resume_with_its_limits_spent_draws_no_progress_bar(fox_file, tiny, capsys):
    """A resume with nothing to train (its text given: recorded) drew a full bar (`2/2`) above and below its line: a
    bar for steps that were never taken. Its start line, that line and `done:` stay; steps or time spent alike."""
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 2})
    capsys.readouterr()
    for spent_limit in ({"max_steps": 2}, {"max_steps": 100, "max_time": 0.001}):
        charlm.train(fox_file, resume="run", quiet=False, **spent_limit)
        said = capsys.readouterr().err
        assert "nothing to train" in said and "done: step 2" in said, said
        assert "2/2" not in said and "|" not in said, said
    assert latest("run").progress.step == 2


def test_a_run_stopped_by_patience_stays_stopped_when_resumed_unless_patience_is_raised(fox_file, tiny, capsys):
    """A resume with the same limits trained another --eval-every steps before --patience stopped it
    again (only the count of worse evaluations was saved): it now says why and trains nothing, even
    --quiet, with no progress bar; a --patience above the count trains until it is reached, 0 to the limit."""
    scripted = itertools.chain([4.0, 3.0, 3.5, 3.6, 3.7], itertools.repeat(3.8))
    trainer_options = {**tiny, "max_steps": 100, "eval_every": 10, "patience": 2}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "bits_per_char", lambda model, ids, limit, each_window: next(scripted))
        charlm.train(fox_file, out="run", **trainer_options)
        assert latest("run").progress.step == 40
        capsys.readouterr()
        charlm.train(resume="run", max_steps=100, quiet=False)
        assert latest("run").progress.step == 40
        said = capsys.readouterr().err
        assert "40/100" not in said, said  # no bar for steps it does not take
        assert "stopped early at step 40: validation has not improved for 2 evaluations" in said
        assert "(best 3.000 bpc at step 20); nothing to train" in said
        assert "resume with patience=0 or a patience above 2" in said
        charlm.train(resume="run", max_steps=100, quiet=True)
        assert "stopped early at step 40: validation has not improved" in capsys.readouterr().err
        charlm.train(resume="run", patience=3)
        assert latest("run").progress.step == 50
        charlm.train(resume="run", patience=0)
        assert latest("run").progress.step == 100


def test_a_run_stopped_by_patience_resumed_on_its_moved_text_says_the_path_is_recorded(fox_file, tiny, capsys):
    """`charlm train NEW --resume RUN` on a run --patience stopped records the text's new path in run.json and
    trains nothing, as on a run whose limits are spent, but only the latter said the path was recorded: the
    user was left to think the move had not been taken. A resume at the path already recorded says nothing."""
    scripted = itertools.chain([4.0, 3.0, 3.5], itertools.repeat(3.8))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "bits_per_char", lambda model, ids, limit, each_window: next(scripted))
        charlm.train(fox_file, out="run", **{**tiny, "max_steps": 100, "eval_every": 10, "patience": 1})
        assert latest("run").progress.step == 30
        charlm.train(fox_file, resume="run")
        assert "recorded" not in capsys.readouterr().err
        moved = fox_file.rename(fox_file.with_name("moved.txt"))
        charlm.train(moved, resume="run")
    said = capsys.readouterr().err
    assert f"nothing to train; its text's path is recorded ({moved}), where charlm eval" in said
    assert (
        runs.read_run_info(runs.resolve("run").parent)["sources"] == [str(moved)] and latest("run").progress.step == 30
    )


def test_an_evaluation_at_a_stop_between_eval_every_s_does_not_count_towards_patience(fox_file, tiny, monkeypatch):
    """A run stopped at step 25 (its limit; Ctrl-C is the same) is scored there; that evaluation counted
    towards --patience, so resumed it stopped at step 40 where a run never stopped goes on to 50, with
    other weights: 2.9 at step 30 is better than 3.0 at 20, the evaluation before it, not than 2.8 at 25."""
    by_step = {10: 4.0, 20: 3.0, 25: 2.8, 30: 2.9, 40: 3.1, 50: 3.2, 60: 3.3}
    real_step, at = train_state.train_step, [0]

    def counting_step(state, share):
        loss = real_step(state, share)
        at[0] = state.progress.step
        return loss

    monkeypatch.setattr(train_state, "train_step", counting_step)
    monkeypatch.setattr(trainer, "bits_per_char", lambda model, ids, limit, each_window: by_step[at[0]])
    flat = {**tiny, "min_lr_ratio": 1.0, "eval_every": 10, "patience": 2}  # a flat rate: 25 then 75 steps are 100
    charlm.train(fox_file, out="whole", **{**flat, "max_steps": 100})
    charlm.train(fox_file, out="cut", **{**flat, "max_steps": 25})
    charlm.train(resume="cut", max_steps=100)
    assert latest("whole").progress.step == 50
    assert_same_weights(latest("whole"), latest("cut"))


def test_a_run_whose_folder_is_moved_stops_and_resumes_where_it_is_now(fox_file, tiny, tmp_path, monkeypatch):
    """`mv` of a training run's folder said it "was removed" and to start a new run, while the moved
    folder held the run's checkpoints: it now says where the folder went and how to resume it there."""
    real_step = train_state.train_step
    moved = tmp_path / "elsewhere" / "run"

    def step_and_move(state, share):
        loss = real_step(state, share)
        if state.progress.step == 12:  # after the checkpoint at step 10
            moved.parent.mkdir()
            os.rename(tmp_path / "checkpoints/run", moved)
        return loss

    monkeypatch.setattr(train_state, "train_step", step_and_move)
    options = ["--max-steps", "20", "--eval-every", "10", "--save-errors", "warn"]
    result = cli("train", str(fox_file), "--out", "run", *TRAIN_ARGS, *options)
    assert "Traceback" not in result.output and result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: the run folder checkpoints/run was moved to {moved} while training; training stopped at step 20 "
        f"without writing anything more; {moved} holds its last checkpoint: resume with charlm train --resume {moved}"
    )
    monkeypatch.setattr(train_state, "train_step", real_step)
    assert checkpoint.read(moved / runs.LATEST).progress.step == 10
    assert cli("train", "--resume", str(moved)).exit_code == 0
    assert checkpoint.read(moved / runs.LATEST).progress.step == 20


def test_a_run_whose_folder_is_moved_before_its_first_checkpoint_is_told_to_train_again(
    fox_file, tiny, tmp_path, monkeypatch
):
    """A folder moved before the run's first checkpoint was offered a resume that is refused (it holds no
    checkpoint): the run now says nothing was saved, and the moved folder takes a new run."""
    real_step = train_state.train_step
    moved = tmp_path / "elsewhere" / "run"

    def step_and_move(state, share):
        loss = real_step(state, share)
        if state.progress.step == 3:  # before the first checkpoint, at step 10
            moved.parent.mkdir()
            os.rename(tmp_path / "checkpoints/run", moved)
        return loss

    monkeypatch.setattr(train_state, "train_step", step_and_move)
    result = cli("train", str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "20", "--eval-every", "10")
    assert "Traceback" not in result.output and result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: the run folder checkpoints/run was moved to {moved} while training; training stopped at step 10 "
        f"without writing anything more; nothing was saved: train again (--out {moved} is still free)"
    )
    monkeypatch.setattr(train_state, "train_step", real_step)
    assert not runs.holds_checkpoint(moved)
    assert cli("train", str(fox_file), "--out", str(moved), *TRAIN_ARGS, "--max-steps", "10").exit_code == 0
    assert checkpoint.read(moved / runs.LATEST).progress.step == 10


@pytest.mark.parametrize("removed", ["checkpoints/run", "checkpoints/run/.lock"])
def test_a_run_whose_folder_is_removed_stops_and_writes_nothing(fox_file, tiny, tmp_path, monkeypatch, removed):
    """`rm -rf` of a training run's folder went unnoticed: the run recreated it (without run.json or
    its lock) and ended 'saved in' it."""
    real_step = train_state.train_step

    def step_and_remove(state, share):
        loss = real_step(state, share)
        if state.progress.step == 12:  # after the checkpoint at step 10
            subprocess.run(["rm", "-rf", str(tmp_path / removed)], check=True)
        return loss

    monkeypatch.setattr(train_state, "train_step", step_and_remove)
    options = ["--max-steps", "20", "--eval-every", "10", "--save-errors", "warn"]
    result = cli("train", str(fox_file), "--out", "run", *TRAIN_ARGS, *options)
    assert "Traceback" not in result.output and result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert error.startswith(f"Error: {'the run folder checkpoints/run was removed' if removed.endswith('run') else ''}")
    assert "was removed" in error and "training stopped at step 20 without writing anything more" in error
    if removed.endswith("run"):
        assert not (tmp_path / "checkpoints/run").exists()
    else:
        assert latest("run").progress.step == 10 and not (tmp_path / "checkpoints/run/.lock").exists()


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
def test_a_run_whose_folder_is_removed_leaves_the_lock_of_the_process_that_took_it_over(fox_file, tmp_path):
    """Run A's folder is removed and another process takes a new lock there while A trains: A stops at
    its next row or checkpoint with one line, leaving that lock, its PID file and the folder alone."""
    folder = tmp_path / "checkpoints/run"
    first = start_training(str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "100000", "--eval-every", "50")
    try:
        wait_for(folder / "metrics.jsonl")  # the row after the first checkpoint: A trains on to the next
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        with run_lock.RunLock(folder):
            (folder / "metrics.jsonl").write_text("theirs\n")
            _, errors = first.communicate(timeout=60)
            assert first.returncode == 1 and "Traceback" not in errors
            error = errors.strip().splitlines()[-1]
            assert error.startswith(("Error: checkpoints/run/.lock was removed or replaced", "Error: the run folder"))
            assert "training stopped at step" in error
            assert (folder / ".lock.pid").read_text() == f"{processes.process_name()}\n" and (folder / ".lock").exists()
            assert sorted(p.name for p in folder.iterdir()) == [".lock", ".lock.pid", "metrics.jsonl"]
            assert (folder / "metrics.jsonl").read_text() == "theirs\n"
    finally:
        first.kill()
        first.communicate()


def test_a_peer_lost_while_a_run_resumes_says_how_to_resume_it(fox_file, tiny, monkeypatch):
    """Rank 0 of two, resuming a run, loses its peer before training (at the barrier after it prepared
    the corpus): the line said "start the run again", though the checkpoint it resumes is whole."""
    import torch.distributed as dist

    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 4, "eval_every": 4})
    closed = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [::1]:1")

    def barrier(*group):
        raise closed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # what a rank started without torchrun is given
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    for name in ("init_process_group", "new_group", "destroy_process_group", "broadcast_object_list"):
        monkeypatch.setattr(dist, name, lambda *args, **options: None)
    monkeypatch.setattr(dist, "barrier", barrier)
    result = cli("train", "--resume", "run", "--max-steps", "8")
    run_dir = runs.CHECKPOINT_ROOT / "run"
    assert result.exit_code == 1 and "Connection closed by peer" in result.output, result.output
    assert result.output.strip().endswith(
        f"{run_dir} holds its last checkpoint: resume with charlm train --resume {run_dir}"
    )


def test_a_lost_peer_s_note_trusts_a_checkpoint_the_ranks_agreed_on_where_the_folder_is_not_seen(tmp_path):
    """A rank on another machine than rank 0 may not see the run folder: the checkpoint the ranks agreed was
    written (or the one the run resumed from) is there all the same."""
    elsewhere = tmp_path / "run"
    with on_command_line():  # a peer is lost under torchrun, which the charlm command runs under
        assert run_notes.lost_note(elsewhere, saved=True).endswith(f"resume with charlm train --resume {elsewhere}")
    with on_command_line():  # nothing written: said as a run stopped before its first checkpoint is (`unsaved_note`)
        assert run_notes.lost_note(elsewhere, saved=False) == f"; {run_notes.unsaved_note(elsewhere)}"


def test_a_text_recorded_with_its_encoding_resumes_when_given_by_a_relative_path(fox_file, tiny):
    """A UTF-16 run's text saved as UTF-8, its --encoding utf-8 recorded by a resume that trained nothing, was
    read as utf-16 again when a later resume named it `fox.txt` (run.json records it absolute, and the two
    were compared as typed): 'cannot be read as utf-16'. The run's text is read as recorded whatever path
    names it."""
    text = fox_file.read_text(encoding="utf-8")
    fox_file.write_text(text, encoding="utf-16")
    charlm.train(fox_file, out="run", encoding="utf-16", **{**tiny, "max_steps": 10})
    fox_file.write_text(text, encoding="utf-8")
    recorded = cli("train", "fox.txt", "--resume", "run", "--encoding", "utf-8", "--max-steps", "10")
    assert "nothing to train" in recorded.output and latest("run").config.encoding == "utf-16"
    resumed = cli("train", "./fox.txt", "--resume", "run", "--max-steps", "12")
    assert resumed.exit_code == 0, resumed.output
    assert latest("run").progress.step == 12 and latest("run").config.encoding == "utf-8"


@pytest.mark.parametrize("when", ["serialized", "renamed"])
def test_a_run_whose_folder_is_taken_over_while_it_saves_writes_nothing_into_the_new_run(
    fox_file, tmp_path, monkeypatch, when
):
    """The folder was looked at (`RunLock.lost`) before a checkpoint was serialized and written, seconds for a big
    model: `rm -rf` of it and a second run into the same --out meanwhile, and the first run's checkpoint went into
    the second run's folder, two runs writing one; or, removed as it wrote, the run said it could not write and that
    the removed folder held its checkpoint. It looks again before each rename, and says the folder was removed."""
    folder = tmp_path / "checkpoints/run"
    taken: list[run_lock.RunLock] = []

    def taken_over(real, checkpoint_file=lambda *args: True):
        def then_real(*args):
            if not taken and checkpoint_file(*args):  # the checkpoint at step 10
                subprocess.run(["rm", "-rf", str(folder)], check=True)
                taken.append(run_lock.RunLock(folder))  # the second run, which holds the new folder
                taken[0].__enter__()
                (folder / "metrics.jsonl").write_text("theirs\n")
            return real(*args)

        return then_real

    if when == "serialized":
        monkeypatch.setattr(checkpoint, "serialize", taken_over(checkpoint.serialize))
    else:
        renamed_to_checkpoint = lambda source, target: target.name in (runs.BEST, runs.LATEST)
        monkeypatch.setattr(files, "replace", taken_over(files.replace, renamed_to_checkpoint))
    try:
        result = cli("train", str(fox_file), "--out", "run", *TRAIN_ARGS, "--max-steps", "20", "--eval-every", "10")
        assert "Traceback" not in result.output and result.exit_code == 1, result.output
        error = result.output.strip().splitlines()[-1]
        assert error.startswith("Error: checkpoints/run/.lock was removed or replaced"), error
        assert "training stopped at step 10 without writing anything more" in error
        assert sorted(p.name for p in folder.iterdir()) == [".lock", ".lock.pid", "metrics.jsonl"]
        assert (folder / "metrics.jsonl").read_text() == "theirs\n"
    finally:
        for lock in taken:
            lock.__exit__(None, None, None)
