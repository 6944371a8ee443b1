"""Text -> token stream, prepared once and cached in `corpora/cache/<key>/`:

    tokens.bin   every id of the corpus, flat, as uint8, uint16 or uint32 (the smallest that fits)
    vocab.json   the vocabulary
    meta.json    the ids in each part (the built-in corpus's split), each source file's size, a summary,
                 the sha256 of tokens.bin and vocab.json; written last, so a folder without it was never finished

The key is a hash of the sources' bytes and of the options that change the ids (encoding,
normalization, vocabulary policy, and for a fine-tuning run the base's vocabulary, which the text's
new characters extend): a changed file gives a new key, an unchanged one reuses the cache. meta.json
also keeps the digest of the text as read (`text_digest`): a run's text re-encoded since (CRLF line
ends made LF, a byte order mark added or removed) has other bytes, hence another key, but the same text.
Preparation streams, a few MB at a time: one pass counts characters, one writes ids, and between
them `--tokenizer sentencepiece` trains its tokenizer (on at most `pieces.TRAINING_SENTENCES` lines,
which it holds), so memory stays flat whatever the corpus size. Training memory-maps tokens.bin. A
cache folder that was truncated or edited fails its checksum and is rebuilt, never silently used. How
processes share the folders: cache_folders.py; which files the user named, and whether they are still a
run's text (a resume's, refused here before anything is prepared): sources.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from . import files
from .bars import bytes_bar
from .cache_folders import Prepared, load_prepared, private_name, publish, remove_abandoned
from .config import CORPUS_OPTIONS, Config
from .corpus import CACHE_ROOT, file_sizes, iter_text, open_file, read_block
from .errors import CharLMError, one_line_path
from .fields import paths_given, said
from .pieces import PieceVocab, char_model_size, default_vocab_size, train_model
from .sources import CorpusChanged, files_changed, recorded_sources, same_text, source_parts
from .vocab import MAX_CODE_POINT, UNKNOWN, Vocab, Vocabulary, code_points

CACHE_FORMAT = 1
COUNT_SLICE = 1 << 20  # ids counted at a time (an 8 MB int64 copy)
NAMED_UNKNOWN = 100  # the characters the vocabulary lacks that meta.json names (all are counted)


@dataclass
class TokenCorpus:
    """A prepared corpus: ids memory-mapped from the cache, the first `split` of them for training."""

    name: str
    vocab: Vocabulary
    tokens: np.ndarray
    split: int
    key: str  # the cache folder's name (`cache_key`): the "digest" of its `record`
    meta: dict  # the cache folder's meta.json
    sources: list[str] = field(default_factory=list)  # as the user named them, files made absolute

    @property
    def chars_per_token(self) -> float:
        """Characters a token spells on average: 1 for the char vocabulary, more for sentencepiece."""
        return self.meta["characters"] / max(self.meta["tokens"], 1)

    @property
    def train_ids(self) -> np.ndarray:
        return self.tokens[: self.split]

    @functools.cached_property
    def train_counts(self) -> np.ndarray:
        """Occurrences of each id in the training split (the size rule and the adaptive head read them),
        counted once per corpus, a slice at a time: np.bincount copies its input as int64, which for the
        memory-mapped ids of a 100 MB corpus whole would be 720 MB, most of a training run's peak memory."""
        counts = np.zeros(len(self.vocab), dtype=np.int64)
        ids = self.train_ids
        for start in range(0, len(ids), COUNT_SLICE):
            counted = np.bincount(ids[start : start + COUNT_SLICE], minlength=len(counts))
            counts = np.pad(counts, (0, len(counted) - len(counts))) + counted
        return counts

    @property
    def val_ids(self) -> np.ndarray:
        return self.tokens[self.split :]

    def record(self) -> dict:
        """What a checkpoint keeps of this corpus (its `corpus`, whose fields `Checkpoint.check` checks): enough
        to prepare it again (`runtext.run_corpus`) and to know whether its sources still hold this text (`prepare`)."""
        text = {"text": self.meta["text"]} if "text" in self.meta else {}  # none in a cache built before it was kept
        return {"name": self.name, "sources": self.sources, "digest": self.key, **text}


def cache_key(parts: list[list[Path]], options: dict) -> str:
    """The cache folder's name: a hash of the sources' bytes, part by part, and of the `options` that change
    the ids (`corpus_options`), so that a changed file or option is prepared anew and nothing else is."""
    digest = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, **options}, sort_keys=True).encode())
    for part in parts:
        digest.update(b"\x00part")
        for path in part:
            digest.update(b"\x00file")
            with open_file(path) as f:
                while block := read_block(f, path, 1 << 20):
                    digest.update(block)
    return digest.hexdigest()[:20]


