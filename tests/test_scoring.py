"""Every bits per character scores exactly the text it names: a file's own characters (no newline
added), the same bits per character through eval, inspect, the server and the Python API, and a
one-line error where a text has nothing to score."""

import re

import pytest

import charlm
from charlm.config import Config
from charlm.corpus import iter_text, read_texts
from charlm.tokens import read_eval_also

from .conftest import TINY_ARGS, cli

LINE = "the lazy dog"  # no final newline: `wc -m` counts 12


@pytest.fixture
def fox(fox_file) -> str:
    """A tiny run, "fox", trained on fox_file."""
    result = cli("train", str(fox_file), "--out", "fox", "--max-steps", "3", *TINY_ARGS)
    assert result.exit_code == 0, result.output
    return "fox"


def scored(output: str) -> tuple[float, int]:
    """eval's bits per character and count of characters scored."""
    found = re.search(r"([\d.]+) bits per character over ([\d,]+) characters scored", output)
    assert found, output
    return float(found[1]), int(found[2].replace(",", ""))


def test_a_text_to_score_is_its_files_own_characters_and_the_corpus_still_ends_each_file_with_a_line(tmp_path):
    (tmp_path / "a.txt").write_text("ab", encoding="utf-8")
    (tmp_path / "b.txt").write_text("cd", encoding="utf-8")
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    assert read_texts([str(files[0])]) == "ab"
    assert read_texts([str(tmp_path)]) == "ab\ncd"  # two files: the first's line ends, as in a corpus
    assert "".join(iter_text(files)) == "ab\ncd\n"  # the corpus stream: the next part starts a line


def test_eval_and_eval_also_score_a_file_without_a_final_newline_as_written(fox, tmp_path):
    """A newline was added to every file read: `charlm eval` scored it too (a 12-character file: 12
    characters scored, one of them not in it), and --eval-also's text held it."""
    (tmp_path / "line.txt").write_text(LINE, encoding="utf-8")
    (tmp_path / "ended.txt").write_text(LINE + "\n", encoding="utf-8")
    model = charlm.load(fox)
    for name, text in (("line.txt", LINE), ("ended.txt", LINE + "\n")):
        bpc, count = scored(cli("eval", fox, name, "--quiet").output)
        assert count == len(text) - 1  # the first character is read, every one after it scored
        assert bpc == pytest.approx(charlm.bits_per_char(model, text), abs=1e-4)
    ids = read_eval_also(Config(eval_also=str(tmp_path / "line.txt")), model.vocab)
    assert model.vocab.decode(ids) == LINE
