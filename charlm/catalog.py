"""Well-known public corpora by name: `charlm corpus list`, `charlm corpus get NAME`, `charlm train NAME`.

Each entry pins its canonical address, size and sha256. A download shows its progress, resumes a
partial file (HTTP Range), is verified before it is used, and lives in `corpora/downloads/`. A file
that fails its checksum is deleted: nothing half-written or wrong is ever left in the cache. A text
already here is checked again each time it is asked for: one cut short or edited since is fetched again.

Offline machines set CHARLM_CORPUS_MIRROR to a folder holding the same file names, or to a base URL
that serves them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import filelock

from . import files
from .bars import progress_bar
from .errors import CharLMError
from .fields import SHOWN

DOWNLOADS = Path("corpora") / "downloads"
MIRROR_VARIABLE = "CHARLM_CORPUS_MIRROR"


@dataclass(frozen=True)
class Entry:
    name: str
    url: str
    filename: str  # as downloaded, and as a mirror holds it
    size: int
    sha256: str
    license: str
    description: str
    member: str | None = None  # the text inside a zip download

    @property
    def text_name(self) -> str:
        return self.member + ".txt" if self.member else self.filename


CATALOG = {
    e.name: e
    for e in (
        Entry(
            "tinyshakespeare",
            "https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/"
            "data/tinyshakespeare/input.txt",
            "tinyshakespeare.txt",
            1_115_394,
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            "public domain",
            "40k lines of Shakespeare's plays, the char-rnn example corpus (English)",
        ),
        Entry(
            "hongloumeng",
            "https://raw.githubusercontent.com/bigeagle/picoGPT/96862260d920222fdd38b2da937f26005541c8fb/"
            "data/hongloumeng.txt",
            "hongloumeng.txt",
            2_607_799,
            "0f7876dad2ea61a49b789e4a9112c4a14b1b133b308e61038bde24a4a2ce396d",
            "public domain",
            "红楼梦 Dream of the Red Chamber, 120 chapters, simplified Chinese, 4,447 distinct characters",
        ),
        Entry(
            "enwik8",
            "https://mattmahoney.net/dc/enwik8.zip",
            "enwik8.zip",
            36_445_475,
            "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc",
            "Wikipedia text, CC BY-SA",
            "the first 100 MB of an English Wikipedia XML dump (Hutter Prize); UTF-8",
            member="enwik8",
        ),
        Entry(
            "text8",
            "https://mattmahoney.net/dc/text8.zip",
            "text8.zip",
            31_344_016,
            "",
            "Wikipedia text, CC BY-SA",
            "enwik8 cleaned to lowercase a-z and spaces, 100M characters",
            member="text8",
        ),
    )
}


# A catalog corpus as a Chinese reader calls it, in simplified and traditional characters: its pinyin
# name is not what a reader tries (`charlm train 红楼梦`), nor what a list of names shows it to be.
TITLES = dict.fromkeys(("红楼梦", "紅樓夢", "石头记", "石頭記"), "hongloumeng")


def entry(name: str) -> Entry:
    """The catalog's entry `name`; an unknown name is told the catalog's names."""
    if name not in CATALOG:
        raise CharLMError(
            f"{SHOWN.repr(name)} is not a file, a folder or a catalog corpus ({', '.join(CATALOG)}){title_hint(name)}"
        )
    return CATALOG[name]


def title_hint(name: str) -> str:
    """What an unknown corpus `name` that is a catalog corpus's Chinese title (in its 《》 or not) is told."""
    corpus = TITLES.get(name.strip().removeprefix("《").removesuffix("》"))
    return f"; did you mean {corpus!r}?" if corpus else ""


def get(name: str, quiet: bool = False) -> Path:
    """The plain-text file of catalog corpus `name`, fetched and verified if it is not here yet."""
    return fetch(name, quiet)[0]


