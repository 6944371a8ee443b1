"""The corpus catalog: verified downloads from a mirror folder or URL, resume, and refusals."""

import hashlib
import http.server
import json
import shutil
import threading
import typing
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from charlm import catalog, tables
from charlm.cli import main
from charlm.config import Config
from charlm.errors import CharLMError
from charlm.tokens import load_corpus

from .conftest import (
    SHARED_CORPORA,
    TINY_ARGS,
    assert_one_line_error,
    cli,
    file_size_limit,
    shared_corpus,
    without_file_locks,
)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder and honours `Range: bytes=N-`, like the real hosts."""

    ranges: typing.ClassVar[list[int]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        asked = self.headers.get("Range")
        path = self.translate_path(self.path)
        try:
            data = Path(path).read_bytes()
        except OSError:
            self.send_error(404)
            return
        start = int(asked.split("=")[1].rstrip("-")) if asked else 0
        RangeHandler.ranges.append(start)
        self.send_response(206 if asked else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


def cached() -> list[str]:
    """What the downloads folder holds, but for the lock that lets one process at a time fetch a corpus."""
    return sorted(p.name for p in catalog.DOWNLOADS.iterdir() if not p.name.endswith(".lock"))


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    handler = lambda *a, **k: RangeHandler(*a, directory=str(folder), **k)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    RangeHandler.ranges = []
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_a_mirror_folder_serves_verified_copies(monkeypatch):
    original = shared_corpus("tinyshakespeare.txt")
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, str(SHARED_CORPORA))
    path = catalog.get("tinyshakespeare", quiet=True)
    assert path == catalog.DOWNLOADS / "tinyshakespeare.txt" and path.read_bytes() == original.read_bytes()
    assert catalog.get("tinyshakespeare", quiet=True) == path  # cached
    listing = tables.catalog_table()
    assert "tinyshakespeare" in listing and "yes" in listing.splitlines()[1]


def test_a_wrong_checksum_is_deleted_and_nothing_is_cached(tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "hongloumeng.txt").write_bytes(b"x" * 2_607_799)  # right size, wrong bytes
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, str(bad))
    with pytest.raises(
        CharLMError, match="hongloumeng: .* fails verification .*deleted the copy fetched from it, nothing was cached"
    ):
        catalog.get("hongloumeng", quiet=True)
    assert not catalog.DOWNLOADS.exists() or cached() == []
    assert (bad / "hongloumeng.txt").exists()  # the mirror's own file is the user's: the line says which was deleted


def test_a_partial_download_resumes_from_a_url_mirror(server, monkeypatch):
    folder, url = server
    original = shared_corpus("hongloumeng.txt").read_bytes()
    (folder / "hongloumeng.txt").write_bytes(original)
    catalog.DOWNLOADS.mkdir(parents=True)
    (catalog.DOWNLOADS / "hongloumeng.txt.part").write_bytes(original[:1_000_000])  # an interrupted download
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, url)
    assert catalog.get("hongloumeng", quiet=True).read_bytes() == original
    assert RangeHandler.ranges == [1_000_000]


def tiny_zip_served(server: tuple[Path, str], monkeypatch) -> None:
    """A catalog entry "tiny", a zip pinned and served by `server`, whose member "tiny" is its text."""
    folder, url = server
    with zipfile.ZipFile(folder / "tiny.zip", "w") as z:
        z.writestr("tiny", "a small corpus\n" * 100)
    data = (folder / "tiny.zip").read_bytes()
    entry = catalog.Entry("tiny", "unused", "tiny.zip", len(data), hashlib.sha256(data).hexdigest(), "-", "-", "tiny")
    monkeypatch.setitem(catalog.CATALOG, "tiny", entry)
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, url)


def test_zip_downloads_are_verified_then_extracted(server, tmp_path, monkeypatch):
    tiny_zip_served(server, monkeypatch)
    assert catalog.get("tiny", quiet=True).read_text() == "a small corpus\n" * 100
    (catalog.DOWNLOADS / "tiny.txt").unlink()  # the text: extracted again from the download kept beside it
    download = catalog.DOWNLOADS / "tiny.zip"
    assert (
        catalog.fetch("tiny", quiet=True)[1]
        == f"tiny: extracted tiny from {download} already here, its size and sha256 verified"
    )


def test_corpus_get_draws_its_download_bar_unless_quiet(server, monkeypatch):
    """`charlm corpus get --quiet` hides the download's bar, the only one it draws."""
    folder, url = server
    (folder / "tiny.txt").write_text("a small corpus\n" * 100)
    data = (folder / "tiny.txt").read_bytes()
    entry = catalog.Entry("tiny", "unused", "tiny.txt", len(data), hashlib.sha256(data).hexdigest(), "-", "-")
    monkeypatch.setitem(catalog.CATALOG, "tiny", entry)
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, url)
    for quiet, drawn in (([], True), (["--quiet"], False)):
        shutil.rmtree(catalog.DOWNLOADS, ignore_errors=True)
        result = CliRunner().invoke(main, ["corpus", "get", "tiny", *quiet])
        assert result.exit_code == 0 and result.stdout == f"{catalog.DOWNLOADS / 'tiny.txt'}\n", result.output
        assert ("tiny.txt: 100%|" in result.stderr) is drawn, result.stderr


