"""Text in: files or folders of .txt files, read as a stream of decoded, normalized chunks.

Nothing here holds a whole corpus in memory: `iter_text` decodes each file in chunks of a few MB,
turns `\\r\\n` into `\\n` and applies Unicode normalization, cutting chunks only where no character
sequence can span the cut. A bad byte is reported with its file and byte offset.
"""

from __future__ import annotations

import codecs
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from .errors import CharLMError

DEFAULT_CORPUS = "shakespeare"
CHUNK_BYTES = 4 << 20


def corpus_name(sources: list[str] | tuple[str, ...]) -> str:
    if not sources:
        return DEFAULT_CORPUS
    first = Path(sources[0])
    return first.stem if first.suffix else first.name or "corpus"


def source_files(sources: list[str] | tuple[str, ...]) -> list[Path]:
    """The files a user named: each file as given, each folder's .txt files sorted."""
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not found:
                raise CharLMError(f"{path}: folder holds no .txt files; point at a text file or a folder of .txt files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CharLMError(f"{path}: no such file or folder")
    return files


def normalized(text: str, form: str) -> str:
    """`text` in Unicode normalization `form` (none, nfc or nfkc): corpus and seeds alike."""
    return text if form == "none" else unicodedata.normalize(form.upper(), text)


def iter_text(files: list[Path], encoding: str = "utf-8", normalize: str = "none", progress=None) -> Iterator[str]:
    """Decoded, normalized text of `files` in order, in chunks; every file ends with a newline.
    `progress(n)` is called with the bytes read."""
    for path in files:
        ends_with_newline, empty = True, True
        for chunk in _decode(path, encoding, progress):
            if chunk.strip():
                empty = False
            text = normalized(chunk, normalize)
            if text:
                ends_with_newline = text.endswith("\n")
                yield text
        if empty:
            raise CharLMError(f"{path}: file is empty; give it some text to learn from")
        if not ends_with_newline:
            yield "\n"


def _decode(path: Path, encoding: str, progress) -> Iterator[str]:
    """One file's text in chunks cut at safe places, with `\\r\\n` turned into `\\n`."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    except LookupError:
        raise CharLMError(f"--encoding: unknown encoding {encoding!r}") from None
    offset, carry, first = 0, "", True
    with _open(path) as f:
        while True:
            raw = f.read(CHUNK_BYTES)
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                at = offset - pending + e.start
                hint = "--encoding latin-1" if encoding.lower().replace("-", "") == "utf8" else "another --encoding"
                raise CharLMError(
                    f"{path}: not valid {encoding} at byte offset {at} (byte 0x{e.object[e.start]:02x}); "
                    f"convert it to UTF-8 or pass {hint}"
                ) from None
            offset += len(raw)
            if progress:
                progress(len(raw))
            if first:
                text, first = text.lstrip("\ufeff"), False
            text = (carry + text).replace("\r\n", "\n")
            if not raw:
                if text:
                    yield text
                return
            cut = _safe_cut(text)
            carry = text[cut:]
            if cut:
                yield text[:cut]


def _open(path: Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise CharLMError(f"{path}: cannot read ({e.strerror})") from None


def _safe_cut(text: str) -> int:
    """Where text can be cut so that no `\r\n` pair or combining sequence spans the cut: after the
    last newline, or, in a very long line, before the last character that starts a new sequence."""
    newline = text.rfind("\n")
    if newline >= 0:
        return newline + 1
    for i in range(len(text) - 1, max(len(text) - 64, 0), -1):
        if text[i - 1] != "\r" and not unicodedata.combining(text[i]) and text[i] not in "\u200c\u200d":
            return i
    return len(text)


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """One small file whole (a seed), exactly as written but for `\r\n`."""
    text = "".join(_decode(Path(path), encoding, None))
    if not text.strip():
        raise CharLMError(f"{path}: file is empty; give it some text to learn from")
    return text


def read_texts(sources: list[str] | tuple[str, ...], encoding: str = "utf-8", normalize: str = "none") -> str:
    """Files and folders as one text (small corpora, texts to score)."""
    return "".join(iter_text(source_files(sources), encoding, normalize))
