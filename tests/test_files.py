"""Files written whole or not at all (charlm/files.py)."""

import builtins
import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import filelock
import pytest

import charlm
from charlm import checkpoint, corpus, files, runs, tokens

from .conftest import TINY_ARGS, assert_one_line_error, at_once_in_rounds, cli, file_size_limit, without_file_locks
from .permissions import as_a_user
from .test_runs import KILLED_MID_WRITE


def test_a_write_works_where_a_folder_cannot_be_opened_to_sync_it(tmp_path, monkeypatch):
    """Windows refuses os.open on a folder (PermissionError): the folder sync after the renames made
    every checkpoint, export and page write there fail, though the files were already in place."""
    real_open = os.open

    def open_as_windows_does(path, flags, *args, **kwargs):
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", open_as_windows_does)
    target = tmp_path / "run" / "latest.pt"
    files.write_files({target: b"weights"})
    assert target.read_bytes() == b"weights"
    assert sorted(p.name for p in target.parent.iterdir()) == ["latest.pt"]


@pytest.fixture
def failing_reads(monkeypatch) -> dict[Path, int]:
    """Reads that fail as on a failing disk or a network share that dropped (read(2): EIO): a file whose
    resolved path is in the returned dict fails after that many reads of it, each time it is opened."""
    reads_before_failing: dict[Path, int] = {}
    real_open = builtins.open

    class FailingFile:
        def __init__(self, file, reads: int):
            self.file, self.reads = file, reads

        def read(self, size=-1):
            if self.reads == 0:
                raise OSError(errno.EIO, "Input/output error")
            self.reads -= 1
            return self.file.read(size)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def __getattr__(self, name):
            return getattr(self.file, name)

    def open_failing(file, mode="r", *args, **kwargs):
        opened = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and "r" in mode and Path(file).resolve() in reads_before_failing:
            return FailingFile(opened, reads_before_failing[Path(file).resolve()])
        return opened

    monkeypatch.setattr(builtins, "open", open_failing)
    return reads_before_failing


def test_a_corpus_whose_disk_fails_midway_names_the_file_and_what_to_do(fox_file, failing_reads, monkeypatch):
    """An I/O error reading the corpus midway (after its hash was taken) was reported as the cache's:
    'corpora/cache: cannot write the corpus cache (Input/output error)'."""
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 100)
    failing_reads[fox_file.resolve()] = 3  # the hash's two reads pass, then 100 bytes of counting
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, "--max-steps", "2")
    assert_one_line_error(result, f"{fox_file}: cannot read (Input/output error); its disk or network share failed")
    failing_reads[fox_file.resolve()] = 0  # and while its hash is taken
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, "--max-steps", "2")
    assert_one_line_error(result, f"{fox_file}: cannot read (Input/output error); its disk or network share failed")


def test_a_corpus_cache_that_cannot_be_read_says_which_file_and_why_and_is_rebuilt(fox_file, failing_reads, capsys):
    """A cached tokens.bin that failed to read (EIO) was said to be a 'damaged cache (OSError)'."""
    folder = tokens.prepare([[fox_file]]).folder
    failing_reads[(folder / "tokens.bin").resolve()] = 0
    again = tokens.prepare([[fox_file]], quiet=False)
    assert (
        f"rebuilding {folder}: {folder / 'tokens.bin'}: cannot read (Input/output error); its disk"
        in capsys.readouterr().out
    )
    assert again.folder == folder and len(again.tokens) == again.meta["tokens"] > 0


def test_a_checkpoint_whose_disk_fails_says_what_to_do(fox_file, tiny, failing_reads):
    """An I/O error reading a checkpoint named the file and the cause, not what to do about it."""
    charlm.train(fox_file, out="run", **tiny)
    failing_reads[Path("checkpoints/run/best.pt").resolve()] = 1  # its first line read, then the disk fails
    result = cli("sample", "--checkpoint", "run", "--length", "5")
    assert_one_line_error(
        result, "checkpoints/run/best.pt: cannot read (Input/output error); its disk or network share"
    )


def test_a_corpus_named_in_bytes_that_are_not_utf8_exports_and_inspects(tmp_path, tiny):
    """A file name's byte that is not UTF-8 (Linux allows any) reaches the run's name and sources as a
    lone surrogate, which UTF-8 cannot encode: the HTML and safetensors exports and the inspect page
    ended in a UnicodeEncodeError traceback. The model folder's record reads back the same name."""
    name = os.fsdecode(b"caf\xe9.txt")
    (tmp_path / name).write_text("the quick brown fox jumps over the lazy dog\n" * 60, encoding="utf-8")
    charlm.train(tmp_path / name, out="run", **tiny)
    for args in (["export", "run", "--format", "html"], ["export", "run", "--format", "safetensors"]):
        assert cli(*args).exit_code == 0
    assert cli("inspect", "run", name, "--output", "page.html", "--quiet").exit_code == 0
    record = checkpoint.read(Path("checkpoints/run/exports/model/model.safetensors")).corpus
    assert record["sources"] == [str(tmp_path / name)]


