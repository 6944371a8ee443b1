"""Every bits per character scores exactly the text it names: a file's own characters (no newline
added), the same bits per character through eval, inspect, the server and the Python API, and a
one-line error where a text has nothing to score."""

import math
import re
import tracemalloc
import warnings

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import charlm
from charlm import corpus, scoring, unseen_notes
from charlm import vocab as vocab_module
from charlm.config import Config
from charlm.corpus import iter_text, read_texts
from charlm.errors import CharLMError
from charlm.fields import typed
from charlm.inference_context import inference
from charlm.inspection.analysis import analyse
from charlm.model import CharLM, ModelConfig
from charlm.pieces import PieceVocab, train_model
from charlm.runtext import read_eval_also
from charlm.scoring import text_bits
from charlm.serve.app import create_app
from charlm.serve.config import ServeConfig
from charlm.vocab import Vocab

from .conftest import TINY_ARGS, assert_one_line_error, cli, make_model, wait_healthy
from .test_export import run_of
from .test_serve import running

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


# Texts with characters the model never saw: '<' and '>' in English; under NFKC, '…' (first: read, then
# two scored '.'), '㈠' (three characters, '(' and ')' unseen) and full-width punctuation that the
# vocabulary knows in its normalized form.
SURFACES = [
    ("\n abcdefghijklmnopqrstuvwxyz", "none", "the <lazy> dog jumps\nover the quick brown fox"),
    ("满纸荒唐言,一把辛酸泪!都云作者痴谁解其中味?\n", "nfkc", "…满纸荒唐言，一把辛酸泪！㈠都云作者痴…谁解其中味？"),
]
AGREE = 1e-5  # bits per character: far below any real difference, far above float rounding


def echo_bits(url: str, text: str) -> np.ndarray:
    """The server's bits for each token of `text` (`echo` with `logprobs`, nothing generated): NaN where
    it gives none (the first, and a character never seen)."""
    body = {"model": "m", "prompt": text, "max_tokens": 0, "echo": True, "logprobs": 1}
    logprobs = httpx.post(f"{url}/v1/completions", json=body, timeout=30).json()["choices"][0]["logprobs"]
    return np.array([math.nan if lp is None else -lp / math.log(2) for lp in logprobs["token_logprobs"]])


@pytest.mark.parametrize(("chars", "normalize", "text"), SURFACES)
def test_eval_inspect_the_server_and_the_api_give_each_character_the_same_bits(tmp_path, chars, normalize, text):
    """One scoring module serves them all: each character's bits agree, and so do the counts."""
    torch.manual_seed(0)
    model = make_model(Vocab(chars, normalize=normalize), layers=2, hidden=16).eval()
    run_of(model, tmp_path / "run")
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    read = model.vocab.normalized(text)  # as every surface reads it
    with running(create_app({"m": lambda: model}, ServeConfig(max_streams=2, max_tokens=10, max_prompt=200))) as url:
        wait_healthy(url)
        served = echo_bits(url, text)
    inspected = analyse(model, text, text * 3, max_order=2).surprise  # inspect's engine
    assert inspected.tokens == list(read) and len(served) == len(read)
    assert np.array_equal(np.isnan(inspected.bits), np.isnan(served))
    assert np.nanmax(np.abs(inspected.bits - served)) < AGREE
    bits, chars_scored = text_bits(model, text)  # eval's engine
    assert chars_scored == int((~np.isnan(served)).sum()) and abs(bits - np.nansum(served)) < AGREE * chars_scored
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert abs(charlm.bits_per_char(model, text) - bits / chars_scored) < AGREE
    for i in range(1, len(read)):  # next_probs reads a prefix's unseen characters as every surface does
        if not np.isnan(served[i]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert abs(-math.log2(dict(charlm.next_probs(model, read[:i], None))[read[i]]) - served[i]) < AGREE
    evaluated = cli("eval", str(tmp_path / "run"), "text.txt", "--quiet")
    assert scored(evaluated.output) == (pytest.approx(bits / chars_scored, abs=5e-5), chars_scored)
    said_in_python = str(warned[0].message).replace("--init-from RUN", f"--init-from {typed(str(tmp_path / 'run'))}")
    assert (
        evaluated.output.splitlines()[1] == said_in_python
    )  # the same unseen count, the first left out; eval names its run
    shown = cli("inspect", str(tmp_path / "run"), "text.txt", "--train-text", "text.txt", "--output", "page.html")
    headline = (
        rf"lstm on [\d,]+ characters \({chars_scored:,} of them scored\): {bits / chars_scored:.3f} bits per character"
    )
    assert re.search(headline, shown.output), shown.output
    unseen = evaluated.output.splitlines()[1].split()[0]  # eval's count of unseen characters left out
    assert f"\n{unseen} unseen characters excluded from every bits figure" in shown.output


def traced_peak(work) -> int:
    """The most memory Python and numpy held at once while `work()` ran, above what they held before."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_eval_encodes_a_big_text_a_slice_at_a_time_into_int32_ids(monkeypatch):
    """`charlm eval` of a 50 MB file peaked at 1.5 GB RSS: the whole text's code points (4 bytes a
    character) and int64 ids (8), then int64 copies of those to count characters. Its ids are int32 and
    its code points are looked up a slice at a time, so what it holds beyond the ids is a slice's."""
    monkeypatch.setattr(scoring, "SLICE", 1 << 16)  # slices of 64K characters: under 2 MB at once
    monkeypatch.setattr(vocab_module, "UNKNOWN_SLICE", 1 << 16)
    vocab = Vocab("\nabcdefgh ")
    vocab.encode("a")  # the code-point table is built once per vocabulary, not per text
    text = "abc defgh\n" * 400_000  # 4M characters
    found = []
    peak = traced_peak(lambda: found.append(scoring.scored_ids(vocab, text, "text")))
    ids, characters = found[0]
    assert ids.dtype == torch.int32 and characters == len(text) and int(ids[-1]) == vocab.index["\n"]
    assert peak < len(text), f"{peak / len(text):.1f} bytes per character"
    peak = traced_peak(lambda: vocab.unseen_in(text))  # eval's note of unseen characters reads it again
    assert peak < len(text), f"{peak / len(text):.1f} bytes per character"


