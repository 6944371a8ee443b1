"""The prepared token stream: cache reuse and invalidation, streaming, vocabulary policies, damage."""

import json
import random
import re
import select
import signal
import subprocess
import tracemalloc
import typing
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tqdm import tqdm

from charlm import cache_folders, tokens
from charlm import corpus as corpus_module
from charlm.config import Config
from charlm.errors import CharLMError
from charlm.tokens import load_corpus, prepare
from charlm.vocab import UNKNOWN, UnknownCharacterWarning, Vocab

from .conftest import assert_one_line_error, cli, file_size_limit, start_python, wait_for
from .forkserver import Forked

TEXT = "Café\r\nnaïve e\u0301clair ﬁn — 宝玉道：“好！”\n" * 40


def write(tmp_path, name: str, text: str, encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_the_memory_mapped_stream_equals_an_in_memory_encoding(tmp_path):
    path = write(tmp_path, "novel.txt", "the quick brown fox 宝玉\n" * 50)
    corpus = load_corpus([str(path)], Config(), quiet=True)
    text = path.read_text()
    assert isinstance(corpus.tokens, np.memmap) and corpus.tokens.dtype == np.uint8
    assert np.array_equal(np.asarray(corpus.tokens), Vocab.from_counts(Counter(text)).encode(text).numpy())


def test_cache_is_reused_and_a_changed_file_gets_a_new_one(tmp_path):
    path = write(tmp_path, "novel.txt", "one two three\n" * 30)
    first = prepare([[path]], quiet=True).folder
    stamp = (first / "tokens.bin").stat().st_mtime_ns
    assert prepare([[path]], quiet=True).folder == first and (first / "tokens.bin").stat().st_mtime_ns == stamp
    path.write_text("one two four\n" * 30)
    second = prepare([[path]], quiet=True).folder
    assert second != first and len(list(first.parent.iterdir())) == 2
    assert prepare([[path]], Config(normalize="none"), quiet=True).folder != second  # options are part of the key


def test_streaming_in_tiny_chunks_gives_the_same_ids(tmp_path, monkeypatch):
    path = write(tmp_path, "novel.txt", TEXT)
    whole = load_corpus([str(path)], Config(), quiet=True)
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 7)
    chunked = prepare([[path]], root=tmp_path / "small-chunks", quiet=True).folder
    assert np.array_equal(np.fromfile(chunked / "tokens.bin", dtype=np.uint8), np.asarray(whole.tokens))
    assert "\r" not in whole.vocab.chars and "\u0301" not in whole.vocab.chars  # \r\n -> \n, NFC composed é


def test_counting_a_folder_of_one_line_files_does_work_in_the_text_not_in_all_of_unicode(tmp_path, monkeypatch):
    """Each file is a chunk, and each chunk's characters were counted into an array as long as Unicode
    (1.1M entries), then added to the total: preparing 20,000 one-line poems took 41 s where the same
    bytes in one file took 0.03 s. A chunk's count is now as long as its highest code point."""
    folder = tmp_path / "poems"
    folder.mkdir()
    for number in range(200):
        (folder / f"{number:03d}.txt").write_text(f"poem {number} 宝\n")
    counted = []
    bincount = np.bincount
    monkeypatch.setattr(np, "bincount", lambda *a, **k: counted.append(len(result := bincount(*a, **k))) or result)
    corpus = load_corpus([str(folder)], Config(), quiet=True)
    assert corpus.meta["characters"] == sum(len(f"poem {n} 宝\n") for n in range(200))
    assert len(counted) >= 200 and sum(counted) < 200 * (ord("宝") + 1) + 1_000_000  # was 200 * 1,114,112


def test_normalization_options(tmp_path):
    path = write(tmp_path, "n.txt", "e\u0301 ﬁ\n" * 20)
    chars = {form: set(load_corpus([str(path)], Config(normalize=form), quiet=True).vocab.chars) for form in
             ("none", "nfc", "nfkc")}  # fmt: skip
    assert {"e", "\u0301", "ﬁ"} <= chars["none"]
    assert "é" in chars["nfc"] and "ﬁ" in chars["nfc"] and "\u0301" not in chars["nfc"]
    assert "é" in chars["nfkc"] and "ﬁ" not in chars["nfkc"] and {"f", "i"} <= chars["nfkc"]