def tiny_in_mirror(tmp_path: Path, monkeypatch) -> tuple[Path, bytes]:
    """A catalog entry "tiny" whose text, pinned, a mirror folder holds: the folder and the text's bytes."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.txt").write_text("a small corpus\n" * 100)
    data = (mirror / "tiny.txt").read_bytes()
    entry = catalog.Entry("tiny", "unused", "tiny.txt", len(data), hashlib.sha256(data).hexdigest(), "-", "-")
    monkeypatch.setitem(catalog.CATALOG, "tiny", entry)
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, str(mirror))
    return mirror, data


def test_corpus_get_says_on_stderr_whether_it_fetched_the_corpus_or_found_it_here(tmp_path, monkeypatch):
    """`charlm corpus get NAME` printed its path and nothing else: a copy from the mirror folder draws no
    bar, so a user could not tell a fetch (from where, verified how) from a corpus already here. Now
    one line on stderr says which; stdout stays the path alone, for `$(charlm corpus get NAME)`."""
    mirror = tiny_in_mirror(tmp_path, monkeypatch)[0]
    path = f"{catalog.DOWNLOADS / 'tiny.txt'}\n"
    said = [
        f"tiny: fetched from {mirror / 'tiny.txt'}, its size and sha256 verified\n",
        f"tiny: already in {catalog.DOWNLOADS}/, its size and sha256 verified\n",
        "",  # --quiet
    ]
    for words, expected in zip([[], [], ["--quiet"]], said):
        result = CliRunner().invoke(main, ["corpus", "get", "tiny", *words])
        assert (result.exit_code, result.stdout, result.stderr) == (0, path, expected), result.output


def test_corpus_get_fetches_again_a_text_cut_short_or_edited_since_it_was_fetched(tmp_path, monkeypatch):
    """`charlm corpus get NAME` trusted any file already in corpora/downloads/: one cut short (a copy
    interrupted by hand, a full disk) or edited was said "verified when it was fetched" and trained on as
    the corpus. Now it is checked each time, fetched again, and the line says what was wrong."""
    mirror, data = tiny_in_mirror(tmp_path, monkeypatch)
    text = catalog.get("tiny", quiet=True)
    fetched = f"fetched from {mirror / 'tiny.txt'}, its size and sha256 verified"
    for damage, problem in (
        (data[:700], "700 bytes, not 1,500"),
        (data.upper(), "its sha256 is not the one pinned for it"),
    ):
        text.write_bytes(damage)
        result = CliRunner().invoke(main, ["corpus", "get", "tiny"])
        assert result.exit_code == 0 and result.stdout == f"{text}\n", result.output
        assert result.stderr == f"tiny: {text} was damaged ({problem}), so {fetched}\n"
        assert text.read_bytes() == data


def test_a_text_extracted_from_a_zip_and_edited_since_is_extracted_again(server, monkeypatch):
    """A zip's text (enwik8's) is checked against the size and CRC-32 the zip records for it."""
    tiny_zip_served(server, monkeypatch)
    text, download = catalog.get("tiny", quiet=True), catalog.DOWNLOADS / "tiny.zip"
    assert (
        catalog.fetch("tiny", quiet=True)[1]
        == f"tiny: already in {catalog.DOWNLOADS}/, its size and CRC-32 checked against {download}"
    )
    text.write_text("a small Corpus\n" * 100)
    assert catalog.fetch("tiny", quiet=True)[1] == (
        f"tiny: {text} was damaged (its CRC-32 is not that of tiny in {download}), so extracted tiny from {download} "
        "already here, its size and sha256 verified"
    )
    assert text.read_text() == "a small corpus\n" * 100


def test_a_copy_from_the_mirror_to_a_full_disk_says_what_to_do_and_leaves_no_part(monkeypatch):
    """On a full disk `charlm corpus get` said `Error: /mirror/tinyshakespeare.txt: File too large`, naming
    the mirror's file, which was fine, and left the part copied in corpora/downloads/, taking the room."""
    shared_corpus("tinyshakespeare.txt")
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, str(SHARED_CORPORA))
    with file_size_limit(100_000):
        result = cli("corpus", "get", "tinyshakespeare")
    assert_one_line_error(
        result, "corpora/downloads/tinyshakespeare.txt: cannot write the tinyshakespeare corpus (File too large); free"
    )
    assert cached() == []


