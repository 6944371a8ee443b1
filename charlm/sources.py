"""A corpus's sources: what a user named (files, folders, a catalog name, the built-in plays) as files and as
a run records them, and whether files are still the text a run trained on (its corpus record: the cache key
and the digest of the text as read, both tokens.py's, as is what its cache folder says it read). tokens.py
prepares what this names and refuses a run's changed text before preparing it; runtext.py words the refusals
after the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from . import catalog, files
from .corpus import DEFAULT_CORPUS, corpus_name, file_sizes, source_files
from .errors import CharLMError, listed_in_brief
from .shakespeare import shakespeare_files


def catalog_name(source: str, recorded: Sequence[str] = ()) -> bool:
    """Whether `charlm train SOURCE` means a catalog corpus: no such path, and a bare name (no folder, no
    suffix), so that an unknown one is told the catalog's names rather than only "no such file". Among a
    run's `recorded` sources, whose paths are all absolute (`recorded_sources`), a bare name is one whatever
    is here now: a folder of that name made since in the working folder is not the run's text."""
    path = Path(source)
    if source in recorded and not path.is_absolute():
        return True
    return not path.exists() and (source in catalog.CATALOG or (path.name == source and not path.suffix))


def source_parts(
    sources: list[str] | tuple[str, ...], quiet: bool = False, recorded: Sequence[str] = ()
) -> tuple[list[list[Path]], str]:
    """The files of the corpus a user named, in parts (`tokens.prepare`), and its name: no sources (or
    "shakespeare") is the built-in one, its training plays and its held-out plays. `recorded`: the sources
    of the run whose text this is, whose catalog names are the catalog's (`catalog_name`)."""
    if names_builtin_plays(sources):
        train_file, val_file = shakespeare_files()
        return [[train_file], [val_file]], DEFAULT_CORPUS
    named = [str(catalog.get(s, quiet)) if catalog_name(s, recorded) else s for s in sources]
    return [source_files(named)], corpus_name(sources)


def recorded_sources(sources: list[str] | tuple[str, ...], recorded: Sequence[str] = ()) -> list[str]:
    """`sources` as a run records them: files and folders as the user named them (`files.recorded_path`;
    a resume reads through a link, and checks the text's digest, not its path); a catalog name as given
    (one of the run's `recorded` sources too: `catalog_name`), which alone is no absolute path."""
    if names_builtin_plays(sources):  # "shakespeare" is the plays even beside a folder of that name
        return list(sources or [])
    return [files.recorded_path(s) if Path(s).exists() and not catalog_name(s, recorded) else s for s in sources or []]


def names_builtin_plays(sources: list[str] | tuple[str, ...]) -> bool:
    """Whether `sources` name the built-in plays: none, or "shakespeare" as a name (`./shakespeare` is a path)."""
    return not sources or list(sources) == [DEFAULT_CORPUS]


class CorpusChanged(CharLMError):
    """A run's sources are not the text it trained on (neither its corpus record's cache key nor its text
    digest): its caller says what to do without them."""


def same_text(run: dict, digest: object, text: Callable[[], object]) -> bool:
    """Whether a text is the one the run of corpus record `run` (a checkpoint's) trained on: the same bytes read
    the same way (`digest`: its cache key), or the same text in other bytes (`text()`: its text digest, where
    the record keeps one). The one rule for files given (`tokens.text_digest` of them), a prepared corpus (its
    meta.json's) and run.json's record; `text` is asked only where the bytes differ: it may read every file."""
    return run["digest"] == digest or ("text" in run and run["text"] == text())


def files_changed(prepared: tuple[list[Path], list[int] | None] | None, parts: list[list[Path]]) -> str:
    """What changed in the files of a run's corpus, read then as `prepared` (`tokens.prepared_files`: its cache
    folder's files and their sizes; None where that folder is gone) and now `parts`, in words for its error:
    `chapter9.txt added; notes.txt gone`, `b.txt changed`, the same files in another order ("" where there is
    nothing to compare). Files are named from the folder they share, so a folder moved and changed names its
    changes alone. A single file changed is named already: ""."""
    if prepared is None:
        return ""
    then, sizes_then = prepared
    now = [path for part in parts for path in part]
    if len(then) == len(now) == 1:
        return ""
    names_then, names_now = shared_names(then), shared_names(now)
    added, gone = sorted(set(names_now) - set(names_then)), sorted(set(names_then) - set(names_now))
    changes = [f"{listed_in_brief(added)} added"] * bool(added) + [f"{listed_in_brief(gone)} gone"] * bool(gone)
    if not changes and names_now != names_then:
        changes = ["the same files, in another order"]
    if not changes and sizes_then is not None:
        was = dict(zip(names_then, sizes_then))
        resized = [name for name, size in zip(names_now, file_sizes(now)) if was.get(name) != size]
        changes = [f"{listed_in_brief(resized)} changed" if resized else "the same files and sizes: edited in place"]
    return "; ".join(changes)


def shared_names(paths: list[Path]) -> list[str]:
    """`paths` named from the folder they all are in (`chapter1.txt`, `part2/chapter9.txt`)."""
    folders = [os.path.abspath(path.parent) for path in paths]
    base = os.path.commonpath(folders) if folders else ""
    return [os.path.relpath(os.path.abspath(path), base) for path in paths]