def prepare(
    parts: list[list[Path]],
    config: Config | None = None,
    root: Path = CACHE_ROOT,
    quiet: bool = False,
    base: Vocabulary | None = None,
    run: dict | None = None,
) -> Prepared:
    """The prepared corpus of these sources under the config's CORPUS_OPTIONS, from the cache when it
    is there and intact, else prepared now. `parts` are consecutive groups of files (the built-in
    corpus: training plays, validation plays). Given a `base` vocabulary (a fine-tuning run's), the
    ids are those of `base` extended with the text's new characters. Given a run's `corpus` record
    (`run`), sources changed since that run are refused before anything is prepared (`CorpusChanged`)."""
    config = config or Config()
    options = corpus_options(config, base)
    folder = Path(root) / cache_key(parts, options)
    # checked before preparing: else minutes preparing a big corpus, then refused
    if run is not None and not same_text(run, folder.name, lambda: text_digest(parts, config)):
        changes = f" ({changed})" if (changed := files_changed(prepared_files(run["digest"], root), parts)) else ""
        corpus = paths_given(run["sources"]) if run["sources"] else run["name"]
        raise CorpusChanged(f"the corpus {corpus} changed since the run trained on it{changes}")
    if (folder / "meta.json").is_file():
        try:
            return with_text_digest(Prepared(folder, *load_prepared(folder)), parts, config, quiet)
        except CharLMError as e:
            if not quiet:
                tqdm.write(f"rebuilding {one_line_path(folder)}: {e}")
    remove_abandoned(folder.parent)
    private = private_name(folder, "tmp")
    try:
        private.mkdir(parents=True)
        vocab, meta = write_cache_folder(parts, config, options, private, quiet, base)
        return publish(private, folder, vocab, meta)
    except OSError as e:  # a full disk, or a file where the cache folder goes (the sources' reads say their own)
        raise files.cannot_write(folder.parent, e, "the corpus cache") from None
    finally:
        shutil.rmtree(private, ignore_errors=True)  # gone if published; else the copy that came second


def with_text_digest(prepared: Prepared, parts: list[list[Path]], config: Config, quiet: bool) -> Prepared:
    """`prepared`, its meta given the text's digest where an older charlm built it without one: else each run
    trained on it would keep none, and its text saved again with CRLF line ends, a byte order mark or in
    another encoding would be refused on resume as another text. The cache is of these very bytes (its key),
    so the digest is theirs: one more read of the text, kept in meta.json (best effort: a cache that cannot
    be written gives it to this run alone)."""
    if "text" in prepared.meta:
        return prepared
    if not quiet:
        tqdm.write(
            f"reading the text once more for {one_line_path(prepared.folder)}, prepared without its text's digest"
        )
    meta = {**prepared.meta, "text": text_digest(parts, config)}
    with contextlib.suppress(OSError):  # read-only, or a full disk
        files.replace_files({prepared.folder / "meta.json": files.json_text(meta, 1).encode("utf-8")})
    return dataclasses.replace(prepared, meta=meta)


def prepared_files(key: str, root: Path = CACHE_ROOT) -> tuple[list[Path], list[int] | None] | None:
    """The files the cache folder `key` was prepared from, and each one's size then where its meta.json keeps
    them (meta.json's "sources" and "sizes"), for `sources.files_changed` to say what changed since: None
    where the folder is gone or its meta.json unreadable, which leaves nothing to compare."""
    try:
        meta = files.parse_json((Path(root) / key / "meta.json").read_text(encoding="utf-8"))
        sources, sizes = [Path(p) for part in meta["sources"] for p in part], meta.get("sizes")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sources, sizes if isinstance(sizes, list) and len(sizes) == len(sources) else None


def corpus_options(config: Config, base: Vocabulary | None = None) -> dict:
    """What the prepared corpus depends on besides the bytes: the config's CORPUS_OPTIONS, and a fine-tune's
    `base` vocabulary, whose ids it extends."""
    options = {name: getattr(config, name) for name in CORPUS_OPTIONS}
    if base is not None:
        options["base_vocab"] = hashlib.sha256(json.dumps(base.to_dict(), sort_keys=True).encode()).hexdigest()[:20]
    return options