def test_vocabulary_policies():
    counts = Counter({"a": 50, "b": 30, "c": 15, "d": 4, "e": 1})
    assert Vocab.from_counts(counts).chars == list("abcde")
    by_count = Vocab.from_counts(counts, min_count=5)
    assert by_count.chars == ["a", "b", "c", UNKNOWN] and by_count.unknown_id == 3
    by_coverage = Vocab.from_counts(counts, coverage=0.9)
    assert by_coverage.chars == ["a", "b", "c", UNKNOWN]  # a+b = 80% < 90%, a+b+c = 95%
    assert Vocab.from_counts(counts, coverage=0.5).chars == ["a", UNKNOWN]
    with pytest.raises(CharLMError, match="^min_count=51 and coverage=1 keep 0 of the text's 5 distinct characters"):
        Vocab.from_counts(counts, min_count=51)  # one unknown symbol for everything: it "trained" to 0 bpc
    with pytest.warns(UnknownCharacterWarning):
        assert by_count.encode("abde").tolist() == [0, 1, 3, 3]


def test_rare_characters_become_the_unknown_symbol_and_seeds_map_with_a_warning(tmp_path):
    path = write(tmp_path, "r.txt", "ab" * 500 + "xyz\n")
    corpus = load_corpus([str(path)], Config(min_count=2), quiet=True)
    assert corpus.meta["unknown_distinct"] == 4 and corpus.meta["unknown_count"] == 4  # x y z \n
    assert corpus.meta["unknown_chars"] == ["\n", "x", "y", "z"]  # named, by code point
    assert corpus.vocab.decode(corpus.tokens[-4:]) == UNKNOWN * 4
    with pytest.warns(UnknownCharacterWarning, match="'x' 'q'"):
        ids = corpus.vocab.encode("axq", what="--seed")
    assert corpus.vocab.decode(ids) == "a" + UNKNOWN * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = load_corpus([str(path)], Config(), quiet=True).vocab
        with pytest.raises(CharLMError, match="never seen: 'q'"):
            exact.encode("aq", what="--seed")


def test_id_width_is_the_smallest_that_fits():
    assert Vocab([chr(i) for i in range(256)]).dtype() == np.uint8
    assert Vocab([chr(i) for i in range(257)]).dtype() == np.uint16
    assert Vocab([chr(0x4E00 + i) for i in range(70_000)]).dtype() == np.uint32


@pytest.mark.parametrize(
    "field, edited",
    [
        ("dtype", "S1"),  # one byte an id, as uint8: a traceback in training's counts
        ("dtype", "bool"),  # ids read as 0 and 1, trained on silently
        ("tokens", 800.0),  # a traceback slicing the ids
        ("characters", 0),  # a traceback at the first evaluation
        ("characters", "800"),
        ("characters", None),
        ("parts", [700]),
        ("coverage", "all"),
        ("options", []),
    ],
)
def test_a_hand_edited_meta_json_is_rebuilt_never_used(tmp_path, field, edited):
    """meta.json has no checksum: a field edited to another type or count was used as it stood, and training
    failed later with a traceback, or read its ids as other numbers."""
    path = write(tmp_path, "novel.txt", "abcdefg\n" * 100)
    folder = prepare([[path]], quiet=True).folder
    meta = folder / "meta.json"
    good = json.loads(meta.read_text())
    meta.write_text(json.dumps({**good, field: edited}))
    as_built = lambda fields: json.dumps({**fields, "seconds": 0})  # 800.0 == 800: compared as text
    assert as_built(prepare([[path]], quiet=True).meta) == as_built(json.loads(meta.read_text())) == as_built(good)