def fetch(name: str, quiet: bool = False) -> tuple[Path, str]:
    """`get`, and a line saying how it came to be here, for `charlm corpus get`, whose standard output
    is the path alone (a script reads it): fetched from where and verified how, or here already and
    checked how. A text here that fails its check (cut short, edited) is fetched again, and the line
    says what was wrong with it."""
    item = entry(name)
    text = DOWNLOADS / item.text_name
    if text.is_file() and not (checked := downloaded_text_problem(item, text))[0]:
        return text, f"{name}: already in {DOWNLOADS}{os.sep}, {checked[1]}"
    with one_fetch_at_a_time(item, quiet):
        problem, how = downloaded_text_problem(item, text) if text.is_file() else ("", "")
        if text.is_file() and not problem:  # another process fetched it while this one waited
            return text, f"{name}: already in {DOWNLOADS}{os.sep}, {how}"
        download = DOWNLOADS / item.filename
        if download.is_file() and download_verified(download, item):
            how = f"{download} already here, {how_verified(item)}"
        else:
            how = f"fetched from {fetch_verified(item, download, quiet)}, {how_verified(item)}"
        if item.member:
            extract_text(download, item.member, text)
            how = f"extracted {item.member} from {how}"
    return text, f"{name}: {f'{text} was damaged ({problem}), so ' if problem else ''}{how}"


def how_verified(item: Entry) -> str:
    """How a download of `item` is verified, in words."""
    return "its size and sha256 verified" if item.sha256 else "its size verified (no sha256 is pinned for it)"


def downloaded_text_problem(item: Entry, text: Path) -> tuple[str, str]:
    """What is wrong with `item`'s text already in the downloads ("" if nothing), and how that was checked:
    a download's text against its pinned size and sha256, a text extracted from a zip against the size and
    CRC-32 the zip gives its member (where the zip is still here: else it was verified when fetched). A file
    cut short or edited since would otherwise be trained on as the corpus the catalog names."""
    if not item.member:
        size = text.stat().st_size
        if size != item.size:
            return f"{size:,} bytes, not {item.size:,}", ""
        if item.sha256 and file_sha256(text) != item.sha256:
            return "its sha256 is not the one pinned for it", ""
        return "", how_verified(item)
    archive = DOWNLOADS / item.filename
    try:
        with zipfile.ZipFile(archive) as z:
            member = z.getinfo(item.member)
    except (OSError, zipfile.BadZipFile, KeyError):  # gone, or damaged (verified again before extracting)
        return "", "verified when it was fetched"
    size = text.stat().st_size
    if size != member.file_size:
        return f"{size:,} bytes, not the {member.file_size:,} of {item.member} in {archive}", ""
    if file_crc32(text) != member.CRC:
        return f"its CRC-32 is not that of {item.member} in {archive}", ""
    return "", f"its size and CRC-32 checked against {archive}"


@contextlib.contextmanager
def one_fetch_at_a_time(item: Entry, quiet: bool) -> Iterator[None]:
    """One process at a time fetches `item` (an OS lock beside the downloads): two `charlm train
    tinyshakespeare` started together wrote one `.part` file at once, and one renamed it away while the
    other still read it. The others wait, then find the text in place."""
    path = DOWNLOADS / f".{item.filename}.lock"
    lock = filelock.FileLock(path)
    try:
        DOWNLOADS.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise files.cannot_write(DOWNLOADS, e, "the corpus downloads folder") from None
    try:
        files.take_lock(lock, f"another process fetching {item.name}", quiet=quiet)
    except OSError as e:
        if files.write_remedy(e):  # a folder that refuses writes (read-only, not the user's, full): not the locks
            raise files.cannot_write(DOWNLOADS, e, "the corpus downloads folder") from None
        local = f"run charlm from a folder on a local disk (it fetches into its {DOWNLOADS}/)"
        raise files.cannot_lock(path, e, "the corpus downloads", local) from None  # ENOLCK: NFS without locks
    try:
        yield
    finally:
        lock.release()


def download_verified(path: Path, item: Entry) -> bool:
    """Whether `path` is `item`'s download whole: its pinned size, and its sha256 where one is pinned."""
    if path.stat().st_size != item.size:
        return False
    return not item.sha256 or file_sha256(path) == item.sha256


