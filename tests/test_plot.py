"""`charlm plot` and `charlm runs`: the curves of runs and the table of them."""

import errno
import json
import shutil
import struct
import warnings
from pathlib import Path

import pytest

import charlm
from charlm import runs, tables
from charlm.plot import HEIGHT, WIDTH, curves_of
from charlm.runs import read_metrics

from .conftest import assert_one_line_error, block_import, cli, file_size_limit, make_model, missing, trained_once
from .test_export import run_of


def test_plot_writes_a_png_of_two_runs_and_runs_lists_them(fox_file, tiny):
    charlm.train(fox_file, out="small", **tiny)
    charlm.train(fox_file, out="wide", **{**tiny, "hidden": 48})
    result = cli("plot", "small", "wide", "--output", "curves.png")
    assert result.exit_code == 0, result.output
    png = (fox_file.parent / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (WIDTH, HEIGHT)
    table = cli("runs").output.splitlines()
    assert table[0].split()[:5] == ["run", "corpus", "model", "steps", "best"]
    assert [line.split()[0] for line in table[1:]] == ["small", "wide"]
    assert "1x48 lstm" in table[2] and "fox" in table[2] and " 20 " in table[2]
    parameters = runs.read_run_info(fox_file.parent / "checkpoints/wide")["parameters"]
    assert f"1x48 lstm {parameters / 1e3:.0f}k" in table[2]  # a model under a million parameters was "0.0M"
    assert cli("plot", "--output", "latest.png").output == "wrote latest.png\n"  # no RUN: the latest run
    assert (fox_file.parent / "latest.png").read_bytes()[:8] == png[:8]
    again = cli("plot", "small", "--output", "curves.png").output  # replaced, as inspect's page is, and said
    assert again == "wrote curves.png, replacing the earlier curves.png (give --output another name to keep both)\n"


def test_a_plot_for_a_full_disk_keeps_the_earlier_png_and_says_what_to_do(fox_file, tiny):
    """On a full disk (a file size limit here) the PNG was cut short and the error was `Error: file: File too large`."""
    charlm.train(fox_file, out="small", **tiny)
    assert cli("plot", "small", "--output", "curves.png").exit_code == 0
    before = (fox_file.parent / "curves.png").read_bytes()
    with file_size_limit(len(before) // 2):
        result = cli("plot", "small", "--output", "curves.png")
    assert_one_line_error(result, "--output curves.png: cannot write (File too large); free space on its disk")
    assert (fox_file.parent / "curves.png").read_bytes() == before and not list(fox_file.parent.glob(".curves*"))


def test_runs_lines_up_its_columns_under_chinese_run_names(fox_file, tiny):
    """A Chinese character takes two terminal cells: padding by len() pushed the columns out of line."""
    charlm.train(fox_file, out="唐诗三百首", **tiny)
    charlm.train(fox_file, out="small", **tiny)
    lines = cli("runs").output.splitlines()
    starts = [tables.width(line[: line.index(word)]) for line, word in zip(lines, ["corpus", "fox", "fox"])]
    assert len(set(starts)) == 1, lines
    assert tables.width("唐诗 ab\u0301") == 7 and tables.width("，") == 2


def test_the_runs_table_joins_each_runs_record_and_metrics(tmp_path):
    """A line per run from its run.json (corpus, a fine-tune's base, size) and metrics.jsonl (steps, best bpc)."""
    for name, info, metrics in [
        ("base", {"corpus": "fox", "config": {"layers": 2, "hidden": 64, "cell": "gru"}, "parameters": 1_340_000},
         [{"step": 10, "val_bpc": 3.25}, {"step": 20, "val_bpc": 2.5}, {"step": 30, "val_bpc": 2.75}]),
        ("tuned", {"corpus": "dog", "base": {"run": "base"}, "config": {"layers": 1}, "parameters": 999}, []),
    ]:  # fmt: skip
        folder = tmp_path / name
        folder.mkdir()
        (folder / runs.LATEST).write_bytes(b"")
        runs.write_run_info(folder, info)
        (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metrics))
    header, base, tuned = tables.runs_table(tmp_path).splitlines()
    assert header.split()[:5] == ["run", "corpus", "model", "steps", "best"]
    assert base.split()[:7] == ["base", "fox", "2x64", "gru", "1.3M", "30", "2.5000"]
    assert tuned.split()[:8] == ["tuned", "dog", "(from", "base)", "1x?", "999", "0", "-"]
    assert [tables.short_count(n) for n in (999, 22_400, 1_340_000)] == ["999", "22k", "1.3M"]


def test_a_name_with_a_line_break_or_of_blanks_shows_on_one_line_in_the_runs_table(tmp_path):
    """A corpus named `notes\\nday` (its file's name) split its row in two, and so did a run folder made
    before run names were cleaned or renamed by hand; a run folder named " " showed as nothing."""
    for name, corpus in (("old\nrun", "notes\nday"), (" ", "fox"), ("tab\tbed", "esc\x1b[2J")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / runs.LATEST).write_bytes(b"")
        runs.write_run_info(folder, {"corpus": corpus, "config": {"layers": 1, "hidden": 8}})
    rows = tables.runs_table(tmp_path).splitlines()[1:]
    assert [row.split("  ")[0].strip() for row in rows] == ["' '", "old\\nrun", "tab\\tbed"], rows
    assert "  notes\\nday  " in rows[1] and "  esc\\x1b[2J  " in rows[2]
    assert len({tables.width(row[: row.index("1x8")]) for row in rows}) == 1  # the columns still line up


def test_a_fine_tune_of_a_fine_tune_shows_its_whole_lineage(fox_file, tiny):
    """`charlm runs` and `charlm info` showed a fine-tune's base alone, not the base's base. The chain ends
    at a base whose folder is gone, and at a loop (a hand-edited run.json), said, rather than going round it."""
    root = runs.CHECKPOINT_ROOT
    charlm.train(fox_file, out="tuned", **tiny)  # a checkpoint for info; its run.json is rewritten below
    chain = {"tuned": "mid", "mid": "first", "first": None, "loop": "round", "round": "loop", "orphan": "gone"}
    for name, base in chain.items():
        info = {"corpus": "fox", "config": {"layers": 1}} | (
            {"base": {"run": base, "path": str((root / base / runs.BEST).absolute())}} if base else {}
        )
        runs.write_run_info(root / name, info)
        (root / name / runs.LATEST).touch(exist_ok=True)
    listed = {line.split()[0]: line for line in tables.runs_table(root).splitlines()[1:]}
    assert "fox (from mid <- first) " in listed["tuned"] and "fox (from first) " in listed["mid"]
    assert "(from" not in listed["first"] and "fox (from gone) " in listed["orphan"]
    assert (
        "fox (from round <- loop (cycle)) " in listed["loop"] and "fox (from loop <- round (cycle)) " in listed["round"]
    )
    rows = dict(line.split(None, 1) for line in cli("info", "tuned").output.splitlines())
    assert rows["lineage"] == "from mid <- first"
    assert runs.lineage(root / "first") == ""


def test_the_runs_table_reads_each_run_json_once_and_a_bases_for_its_lineage(tmp_path, monkeypatch):
    """`charlm runs` read each run's run.json twice, for its row and again for its lineage: 100 reads for
    50 runs. Now once a run, and once more per base a fine-tune's lineage walks to."""
    for name, base in (("first", None), ("second", None), ("tuned", "first")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / runs.LATEST).write_bytes(b"")
        based = {"base": {"run": base, "path": str(tmp_path / base / runs.BEST)}} if base else {}
        runs.write_run_info(folder, {"corpus": "fox", "config": {"layers": 1}} | based)
    read, reads = runs.read_run_info, []
    monkeypatch.setattr(runs, "read_run_info", lambda folder: reads.append(Path(folder).name) or read(folder))
    assert "fox (from first) " in tables.runs_table(tmp_path).splitlines()[3]
    assert sorted(reads) == ["first", "first", "second", "tuned"]


def test_a_chinese_run_name_is_drawn_with_a_font_that_has_it(fox_file, tiny):
    """matplotlib's default font has no Chinese: the legend showed boxes (.ci/run installs a CJK font)."""
    from charlm.plot import installed_cjk_fonts

    if not installed_cjk_fonts():
        missing("no CJK font is installed (apt-get install fonts-wqy-microhei)")
    charlm.train(fox_file, out="唐诗三百首", **tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        assert cli("plot", "唐诗三百首", "--output", "poems.png").exit_code == 0


def test_plot_without_matplotlib_says_how_to_get_it(fox_file, tiny, monkeypatch):
    charlm.train(fox_file, out="run", **tiny)
    block_import(monkeypatch, "matplotlib")
    result = cli("plot", "run")
    assert result.exit_code == 1 and "pip install 'charlm[plot]'" in result.output


def test_plotting_a_folder_without_curves_says_what_to_name_instead(tmp_path):
    """An exported model folder (or a .pt on its own) has a model but no curves: the refusal asked
    whether it was a run folder and left the user there."""
    run_of(make_model("abc"), tmp_path / "lone")
    result = cli("plot", "lone", "--output", "x.png")
    assert_one_line_error(result, "lone: no curves to plot", "name a run folder", "`charlm runs` lists them")


def test_a_run_with_no_curves_yet_is_left_out_and_the_others_drawn(fox_file, tiny):
    """A run killed before its first evaluation among runs being compared refused them all: nothing was drawn."""
    charlm.train(fox_file, out="good", **tiny)
    runs.write_run_info(fox_file.parent / "checkpoints/killed", {"corpus": "fox", "config": {}})  # no .pt
    run_of(make_model("abc"), fox_file.parent / "lone")  # a model folder: a checkpoint, no metrics
    result = cli("plot", "killed", "good", "lone", "--output", "curves.png")
    assert result.exit_code == 0, result.output
    assert (fox_file.parent / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stdout == "wrote curves.png\n"
    note = result.stderr.splitlines()
    assert len(note) == 1 and note[0].startswith("left out 2 of 3 runs: checkpoints/killed: its run stopped"), note
    assert "lone: no curves to plot" in note[0]
    nothing = cli("plot", "killed", "lone", "--output", "none.png")
    assert_one_line_error(nothing, "none of the 2 runs has curves to plot", "killed", "lone: no curves")
    assert not (fox_file.parent / "none.png").exists()


def test_a_run_named_twice_is_drawn_once():
    """`charlm plot small checkpoints/small` (a run by its name and by its folder) drew it twice: two
    lines of one run, two legend entries of one name."""
    folder = runs.CHECKPOINT_ROOT / "small"
    folder.mkdir(parents=True)
    (folder / runs.LATEST).write_bytes(b"")
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 10, "elapsed": 1.0, "val_bpc": 3.0}) + "\n")
    curves, left_out = curves_of(["small", str(folder), str(folder.absolute()), "small"])
    assert [name for name, *_ in curves] == ["small"] and not left_out