def test_a_corpus_named_near_the_filesystem_limit_trains_under_a_run_name_that_fits(tmp_path):
    """A corpus file named near the filesystem's limit (255 bytes) gave a run folder name past it:
    'cannot write the run folder (File name too long)'; the run's name is cut so that the folder its claim
    is made in fits too (runs.default_run_folder, runs.longest_claim_name), and no claim is left beside it."""
    corpus_file = tmp_path / f"{'x' * 245}.txt"
    corpus_file.write_text("the quick brown fox jumps over the lazy dog\n" * 60, encoding="utf-8")
    result = cli("train", str(corpus_file), *TINY_ARGS, "--max-steps", "2")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "checkpoints").iterdir()
    assert len(runs.longest_claim_name(run.name)) <= 255 and run.name.startswith("x" * 190)


def test_a_corpus_file_named_with_a_line_break_is_named_on_one_line_wherever_it_is_shown(tmp_path):
    """A corpus file named `notes\\nday.txt`: its run folder's name was cleaned, but its corpus name kept
    the line break, which split the training line, `charlm info`'s corpus row and any error naming the file."""
    corpus_file = tmp_path / "notes\nday.txt"
    corpus_file.write_text("the quick brown fox jumps over the lazy dog\n" * 60, encoding="utf-8")
    loud = [arg for arg in TINY_ARGS if arg != "--quiet"]  # to see the training line, the done: line
    result = cli("train", str(corpus_file), *loud, "--max-steps", "2")
    assert result.exit_code == 0, result.output
    assert "on notes\\nday: " in result.output and "\nnotes\n" not in result.output
    (run,) = (tmp_path / "checkpoints").iterdir()
    run.rename(tmp_path / "checkpoints" / "old\nrun")  # as one made before run names were cleaned
    resumed = cli("train", "--resume", "checkpoints/old\nrun", "--max-steps", "4")
    assert resumed.exit_code == 0, resumed.output
    assert "saved in checkpoints/old\\nrun\n" in resumed.output
    info = dict(line.split(None, 1) for line in cli("info", "old\nrun").output.splitlines())
    assert info["corpus"] == f"{tmp_path}/notes\\nday.txt" and info["checkpoint"] == "checkpoints/old\\nrun/best.pt"
    corpus_file.write_bytes(b"\xff\xfe not utf-8")
    assert_one_line_error(
        cli("train", str(corpus_file), *TINY_ARGS, "--max-steps", "2"), "notes\\nday.txt: not valid utf-8"
    )


def test_a_write_works_on_a_file_system_that_cannot_sync_a_file(tmp_path, monkeypatch):
    """fsync(2) fails with EINVAL where the file system does not support synchronization (some FUSE and
    network mounts): every checkpoint there failed ('could not write checkpoint (Invalid argument)')."""

    def no_fsync(fd):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(files.os, "fsync", no_fsync)
    target = tmp_path / "run" / "latest.pt"
    files.write_files({target: b"weights"})
    assert target.read_bytes() == b"weights"
    assert sorted(p.name for p in target.parent.iterdir()) == ["latest.pt"]


def test_a_run_folder_on_a_file_system_without_locks_says_so(fox_file, monkeypatch):
    """flock(2) fails with ENOLCK on an NFS mount without its lock service: training said only
    'file: No locks available', and left the `.lock` it had made, which every later run there is refused too."""
    without_file_locks(monkeypatch)
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, "--max-steps", "2")
    assert_one_line_error(result, "checkpoints/run/.lock: cannot lock the run folder (No locks available)", "--out")
    assert sorted(path.name for path in Path("checkpoints/run").iterdir()) == []