def test_a_download_to_a_full_disk_keeps_what_it_fetched_and_goes_on_from_it(server, monkeypatch):
    folder, url = server
    original = shared_corpus("hongloumeng.txt").read_bytes()
    (folder / "hongloumeng.txt").write_bytes(original)
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, url)
    with file_size_limit(1_000_000), pytest.raises(CharLMError) as error:
        catalog.get("hongloumeng", quiet=True)
    assert str(error.value).endswith(
        "free space on its disk (or raise the file size limit, ulimit -f); the next try goes on from the 1,000,000 bytes fetched"
    )
    assert catalog.get("hongloumeng", quiet=True).read_bytes() == original
    assert RangeHandler.ranges == [0, 1_000_000]


def test_an_extraction_to_a_full_disk_leaves_the_download_and_no_part(tmp_path, monkeypatch):
    """The text a zip download holds is written beside it: on a full disk its part was left there,
    as big as what had been extracted, and the error named that part (`enwik8.txt.part: File too large`)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "tiny.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("tiny", "a small corpus\n" * 1000)
    data = (mirror / "tiny.zip").read_bytes()
    entry = catalog.Entry("tiny", "unused", "tiny.zip", len(data), hashlib.sha256(data).hexdigest(), "-", "-", "tiny")
    monkeypatch.setitem(catalog.CATALOG, "tiny", entry)
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, str(mirror))
    with file_size_limit(len(data) + 100), pytest.raises(CharLMError, match="tiny.txt: cannot write the tiny text"):
        catalog.get("tiny", quiet=True)
    assert cached() == ["tiny.zip"]
    assert catalog.get("tiny", quiet=True).read_text() == "a small corpus\n" * 1000


def test_a_corpus_fetched_onto_a_file_system_without_locks_says_so(tmp_path, monkeypatch):
    """flock(2) fails with ENOLCK on an NFS mount without its lock service: fetching a catalog corpus said
    `corpora/downloads: cannot write the corpus downloads folder (No locks available)`, with nothing to do."""
    without_file_locks(monkeypatch)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = b"a small corpus\n" * 100
    (mirror / "tiny.txt").write_bytes(data)
    entry = catalog.Entry("tiny", "unused", "tiny.txt", len(data), hashlib.sha256(data).hexdigest(), "-", "-")
    monkeypatch.setitem(catalog.CATALOG, "tiny", entry)
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, str(mirror))
    result = cli("corpus", "get", "tiny")
    lock = catalog.DOWNLOADS / ".tiny.txt.lock"
    assert_one_line_error(
        result, f"{lock}: cannot lock the corpus downloads (No locks available): its file system does not lock files"
    )
    assert "a folder on a local disk" in result.output and cached() == []


def test_unknown_names_and_missing_mirror_files_are_clear(tmp_path, monkeypatch):
    with pytest.raises(CharLMError, match="'shakespear' is not a file, a folder or a catalog corpus"):
        catalog.get("shakespear")
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, str(tmp_path))
    with pytest.raises(CharLMError, match="no enwik8.zip there"):
        catalog.get("enwik8")


def test_train_names_the_catalog_for_a_name_that_is_neither_a_file_nor_a_corpus(tmp_path, monkeypatch):
    """`charlm train alice` said only "alice: no such file or folder", though `charlm train NAME` takes
    the catalog's names too: a bare name is told which those are; a missing file is told it is missing."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CharLMError, match=r"'alice' is not a file, a folder or a catalog corpus \(tinyshakespeare"):
        load_corpus(["alice"], Config(), quiet=True)
    with pytest.raises(
        CharLMError, match=rf"^novel.txt: no such file or folder; check the path \(relative to {tmp_path}\)$"
    ):
        load_corpus(["novel.txt"], Config(), quiet=True)