@pytest.mark.parametrize("failure", [(errno.EACCES, "Permission denied"), (errno.EIO, "Input/output error")])
def test_an_unreadable_metrics_file_is_named_not_the_output(tmp_path, monkeypatch, failure):
    """A metrics.jsonl that could not be read (not the user's, a failing disk) was blamed on the PNG:
    `--output curves.png: cannot write (Permission denied); make its folder writable`."""
    folder = run_of(make_model("abc"), tmp_path / "run")
    (folder / runs.METRICS).write_text('{"step": 10, "elapsed": 1.0, "chars": 320, "val_bpc": 2.5}\n')
    real_read_text = Path.read_text

    def read_text(path, *args, **kwargs):
        if path.name == runs.METRICS:
            raise OSError(failure[0], failure[1], str(path))
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    result = cli("plot", "run", "--output", "curves.png")
    assert_one_line_error(result, f"run/{runs.METRICS}: cannot read ({failure[1]})")
    assert "--output" not in result.output and not (tmp_path / "curves.png").exists()


def test_plot_draws_the_eval_also_text_of_a_run_that_has_one(fox_file, tiny, monkeypatch):
    """The legend said "run --eval-also" whatever the run scored: it names the text, a file by its name
    and a run's held-out text by the run's, a long one cut in the middle, from what run.json keeps."""
    from matplotlib.axes import Axes

    charlm.train(fox_file, out="run", eval_also=str(fox_file), **tiny)
    long = "a-base-run-whose-name-goes-on-and-on-20260101"
    charlm.train(fox_file, out=long, **tiny)
    charlm.train(fox_file, out="tuned", eval_also=long, **tiny)
    labels = []
    real_plot = Axes.plot
    monkeypatch.setattr(
        Axes, "plot", lambda ax, *args, **kw: labels.append(kw.get("label")) or real_plot(ax, *args, **kw)
    )
    assert cli("plot", "run", "tuned", "--output", "curves.png").exit_code == 0
    assert labels.count(f"run --eval-also {fox_file.name}") == 2  # against time and against characters
    assert labels.count("tuned --eval-also a-base-run-whose…and-on-20260101 held-out") == 2