@pytest.mark.parametrize(
    "refusal",
    [
        (errno.EROFS, "Read-only file system", "checkpoints/run is on a read-only file system, where no chmod helps"),
        (errno.EACCES, "Permission denied", "make checkpoints/run writable"),
    ],
)
def test_a_run_folder_that_refuses_writes_says_what_would_make_it_writable(fox_file, monkeypatch, refusal):
    """A read-only run folder (a read-only mount; one not the user's) refused its `.lock`, and training
    said its file system does not lock files and to train on a local disk, which it was on. A read-only
    mount was then told to make the folder writable, which no chmod does: it is said to be read-only."""
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if os.fspath(path).endswith("/.lock"):
            raise OSError(refusal[0], refusal[1], os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    result = cli("train", str(fox_file), "--out", "run", *TINY_ARGS, "--max-steps", "2")
    assert_one_line_error(result, f"checkpoints/run/.lock: cannot write ({refusal[1]}); {refusal[2]}")
    assert "lock files" not in result.output


def test_a_folder_that_refuses_a_write_is_named_as_the_user_named_it(tmp_path):
    """`--out /abs/here/run` from /abs/here was told "make run writable": a path typed absolute is shown so,
    as a relative one stays relative; a lock's file, which filelock names absolute, as the lock was named."""
    refused = errno.EACCES, "Permission denied"
    assert files.write_remedy(OSError(*refused, str(tmp_path / "run" / "x.txt"))).startswith(
        f"; make {tmp_path}/run writable"
    )
    assert files.write_remedy(OSError(*refused, "run/x.txt")).startswith("; make run writable")

    def refused_open(path, flags, *args, **kwargs):
        raise OSError(*refused, os.path.abspath(path))  # as filelock's own open names it

    lock = filelock.FileLock("run/.lock", timeout=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "open", refused_open)
        with pytest.raises(OSError) as caught:
            files.take_lock(lock, "nothing")
    assert files.write_remedy(caught.value).startswith("; make run writable")


def test_a_read_only_corpus_cache_is_the_folder_it_says_to_make_writable(fox_file):
    """A corpus cache folder its user may not write (chmod a-w) said `corpora/cache: cannot write the corpus
    cache (Permission denied); make its folder writable`: corpora/, the folder above it, or the cache
    itself? The folder that refused the write is named. Root writes any folder: prepared as a user."""
    cache = corpus.CACHE_ROOT
    cache.mkdir(parents=True)

    def prepare() -> tuple[int, str]:
        result = cli("corpus", "prepare", str(fox_file))
        return result.exit_code, result.output

    cache.chmod(0o555)
    try:
        refusal = as_a_user(prepare)
    finally:
        cache.chmod(0o755)
    assert refusal == (
        1,
        (
            f"Error: {cache}: cannot write the corpus cache (Permission denied); make {cache} writable, or "
            "write elsewhere\n"
        ),
    )


def test_a_write_protected_file_in_a_writable_folder_says_to_make_the_file_writable(tmp_path):
    """A run's metrics.jsonl (or .lock) write-protected (chmod a-w) in a writable run folder: the advice
    was to make its folder writable, which it is. Root writes any file: held to file permissions."""
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("{}\n", encoding="utf-8")
    metrics.chmod(0o444)

    def append() -> str:
        try:
            with open(metrics, "a", encoding="utf-8") as file:
                file.write("{}\n")
        except OSError as e:
            return str(files.cannot_write(metrics, e))
        return "written"

    assert as_a_user(append) == (
        f"{metrics}: cannot write (Permission denied); make it writable (chmod u+w), or write elsewhere"
    )


def test_a_file_another_program_holds_open_on_windows_says_to_close_it(tmp_path, monkeypatch):
    """Windows refuses to replace a file another program has open with a sharing violation (winerror 32,
    errno EACCES): the advice was to make the folder writable, which it already is."""

    def in_use(source, target):
        error = PermissionError(errno.EACCES, "The process cannot access the file because it is being used")
        error.winerror = 32  # ERROR_SHARING_VIOLATION, as Windows' OSError carries it
        raise error

    monkeypatch.setattr(os, "replace", in_use)
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    with pytest.raises(OSError) as refused:
        files.replace_files({tmp_path / "report.html": b"page"})
    message = str(files.cannot_write("report.html", refused.value))
    assert "close the program that has it open" in message and "writable" not in message


def test_a_page_or_model_whose_writer_was_killed_mid_write_leaves_no_temporary_after_the_next_write(tmp_path):
    """`kill -9` during `charlm export` (or inspect, plot) left a `.model.html.tmp-PID` as big as the page,
    and writing the page again left it there: only checkpoints' leftovers were removed, by a run's lock."""
    page = tmp_path / "model.html"
    page.write_bytes(b"the old page")
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(page)], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert page.read_bytes() == b"the old page"  # whole: the kill came before the rename
    live = tmp_path / f".model.html.tmp-{os.getppid()}"  # a writer still running keeps its own
    live.write_bytes(b"being written")
    files.replace_files({page: b"the new page"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "model.html"]
    assert page.read_bytes() == b"the new page"


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the OS does not say when a process started")
def test_a_killed_writers_temporary_goes_though_its_pid_now_names_another_process(tmp_path):
    """A temporary named `.NAME.tmp-PID` stayed for as long as the OS had given PID to another process
    (an editor, a shell: days): it read as a writer still running. Named `PID-START` now, it is its
    writer's own only while a process of that PID started at that time runs."""
    page = tmp_path / "model.html"
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        killed = tmp_path / f".model.html.tmp-{unrelated.pid}-1"  # its writer started 1 tick after boot
        killed.write_bytes(b"half a page")
        files.replace_files({page: b"the new page"})
        live = files.temporary(page)  # this process's, named as it writes: kept
        live.write_bytes(b"being written")
        files.remove_leftovers(page)
        assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "model.html"]
    finally:
        unrelated.kill()
        unrelated.wait()