@pytest.mark.parametrize("damage", ["truncate", "edit", "no_meta", "vocab_fields", "vocab_cut", "vocab_swapped"])
def test_a_damaged_cache_is_rebuilt_never_used(tmp_path, damage):
    """vocab.json had no checksum: one cut to fewer characters than the ids name was used, and training
    indexed past it; one with two characters swapped (its size unchanged) read every id as another character."""
    path = write(tmp_path, "novel.txt", "abcdefg\n" * 100)
    folder = prepare([[path]], quiet=True).folder
    good = (folder / "tokens.bin").read_bytes()
    tokens, vocab = folder / "tokens.bin", folder / "vocab.json"
    good_vocab = vocab.read_text()
    if damage == "vocab_fields":
        vocab.write_text("{}")
    elif damage == "vocab_cut":
        vocab.write_text(json.dumps({**json.loads(good_vocab), "chars": "ab"}))
    elif damage == "vocab_swapped":
        chars = json.loads(good_vocab)["chars"]
        vocab.write_text(json.dumps({**json.loads(good_vocab), "chars": chars[::-1]}, ensure_ascii=False))
    elif damage == "truncate":
        tokens.write_bytes(good[:100])
    elif damage == "edit":
        tokens.write_bytes(good[:50] + bytes([good[50] ^ 1]) + good[51:])
    else:
        (folder / "meta.json").unlink()
    assert prepare([[path]], quiet=True).folder == folder
    assert tokens.read_bytes() == good and vocab.read_text() == good_vocab
    assert json.loads((folder / "meta.json").read_text())["tokens"] == 800


@pytest.mark.parametrize("said", ["rebuilding", "reading the text once more for"])
def test_a_cache_under_a_folder_whose_name_ends_in_a_space_is_named_with_the_name_quoted(tmp_path, capsys, said):
    """The lines showed the cache folder raw: `cache /…` read as a folder named `cache`. One is said
    where the cache is damaged, the other where it was prepared without the text's digest."""
    path = write(tmp_path, "novel.txt", "abcdefg\n" * 100)
    folder = prepare([[path]], root=tmp_path / "cache ", quiet=True).folder
    if said == "rebuilding":
        (folder / "tokens.bin").write_bytes(b"\0")
    else:
        meta = json.loads((folder / "meta.json").read_text())
        (folder / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "text"}))
    prepare([[path]], root=tmp_path / "cache ")
    out, quoted = capsys.readouterr(), tmp_path / "'cache '" / folder.name
    assert f"{said} {quoted}" in out.out + out.err


def test_bad_bytes_are_located_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 5)
    path = tmp_path / "mixed.txt"
    path.write_bytes("宝玉道：ok\n".encode() + b"fine text \xff\xfe more\n")
    offset = len("宝玉道：ok\n".encode()) + len(b"fine text ")
    with pytest.raises(CharLMError, match=f"mixed.txt: not valid utf-8 at byte offset {offset} \\(byte 0xff\\)"):
        prepare([[path]], quiet=True)


def test_a_binary_file_is_named(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CharLMError, match=r"image.txt: a binary file, not text .*byte offset 128\); give a text file"):
        prepare([[path]], quiet=True)


def test_a_huge_single_line_streams(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 1000)
    line = "宝玉道" * 20_000 + "e\u0301" * 300
    path = write(tmp_path, "line.txt", line)
    corpus = load_corpus([str(path)], Config(), quiet=True)
    assert corpus.meta["characters"] == 60_000 + 300 + 1  # é composed, final newline added
    assert corpus.vocab.decode(corpus.tokens[-3:]) == "éé\n"


# One process preparing a corpus once per trial: it waits for the trial's file `go` so that two start at
# the same moment (one process for all the trials: each costs seconds to start, importing torch).
PREPARE = """
import hashlib, json, sys, time
from pathlib import Path
import numpy as np
from charlm.tokens import prepare
source, trials = sys.argv[1], json.loads(sys.argv[2])
print("ready", flush=True)
for go, delay, root in trials:
    while not Path(go).exists():
        time.sleep(0.001)
    time.sleep(delay)
    ready = prepare([[Path(source)]], root=Path(root), quiet=True)
    mapped = hashlib.sha256(np.asarray(ready.tokens).tobytes()).hexdigest()
    print(json.dumps({"folder": ready.folder.name, "meta": {k: v for k, v in ready.meta.items() if k != "seconds"},
                      "mapped": mapped}), flush=True)
"""


