"""Property tests: whatever the corpus bytes, seed text or option values, the CLI either works or
prints one line saying what is wrong. Never a traceback."""

import functools
import string

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm.cli import main
from charlm.config import MAXIMA

FAST = ["--layers", "1", "--hidden", "8", "--max-steps", "2", "--max-time", "none", "--quiet"]
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_works_or_one_line_error(result) -> None:
    if result.exit_code == 0:
        return
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output


@FUZZ
@given(data=st.binary(max_size=2000) | st.text(max_size=2000).map(str.encode))
def test_any_corpus_bytes(tmp_path, data):
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    result = invoke("train", str(path), "--out", str(tmp_path / "run"), "--seq-len", "4", "--batch-size", "2", *FAST)
    assert_works_or_one_line_error(result)
    if result.exit_code == 0:
        (tmp_path / "run" / "latest.pt").unlink()
        (tmp_path / "run" / "best.pt").unlink()


@functools.cache
def trained_run() -> str:
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    (folder / "text.txt").write_text(string.ascii_lowercase * 40 + "\n")
    result = invoke("train", str(folder / "text.txt"), "--out", str(folder / "run"), "--seq-len", "8", *FAST)
    assert result.exit_code == 0, result.output
    return str(folder / "run")


@FUZZ
@given(seed=st.text(max_size=40), temperature=st.floats(allow_nan=True), length=st.integers(-3, 30))
def test_any_seed_and_sampling_options(seed, temperature, length):
    result = invoke(
        "sample", "--checkpoint", trained_run(), "--seed", seed, "--temperature", repr(temperature),
        "--length", str(length), "--random-seed", "0",
    )  # fmt: skip
    assert_works_or_one_line_error(result)
    if result.exit_code == 0:
        assert result.output.startswith(seed) and len(result.output) == len(seed) + length + 1


def sizes(name: str):
    return st.integers(-2, 12) | st.integers(MAXIMA[name] + 1, 2**62)


@FUZZ
@given(
    layers=sizes("layers"),
    hidden=sizes("hidden"),
    seq_len=sizes("seq_len"),
    batch_size=sizes("batch_size"),
    lr=st.floats(allow_nan=True, allow_infinity=True),
    dropout=st.floats(allow_nan=True),
    max_time=st.text(max_size=8) | st.sampled_from(["1s", "none", "0", "-1m", "2h3"]),
)
def test_any_option_values(tmp_path, layers, hidden, seq_len, batch_size, lr, dropout, max_time):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 30)
    result = invoke(
        "train", str(corpus), "--out", str(tmp_path / f"run{abs(hash((layers, hidden, lr, max_time)))}"),
        "--layers", str(layers), "--hidden", str(hidden), "--seq-len", str(seq_len), "--batch-size", str(batch_size),
        "--lr", repr(lr), "--dropout", repr(dropout), "--max-time", max_time, "--max-steps", "2", "--quiet",
    )  # fmt: skip
    assert_works_or_one_line_error(result)