def test_plot_marks_each_resume_where_it_changed_an_option(fox_file, tiny, monkeypatch):
    """A resume with another --lr bends the curve, and the plot showed the bend and nothing of why: each
    recorded resume (`runs.read_resumes`) is a thin line at its step on both axes, labelled with what it set."""
    from matplotlib.axes import Axes

    charlm.train(fox_file, out="run", **{**tiny, "eval_every": 10})
    charlm.train(resume="run", max_steps=30, lr=1e-3)
    charlm.train(resume="run", max_steps=40, grad_clip=0.5)
    rows = {row["step"]: row for row in read_metrics(Path("checkpoints/run"))}
    lines, labels = [], []
    real_axvline, real_text = Axes.axvline, Axes.text
    monkeypatch.setattr(Axes, "axvline", lambda ax, x, **kw: lines.append(x) or real_axvline(ax, x, **kw))
    monkeypatch.setattr(Axes, "text", lambda ax, x, y, s, **kw: labels.append(s) or real_text(ax, x, y, s, **kw))
    assert cli("plot", "run", "--output", "curves.png").exit_code == 0
    at = [(rows[step]["elapsed"] / 60, rows[step]["chars"] / 1e6) for step in (20, 30)]
    assert sorted(lines) == pytest.approx(sorted([at[0][0], at[1][0], at[0][1], at[1][1]]))  # time, characters
    assert labels.count("resumed, --max-steps 30, --lr 0.001") == 2, labels
    assert labels.count("resumed, --max-steps 40, --grad-clip 0.5") == 2, labels


