"""--tokenizer sentencepiece: exact round trips, the cache, bits per character, sampling by pieces."""

import base64
import math
import random
import re
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import charlm
from charlm import checkpoint
from charlm import corpus as corpus_module
from charlm.config import Config
from charlm.errors import CharLMError
from charlm.generation import Healing, StopRule, healed_seed
from charlm.pieces import PieceVocab, train_model
from charlm.sampler import generate
from charlm.scoring import bits_per_char
from charlm.tokens import load_corpus, prepare
from charlm.vocab import Vocab

from .conftest import TINY_ARGS, assert_one_line_error, cli, make_model, run_cli

PUNCTUATION = "，。！？：；、“”‘’《》（）　…—"


def chinese_text(lines: int = 3000, seed: int = 0) -> str:
    """A novel-like text: words of 800 characters, full-width punctuation, paragraphs and blank lines."""
    rng = random.Random(seed)
    alphabet = [chr(0x4E00 + i) for i in range(800)]
    lexicon = ["".join(rng.choices(alphabet, k=rng.randint(1, 3))) for _ in range(400)]
    paragraphs = []
    for _ in range(lines):
        words = [rng.choice(lexicon) for _ in range(8)]
        paragraphs.append("　　" + "".join(w + rng.choice(PUNCTUATION) for w in words))
    return "第一回　甄士隐梦幻识通灵\n\n" + "\n".join(paragraphs) + "\n\n"


@pytest.fixture(scope="module")
def chinese() -> str:
    return chinese_text()


@pytest.mark.parametrize("model_type", ["char", "bpe", "unigram"])
def test_chinese_with_newlines_and_full_width_punctuation_comes_back_exactly(chinese, model_type):
    vocab = PieceVocab(train_model([chinese], model_type, 1200 if model_type != "char" else 2000))
    unseen = "\n\n  两个空格，“引号”！😀 ▂ é\t\n"  # characters the tokenizer never saw: spelled as bytes
    for text in (chinese[:5000], unseen, "\n"):
        ids = vocab.encode(text)
        assert vocab.decode(ids) == text, model_type
        assert int(vocab.char_lengths()[ids].sum()) == len(text)
    if model_type != "char":
        assert len(vocab.encode(chinese[:5000])) < 0.9 * 5000  # merged pieces: fewer tokens than characters


def test_the_checkpoint_form_holds_the_whole_model(chinese):
    vocab = PieceVocab(train_model([chinese], "bpe", 1000), normalize="nfkc")
    again = Vocab.from_dict(vocab.to_dict())
    assert isinstance(again, PieceVocab) and again == vocab and again.normalize == "nfkc"
    with pytest.raises(CharLMError, match="damaged"):
        Vocab.from_dict({"tokenizer": "sentencepiece", "model": "bm90IGEgbW9kZWw=", "normalize": "nfc"})


@pytest.fixture(scope="module")
def small_model() -> bytes:
    return train_model(["the quick brown fox jumps over the lazy dog\n" * 20], "bpe", 300)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("normalize", "NFKD", "normalize is 'NFKD', not one of 'none', 'nfc', 'nfkc'"),
        ("normalize", None, "normalize is None, not a string"),
        ("model", b"not a model", "model is b'not a model', not a sentencepiece model's bytes"),
        ("model", "a.model", "model is 'a.model', not a sentencepiece model's bytes"),
    ],
)
def test_a_piece_vocabulary_names_the_field_that_is_wrong(small_model, field, value, message):
    """PieceVocab(model, normalize="NFKD"), built by hand, said "the vocabulary is damaged" of a vocabulary
    nobody loaded; one read from a checkpoint is damaged, and both name the field that is wrong."""
    given = {"model": small_model, "normalize": "nfc", field: value}
    with pytest.raises(CharLMError) as built:
        PieceVocab(**given)
    assert str(built.value).startswith(f"charlm.pieces.PieceVocab: {message}"), built.value
    stored = {**PieceVocab(small_model).to_dict(), field: value}
    if field == "model":
        stored["model"] = base64.b64encode(value.encode() if isinstance(value, str) else value).decode()
    with pytest.raises(CharLMError) as read:
        Vocab.from_dict(stored)
    assert str(read.value).startswith("the vocabulary is damaged: "), read.value


def test_incremental_decoding_of_a_batch_gives_each_text_exactly(chinese):
    vocab = PieceVocab(train_model([chinese], "bpe", 1000))
    texts = ["“你好”😀é\n", chinese[100:160]]
    ids = [vocab.encode(t).tolist() for t in texts]
    steps = max(map(len, ids))
    decode = vocab.decoder(2)
    got = ["", ""]
    for step in range(steps):
        column = torch.tensor([row[step] if step < len(row) else vocab.encode("\n")[0] for row in ids])
        for i, piece in enumerate(decode(column)):
            got[i] += piece
    assert got[0].startswith(texts[0]) and got[1].startswith(texts[1])


