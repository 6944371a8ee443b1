"""Text in: files, folders or the built-in Shakespeare become one training text and one validation text."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .errors import CharLMError

DEFAULT_CORPUS = "shakespeare"


@dataclass
class Corpus:
    name: str
    train_text: str
    val_text: str

    @property
    def digest(self) -> str:
        """Identifies the exact text, so a resumed run can tell that its corpus changed."""
        h = hashlib.sha256()
        for part in (self.train_text, "\x00", self.val_text):
            h.update(part.encode("utf-8"))
        return h.hexdigest()[:16]


def load_corpus(sources: list[str] | tuple[str, ...], val_fraction: float, encoding: str = "utf-8") -> Corpus:
    """Read the corpus a user named; no sources means the built-in Shakespeare plays."""
    if not sources or list(sources) == [DEFAULT_CORPUS]:
        from .shakespeare import shakespeare_corpus

        return shakespeare_corpus()
    text = read_texts(sources, encoding)
    return split_corpus(corpus_name(sources), text, val_fraction)


def corpus_name(sources: list[str] | tuple[str, ...]) -> str:
    first = Path(sources[0])
    return first.stem if first.is_file() else first.name or "corpus"


def split_corpus(name: str, text: str, val_fraction: float) -> Corpus:
    """Hold out the last `val_fraction` of the text: the model never trains on what it is scored on."""
    cut = len(text) - int(len(text) * val_fraction)
    return Corpus(name, text[:cut], text[cut:])


def read_texts(sources: list[str] | tuple[str, ...], encoding: str = "utf-8") -> str:
    """Concatenate files and folders (their .txt files, sorted) into one text with `\\n` line ends."""
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
    parts = [read_text(p, encoding) for p in files]
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """Decode one file, naming the byte offset of the first bad byte."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CharLMError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        hint = "--encoding latin-1" if encoding.lower().replace("-", "") == "utf8" else "another --encoding"
        raise CharLMError(
            f"{path}: not valid {encoding} at byte offset {e.start} (byte 0x{raw[e.start]:02x}); "
            f"convert it to UTF-8 or pass {hint}"
        ) from None
    except LookupError:
        raise CharLMError(f"--encoding: unknown encoding {encoding!r}") from None
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    if not text.strip():
        raise CharLMError(f"{path}: file is empty; give it some text to learn from")
    return text