def test_eval_notes_the_unseen_characters_of_the_files_it_read_and_no_copy_of_them(fox, tmp_path, monkeypatch):
    """eval kept each file's text, a copy of it without its first character for the note of unseen
    characters, and those copies joined: three times the files' text when the note was made. The note
    reads the texts themselves, each first character skipped by index, and counts across them."""
    line = "the lazy dog Z\n"  # Z: a character fox never saw
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(line * 50_000, encoding="utf-8")
    held, note = [], unseen_notes.unseen_note

    def measured(vocab, texts, **named):  # what Python holds then, but numpy's arrays: the vocabulary's lookup table
        beside_numpy = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, "*/numpy/*")])
        held.append(sum(stat.size for stat in beside_numpy.statistics("filename")))
        return note(vocab, texts, **named)

    monkeypatch.setattr(unseen_notes, "unseen_note", measured)
    tracemalloc.start()
    try:
        result = cli("eval", fox, "a.txt", "b.txt", "--quiet")
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert "100,000 unseen characters excluded from the score (1 distinct: 'Z' 100,000 times)" in result.output
    texts = 2 * len(line) * 50_000
    assert held[0] < 1.5 * texts, f"{held[0] / texts:.1f} times the files' text held"


@pytest.mark.parametrize("unknown", [False, True])
def test_a_text_scores_the_same_encoded_and_counted_in_slices_as_whole(monkeypatch, unknown):
    """Slices that cut the text anywhere (here every 7 characters) give the ids, characters and bits of
    the text read whole: an unseen character, or the unknown symbol, on either side of a cut."""
    torch.manual_seed(0)
    model = make_model(Vocab("\nabcdefgh ", unknown=unknown)).eval()
    text = "abc dzfgh\nhe\u0301ad bag\n" * 20
    whole_ids, whole_chars = scoring.scored_ids(model.vocab, text, "text")
    whole = text_bits(model, text)
    monkeypatch.setattr(scoring, "SLICE", 7)
    ids, chars = scoring.scored_ids(model.vocab, text, "text")
    assert torch.equal(ids, whole_ids) and chars == whole_chars == len(text)
    assert text_bits(model, text) == pytest.approx(whole, rel=1e-12)


HOSTILE = [  # (file name, its bytes (None: a folder), what the one-line error says)
    ("empty.txt", b"", "file is empty"),
    ("newlines.txt", b"\n\n\r\n", "file holds only white space; give a file with text in it"),
    ("one.txt", b"t", "need at least 2 characters to score"),
    (
        "unseen.txt",
        b"tZQ<>",
        (
            "no character after its first is one the model knows; nothing to score: give a text written in the "
            "characters of the text the model was trained on"
        ),
    ),
    ("gbk.txt", "满纸荒唐言，一把辛酸泪！\n".encode("gbk"), "not valid utf-8 at byte offset 0 (byte 0xc2)"),
    ("folder", None, "folder holds no .txt files"),
    ("ls.bin", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "a binary file, not text (it holds NUL bytes"),
    ("nul.txt", b"the lazy\x00 dog\n", "a binary file, not text (it holds NUL bytes, the first at byte offset 8)"),
]


def test_eval_and_inspect_refuse_a_text_with_nothing_to_score_in_one_line_naming_it(fox, tmp_path):
    """A one-character file and one of characters the model never saw have nothing to score: inspect
    printed `nan bits per character` (and scored a newline the file lacks before that)."""
    for name, data, says in HOSTILE:
        if data is None:
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(data)
        assert_one_line_error(cli("eval", fox, name, "--quiet"), f"{name}: {says}")
        assert_one_line_error(cli("inspect", fox, name, "--output", "page.html"), f"{name}: {says}")
    with pytest.raises(CharLMError, match="^eval_also=.*empty.txt.: file is empty"):
        read_eval_also(Config(eval_also=str(tmp_path / "empty.txt")), charlm.load(fox).vocab)