@pytest.mark.parametrize("title", ["红楼梦", "《紅樓夢》", "石头记"])
def test_a_corpus_named_by_its_chinese_title_is_told_its_catalog_name(tmp_path, monkeypatch, title):
    """`charlm train 红楼梦` (or charlm.train("红楼梦")), the novel as a Chinese reader calls it, was told
    only the catalog's names, among which it had to recognise hongloumeng's pinyin."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CharLMError, match=r"catalog corpus \(tinyshakespeare.*\); did you mean 'hongloumeng'\?$"):
        load_corpus([title], Config(), quiet=True)
    assert_one_line_error(cli("corpus", "get", title), "is not a catalog corpus", "did you mean 'hongloumeng'?")


@pytest.mark.slow
def test_train_accepts_a_catalog_name(monkeypatch):
    shared_corpus("hongloumeng.txt")
    monkeypatch.setenv(catalog.MIRROR_VARIABLE, str(SHARED_CORPORA))
    # in this process (the name, not the process, is what it checks): ~6 s less than two processes
    result = cli("train", "hongloumeng", "--max-steps", "3", "--hidden", "16", "--max-time", "none", "--quiet")
    assert result.exit_code == 0 and "done: step 3" in result.stdout, result.output
    resumed = cli("train", "--resume", "--max-steps", "5")
    assert resumed.exit_code == 0 and "done: step 5" in resumed.stdout, resumed.output


def test_corpus_get_names_only_what_it_takes(tmp_path):
    """`charlm corpus get alice.txt` said "'alice.txt' is not a file, a folder or a catalog corpus", though
    corpus get takes no file, and the file was there."""
    (tmp_path / "alice.txt").write_text("text\n", encoding="utf-8")
    assert_one_line_error(cli("corpus", "get", "alice.txt"), "'alice.txt' is not a catalog corpus", "corpus list")
    assert "a file" not in cli("corpus", "get", "alice.txt").output


FETCH_BIG = """
import sys
from charlm import catalog
catalog.CATALOG["big"] = catalog.Entry("big", "unused", "big.bin", int(sys.argv[1]), sys.argv[2], "-", "-")
print("ready", flush=True)
sys.stdin.readline()  # all go at once
print(catalog.get("big", quiet=True))
"""


@pytest.mark.parametrize("damaged", [False, True])
def test_processes_fetching_one_corpus_at_once_all_get_it(tmp_path, damaged):
    """Two `charlm train hongloumeng` started together (two terminals, a script's loop) both fetched
    into one `.part` file: one renamed it into place while the other still read it, which said
    `corpora/downloads/....part: No such file or directory` (or, truncated by the other, that the mirror
    fails verification). One fetches; the other waits and uses its copy. So too where a `damaged` copy
    (cut short) is there, which each finds wrong and the first fetches again."""
    import subprocess
    import sys

    mirror, data = tmp_path / "mirror", hashlib.sha256(b"0").digest() * (1 << 18)  # 8 MB
    mirror.mkdir()
    (mirror / "big.bin").write_bytes(data)
    if damaged:
        (tmp_path / "corpora" / "downloads").mkdir(parents=True)
        (tmp_path / "corpora" / "downloads" / "big.bin").write_bytes(data[:1000])
    env = {**__import__("os").environ, catalog.MIRROR_VARIABLE: str(mirror)}
    command = [sys.executable, "-c", FETCH_BIG, str(len(data)), hashlib.sha256(data).hexdigest()]
    fetchers = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    assert [fetcher.stdout.readline() for fetcher in fetchers] == ["ready\n"] * 2
    for fetcher in fetchers:  # all at once (communicate would wait for each in turn)
        fetcher.stdin.write("go\n")
        fetcher.stdin.flush()
    results = [fetcher.communicate(timeout=120) for fetcher in fetchers]
    assert [(fetcher.returncode, err) for fetcher, (_, err) in zip(fetchers, results)] == [(0, "")] * 2
    assert {out.strip() for out, _ in results} == {str(Path("corpora") / "downloads" / "big.bin")}
    assert (tmp_path / "corpora" / "downloads" / "big.bin").read_bytes() == data
    assert cached() == ["big.bin"]


def test_a_run_of_a_catalog_corpus_is_read_from_the_catalog_beside_a_folder_of_its_name(tmp_path, monkeypatch):
    """A run of catalog corpus NAME records NAME, and read it back as typed: a path first, so a folder named NAME
    made since in the working folder (its outputs, notes) was taken for the run's text: eval, inspect and a resume
    said "folder holds no .txt files". A run's record holds every path absolute: its bare NAME is the catalog's."""
    tiny_in_mirror(tmp_path, monkeypatch)
    trained = cli("train", "tiny", "--out", "tiny", *TINY_ARGS, "--max-steps", "2")
    assert trained.exit_code == 0, trained.output
    assert json.loads(Path("checkpoints/tiny/run.json").read_text())["sources"] == ["tiny"]
    Path("tiny").mkdir()
    (Path("tiny") / "notes.txt").write_text("other text, not the run's\n" * 20)
    scored = cli("eval", "checkpoints/tiny")
    assert scored.exit_code == 0 and "bits per character over 149 characters" in scored.output, scored.output
    inspected = cli("inspect", "checkpoints/tiny", "--held-out")
    assert inspected.exit_code == 0 and "on 150 characters (149 of them scored)" in inspected.output, inspected.output
    resumed = cli("train", "--resume", "checkpoints/tiny", "--max-steps", "3")
    assert resumed.exit_code == 0 and "done: step 3" in resumed.output, resumed.output
    misread = cli("train", "--resume", "checkpoints/tiny", "--max-steps", "4", "--encoding", "utf-16")
    assert_one_line_error(misread, "though they are the run's own files", "only the encoding differs")
    assert json.loads(Path("checkpoints/tiny/run.json").read_text())["sources"] == ["tiny"]


def test_a_run_of_a_folder_named_as_a_catalog_corpus_is_read_from_that_folder(tmp_path, monkeypatch):
    """The reverse: `charlm train ./NAME`, a folder of .txt files named as a catalog corpus, records the folder's
    path, and its run reads that folder back, not the catalog's text."""
    tiny_in_mirror(tmp_path, monkeypatch)
    Path("tiny").mkdir()
    (Path("tiny") / "own.txt").write_text("a folder of its own text\n" * 40)
    trained = cli("train", "./tiny", "--out", "own", *TINY_ARGS, "--max-steps", "2")
    assert trained.exit_code == 0, trained.output
    assert json.loads(Path("checkpoints/own/run.json").read_text())["sources"] == [str(tmp_path / "tiny")]
    (Path("tiny") / "own.txt").write_text("the folder's text edited\n" * 40)
    assert_one_line_error(cli("eval", "checkpoints/own"), "changed")
