import builtins
import json
import struct

import pytest
import torch
from click.testing import CliRunner

import charlm
from charlm.cli import main
from charlm.errors import CharLMError
from charlm.metrics import read_metrics
from charlm.plot import HEIGHT, WIDTH


def block_import(monkeypatch, prefix: str) -> None:
    """Make `import prefix...` fail, as if the package were not installed."""
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.startswith(prefix):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)


KEYS = {"step", "elapsed", "chars", "train_bpc", "val_bpc", "lr", "chars_per_s"}


def test_metrics_rows_continue_across_a_resume(fox_file, tiny):
    charlm.train(fox_file, out="run", **{**tiny, "max_steps": 20})
    charlm.train(resume="run", max_steps=40)
    lines = (fox_file.parent / "checkpoints/run/metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[2]) == {"resume": 20}
    rows = read_metrics("checkpoints/run")
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    assert all(set(r) == KEYS for r in rows)
    assert [r["chars"] for r in rows] == [10 * 4 * 8 * k for k in (1, 2, 3, 4)]
    assert all(r["val_bpc"] > 0 and r["train_bpc"] > 0 and r["lr"] > 0 for r in rows)
    assert rows[-1]["val_bpc"] < rows[0]["val_bpc"]


def test_rows_written_after_the_last_checkpoint_are_superseded_by_a_resume(tmp_path):
    lines = [{"step": 10}, {"step": 20}, {"step": 25}, {"resume": 20}, {"step": 30}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)) + '\n{"step": 3')  # cut by a kill
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20, 30]


def test_plot_writes_a_png_of_two_runs_and_runs_lists_them(fox_file, tiny):
    charlm.train(fox_file, out="small", **tiny)
    charlm.train(fox_file, out="wide", **{**tiny, "hidden": 48})
    result = CliRunner().invoke(main, ["plot", "small", "wide", "--output", "curves.png"])
    assert result.exit_code == 0, result.output
    png = (fox_file.parent / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (WIDTH, HEIGHT)
    table = CliRunner().invoke(main, ["runs"]).output.splitlines()
    assert table[0].split()[:5] == ["run", "corpus", "model", "steps", "best"]
    assert [line.split()[0] for line in table[1:]] == ["small", "wide"]
    assert "1x48 lstm" in table[2] and "fox" in table[2] and " 20 " in table[2]


def test_plot_without_matplotlib_says_how_to_get_it(fox_file, tiny, monkeypatch):
    charlm.train(fox_file, out="run", **tiny)
    block_import(monkeypatch, "matplotlib")
    result = CliRunner().invoke(main, ["plot", "run"])
    assert result.exit_code == 1 and "pip install 'charlm[plot]'" in result.output


def test_samples_while_training_do_not_change_the_run(fox_file, tiny, capsys):
    with_samples = charlm.train(fox_file, out="a", **{**tiny, "sample_every": 1})
    without = charlm.train(fox_file, out="b", **tiny)
    samples = (fox_file.parent / "checkpoints/a/samples.txt").read_text()
    assert samples.count("--- sample at step") == 2 and "--- sample at step 20" in capsys.readouterr().out
    assert not (fox_file.parent / "checkpoints/b/samples.txt").exists()
    assert all(torch.equal(x, y) for x, y in zip(with_samples.state_dict().values(), without.state_dict().values()))


def test_tensorboard_missing_is_a_clear_error(fox_file, tiny, monkeypatch):
    block_import(monkeypatch, "torch.utils.tensorboard")
    with pytest.raises(CharLMError, match="pip install tensorboard"):
        charlm.train(fox_file, out="tb", **{**tiny, "tensorboard": True})


def test_tensorboard_logging_writes_event_files(fox_file, tiny):
    charlm.train(fox_file, out="tb", **{**tiny, "tensorboard": True})
    events = list((fox_file.parent / "checkpoints/tb/tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 100
