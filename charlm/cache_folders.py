"""A prepared corpus's cache folder as processes share it: published whole or not at all, read only after
its checksum holds, and the private folders of processes that died while preparing removed.

Several processes may prepare one corpus at once: each writes a private folder next to the cache
folder (`private_name`) and publishes it with one atomic rename, so a cache folder is always whole or
absent; the one that comes second uses the first one's folder. What the folder holds and how it is
made: tokens.py (`write_cache_folder`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import files, processes
from .corpus import open_file, read_block
from .errors import CharLMError, one_line_path
from .fields import SHOWN
from .vocab import Vocab, Vocabulary

PRIVATE_NAME = re.compile(r"\.\w+\.(tmp|damaged)-(?P<process>\d+(-\d+)?)-[0-9a-f]+")  # `private_name`'s
PUBLISH_TRIES = 5  # a damaged folder in the way is moved aside and the rename tried again


@dataclass
class Prepared:
    """A cache folder and what it holds, checked."""

    folder: Path
    vocab: Vocabulary
    tokens: np.ndarray
    meta: dict


def publish(private: Path, folder: Path, vocab: Vocabulary, meta: dict) -> Prepared:
    """Make the `private` folder that `tokens.write_cache_folder` wrote (`vocab`, `meta`) the cache folder
    `folder` with one atomic rename, and map its ids only then: Windows refuses to rename a folder holding a
    mapped file.
    If another process published first, use its folder once it passes the usual check; a damaged
    folder in the way is moved aside and the rename tried again."""
    for _ in range(PUBLISH_TRIES):
        try:
            private.rename(folder)  # fails if `folder` exists and holds anything
            return Prepared(folder, vocab, memmap(folder / "tokens.bin", np.dtype(meta["dtype"]), meta["tokens"]), meta)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        try:
            return Prepared(folder, *load_prepared(folder))
        except CharLMError:
            discard(folder)
    raise CharLMError(
        f"{one_line_path(folder)}: other processes keep replacing this cache folder; prepare the corpus again"
    )


def discard(folder: Path) -> None:
    """Remove a damaged cache folder: renamed aside first, so that no process ever sees it half removed."""
    aside = private_name(folder, "damaged")
    try:
        folder.rename(aside)
    except FileNotFoundError:
        return  # another process moved it first
    shutil.rmtree(aside, ignore_errors=True)


def private_name(folder: Path, kind: str) -> Path:
    """A hidden sibling of `folder` no other process picks: `.<name>.<kind>-<pid>-<start>-<random>`
    (`processes.process_name`: a process given the PID of one killed while preparing is not taken for it)."""
    return folder.with_name(f".{folder.name}.{kind}-{processes.process_name()}-{secrets.token_hex(4)}")


def remove_abandoned(root: Path) -> None:
    """Remove the private folders (`private_name`) that processes killed while preparing (SIGKILL, a
    crash) left in the cache, each as big as a corpus's ids: nothing else removed them. Those of a
    process still running are its own, in use."""
    for private in root.glob(".*"):
        named = PRIVATE_NAME.fullmatch(private.name)
        if named and processes.named_process_alive(named["process"]) is False:
            shutil.rmtree(private, ignore_errors=True)


def load_prepared(folder: Path) -> tuple[Vocabulary, np.ndarray, dict]:
    """Vocabulary, memory-mapped ids and meta of a cache folder, each checked."""
    try:
        meta = files.parse_json((folder / "meta.json").read_text(encoding="utf-8"))
        path = folder / "tokens.bin"
        dtype = np.dtype(meta["dtype"])
        vocab = read_vocab(folder / "vocab.json", meta.get("vocab_size"), meta.get("vocab_sha256"))
        if wrong := wrong_meta_field(meta, vocab):
            raise CharLMError(f"{one_line_path(folder / 'meta.json')}: {wrong} is {SHOWN.repr(meta.get(wrong))}")
        if path.stat().st_size != meta["tokens"] * dtype.itemsize:
            raise CharLMError(f"{one_line_path(path)}: truncated or extended ({path.stat().st_size} bytes)")
        digest = hashlib.sha256()
        with open_file(path) as f:
            while block := read_block(f, path, 1 << 22):
                digest.update(block)
        if digest.hexdigest() != meta["sha256"]:
            raise CharLMError(f"{one_line_path(path)}: edited (checksum mismatch)")
    except OSError as e:  # meta.json or vocab.json unreadable, tokens.bin gone
        raise files.cannot_read(Path(os.fsdecode(e.filename)) if e.filename else folder, e) from None
    except (ValueError, KeyError, TypeError) as e:
        raise CharLMError(f"{one_line_path(folder)}: damaged cache ({type(e).__name__})") from None
    return vocab, memmap(path, dtype, meta["tokens"]), meta


COUNTS = ("tokens", "characters", "distinct", "unknown_distinct", "unknown_count", "source_bytes")


def wrong_meta_field(meta: dict, vocab: Vocabulary) -> str | None:
    """The first field of meta.json that is not as `tokens.write_cache_folder` writes it, else None. It has no checksum:
    a hand edit (2640.0 tokens, no characters, ids of dtype bool) was used as it stood, a traceback later in
    training or ids read as other numbers. A field older caches lack (text, sizes, ...) may be absent."""
    parts, optional = meta.get("parts"), {"text": str, "sizes": list, "unknown_chars": list, "seconds": (int, float)}
    fits = {
        "dtype": meta.get("dtype") == vocab.dtype().name,
        **{name: is_count(meta.get(name)) for name in COUNTS},
        "parts": isinstance(parts, list) and all(map(is_count, parts)) and sum(parts) == meta["tokens"],
        "coverage": files.is_number(meta.get("coverage")) and 0 <= meta["coverage"] <= 1,
        "options": isinstance(meta.get("options"), dict),
        "sources": isinstance(meta.get("sources"), list) and all(isinstance(part, list) for part in meta["sources"]),
        **{name: name not in meta or isinstance(meta[name], kind) for name, kind in optional.items()},
    }
    if fits["characters"] and fits["tokens"] and meta["tokens"] and not meta["characters"]:
        fits["characters"] = False  # characters per token 0: a division by it at the first evaluation
    return next((name for name, fit in fits.items() if not fit), None)


def is_count(value: object) -> bool:
    """Whether a meta.json field is a count: an int of 0 or more, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_vocab(path: Path, size: int | None, sha256: str | None = None) -> Vocabulary:
    """The cache's vocabulary, its damage named with its file (a cache folder's damage is rebuilt), held to
    meta.json's size and checksum: one cut short would be used until training indexed past it, one with two
    characters swapped would read every id as another character. A cache from before meta.json kept them
    (`size`, `sha256` None) is taken as it is."""
    data = path.read_bytes()
    try:
        vocab = Vocab.from_dict(files.parse_json(data.decode("utf-8")))
    except CharLMError as e:
        raise CharLMError(f"{one_line_path(path)}: {e}") from None
    if size is not None and len(vocab) != size:
        raise CharLMError(f"{one_line_path(path)}: {len(vocab)} tokens where meta.json says {size}")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CharLMError(f"{one_line_path(path)}: edited (checksum mismatch)")
    return vocab


def memmap(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    """`count` ids of `path`, memory-mapped; an empty array for none (np.memmap refuses an empty file)."""
    return np.memmap(path, dtype=dtype, mode="r") if count else np.zeros(0, dtype)