def start_preparing(source: Path, trials: list[tuple[Path, float, Path]]) -> Forked:
    """A process that prepares `source` once per trial (its go file, its delay after it, its cache root);
    of its own, torch imported (`start_python`)."""
    plan = json.dumps([(str(go), delay, str(root)) for go, delay, root in trials])
    return start_python(PREPARE, str(source), plan)


def answer(process: Forked, timeout: float = 120) -> str:
    """The next line the process prints; its errors, as a failure, if it ends or is silent instead."""
    if select.select([process.stdout], [], [], timeout)[0]:
        line = process.stdout.readline().decode()
        if line:
            return line
    process.kill()
    raise AssertionError(process.communicate()[1] or f"nothing printed in {timeout} s")


@pytest.mark.slow
def test_two_processes_preparing_one_corpus_at_once_both_succeed(tmp_path):
    rng = random.Random(0)
    words = ["the", "quick", "宝玉", "道：", "naïve", "fox", "jumps", "😀"]
    source = write(tmp_path, "big.txt", "\n".join(" ".join(rng.choices(words, k=12)) for _ in range(60_000)))
    assert source.stat().st_size > 3_000_000
    trials = [(0, False), (0.1, False), (0.3, False), (0, True)]  # the second process's delay; damaged
    go, root = [tmp_path / f"go{i}" for i in range(4)], [tmp_path / f"cache{i}" for i in range(4)]
    processes = [start_preparing(source, [(go[i], delay * second, root[i]) for i, (delay, _) in enumerate(trials)])
                 for second in (0, 1)]  # fmt: skip
    try:
        assert [answer(process) for process in processes] == ["ready\n"] * 2
        for trial, (_, damaged) in enumerate(trials):
            if damaged:  # a truncated folder both must rebuild, neither may use
                tokens = prepare([[source]], root=root[trial], quiet=True).folder / "tokens.bin"
                tokens.write_bytes(tokens.read_bytes()[:1000])
            go[trial].touch()
            first, second = (json.loads(answer(process)) for process in processes)
            assert first == second, trial
            assert first["mapped"] == first["meta"]["sha256"]  # what each mapped is the finished stream
            assert [p.name for p in root[trial].iterdir()] == [first["folder"]], trial  # no temporary folder left
    finally:
        for process in processes:
            process.kill()
            process.wait()


@pytest.mark.parametrize("tokenizer", ["char", "sentencepiece"])
def test_each_pass_has_a_bar_over_the_files_bytes(tmp_path, capsys, tokenizer):
    path = write(tmp_path, "novel.txt", "the quick brown fox jumps over the lazy dog\n" * 20)
    size = tqdm.format_sizeof(path.stat().st_size)
    prepare([[path]], Config(tokenizer=tokenizer), quiet=False)
    bars = re.findall(r"(\w[\w ]*): +\d+%\|[^|]*\| (\S+)/(\S+) ", capsys.readouterr().err.replace("\r", "\n"))
    finals = {name: (done, total) for name, done, total in bars}  # each bar's last drawing
    passes = (
        ["counting", "training tokenizer", "encoding"] if tokenizer == "sentencepiece" else ["counting", "encoding"]
    )
    assert finals == {name: (size, size) for name in passes}


def test_the_bars_say_in_words_that_they_count_bytes(tmp_path):
    """The bars showed `3.70k/3.70k [..., 32.1kB/s]` and the summary under them 1,300 characters: for a
    Chinese text (3 bytes a character) the bare count read as characters was three times too many."""
    path = write(tmp_path, "诗.txt", "春眠不觉晓，处处闻啼鸟。\n" * 100)  # 3,700 bytes, 1,300 characters
    result = cli("corpus", "prepare", str(path))
    drawn = result.output.replace("\r", "\n")
    assert result.exit_code == 0 and "characters  1,300" in drawn, drawn
    finals = re.findall(r"^(\w+): 100%\|[^|]*\| (\S+ ?\S*) \[[^,]*, ([^\]]*)\]", drawn, re.MULTILINE)
    assert [(name, done) for name, done, _ in finals] == [
        (name, "3.70k/3.70k bytes") for name in ("counting", "encoding")
    ]
    assert all(rate.endswith(" bytes/s") for _, _, rate in finals), drawn


