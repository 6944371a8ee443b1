"""Why a file does not decode, and what to do: the one-line error for it (corpus.py's files, a seed on stdin).

A file that fails as its encoding is guessed at from its bytes: cut short in the middle of a character,
binary (NUL bytes), UTF-8 with a few stray bytes, GBK text (gb18030), UTF-16 with or without its byte
order mark, or 8-bit text (latin-1). The guess only words the error; nothing is ever read as guessed.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from .errors import CharLMError, one_line_path
from .fields import said

UTF8_CHECK_BYTES = 1 << 16  # of a file another --encoding fails on, read to tell whether it is UTF-8
BYTE_ORDER_MARKS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# What UTF-16 text is made of (`utf16_text`): ASCII and Latin-1 text, Greek and Cyrillic, dashes, quotes and
# the ellipsis, CJK punctuation and kana, Hangul, CJK ideographs, full-width forms, any valid surrogate pair.
# Random data read two bytes at a time lands in these half of the time.
TEXT_CODE_POINTS = (
    (0x09, 0x0A),
    (0x0D, 0x0D),
    (0x20, 0x7E),
    (0xA0, 0xFF),
    (0x370, 0x4FF),
    (0x2010, 0x2027),
    (0x3000, 0x30FF),
    (0x3130, 0x318F),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3),
    (0xFF01, 0xFFEF),
    (0x10000, 0x10FFFF),
)
# Bytes no 8-bit text holds: C0 controls but tab, line breaks, DOS's end of file (0x1a) and escape, and
# the five cp1252 leaves undefined (latin-1's 0x80-0x9f are controls too). `likely_encoding` names
# latin-1 for no bytes with these: UTF-16's CJK characters are (0x3002 '。', 0x5b9d '宝').
NOT_8BIT_TEXT = frozenset([*range(0x09), *range(0x0E, 0x1A), *range(0x1C, 0x20), 0x81, 0x8D, 0x8F, 0x90, 0x9D])


class Undecodable(CharLMError):
    """A file that does not decode as the encoding it is read in (or holds NUL bytes, no text's): what a run's
    text saved in another encoding since gives when read as the run read it (runtext.py reads it as UTF-8)."""


def undecodable(
    path: Path,
    encoding: str,
    error: UnicodeError,
    raw: bytes,
    start: int,
    encoding_option: bool = True,
    place: tuple[int, int] = (0, 1),
) -> Undecodable:
    """The error for a block `raw` of a file that does not decode as `encoding`, saying what to do: a file cut
    short, a binary one, or another encoding (the likely one, for UTF-8). `start`: the file offset of the
    bytes the decoder read (those of a character the block before began, then `raw`). `encoding_option`:
    whether the command has --encoding to suggest; `place`: the file's number among the corpus's files and
    their count: --encoding reads every file, so another one would misread those before it that read (this
    one is to be converted), and is right for those after it only if they are in it too."""
    # UTF-16 without its byte order mark (Notepad's "Unicode" exports can lack it): not binary for its NULs
    wide = utf16_text(raw) if start == 0 and not raw.startswith(BYTE_ORDER_MARKS) else None
    if complaint := stream_complaint(error):
        order = wide or utf16_without_bom(raw)
        hint = f" or pass {said('encoding', order)}" if order else f" or pass another {said('encoding')}"
        return Undecodable(
            f"{one_line_path(path)}: cannot be read as {encoding} ({complaint}); convert it to UTF-8"
            f"{hint if encoding_option else ''}"
        )
    at = start + error.start
    utf8 = is_utf8(encoding)
    invalid = (
        f"{one_line_path(path)}: not valid {encoding} at byte offset {at} (byte 0x{error.object[error.start]:02x})"
    )
    if not utf8 and begins_as_utf8(path):  # --encoding gb18030 given for a UTF-8 file: "convert it to UTF-8" is wrong
        return Undecodable(f"{invalid}; {utf8_read_as(encoding, place)}")
    if not raw and error.end == len(error.object):  # the file ends inside a character: no encoding helps
        return Undecodable(
            f"{one_line_path(path)}: ends in the middle of a character (its last {len(error.object)} bytes, from byte "
            f"offset {at}, begin one and stop): the file was cut short; remove them or get it whole"
        )
    if b"\x00" in raw and not raw.startswith(BYTE_ORDER_MARKS) and not wide:
        # latin-1 would read it, and a score or a corpus of it is garbage
        return binary_file(path, f"NUL bytes; not valid {encoding} at byte offset {at}", raw, encoding_option)
    bad, before = error.object[error.start :], error.object[: error.start]
    likely = wide or (likely_encoding(bad, at == 0, before) if utf8 else None)
    if likely in (None, "latin-1") and start == 0 and len(raw) < 64 and utf16_either(raw):
        known = f" or pass its {said('encoding')}" if encoding_option else ""  # 'abc\x80' may be latin-1 after all
        return Undecodable(
            f"{invalid}, and too short to tell which encoding it is in (its bytes read as text in more than one): "
            f"save it as UTF-8{known}"
        )
    if likely == "utf-8":  # no encoding reads it: the file is UTF-8 but for those bytes
        return Undecodable(
            f"{invalid}, though the text around it is: remove the stray bytes there (another encoding would "
            "misread the rest)"
        )
    return Undecodable(f"{invalid}; convert it to UTF-8{encoding_hint(likely, encoding, encoding_option, place)}")


def stream_complaint(error: UnicodeError) -> str | None:
    """A decoder's complaint about the text as a whole, not a byte of it: UTF-16's and UTF-32's without their
    byte order mark. Python 3.12 raises it as a bare UnicodeError, 3.13 as a UnicodeDecodeError over the first
    bytes, which read as a bad byte would blame one that is fine ('h') or call UTF-32 text binary for its NULs.
    None for a bad byte."""
    if not isinstance(error, UnicodeDecodeError):
        return str(error)
    if error.reason == "Stream does not start with BOM":
        return f"{error.encoding.upper()} stream does not start with BOM"  # 3.12's words, on every Python
    return None


def likely_encoding(data: bytes, at_start: bool, before: bytes) -> str | None:
    """The --encoding to suggest for `data`, the bytes from where UTF-8 failed (`at_start`: at the file's
    first byte; `before`: the bytes read as UTF-8 just before it): gb18030 when they read as Chinese in it
    and are not UTF-8 past the bad byte (a GBK or GB2312 file, common for Chinese text), else latin-1.
    latin-1 reads any bytes, so a Chinese file read with it trains on garbage. A UTF-16 file (its byte
    order mark, at the start: the same bytes later are stray ones): utf-16. "utf-8" where the bytes past
    the bad one are UTF-8 and the text around it has non-ASCII characters (stray bytes in a UTF-8 file,
    whose text latin-1 would garble: its Chinese, or an English text's curly quotes). None where no
    encoding is likely: bytes no 8-bit text holds (`NOT_8BIT_TEXT`), such as a few UTF-16 characters."""
    if at_start and data.startswith(BYTE_ORDER_MARKS):
        return "utf-16"
    window = data[:400]  # a character cut at its end costs one replacement
    chinese = window.decode("gb18030", errors="replace")
    han = sum("\u4e00" <= c <= "\u9fff" for c in chinese)
    after = codecs.getincrementaldecoder("utf-8")("replace").decode(window[1:])  # not final: no cut character
    utf8_after = after.count("\ufffd") <= 1
    if han >= 2 and chinese.count("\ufffd") <= 1 and not utf8_after:
        return "gb18030"
    utf8_text = not before.isascii() or any("\x7f" < c != "\ufffd" for c in after)
    if utf8_after and utf8_text:
        return "utf-8"
    return None if NOT_8BIT_TEXT.intersection(window) else "latin-1"


def begins_as_utf8(path: Path) -> bool:
    """Whether the file at `path` begins (its first `UTF8_CHECK_BYTES`) as UTF-8 text with characters
    beyond ASCII: a file another --encoding fails on that is in charlm's default one (a Chinese UTF-8
    text read as gb18030 pairs its bytes into other characters until one pair is invalid)."""
    try:
        with open(path, "rb") as f:
            head = f.read(UTF8_CHECK_BYTES)
        codecs.getincrementaldecoder("utf-8")("strict").decode(head)  # not final: a character cut at the end
    except (OSError, UnicodeDecodeError):
        return False
    return not head.isascii()


def text_encoding(data: bytes) -> str:
    """The encoding to tell a Python caller to read `data` (a text's first bytes) in: utf-8 where they are
    UTF-8 (a character cut at their end allowed), gb18030 or utf-16 where they look it (`likely_encoding`),
    else utf-8, the default, whose error then says where it fails. A GBK chapter's bytes told
    .decode('utf-8') would raise UnicodeDecodeError at the next line."""
    head = data[:UTF8_CHECK_BYTES]
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(head)
        return "utf-8"
    except UnicodeDecodeError as error:
        likely = likely_encoding(head[error.start :], error.start == 0, head[: error.start])
    return likely if likely in ("gb18030", "utf-16") else "utf-8"


def file_encoding(path: str | Path) -> str:
    """`text_encoding` of the file at `path`: the encoding= that reads it (utf-8 where it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return text_encoding(f.read(UTF8_CHECK_BYTES))
    except OSError:
        return "utf-8"


def utf8_read_as(encoding: str, place: tuple[int, int]) -> str:
    """What to do with a UTF-8 file read as `encoding`: drop --encoding; of several files, which it
    reads all of, save them in one encoding."""
    _, count = place
    if count > 1:
        return (
            f"it is UTF-8 text, and {said('encoding', encoding)} reads all {count} files: save them in one "
            f"encoding (UTF-8 needs no {said('encoding')})"
        )
    return f"it is UTF-8 text, which charlm reads by default: drop {said('encoding', encoding)}"


def encoding_hint(likely: str | None, encoding: str, encoding_option: bool, place: tuple[int, int]) -> str:
    """What `undecodable` adds to "convert it to UTF-8" for a file likely in encoding `likely`: --encoding,
    which reads every file, only for the first file and only if all are in it (a later file's would misread
    those before it that read as `encoding`), and for a seed file (no --encoding) the encoding it is in."""
    number, count = place
    if encoding_option and number:
        looks = f" (it looks like {likely} text)" if likely else ""
        return f"{looks}: {said('encoding')} reads every file, and {files_before(number)} it read as {encoding}"
    if encoding_option:
        hint = f" or pass {said('encoding', likely)}" if likely else f" or pass another {said('encoding')}"
        return hint + (f" if all {count} files are in it" if count > 1 else "")
    known = likely in ("gb18030", "utf-16", "utf-16-le", "utf-16-be")  # latin-1 is only what reads any bytes
    return f" (it looks like {likely} text)" if known else ""


def is_utf8(encoding: str) -> bool:
    """Whether `encoding` is UTF-8 by any name Python gives it (utf8, UTF_8, u8), but for one unknown."""
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def files_before(count: int) -> str:
    """`count` files before one, in words."""
    return "the file before" if count == 1 else f"the {count} files before"


def binary_file(path: Path, holds: str, data: bytes, encoding_option: bool = True) -> Undecodable:
    """The error for a file holding NUL bytes (`holds` says where): no text file holds one, so it is
    binary (read as UTF-8 or latin-1 it would be scored or trained on as unseen characters), or UTF-16
    without its byte order mark, whose ASCII characters each carry a NUL byte: `data` (its bytes there)
    says which. `encoding_option`: whether the command has --encoding to suggest."""
    hint = ""
    if order := utf16_without_bom(data):
        remedy = said("encoding", order) if encoding_option else "convert it to UTF-8"
        hint = f" (if it is UTF-16 without a byte order mark: {remedy})"
    return Undecodable(f"{one_line_path(path)}: a binary file, not text (it holds {holds}); give a text file{hint}")


def utf16_without_bom(data: bytes) -> str | None:
    """utf-16-le or utf-16-be where `data`'s NUL bytes all sit at odd or all at even offsets, at least a
    quarter of those (UTF-16 text with ASCII in it, from offset 0 of a block); else None (binary)."""
    window = data[:400]
    odd, even = window[1::2].count(0), window[0::2].count(0)
    if min(odd, even) == 0 and max(odd, even) * 4 >= len(window) // 2 > 0:
        return "utf-16-le" if odd else "utf-16-be"
    return None


def utf16_text(data: bytes) -> str | None:
    """utf-16-le or utf-16-be where `data`, a file's first bytes, read as text (`TEXT_CODE_POINTS`) in that
    byte order and not in the other: UTF-16 without its byte order mark, Chinese text too, whose characters
    have no NUL byte for `utf16_without_bom` to see. Not 8-bit text, whose bytes are mostly ASCII (two ASCII
    letters read as one character are a CJK one, in either order). Not binary data that reads as CJK
    (Python bytecode, repeated floats) nor Shift-JIS (whose second byte is never below 0x40): a CJK
    character's low byte is any of 0-255, theirs keep to one part of that range."""
    window = data[:400]
    if sum(byte >= 0x80 for byte in window) * 6 < len(window) and not NOT_8BIT_TEXT.intersection(window):
        return None  # 8-bit text: UTF-16 Chinese has about two bytes in five above 0x7f, Cyrillic 0x04s
    shares = utf16_shares(window)
    order = max(shares, key=lambda name: shares[name][0])
    (share, chars), other = shares[order], min(share for share, _ in shares.values())
    if other > share - 0.3:  # text both ways: one alphabet's letters share their high byte (Greek's 0x03, kana's 0x30)
        one_alphabet = [name for name, (_, read) in shares.items() if len(read) >= 3 and alphabet(read)]
        if len(one_alphabet) != 1:
            return None
        order = one_alphabet[0]
        share, chars = shares[order]
    elif len(chars) < 4:
        return None
    if share < 0.9:
        return None
    low_bytes = [ord(c) & 0xFF for c in chars if "\u4e00" <= c <= "\u9fff"]
    below, above = sum(b < 0x40 for b in low_bytes), sum(b >= 0x80 for b in low_bytes)
    if len(low_bytes) >= 16 and min(below, above) * 32 < len(low_bytes):
        return None
    return order


def utf16_shares(window: bytes) -> dict[str, tuple[float, str]]:
    """Each UTF-16 byte order's reading of `window`: the share of its characters that are text
    (`TEXT_CODE_POINTS`), and the characters."""
    shares = {}
    for order in ("utf-16-le", "utf-16-be"):  # not final: a character cut at the window's end is no error
        chars = codecs.getincrementaldecoder(order)("replace").decode(window)
        text = sum(any(low <= ord(c) <= high for low, high in TEXT_CODE_POINTS) for c in chars)
        shares[order] = (text / len(chars) if chars else 0.0, chars)
    return shares


def alphabet(chars: str) -> bool:
    """Whether `chars` keep to few high bytes and many low ones, as one alphabet's letters do (Greek's
    U+03xx, kana's U+30xx, with ASCII's U+00xx): read in the other byte order they would not."""
    return len({ord(c) >> 8 for c in chars}) * 2 <= len({ord(c) & 0xFF for c in chars})


def utf16_either(data: bytes) -> bool:
    """Whether a file's first bytes `data` read as text in both UTF-16 byte orders (`utf16_text` naming
    neither): a few CJK or Hangul characters ('한국', '宝。'), too few to tell their encoding by."""
    return len(data) >= 2 and all(share >= 0.9 for share, _ in utf16_shares(data[:400]).values())


def nul_offset(raw: bytes, offset: int, encoding: str) -> str:
    """Where the first NUL of a block that decoded is, in words: its byte offset where the encoding
    writes NUL as one zero byte (UTF-8, latin-1, gb18030; a NUL byte is never part of another
    character there), else only that the text holds one (UTF-16 or UTF-32 with U+0000 in it)."""
    if "\x00".encode(encoding, errors="ignore") == b"\x00":
        return f"NUL bytes, the first at byte offset {offset + raw.find(0)}"
    return "the NUL character U+0000"