def test_prepared_stream_equals_encoding_the_whole_text(tmp_path, chinese, monkeypatch):
    path = tmp_path / "novel.txt"
    path.write_text(chinese, encoding="utf-8")
    config = Config(tokenizer="sentencepiece", spm_model="bpe", vocab_size=1000)
    corpus = load_corpus([str(path)], config, quiet=True)
    assert isinstance(corpus.vocab, PieceVocab) and corpus.tokens.dtype == np.uint16
    whole = corpus.vocab.encode(chinese).numpy()
    assert np.array_equal(np.asarray(corpus.tokens), whole)
    assert corpus.meta["characters"] == len(chinese) and corpus.meta["tokens"] == len(whole) < len(chinese)
    # Read in small chunks (cut after newlines), the ids are the same.
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 1000)
    chunked = prepare([[path]], config, root=tmp_path / "chunks", quiet=True)
    assert chunked.vocab == corpus.vocab and np.array_equal(np.asarray(chunked.tokens), whole)
    # The tokenizer's options are part of the cache key.
    assert prepare([[path]], Config(tokenizer="sentencepiece", spm_model="char"), quiet=True).folder.name != corpus.key


def test_bits_per_char_divides_by_characters_not_tokens(chinese):
    vocab = PieceVocab(train_model([chinese], "bpe", 1000))
    torch.manual_seed(0)
    model = make_model(vocab, layers=1, hidden=16).eval()
    ids = vocab.encode(chinese[:300])  # short: scored as one stream, so one forward pass is the reference
    logits, _ = model(ids[None, :-1])
    nats = F.cross_entropy(logits[0], ids[1:], reduction="sum").item()
    characters = len(vocab.decode(ids[1:]))
    assert len(ids) - 1 < characters
    assert bits_per_char(model, ids) == pytest.approx(nats / characters / math.log(2), rel=1e-5)
    char_vocab = Vocab.from_counts(Counter(chinese))
    char_model = make_model(char_vocab, layers=1, hidden=16).eval()
    char_ids = char_vocab.encode(chinese[:300])
    char_logits, _ = char_model(char_ids[None, :-1])
    expected = F.cross_entropy(char_logits[0], char_ids[1:]).item() / math.log(2)
    assert bits_per_char(char_model, char_ids) == pytest.approx(expected, rel=1e-5)


def test_samples_have_the_asked_number_of_characters_and_stop_inside_a_piece(chinese):
    vocab = PieceVocab(train_model([chinese], "bpe", 1000))
    torch.manual_seed(0)
    model = make_model(vocab, layers=1, hidden=16).eval()
    for text in generate(model, "第一回", length=57, num_samples=3, random_seed=1):
        assert text.startswith("第一回") and len(text) == 3 + 57
    rule = StopRule(("bc",), keep=True)
    assert rule.feed("a") == ("a", False)
    assert rule.feed("bcde") == ("bc", True)  # a piece that runs past the stop text is cut
    rule = StopRule(("abc",), keep=True)
    assert rule.feed("xa") == ("xa", False) and rule.feed("b") == ("b", False) and rule.matched == [2]
    assert rule.feed("cd") == ("c", True)