def write_cache_folder(
    parts: list[list[Path]],
    config: Config,
    options: dict,
    folder: Path,
    quiet: bool,
    base: Vocabulary | None = None,
) -> tuple[Vocabulary, dict]:
    """Prepare the corpus into `folder`, a new folder no other process uses, in the module docstring's
    passes: count the characters and choose the vocabulary, write the ids, then the meta that marks the
    folder finished. Returns its vocabulary and meta."""
    started = time.perf_counter()
    sizes_read = file_sizes([path for part in parts for path in part])  # a file gone since: its read says so
    source_bytes = sum(sizes_read)

    def read(task: str) -> Iterator[tuple[int, str]]:
        """One pass over the corpus, (part number, text chunk), with a bar of its own over the files' bytes."""
        with bytes_bar(source_bytes, desc=task, disable=quiet) as bar:
            yield from text_chunks(parts, config, bar.update)

    counts, vocab = make_vocab(lambda task: (chunk for _, chunk in read(task)), config, base)
    text = hashlib.sha256()
    digest, sizes, characters = write_ids(folder / "tokens.bin", hashing(read("encoding"), text), vocab, len(parts))
    unknown = {c: n for c, n in counts.items() if not vocab.knows(c)}
    vocab_json = json.dumps(vocab.to_dict(), ensure_ascii=False).encode("utf-8")
    meta = {
        "format": CACHE_FORMAT,
        "dtype": vocab.dtype().name,
        "tokens": sum(sizes),
        "parts": sizes,
        "sha256": digest,
        "text": text.hexdigest()[:20],
        "characters": characters,
        "distinct": len(counts),
        "vocab_size": len(vocab),
        "vocab_sha256": hashlib.sha256(vocab_json).hexdigest(),  # an edit that keeps its size is caught too
        "unknown_distinct": len(unknown),
        "unknown_count": sum(unknown.values()),
        "unknown_chars": list(unknown)[:NAMED_UNKNOWN],  # by code point: a fine-tune's start line names them
        "coverage": 1.0 - sum(unknown.values()) / max(characters, 1),
        "sources": [[str(p) for p in part] for part in parts],
        "source_bytes": source_bytes,
        "sizes": sizes_read,  # each source's, for `prepared_files`: what changed since
        "options": options,
        "seconds": round(time.perf_counter() - started, 3),
    }
    (folder / "vocab.json").write_bytes(vocab_json)
    (folder / "meta.json").write_text(files.json_text(meta, 1), encoding="utf-8")
    return vocab, meta  # all written


def text_chunks(
    parts: list[list[Path]], config: Config, progress: Callable[[int], object] | None = None
) -> Iterator[tuple[int, str]]:
    """(part number, text chunk) of the corpus, read as the config says: what it is prepared from."""
    for number, part in enumerate(parts):
        for chunk in iter_text(part, config.encoding, config.normalize, progress):
            yield number, chunk


class Digest(Protocol):
    """What `hashing` needs of a hashlib hash: hashlib names no public type for one (`hashlib._Hash`
    is typeshed's, absent at run time)."""

    def update(self, data: bytes, /) -> None: ...


def hashing(chunks: Iterator[tuple[int, str]], digest: Digest) -> Iterator[tuple[int, str]]:
    """`chunks` (`text_chunks`) passed on, their text hashed into `digest` on the way, a NUL between two parts
    (a character no text read holds: `corpus._decode` refuses it)."""
    part = 0
    for number, chunk in chunks:
        digest.update(b"\x00" * (number - part) + chunk.encode("utf-8", "surrogatepass"))
        part = number
        yield number, chunk


def text_digest(parts: list[list[Path]], config: Config) -> str:
    """The digest of the corpus's text as read (meta.json's "text"): the same text whatever bytes spell it. A
    run's record made from a cache built before it was kept has none: only the same bytes are its text."""
    digest = hashlib.sha256()
    for _ in hashing(text_chunks(parts, config), digest):
        pass
    return digest.hexdigest()[:20]


def write_ids(
    path: Path, chunks: Iterator[tuple[int, str]], vocab: Vocabulary, parts: int
) -> tuple[str, list[int], int]:
    """Encode each (part number, text) chunk and append its ids to `path`, a chunk at a time so memory
    stays flat; returns the ids' sha256, the ids in each part and the characters read."""
    dtype = vocab.dtype()
    digest, sizes, characters = hashlib.sha256(), [0] * parts, 0
    with open(path, "wb") as out:
        for number, chunk in chunks:
            ids = vocab.encode_array(chunk).astype(dtype)
            out.write(ids.tobytes())
            digest.update(ids.tobytes())
            sizes[number] += len(ids)
            characters += len(chunk)
    return digest.hexdigest(), sizes, characters


