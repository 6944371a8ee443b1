"""Names no file can have, refused before they are looked up: a path over the file systems' limits
(NAME_MAX, PATH_MAX), or with a character no name holds; looked up, it raised a bare "File name too long"
or ValueError that named no option."""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from .errors import CharLMError
from .fields import SHOWN
from .locales import cannot_name

NAME_MAX = 255  # the longest file name, in bytes, of the usual file systems (ext4, APFS, NTFS's 255 units)
PATH_MAX = 4096  # the longest path, in bytes, Linux takes; a run's deepest file is a checkpoint's temporary
# what separates a path's names as a user may type them: '/' everywhere, and the platform's own ('\\' on Windows)
SEPARATORS = tuple(sep for sep in ("/", os.sep, os.altsep) if sep)


def name_bytes(name: str) -> int:
    """A file name's length as file systems count it (ext4, APFS, NTFS: NAME_MAX)."""
    return len(os.fsencode(name))


def typed_as_path(text: str | Path) -> bool:
    """Whether a run named as `text` is a path, used as given, not a name under checkpoints/: a separator
    anywhere as typed ('./x', 'x/': pathlib drops both, and a tab-completed 'x/' means the folder here),
    a drive (C:x), or '.' or '..'."""
    text = os.fspath(text)
    separated = any(sep in text for sep in SEPARATORS)
    return separated or bool(Path(text).drive) or text in (os.curdir, os.pardir)


def as_typed(path: str | PurePath) -> str:
    """`path` as a user would type it: a pathlib path is a path, used as given, though it keeps no "./" to say
    so (Path("./x") is Path("x"), which `typed_as_path` reads as a run name under checkpoints/, and
    Path("x/best.pt"), which `anchored` lets be a file of the run x there); text as it is."""
    text = os.fspath(path)
    if not isinstance(path, PurePath) or anchored(text) or text in (os.curdir, os.pardir) or PurePath(text).drive:
        return text
    return os.curdir + os.sep + text


def anchored(text: str | Path) -> bool:
    """Whether a path typed as `text` says where it starts (./x, ../x, /x, ~/x, C:x) or that it is a folder
    (x/): one that does neither, `novel/best.pt`, may be a file of the run named `novel`, as the docs write
    `RUN/best.pt`."""
    text = os.fspath(text)
    leading = tuple(f"{dots}{sep}" for dots in (os.curdir, os.pardir) for sep in SEPARATORS)
    return text.startswith((*leading, *SEPARATORS, "~")) or text.endswith(SEPARATORS) or Path(text).is_absolute()


def check_nameable(path: str | Path) -> None:
    """Refuse a path no file can have (`unnameable`: a text pasted where a path goes, thousands of
    characters), shown shortened: looked up, it raised a bare "File name too long" that named no option and
    echoed all of it. The caller names its option."""
    if why := unnameable(path):
        raise CharLMError(f"{SHOWN.repr(os.fspath(path))}: {why}")


def fits(name: str, limit: int = NAME_MAX) -> bool:
    """Whether a file system takes `name` as a file's name (`limit`: PATH_MAX for a path): at most `limit`
    bytes, and no lone surrogate (JSON's \\ud800, read from a hand-edited file), which no name encodes."""
    try:
        return name_bytes(name) <= limit
    except UnicodeEncodeError:
        return False


def unnameable(path: str | Path) -> str | None:
    """Why no file can be at `path`, and what to do, or None: a NUL character, a character no name encodes
    (a lone surrogate, or one the locale's encoding has no bytes for: `locales.cannot_name`), a name in it
    over NAME_MAX bytes or the whole over PATH_MAX. Path.exists raises for these (ValueError, "File name
    too long") where it answers False for a name that is not there."""
    text = os.fspath(path)
    if "\0" in text:
        return "a NUL character, which no file name holds; remove it"
    try:
        longest, whole = max(map(name_bytes, Path(text).parts), default=0), name_bytes(text)
    except UnicodeEncodeError:
        return cannot_name(text) or "a character no file name can be written in (a lone surrogate); remove it"
    if longest > NAME_MAX:
        return f"a name of {longest:,} bytes, over the {NAME_MAX} a file name may have; give a shorter one"
    if whole > PATH_MAX:
        return f"a path of {whole:,} bytes, over the {PATH_MAX:,} a path may have; give a shorter one"
    return None