def test_a_cache_that_cannot_be_written_names_it_and_says_what_to_do(tmp_path, monkeypatch):
    """On a full disk the error was `Error: file: File too large`, naming no file; with a file where the
    cache folder goes, `corpora/cache: File exists`."""
    write(tmp_path, "a.txt", TEXT * 10)
    with file_size_limit(1000):
        result = cli("corpus", "prepare", "a.txt", "--quiet")
    assert_one_line_error(
        result, "corpora/cache: cannot write the corpus cache (File too large); free space on its disk"
    )
    assert list((tmp_path / "corpora/cache").iterdir()) == []  # no private folder left
    assert cli("corpus", "prepare", "a.txt", "--quiet").exit_code == 0  # once there is room
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "corpora").mkdir(parents=True)
    (elsewhere / "corpora/cache").write_text("not a folder")
    monkeypatch.chdir(elsewhere)
    assert_one_line_error(
        cli("corpus", "prepare", "../a.txt", "--quiet"),
        "corpora/cache: cannot write the corpus cache (",
        "a file is in the way of its folder",
    )


def test_a_file_that_disappears_while_a_corpus_is_prepared_is_one_line_naming_it(tmp_path, monkeypatch):
    """Read for the cache key, then gone before preparation sizes its bar: `corpora/cache: cannot write
    the corpus cache (No such file or directory)`, blaming the cache. It names the file, as eval does."""
    source = write(tmp_path, "a.txt", TEXT)
    keyed = tokens.cache_key

    def keyed_then_gone(parts, options):
        key = keyed(parts, options)
        source.unlink()
        return key

    monkeypatch.setattr(tokens, "cache_key", keyed_then_gone)
    assert_one_line_error(
        cli("corpus", "prepare", "a.txt", "--quiet"), "a.txt: cannot read (No such file or directory)"
    )
    assert list((tmp_path / "corpora/cache").iterdir()) == []  # no private folder left


@pytest.mark.parametrize("tokenizer", ["char", "sentencepiece"])
def test_corpus_prepare_lines_up_every_value_in_one_column(tmp_path, monkeypatch, tokenizer):
    """With sentencepiece the `spelled as bytes` label is longer than the others: its value started 4
    columns to the right of every other line's."""
    write(tmp_path, "novel.txt", "the quick brown fox jumps over the lazy dog\n" * 20)
    monkeypatch.chdir(tmp_path)
    result = cli("corpus", "prepare", "novel.txt", "--tokenizer", tokenizer, "--quiet")
    assert result.exit_code == 0, result.output
    rare = "spelled as bytes" if tokenizer == "sentencepiece" else "unknowns"
    labels = ["cache", "characters", "tokens", "distinct", "vocabulary", "coverage", rare, "speed"]

    def value_column(line: str) -> int:
        label = next(label for label in labels if line.startswith(f"{label} "))
        return len(line) - len(line[len(label) :].lstrip())

    lines = result.output.splitlines()
    assert lines[0].startswith("cache ") and any(line.startswith(f"{rare} ") for line in lines), result.output
    assert len({value_column(line) for line in lines}) == 1, result.output