DAMAGE = {
    "metrics.jsonl": [
        "NaN",
        '{"step": "x", "val_bpc": "y"}',
        "[1, 2]",
        '{"step": 25, "elapsed": "soon", "chars": null}',
    ],
    "run.json": ["[1, 2]", '{"config": 5}', '{"parameters": "many"}', '{"corpus": 7, "config": {"layers": "x"}}'],
}


@pytest.fixture(scope="module")
def good_and_bad(tmp_path_factory) -> dict[str, Path]:
    """Two tiny runs, "good" then "bad" (the later), trained once for the damage cases to copy."""
    return {name: trained_once(tmp_path_factory, name) for name in ("good", "bad")}


@pytest.mark.parametrize(("name", "damage"), [(name, line) for name, lines in DAMAGE.items() for line in lines])
def test_a_damaged_metrics_or_run_file_is_read_around(fox_file, good_and_bad, name, damage):
    """A line `NaN` in metrics.jsonl, or run.json `[1,2]`, crashed `runs`, `plot` and `train --resume`
    with a TypeError; one damaged run took the whole `runs` table down."""
    for run, folder in good_and_bad.items():
        shutil.copytree(folder, runs.CHECKPOINT_ROOT / run)
    path = fox_file.parent / "checkpoints/bad" / name
    if name == "run.json":
        path.write_text(damage)
    else:
        with open(path, "a") as f:
            f.write(damage + "\n")
    listing = cli("runs")
    assert listing.exit_code == 0, listing.output
    bad, good = listing.output.splitlines()[1:]
    assert good.split()[:5] == ["good", "fox", "1x32", "lstm", "10k"] and " 20 " in good
    assert bad.split()[0] == "bad" and (" 20 " in bad or " 25 " in bad)  # 25: a row with a numeric step
    result = cli("plot", "bad", "good", "--output", "both.png")
    assert result.exit_code == 0 and result.output == "wrote both.png\n", result.output
    resumed = cli("train", "--resume", "bad", "--max-steps", "30", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert [row["step"] for row in read_metrics(path.parent)] == [10, 20, 30]


@pytest.mark.parametrize("record", [None, '{"corpus": "fo'], ids=["run.json gone", "run.json torn"])
def test_a_run_with_its_record_lost_and_its_metrics_torn_by_a_kill_is_read_and_resumed(good_and_bad, record):
    """A kill mid-write tears metrics.jsonl's last line; a hand or a disk loses run.json. Neither is
    needed to read the model: sample, info, eval, plot and runs read around them, and a resume goes on
    and writes run.json anew (this passed as it was: a gap closed)."""
    folder = Path(shutil.copytree(good_and_bad["good"], runs.CHECKPOINT_ROOT / "kept"))
    if record is None:
        (folder / runs.RUN_INFO).unlink()
    else:
        (folder / runs.RUN_INFO).write_text(record, encoding="utf-8")
    with open(folder / runs.METRICS, "a", encoding="utf-8") as metrics:
        metrics.write('{"step": 25, "train_b')  # no newline: the process died here
    for command in (["sample", "kept", "--length", "5"], ["info", "kept"], ["eval", "kept", "--quiet"]):
        assert cli(*command).exit_code == 0, (command, cli(*command).output)
    assert cli("plot", "kept", "--output", "kept.png").output == "wrote kept.png\n"
    assert cli("runs").output.splitlines()[1].split()[:2] == ["kept", "?"]  # the corpus is run.json's
    assert cli("train", "--resume", "kept", "--max-steps", "30", "--quiet").exit_code == 0
    assert [row["step"] for row in read_metrics(folder)] == [10, 20, 30]
    assert runs.read_run_info(folder)["corpus"] == "fox"