def test_train_and_sample_through_the_cli_with_a_self_contained_checkpoint(tmp_path, chinese):
    (tmp_path / "novel.txt").write_text(chinese, encoding="utf-8")
    args = ["--tokenizer", "sentencepiece", "--spm-model", "bpe", "--vocab-size", "1000"]
    result = cli("train", "novel.txt", "--out", "zh", "--max-steps", "20", *args, *TINY_ARGS)
    assert result.exit_code == 0, result.output
    assert "sentencepiece pieces" in cli("info", "zh").output
    for path in (tmp_path / "corpora").rglob("*"):  # the cache (and its tokenizer) gone: the checkpoint suffices
        if path.is_file():
            path.unlink()
    sample = cli("sample", "--checkpoint", "zh", "--seed", "宝玉道：“😀", "--length", "40", "--random-seed", "3")
    assert sample.exit_code == 0, sample.output
    assert sample.output.startswith("宝玉道：“😀") and len(sample.output.rstrip("\n")) >= len("宝玉道：“😀") + 39
    banned = cli("sample", "--checkpoint", "zh", "--ban", "宝")  # the command line cannot give token ids
    assert_one_line_error(banned, "--ban: '宝': a sentencepiece model's tokens are pieces", "character models only")
    assert "give token ids" not in banned.output
    scored = cli("eval", "zh", "novel.txt")
    vocab = checkpoint.load("zh", "cpu").vocab
    first = vocab.decode(vocab.encode(chinese)[:1])  # a piece of several characters, read, not scored
    assert scored.exit_code == 0 and f"over {len(chinese) - len(first):,} characters scored" in scored.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tokenizer", "sentencepiece", "--vocab-size", "20"], "--vocab-size 20 is too small"),
        (["--vocab-size", "500"], "--vocab-size needs --tokenizer sentencepiece"),
        (["--tokenizer", "sentencepiece", "--min-count", "2"], "--min-count applies to --tokenizer char"),
        (
            ["--tokenizer", "sentencepiece", "--coverage", "0.5"],
            "--coverage 0.5 is below 0.98, the least sentencepiece",
        ),
        (["--tokenizer", "wordpiece"], "--tokenizer"),
    ],
)
def test_bad_tokenizer_options_are_one_line_errors(tmp_path, chinese, args, message):
    (tmp_path / "novel.txt").write_text(chinese[:20000], encoding="utf-8")
    result = cli("train", "novel.txt", "--max-steps", "2", *args, *TINY_ARGS)
    if args[:2] == ["--tokenizer", "wordpiece"]:  # click's own choice check: usage line and error
        assert result.exit_code == 2 and "wordpiece" in result.output
    else:
        assert_one_line_error(result, message)


@pytest.mark.parametrize("vocab_size", [100, 500])
def test_a_char_piece_model_too_small_for_the_corpus_says_the_size_it_needs(tmp_path, chinese, vocab_size):
    text = chinese[:20000]
    (tmp_path / "novel.txt").write_text(text, encoding="utf-8")
    needed = len(set(text) - {"\n"}) + 256 + 4  # a piece per character, the 256 bytes, <unk> <s> </s> "\n"
    args = ["corpus", "prepare", "novel.txt", "--tokenizer", "sentencepiece", "--spm-model", "char", "--quiet"]
    result = cli(*args, "--vocab-size", str(vocab_size))
    assert_one_line_error(
        result,
        f"--vocab-size {vocab_size} is too small for --spm-model char on this corpus: it needs at least {needed} ",
        "raise --vocab-size or lower --coverage",
    )
    assert cli(*args, "--vocab-size", str(needed)).exit_code == 0  # the size it names is enough
    assert cli(*args, "--vocab-size", str(needed - 40), "--coverage", "0.98").exit_code == 0  # fewer characters


@pytest.mark.slow  # seconds of real processes, training or a browser: the full suite runs it
@pytest.mark.parametrize("tokenizer", ["char", "sentencepiece"])
def test_a_seed_byte_that_is_not_utf8_is_one_line_for_either_checkpoint(tmp_path, chinese, tokenizer):
    (tmp_path / "novel.txt").write_text(chinese[:20000], encoding="utf-8")
    trained = cli("train", "novel.txt", "--out", "run", "--max-steps", "2", "--tokenizer", tokenizer, *TINY_ARGS)
    assert trained.exit_code == 0, trained.output  # in this process: the sample's argv is what needs one
    result = run_cli("sample", "--checkpoint", "run", "--seed", "ab\udcffc", "--length", "5")  # passed as b"ab\xffc"
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [
        "Error: --seed: byte 0xff at character 2 is not valid UTF-8; give the text in UTF-8"
    ]


def test_a_sentencepiece_corpus_too_short_is_counted_in_tokens(fox_file, tiny):
    """A sentencepiece corpus too short for --batch-size x (--seq-len + 1) was said to have "N training
    characters", N its pieces: fewer than the characters the user sees in the file."""
    with pytest.raises(CharLMError) as error:
        charlm.train(fox_file, **{**tiny, "tokenizer": "sentencepiece", "seq_len": 100, "batch_size": 50})
    said = re.search(r"too short: (\d+) training sentencepiece tokens, need at least 5050 ", str(error.value))
    assert said, str(error.value)
    assert int(said[1]) < len(fox_file.read_text()) * 0.9, str(error.value)  # pieces, not the 2,376 characters
    assert str(error.value).endswith(
        "so a text of at least 5612 sentencepiece tokens; use a longer text or lower batch_size / seq_len"
    )