def test_validations_bits_per_char_of_ids_with_nothing_scored_is_nan_not_a_perfect_zero(model):
    """Training's validation figure was bits / max(chars, 1): 0.0 bits per character, a perfect model and
    the best a run could keep, where nothing was scored (one token; every one after the first unseen).
    The plan refuses such a split or --eval-also text before training; the figure says NaN as `mean_bits`."""
    one_token = np.array([1], dtype=np.int32)
    unseen_after_first = np.array([1, vocab_module.UNSEEN, vocab_module.UNSEEN], dtype=np.int32)
    for ids in (one_token, unseen_after_first):
        assert math.isnan(scoring.bits_per_char(model, ids))
    assert 0.0 < scoring.bits_per_char(model, np.array([1, 2], dtype=np.int32)) < 10.0


def test_a_file_that_disappears_between_listing_and_reading_is_one_line_naming_it(fox, fox_file, monkeypatch):
    """Listed (it exists), then gone before it is opened: one line, no traceback. eval lists FILES, then
    reads each (`read_texts`, which lists it again): the file goes after that last listing."""
    listed, listings = corpus.source_files, []

    def listed_then_gone(sources):
        found = listed(sources)
        listings.append(sources)
        if len(listings) == 2:
            fox_file.unlink()
        return found

    monkeypatch.setattr(corpus, "source_files", listed_then_gone)
    assert_one_line_error(cli("eval", fox, str(fox_file)), f"{fox_file}: cannot read (No such file or directory)")


def test_a_sentencepiece_models_bits_are_over_the_characters_its_scored_pieces_spell():
    """Pieces of several characters ('the', 'az') and characters no piece holds, spelled as bytes (ζ, 😀):
    the bits per character is the bits of the text after its first character over the characters
    after it, as for a character model. A first character spelled as 4 bytes counted 1 character read
    and its other 3 bytes' bits scored, over no character."""
    vocab = PieceVocab(train_model(["the quick brown fox jumps over the lazy dog\n" * 40], "bpe", 300))
    torch.manual_seed(0)
    model = CharLM(ModelConfig("lstm", 1, 16, 0.0, len(vocab)), vocab).eval()
    for text, first in (("the lazy dog jumps over ζ the 😀 fox", "the"), ("😀 the lazy ζ dog", "😀")):
        ids = vocab.encode(text)
        read = len(vocab.encode(first))  # the tokens that spell the first character (or the first piece)
        assert vocab.decode(ids[:read]) == first and len(ids) > len(text) // 2  # pieces, not characters
        with inference(model):
            logits, _ = model(ids[None, :-1])
        nats = F.cross_entropy(logits[0, read - 1 :], ids[read:], reduction="sum").item()
        bits, chars = text_bits(model, text)
        assert chars == len(text) - len(first) and abs(bits - nats / math.log(2)) < 1e-4
        assert abs(charlm.bits_per_char(model, text) - bits / chars) < 1e-6


def test_a_text_that_is_one_sentencepiece_piece_is_refused_as_one_token_not_as_under_2_characters():
    """ "the", one piece of 3 characters, was refused with "need at least 2 characters to score": false. The
    first piece is read whole, so nothing is left to score; a piece and one character more is scored."""
    vocab = PieceVocab(train_model(["the quick brown fox jumps over the lazy dog\n" * 40], "bpe", 300))
    model = CharLM(ModelConfig("lstm", 1, 16, 0.0, len(vocab)), vocab).eval()
    assert len(vocab.encode("the")) == 1
    with pytest.raises(CharLMError) as raised:
        charlm.bits_per_char(model, "the")  # eval's engine, text_bits
    assert str(raised.value) == (
        "text: its 3 characters are one token to the model, and the first token is read, not scored: "
        "nothing is left to score; give a longer text"
    )
    assert text_bits(model, "the ")[1] == 1


def test_eval_also_refuses_a_one_piece_text_and_scores_a_byte_spelled_first_character_as_eval_does(tmp_path):
    """--eval-also said "need at least 2 characters" of "the", one piece of 3 characters; and training
    scored its ids with only the first token read, so the 3 later bytes of a first '😀' had their bits
    counted over no character: its bits per character differed from `charlm eval`'s on the same text."""
    vocab = PieceVocab(train_model(["the quick brown fox jumps over the lazy dog\n" * 40], "bpe", 300))
    torch.manual_seed(0)
    model = CharLM(ModelConfig("lstm", 1, 16, 0.0, len(vocab)), vocab).eval()
    (tmp_path / "one.txt").write_text("the", encoding="utf-8")
    with pytest.raises(CharLMError, match=r"^eval_also='.*one.txt': its 3 characters are one token to the model"):
        read_eval_also(Config(eval_also=str(tmp_path / "one.txt")), vocab)
    text = "😀 the lazy ζ dog"
    (tmp_path / "emoji.txt").write_text(text, encoding="utf-8")
    ids = read_eval_also(Config(eval_also=str(tmp_path / "emoji.txt")), vocab)
    assert len(vocab.encode("😀")) == 4  # spelled as bytes
    assert scoring.bits_per_char(model, ids) == pytest.approx(charlm.bits_per_char(model, text), abs=1e-6)