@pytest.mark.parametrize("owner", ["9" * 10, str(2**31), "9" * 18, "9" * 20, "9" * 200, "²", "1-²", "1-" + "9" * 200])
def test_a_file_named_as_a_temporary_of_no_process_is_kept_and_the_write_goes_on(tmp_path, owner):
    """A file beside a checkpoint named as a temporary of a PID no process can have (`.model.html.tmp-`
    and 20 nines, a superscript digit) made every write of it a traceback: os.kill overflowed, int()
    refused '²'. 10 to 18 digits still overflowed it: a PID is a C int (pid_t), not a C long. It names
    no process: kept, as any such name is."""
    page = tmp_path / "model.html"
    other = tmp_path / f".model.html.tmp-{owner}"
    other.write_bytes(b"someone's own file")
    files.replace_files({page: b"the new page"})
    assert page.read_bytes() == b"the new page" and other.read_bytes() == b"someone's own file"


def test_threads_writing_one_file_at_once_each_leave_it_whole(tmp_path):
    """Two threads of one process writing one file at once (charlm.train on the built-in plays from a thread
    pool, converting them into corpora/cache/ on first use) wrote into one temporary, named by the process:
    each truncated the other's, one renamed it in mid-write, and the other's rename found it gone. Threads
    were refused with `cannot write (No such file or directory)`, or read the plays' train.txt empty or cut
    short. Real threads write one file at once, in rounds, each its own bytes, and read it once written."""
    threads, rounds, size = 4, 5, 1 << 20
    target = tmp_path / "cache" / "train.txt"

    def write(byte: int) -> bytes:
        files.write_files({target: bytes([byte]) * size})
        return target.read_bytes()

    read, errors = at_once_in_rounds(write, threads, rounds)
    assert errors == []
    assert all(len(data) == size and data == data[:1] * size for data in read)
    assert len(read) == threads * rounds and os.listdir(target.parent) == [target.name]


def test_a_write_through_a_link_that_fails_keeps_the_file_it_names_and_the_link(tmp_path):
    """A link is written through (the file it names is replaced, the link stays), still whole or not at
    all: the temporary goes beside the file it names, so a full disk (a file size limit here) leaves that
    file as it was, the link a link, and no temporary in either folder."""
    named, link = tmp_path / "kept" / "page.html", tmp_path / "page.html"
    named.parent.mkdir()
    named.write_bytes(b"earlier")
    link.symlink_to("kept/page.html")
    with file_size_limit(1000), pytest.raises(OSError):
        files.replace_files({link: b"x" * 5000})
    assert named.read_bytes() == b"earlier" and os.readlink(link) == "kept/page.html"
    assert os.listdir(named.parent) == ["page.html"] and sorted(os.listdir(tmp_path)) == ["kept", "page.html"]
    files.replace_files({link: b"new"})
    assert named.read_bytes() == b"new" and os.readlink(link) == "kept/page.html"
    assert os.listdir(named.parent) == ["page.html"]


def test_threads_writing_one_file_by_a_link_and_by_its_name_at_once_each_leave_it_whole(tmp_path):
    """Writes through a link and writes to the file it names take turns at one temporary, beside the
    file: real threads, half by each name, at once in rounds, each its own bytes, leave the file whole
    and the link a link."""
    threads, rounds, size = 4, 5, 1 << 18
    target, link = tmp_path / "kept" / "train.txt", tmp_path / "train.txt"
    target.parent.mkdir()
    link.symlink_to(target)

    def write(byte: int) -> bytes:
        files.write_files({link if byte % 2 else target: bytes([byte]) * size})
        return target.read_bytes()

    read, errors = at_once_in_rounds(write, threads, rounds)
    assert errors == []
    assert all(len(data) == size and data == data[:1] * size for data in read)
    assert len(read) == threads * rounds and os.listdir(target.parent) == [target.name] and link.is_symlink()


def test_a_write_onto_a_named_pipe_is_refused_and_leaves_it_a_pipe(tmp_path):
    """`charlm export --output FIFO` (or, as root, `--output /dev/full`) renamed the page over the pipe or the
    device node: a reader waiting on the pipe never got it, and /dev/full was a regular file after."""
    pipe = tmp_path / "page.html"
    os.mkfifo(pipe)
    with pytest.raises(charlm.CharLMError, match=r"^--output page.html: cannot write \(a pipe\); give the name"):
        files.write_files({pipe: b"<html>"}, "--output page.html")
    assert pipe.is_fifo()