def file_crc32(path: Path) -> int:
    """The CRC-32 of a file's bytes (as a zip records its members'), read a few MB at a time."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            crc = zlib.crc32(block, crc)
    return crc


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read a few MB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def fetch_verified(item: Entry, target: Path, quiet: bool) -> str:
    """Fetches `item` into `target`, verified, from the mirror if one is set; returns where from."""
    mirror = os.environ.get(MIRROR_VARIABLE, "").strip()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    if mirror and "://" not in mirror:
        source = Path(mirror) / item.filename
        if not source.is_file():
            raise CharLMError(f"{MIRROR_VARIABLE}={mirror}: no {item.filename} there; unset it to download {item.url}")
        with writing_into(part, target, f"the {item.name} corpus"):
            shutil.copyfile(source, part)
        where = str(source)
    else:
        where = f"{mirror.rstrip('/')}/{item.filename}" if mirror else item.url
        with writing_into(part, target, f"the {item.name} corpus", keep=True):
            download_resuming(where, part, item.size, quiet)
    actual, size = file_sha256(part), part.stat().st_size
    if size != item.size or (item.sha256 and actual != item.sha256):
        part.unlink()
        raise CharLMError(
            f"{item.name}: {where} fails verification (size {size:,}, expected {item.size:,}; sha256 {actual[:12]}..., "
            f"expected {item.sha256[:12] or 'unpinned'}...); deleted the copy fetched from it, nothing was cached"
        )
    part.replace(target)
    return where


def download_resuming(url: str, part: Path, size: int, quiet: bool) -> None:
    """Fetch `url` into `part`, resuming from the bytes already there."""
    import urllib.error  # here: every command imports this module, and only a download needs these
    import urllib.request

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have == size:  # already complete
            return
        raise CharLMError(f"{url}: download failed (HTTP {e.code}); set {MIRROR_VARIABLE} to a local copy") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CharLMError(
            f"{url}: cannot download ({reason}); set {MIRROR_VARIABLE} to a folder with the file"
        ) from None
    with response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        with (
            open(part, "ab" if have else "wb") as out,
            progress_bar(
                total=size, initial=have, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"), disable=quiet
            ) as bar,
        ):
            while block := response.read(1 << 20):
                out.write(block)
                bar.update(len(block))


def extract_text(archive: Path, member: str, text: Path) -> None:
    """Write `member` of the zip `archive` to `text`, through a part file renamed into place when whole."""
    tmp = text.with_name(text.name + ".part")
    try:
        with (
            writing_into(tmp, text, f"the {member} text"),
            zipfile.ZipFile(archive) as z,
            z.open(member) as src,
            open(tmp, "wb") as out,
        ):
            shutil.copyfileobj(src, out, 1 << 22)
    except (zipfile.BadZipFile, KeyError) as e:
        tmp.unlink(missing_ok=True)
        raise CharLMError(f"{archive}: cannot extract {member} ({e}); delete it and fetch again") from None
    tmp.replace(text)


@contextlib.contextmanager
def writing_into(part: Path, target: Path, what: str, keep: bool = False) -> Iterator[None]:
    """Writes into `part` on its way to `target`. One that fails (a full disk, a downloads folder that
    refuses writes) is one line naming `target` and what to do, not the mirror's file, and leaves no
    `part` (it took the disk's room) unless `keep`: a download goes on from it next time."""
    try:
        yield
    except OSError as e:
        if not keep:
            part.unlink(missing_ok=True)
        kept = part.stat().st_size if keep and part.is_file() else 0
        if e.errno not in files.NO_ROOM and (e.filename is None or Path(os.fsdecode(e.filename)) != part):
            raise  # reading the source failed: the command's one line names it
        error = files.cannot_write(target, e, what)
        if kept:
            error = CharLMError(f"{error}; the next try goes on from the {kept:,} bytes fetched")
        raise error from None