@pytest.mark.parametrize(
    "text, seed, whole",
    [
        ("go to the sea, then the other thing; that is this.\n" * 40, "go to th", "▁the"),
        ("春望\n杜甫\n国破山河在，城春草木深。\n杜牧\n山行\n李白\n" * 40, "春望\n杜", "杜甫"),
    ],
)
def test_a_seed_that_ends_mid_piece_is_continued_as_if_whole(text, seed, whole):
    """A seed "go to th" was read as pieces "go", "▁to", "▁th": a model trained on "▁the" as one piece
    hardly ever saw "▁th" followed by "e", and the sample went on "th the". The seed's last piece is
    now read again by the sampler: the first piece drawn must spell it, so "▁the" writes the word."""
    vocab = PieceVocab(train_model([text], "bpe", 300), normalize="none")
    assert vocab.encode(seed)[-1] != vocab.processor.piece_to_id(whole)  # the seed ends inside the piece
    torch.manual_seed(0)
    model = make_model(vocab, layers=1, hidden=16).eval()
    favoured = {vocab.processor.piece_to_id(whole): 100}  # the piece the model would write after the word
    for sample in generate(model, seed, length=7, num_samples=2, random_seed=1, logit_bias=favoured):
        assert sample.startswith(seed.replace("th", "the").replace("杜", "杜甫")) and len(sample) == len(seed) + 7
    alone = generate(model, seed, length=9, random_seed=3)[0]  # unbiased: writes on from the seed, never repeats it
    assert alone.startswith(seed) and len(alone) == len(seed) + 9


def test_healing_reads_the_vocabularys_texts_once_not_per_row_or_step(monkeypatch):
    """`Healing` built a list of every piece's text for each row, `allowed` tested every piece in Python at
    each step and `healed_seed` scanned them all per seed: for a 32k-piece vocabulary, paid per request in
    the server's engine thread. The texts are now the vocabulary's, read once (`PieceVocab.text_index`),
    and each step's allowed pieces are still exactly those that begin with the rest or spell a beginning of it."""
    text = "go to the sea, then the other thing; that is this.\n春望\n杜甫\n国破山河在，城春草木深。\n" * 40
    vocab = PieceVocab(train_model([text], "bpe", 320), normalize="none")
    texts = [vocab.token_text(i) if vocab.writes_text(i) else b"" for i in range(len(vocab))]
    read = Counter()
    token_text = vocab.token_text
    monkeypatch.setattr(vocab, "token_text", lambda token: read.update([token]) or token_text(token))
    for seed, healed in (("go to th", " th"), ("春望\n杜", "杜"), ("go to the sea", "")):
        assert healed_seed(vocab, vocab.encode(seed)) == healed
    for row in range(20):  # rows of requests, each healing " th" to its end
        healing = Healing(vocab, " th")
        while not healing.done:
            rest = healing.rest
            wanted = [isinstance(t, str) and t != "" and (t.startswith(rest) or rest.startswith(t)) for t in texts]
            assert healing.allowed().tolist() == wanted
            healing.advance(wanted.index(True) if row % 2 else len(texts) - 1 - wanted[::-1].index(True))
    assert sum(read.values()) <= len(vocab) + 3  # each text once, and each seed's last piece
    assert vocab.text_index() is vocab.text_index()


def test_threads_healing_at_once_share_the_vocabularys_masks_and_each_gets_its_own(monkeypatch):
    """A vocabulary keeps its latest healing masks (`TextIndex.healing`) for every thread that samples from
    it: charlm.generate in threads, a server's engines on one model. Its look then change (the oldest found,
    then deleted) let two threads evict the same mask: a KeyError or 'dictionary changed size during
    iteration' out of a sample, and a cache past its bound. 8 threads healing through some 150 rests at
    once, the cache kept to 4, each get the right mask, and the cache stays within its bound."""
    monkeypatch.setattr("charlm.pieces.HEALING_MASKS", 4)  # nearly every call evicts one: many more turns to take
    text = "go to the sea, then the other thing; that is this.\n春望\n杜甫\n国破山河在，城春草木深。\n" * 40
    index = PieceVocab(train_model([text], "bpe", 320), normalize="none").text_index()
    pieces = sorted({t for t in index.texts if isinstance(t, str) and t})
    rests = sorted({piece[start:] for piece in pieces for start in range(len(piece)) if piece[start:].isprintable()})
    wanted = {rest: index.healing_mask(rest) for rest in rests}
    start = threading.Barrier(8)

    def heal(seed: int) -> list[str]:
        draw, wrong = random.Random(seed), []
        start.wait(5)
        for _ in range(3000):
            rest = draw.choice(rests)
            if not torch.equal(index.healing(rest), wanted[rest]):
                wrong.append(rest)
        return wrong

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads take turns between any two steps of a call, as on a busy machine
    try:
        with ThreadPoolExecutor(8) as pool:
            wrong = list(pool.map(heal, range(8)))
    finally:
        sys.setswitchinterval(switch)
    assert len(rests) > 100 and wrong == [[]] * 8
    assert len(index.masks) <= 4