def make_vocab(
    texts: Callable[[str], Iterator[str]], config: Config, base: Vocabulary | None = None
) -> tuple[Counter, Vocabulary]:
    """Count every character of `texts(task)` and build the vocabulary the config asks for (or extend
    `base` with the text's new characters). A sentencepiece tokenizer trains on a second pass over the text."""
    points = np.zeros(MAX_CODE_POINT, dtype=np.int64)  # occurrences of every code point
    for chunk in texts("counting"):  # a one-line file is a chunk: its count is only as long as its highest code point
        counted = np.bincount(code_points(chunk))
        points[: len(counted)] += counted
    counts = Counter({chr(p): int(points[p]) for p in np.flatnonzero(points)})
    if base is not None:
        return counts, base.extended(new_characters(counts, base, config))
    if config.tokenizer == "char":
        return counts, Vocab.from_counts(counts, config.min_count, config.coverage, config.normalize)
    vocab_size = config.vocab_size or default_vocab_size(config.spm_model, len(counts))
    if config.spm_model == "char" and vocab_size < (needed := char_model_size(counts, config.coverage)):
        raise CharLMError(
            f"{said('vocab_size', vocab_size)} is too small for {said('spm_model', 'char')} on this corpus: it needs "
            f"at least {needed} (its distinct characters + byte and special pieces); raise {said('vocab_size')} or "
            f"lower {said('coverage')}"
        )
    model = train_model(texts("training tokenizer"), config.spm_model, vocab_size, config.coverage)
    return counts, PieceVocab(model, config.normalize)


def new_characters(counts: Counter, base: Vocabulary, config: Config) -> list[str]:
    """The text's characters `base` lacks that --min-count / --coverage keep, and UNKNOWN if they drop any."""
    kept = Vocab.from_counts(counts, config.min_count, config.coverage)
    new = [char for char in counts if not base.knows(char)]
    added = [char for char in new if kept.knows(char)]
    return added + [UNKNOWN] * (len(added) < len(new))


def load_corpus(
    sources: list[str] | tuple[str, ...],
    config: Config,
    quiet: bool = False,
    base: Vocabulary | None = None,
    run: dict | None = None,
) -> TokenCorpus:
    """The prepared corpus a user named; no sources (or "shakespeare") is the built-in one, whose
    validation split is whole held-out plays rather than the last --val-fraction. `base`: a fine-tuning
    run's base vocabulary; `run`: the corpus record of the run it must be (see `prepare`), whose name it keeps:
    a run resumed on its text at a new path is still found by the name it was started under."""
    recorded = () if run is None else run["sources"]  # whose catalog names are the catalog's, whatever is here
    parts, name = source_parts(sources, quiet, recorded)
    name = name if run is None else run["name"]
    ready = prepare(parts, config, quiet=quiet, base=base, run=run)
    meta = ready.meta
    split = meta["parts"][0] if len(parts) > 1 else meta["tokens"] - int(meta["tokens"] * config.val_fraction)
    given = recorded_sources(sources, recorded)
    return TokenCorpus(name, ready.vocab, ready.tokens, split, ready.folder.name, meta, given)


def prepared_rows(corpus: TokenCorpus) -> list[tuple[str, str]]:
    """What `charlm corpus prepare` prints: (label, value) rows. The vocabulary's size is its own: a cache
    from before meta.json kept it is read as it is (`cache_folders.read_vocab`)."""
    meta = corpus.meta
    pieces = meta["options"].get("tokenizer") == "sentencepiece"
    rows = [("characters", f"{meta['characters']:,}")]
    if pieces:
        rows.append(("tokens", f"{meta['tokens']:,} ({meta['tokens'] / max(meta['characters'], 1):.3f} per character)"))
    rows += [
        ("distinct", f"{meta['distinct']:,}"),
        ("vocabulary", f"{len(corpus.vocab):,} {'pieces ' if pieces else ''}({meta['dtype']} ids)"),
        ("coverage", f"{meta['coverage']:.6f}"),
        (
            "spelled as bytes" if pieces else "unknowns",
            f"{meta['unknown_count']:,} occurrences of {meta['unknown_distinct']:,} characters",
        ),
    ]
    if meta.get("seconds"):
        rows.append(("speed", f"{meta['source_bytes'] / 1e6 / max(meta['seconds'], 1e-9):.1f} MB/s"))
    return rows
