"""Runs and model folders an older charlm wrote, read by today's: a user who upgrades keeps every run.

The checkpoint format is 3 since commit 53d7eb2, but its payload, run.json, metrics.jsonl and the
exported model folder gained fields since. tests/data/compat holds the smallest of each, written by the
commit its name says, from generated text (corpus.txt, finetune.txt), at /tmp/charlm-compat-fixture:

    run-53d7eb2           PYTHONPATH=<53d7eb2's tree> python -m charlm train /tmp/charlm-compat-fixture/corpus.txt
                          --hidden 4 --layers 1 --max-steps 4 --max-time none --batch-size 2 --seq-len 8
                          --eval-every 4 --quiet --device cpu --out /tmp/charlm-compat-fixture/run-53d7eb2
    run-31709fb-finetune  31709fb's charlm: the same options into base-31709fb (not kept), then
                          train /tmp/charlm-compat-fixture/finetune.txt --max-steps 4 --max-time none
                          --batch-size 2 --seq-len 8 --eval-every 4 --quiet --device cpu
                          --init-from /tmp/charlm-compat-fixture/base-31709fb --out .../run-31709fb-finetune
    run-672a457, run-a626fb2  those commits' charlm (format 2, from before --device; their best.pt alone):
                          the options of run-53d7eb2 but --device, into /tmp/movedcorpus/run-<commit>
    model-2709826         2709826's charlm: the same options as run-53d7eb2 into base-2709826 (not kept),
                          then export /tmp/charlm-compat-fixture/base-2709826 --format safetensors
                          --output /tmp/charlm-compat-fixture/model-2709826

A run records its corpus by absolute path and digest (resume and eval RUN read it there again), so the
tests put the texts back where they were. SAMPLES are what each commit's `charlm sample --checkpoint X
--random-seed 1 --length 40 --seed 'ab '` printed: today's must print the same.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from charlm import checkpoint

from .conftest import assert_one_line_error, cli

DATA = Path(__file__).parent / "data" / "compat"
WRITTEN_AT = Path("/tmp/charlm-compat-fixture")  # where the old runs' corpora were, as they record it
SEED = ("--random-seed", "1", "--length", "40", "--seed", "ab ")
SAMPLES = {
    "run-53d7eb2": "ab \n   b\nabbaa b \n\nb\nbbddccc  dcaaacdd\nd a \n",
    "run-31709fb-finetune": "ab \n   b\nbcbbb ca\n\nc bcééééd\n édaaacéé é b \n",
    "model-2709826": "ab \n   b\nabbaa b \n\nb\nbbddccc  dcaaacdd\nd a \n",
}


def put_back_corpora() -> None:
    """The generated texts where the old runs read them, written whole (another test process may be
    reading them: each is renamed into place, byte for byte the same)."""
    WRITTEN_AT.mkdir(exist_ok=True)
    for name in ("corpus.txt", "finetune.txt"):
        data = (DATA / name).read_bytes()
        target = WRITTEN_AT / name
        if target.is_file() and target.read_bytes() == data:
            continue
        scratch = WRITTEN_AT / f".{name}.{os.getpid()}"
        scratch.write_bytes(data)
        os.replace(scratch, target)


def old(name: str, tmp_path: Path) -> Path:
    """A copy of the old run or model folder `name` (the committed one is never written to). A run's
    latest.pt was byte for byte its best.pt (one evaluation, at its last step): kept once, copied here."""
    put_back_corpora()
    shutil.copytree(DATA / name, tmp_path / name)
    if (tmp_path / name / "best.pt").is_file():
        shutil.copyfile(tmp_path / name / "best.pt", tmp_path / name / "latest.pt")
    return tmp_path / name


def ok(*args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.mark.parametrize("name", ["run-53d7eb2", "run-31709fb-finetune"])
def test_an_old_run_reads_samples_resumes_and_exports(name, tmp_path):
    run = old(name, tmp_path)
    assert "steps           4" in ok("info", str(run))
    assert name in ok("runs", "--root", str(tmp_path))
    assert ok("sample", str(run), *SEED) == SAMPLES[name]
    assert "of the run's held-out text" in ok("eval", str(run))
    ok("train", "--resume", str(run), "--max-steps", "6", "--quiet")
    assert checkpoint.read(run / "latest.pt").progress.step == 6
    assert [row.get("resume") for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())][1] == 4
    ok("export", str(run), "--format", "safetensors", "--output", str(tmp_path / "model"))
    ok("export", str(run), "--format", "html", "--output", str(tmp_path / "page.html"))
    ok("sample", str(tmp_path / "model"), *SEED)


def test_an_old_run_resumes_on_its_corpus_at_a_new_path(tmp_path):
    """An old run's record holds the digest a resume checks (the cache key, since a626fb2's format 2):
    its text copied elsewhere is its corpus; another is refused, saying so."""
    run = old("run-53d7eb2", tmp_path)
    moved = tmp_path / "moved.txt"
    shutil.copyfile(DATA / "corpus.txt", moved)
    (tmp_path / "other.txt").write_text("ab ba cab\n" * 60, encoding="utf-8")
    refused = cli("train", str(tmp_path / "other.txt"), "--resume", str(run), "--max-steps", "6")
    assert refused.exit_code and f"is not the text {run} trained on ({WRITTEN_AT / 'corpus.txt'})" in refused.output
    assert "a resume needs the same files, byte for byte," in refused.output  # its record keeps no text digest
    ok("train", str(moved), "--resume", str(run), "--max-steps", "6", "--quiet")
    assert checkpoint.read(run / "latest.pt").corpus["sources"] == [str(moved)]


def test_an_old_run_whose_limits_are_spent_is_finished_not_unscored(tmp_path):
    """53d7eb2's checkpoints record no val_step, though the run scored its last step (its val_bpc): a resume of
    the spent run took it for one whose last scoring a stop cut short, said "its score not finished" and scored
    it again, where it says that nothing is left to train."""
    run = old("run-53d7eb2", tmp_path)
    refused = cli("train", "--resume", str(run))
    assert refused.exit_code == 1 and "; give a larger limit to go on" in refused.output, refused.output


@pytest.mark.parametrize("name", ["run-672a457", "run-a626fb2"])
def test_a_run_of_an_early_charlm_is_refused_in_one_line_that_says_so(name, tmp_path):
    """An early format-2 run (its corpus record a digest of the text, or of another cache key; no streams'
    random states) was a KeyError traceback (a626fb2's) or "the vocabulary is damaged" (672a457's)."""
    run = old(name, tmp_path)
    for args in (["info", str(run)], ["train", "--resume", str(run), "--max-steps", "6"], ["eval", str(run)]):
        assert_one_line_error(cli(*args), f"{run}/", "a checkpoint of an early charlm (format 2", "train the run again")


def test_an_old_fine_tune_keeps_its_base_record(tmp_path):
    run = old("run-31709fb-finetune", tmp_path)
    saved = checkpoint.read(run / "best.pt")
    assert saved.base.run == "base-31709fb" and saved.base.vocab_size == 6 and len(saved.vocab) == 7
    assert "from base-31709fb" in ok("info", str(run))


def test_an_old_model_folder_samples_scores_and_is_fine_tuned_from(tmp_path):
    folder = old("model-2709826", tmp_path)
    assert "sha256" not in json.loads((folder / "config.json").read_text())  # older than the digests' record
    assert ok("sample", str(folder), *SEED) == SAMPLES["model-2709826"]
    (tmp_path / "few.txt").write_text("ab ba cab\n" * 20, encoding="utf-8")
    assert "bits per character" in ok("eval", str(folder), str(tmp_path / "few.txt"))
    out = tmp_path / "tuned"
    ok(
        "train",
        str(WRITTEN_AT / "finetune.txt"),
        "--init-from",
        str(folder),
        "--max-steps",
        "2",
        "--max-time",
        "none",
        "--batch-size",
        "2",
        "--seq-len",
        "8",
        "--quiet",
        "--out",
        str(out),
    )
    assert checkpoint.read(out / "best.pt").base.vocab_size == 6