def test_the_training_counts_of_a_big_memory_mapped_corpus_take_little_memory(tmp_path):
    """np.bincount copied all the memory-mapped training ids as int64 at once: 720 MB of a 100 MB
    corpus's training run (bench/results/prepare.txt). They are counted a slice at a time."""
    ids = np.random.default_rng(0).integers(0, 70, size=16 * tokens.COUNT_SLICE, dtype=np.uint8)
    ids.tofile(tmp_path / "ids.bin")
    mapped = np.memmap(tmp_path / "ids.bin", dtype=np.uint8, mode="r")
    corpus = tokens.TokenCorpus("big", Vocab([chr(48 + i) for i in range(80)]), mapped, len(ids) - 1000, "key", {})
    tracemalloc.start()
    counts = corpus.train_counts
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert counts.tolist() == np.bincount(ids[: corpus.split], minlength=80).tolist()
    assert peak < 2 * tokens.COUNT_SLICE * 8, f"{peak:,} bytes to count {len(ids):,} ids"  # not 8 bytes an id


STALLED_PREPARE = """
import pathlib, sys, time
from charlm import cache_folders, tokens
from charlm.__main__ import main

def stalled(path, *args):
    pathlib.Path("stalled").touch()
    time.sleep(60)

tokens.write_ids = stalled  # preparing, its private folder made: where a kill or SIGTERM comes
sys.argv = ["charlm", "corpus", "prepare", sys.argv[1], "--quiet"]
main()
"""


def private_folders() -> list[str]:
    return [p.name for p in tokens.CACHE_ROOT.glob(".*")]


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the OS does not say when a process started")
def test_a_killed_preparations_folder_goes_though_its_pid_now_names_another_process(tmp_path):
    """A private folder of a preparation killed by SIGKILL, as big as a corpus's ids, stayed in the cache
    for as long as the OS had given its PID to another process. Named with its process's start time
    now, it goes; one of a preparation running now stays."""
    cache = tmp_path / "cache"
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        killed = cache / f".0123abcd.tmp-{unrelated.pid}-1-00ff00ff"  # its process started 1 tick after boot
        running = cache_folders.private_name(cache / "4567cdef", "tmp")  # this process's
        for folder in (killed, running):
            folder.mkdir(parents=True)
        cache_folders.remove_abandoned(cache)
        assert [p.name for p in cache.iterdir()] == [running.name]
    finally:
        unrelated.kill()
        unrelated.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_preparation_stopped_by_a_signal_leaves_no_private_folder_once_prepared_again(tmp_path, signum):
    """SIGTERM during `charlm corpus prepare` (or `train`'s) ended it at once, and it, like `kill -9`, left
    its private folder, as big as the corpus's ids, in corpora/cache/ for good: nothing removed it.
    SIGTERM now unwinds (status 143, its folder removed); a killed one's goes at the next preparation."""
    text = write(tmp_path, "novel.txt", TEXT)
    process = start_python(STALLED_PREPARE, str(text))  # a process of its own, torch imported
    try:
        wait_for(tmp_path / "stalled", timeout=30)
        assert private_folders(), "no private folder while preparing"
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    if signum == signal.SIGTERM:
        assert (process.returncode, err, private_folders()) == (143, "", [])
    prepare([[text]], quiet=True)
    assert private_folders() == []
    assert len(list(tokens.CACHE_ROOT.iterdir())) == 1


def test_the_text_digests_hashing_is_annotated_with_names_that_exist_at_run_time():
    """`hashing` was annotated `hashlib._Hash`, a name only typeshed's stubs hold: resolving its hints (as
    typing.get_type_hints, pydantic or a documentation tool does) raised AttributeError."""
    hints = typing.get_type_hints(tokens.hashing)
    assert hints["digest"] is tokens.Digest and isinstance(hints["digest"], type)


def test_corpus_prepare_summarizes_a_cache_made_before_meta_json_kept_the_vocabulary_size(fox_file):
    """A cache from before meta.json had "vocab_size" is read as it is (`cache_folders.read_vocab`), but
    `charlm corpus prepare` printed its summary from that field: a KeyError traceback."""
    prepared = load_corpus([str(fox_file)], Config(), quiet=True)
    meta_path = tokens.CACHE_ROOT / prepared.key / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    del meta["vocab_size"]
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    result = cli("corpus", "prepare", str(fox_file), "--quiet")
    assert result.exit_code == 0, result.output
    assert re.search(rf"^vocabulary +{len(prepared.vocab)} \(uint8 ids\)$", result.output, re.MULTILINE), result.output
