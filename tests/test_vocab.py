"""Characters <-> ids at the edges: text that is not text, characters the model knows in another width."""

import functools
from collections import Counter

import numpy as np
import pytest
import torch

from charlm.errors import CharLMError
from charlm.pieces import PieceVocab, train_model
from charlm.unseen import (
    SIMPLIFIED_NOTE,
    TRADITIONAL_NOTE,
    is_simplified_chinese,
    is_traditional_chinese,
    traditional_characters,
)
from charlm.vocab import UNSEEN, Vocab, Vocabulary

TEXT = "宝玉道：“好！”他笑了，又问：“你呢？”（黛玉不答。）\nShe said hi\n" * 20


@functools.cache
def vocabulary(tokenizer: str) -> Vocabulary:
    return Vocab.from_counts(Counter(TEXT)) if tokenizer == "char" else PieceVocab(train_model([TEXT], "bpe", 300))


@pytest.mark.parametrize("tokenizer", ["char", "sentencepiece"])
@pytest.mark.parametrize(
    "text, message",
    [
        (
            "ab\udcffc",
            "--seed: byte 0xff at character 2 is not valid UTF-8; ",
        ),  # a shell's bad byte, as Python keeps it
        ("\ud800宝玉", "--seed: lone surrogate U+D800 at character 0 is not a character; "),
    ],
)
def test_both_vocabularies_refuse_a_lone_surrogate_with_the_same_line(tokenizer, text, message):
    with pytest.raises(CharLMError) as error:
        vocabulary(tokenizer).encode(text, what="--seed")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_an_unseen_character_names_the_form_the_model_knows():
    vocab = vocabulary("char")
    with pytest.raises(CharLMError, match=r"--seed: 1 character the model has never seen: ':' \(did you mean '：'\?\)"):
        vocab.encode("宝玉道:", what="--seed")
    with pytest.raises(CharLMError, match=r"'\?' \(did you mean '？'\?\) '\(' \(did you mean '（'\?\) '宁';"):
        vocab.encode("你呢?(宁", what="--seed")
    with pytest.raises(CharLMError, match=r"'：' \(did you mean ':'\?\)"):  # the other way round too
        Vocab.from_counts(Counter("She said: fine!\n")).encode("She said：", what="--seed")
    with pytest.raises(CharLMError, match=r"'\.' \(did you mean '。'\?\)"):  # no width form, the CJK one
        vocab.encode("不答.", what="--seed")
    assert vocab.decode(vocab.encode("宝玉道：")) == "宝玉道："  # nothing is mapped silently


def test_an_ascii_comma_is_first_said_to_be_the_chinese_comma():
    """',' typed for a novel holding both '，' and '、' was hinted "did you mean '、' or '，'?": the
    enumeration comma first, by code point, where a writer typing ',' in Chinese means '，'."""
    vocab = Vocab.from_counts(Counter("宝玉道：“好，来、去。”\n"))
    assert vocab.name_unseen(",") == "',' (did you mean '，' or '、'?)"
    assert vocab.name_unseen(".") == "'.' (did you mean '。'?)"
    assert (
        vocab.name_unseen("，") == "'，'"
        and Vocab.from_counts(Counter("a, b\n")).name_unseen("、") == "'、' (did you mean ','?)"
    )


# 94 simplified characters (GB2312's first row of them) and a novel's punctuation
SIMPLIFIED = bytes(b for byte in range(0xA1, 0xFF) for b in (0xB0, byte)).decode("gb2312") + "宝玉道：“”。\n"


def test_a_traditional_character_for_a_model_of_simplified_text_is_said_to_be_one():
    """A seed typed in traditional characters ('寶玉', 「」 quotes) for a simplified novel was refused as
    characters the model never saw, with no word of why: now each is named as traditional, or with the
    quotation mark the model knows."""
    vocab = Vocab.from_counts(Counter(SIMPLIFIED))
    with pytest.raises(CharLMError) as error:
        vocab.encode("寶玉道：「宝」", what="--seed")
    assert str(error.value) == (
        "--seed: 3 characters the model has never seen: '寶' (traditional? this model knows simplified "
        "Chinese) '「' (did you mean '“'?) '」' (did you mean '”'?); use only characters from the training text"
    )
    traditional = Vocab.from_counts(Counter("寶玉們來說學國這個「」\n" * 10))
    with pytest.raises(CharLMError, match=r"never seen: '宝'; use"):  # a model of traditional text: no such note
        traditional.encode("宝玉", what="--seed")
    with pytest.raises(CharLMError, match=r"never seen: '們'; use"):  # nor for a model of English
        Vocab.from_counts(Counter("She said hi\n")).encode("們", what="--seed")


def test_a_rare_character_of_simplified_text_is_not_said_to_be_traditional():
    """Big5 holds rare characters that simplified text writes too and GB2312 lacks ('豗', '砯', '剺' of
    the Tang poems): each was named traditional. Only Big5's frequent characters, where the traditional
    forms of everyday ones are ('寶', '們', '來'), get the note, and it asks rather than tells."""
    vocab = Vocab.from_counts(Counter(SIMPLIFIED))
    assert [vocab.name_unseen(c) for c in "豗砯剺"] == ["'豗'", "'砯'", "'剺'"]
    assert vocab.name_unseen("們") == f"'們' ({TRADITIONAL_NOTE})" and "?" in TRADITIONAL_NOTE


def test_a_character_with_no_simplified_form_is_not_said_to_be_traditional():
    """Big5's frequent level holds rare characters GB2312 lacks that simplified text writes and that have
    no simplified form: hongloumeng's own '隄' (10 times), '珮', '祐', '浥', '瞋' were each named
    traditional to a model that had not seen them. Only a character with a simplified form is."""
    vocab = Vocab.from_counts(Counter(SIMPLIFIED))
    assert [vocab.name_unseen(c) for c in "隄珮祐浥瞋巉"] == ["'隄'", "'珮'", "'祐'", "'浥'", "'瞋'", "'巉'"]
    assert [vocab.name_unseen(c) for c in "寶們來蔔"] == [f"{c!r} ({TRADITIONAL_NOTE})" for c in "寶們來蔔"]
    assert not set("隄珮祐浥瞋巉") & set(vocab.unseen_hints()["other_script"])  # the exported page's list too
    assert {"寶", "們", "來", "蔔"} <= set(vocab.unseen_hints()["other_script"])


def test_a_seeds_three_dots_are_said_to_be_the_ellipsis_the_novel_writes():
    """A seed's '...' for hongloumeng, which writes '……', was hinted '。' alone; and Taiwan's '⋯' and the
    mainland's '…' are one mark to a reader."""
    novel = Vocab.from_counts(Counter("宝玉道：“开辟鸿蒙……”他笑了。\n"))
    with pytest.raises(CharLMError, match=r"never seen: '\.' \(did you mean '。' or '…'\?\); use"):
        novel.encode("宝玉道...", what="--seed")
    assert novel.name_unseen("⋯") == "'⋯' (did you mean '…'?)"
    assert Vocab.from_counts(Counter("He said... no.\n")).name_unseen("…") == "'…' (did you mean '.'?)"


@pytest.mark.parametrize(
    "known, typed",
    [
        ("〖〗", "【】"),  # hongloumeng's song titles, where others write 【】
        ("【】", "〖〗"),
        ("【】", "[]"),  # what a Chinese input method types for '[' and ']'
        ("——", "――"),  # GB2312's dash: '―' to Python's gb2312 codec, '—' to GBK
        ("──", "——"),  # hongloumeng writes its dash '——', '──' and '－－'
        ("－－", "——"),
        ("～", "〜"),  # Shift_JIS's wave dash and cp932's
        ("~", "〜"),
        ("·", "・•‧"),  # the middle dot as GB2312 (two ways), Big5 and cp950 decode it
        ("“”", "「」"),  # corner brackets as quotes
    ],
)
def test_a_mark_a_chinese_reader_takes_for_one_the_model_writes_is_hinted(known, typed):
    """'【】' typed for a model that writes '〖〗' (or a dash, a wave dash, a middle dot of another code
    point) was named with no hint: each is named with the form of it the model knows."""
    vocab = Vocab.from_counts(Counter(f"宝玉道{known}好\n"))
    for char, meant in zip(typed, known * len(typed)):
        assert vocab.name_unseen(char) == f"{char!r} (did you mean {meant!r}?)", char
    assert vocab.unseen_hints()["forms"][typed[0]] == [known[0]]  # what both pages name it by


def test_the_single_title_marks_are_not_said_to_be_the_double_ones():
    """'〈〉' is the title mark inside '《》' (《西楼〈楼会〉》), another mark, as '‘' is inside '“': no hint."""
    vocab = Vocab.from_counts(Counter("《红楼梦》“好”\n"))
    assert [vocab.name_unseen(c) for c in "〈〉‘"] == ["'〈'", "'〉'", "'‘'"]


# 94 traditional characters (the first of those with a simplified form) and a novel's punctuation
TRADITIONAL = traditional_characters()[:94] + "玉道：「」。\n"


def test_a_simplified_character_for_a_model_of_traditional_text_is_said_to_be_one():
    """A seed of simplified characters ('宝玉们') for a model of traditional text was refused with no word of
    why, where the other way round is named traditional: now each asks "simplified?". A character with no
    traditional form (a radical, '亻'; chemistry's '酰'; '着', which cannot be told from '著') is not."""
    vocab = Vocab.from_counts(Counter(TRADITIONAL))
    assert is_traditional_chinese(vocab.chars) and not is_simplified_chinese(vocab.chars)
    with pytest.raises(CharLMError) as error:
        vocab.encode("宝玉们道：“”", what="--seed")
    assert str(error.value) == (
        f"--seed: 4 characters the model has never seen: '宝' ({SIMPLIFIED_NOTE}) '们' ({SIMPLIFIED_NOTE}) "
        "'“' (did you mean '「'?) '”' (did you mean '」'?); use only characters from the training text"
    )
    assert [vocab.name_unseen(c) for c in "亻酰着"] == ["'亻'", "'酰'", "'着'"]
    assert {"宝", "们"} <= set(vocab.unseen_hints()["other_script"]) and vocab.unseen_hints()["other_script_note"] == (
        SIMPLIFIED_NOTE
    )
    assert not set("亻酰着玉") & set(vocab.unseen_hints()["other_script"])
    simplified = Vocab.from_counts(Counter(SIMPLIFIED))  # the mirror: a model of simplified text
    assert not is_traditional_chinese(simplified.chars) and simplified.name_unseen("宝") == "'宝'"


def test_a_vocabulary_of_characters_both_scripts_write_gets_one_note():
    """Characters both sets hold ('一乙丁七') make a vocabulary both Big5 and GB2312: it is taken for simplified,
    so its unseen '寶' and '宝' are not each said to be the other's script."""
    both = Vocab.from_counts(Counter(bytes(b for byte in range(0x40, 0x7F) for b in (0xA4, byte)).decode("big5")))
    assert is_simplified_chinese(both.chars) and not is_traditional_chinese(both.chars)
    assert both.name_unseen("宝") == "'宝'" and both.name_unseen("寶") == f"'寶' ({TRADITIONAL_NOTE})"


def test_a_vocabulary_shows_its_kind_size_and_normalization():
    """`model.vocab` in a notebook showed `<charlm.vocab.Vocab object at 0x...>`."""
    assert repr(vocabulary("char")) == f"Vocab({len(set(TEXT))} characters, normalize='none')"
    assert (
        repr(Vocab("ab", unknown=True, normalize="nfc"))
        == "Vocab(3 characters (one the unknown symbol), normalize='nfc')"
    )
    assert repr(vocabulary("sentencepiece")) == "PieceVocab(sentencepiece, 300 pieces, byte fallback, normalize='nfc')"


@pytest.mark.parametrize("unknown", [False, True])
def test_the_characters_a_vocabulary_lacks_are_listed_once_in_order_of_first_appearance(unknown):
    """`Vocab.unseen_in` reads the text through the id table rather than a Python loop over its characters: the
    same list, with the unknown symbol written in a text known where the vocabulary has it."""
    vocab = Vocab("abc ", unknown=unknown)
    text = "a\ufffdbz c：y\U0001f600z\ufffdyq" * 3
    assert vocab.unseen_in(text) == list(dict.fromkeys(c for c in text if not vocab.knows(c)))
    assert vocab.unseen_in(text) == (
        ["z", "：", "y", "\U0001f600", "q"] if unknown else ["\ufffd", "z", "：", "y", "\U0001f600", "q"]
    )
    assert vocab.unseen_in("") == [] and vocab.unseen_in("cab") == []


@pytest.mark.parametrize("tokenizer", ["char", "sentencepiece"])
def test_decode_refuses_an_id_outside_the_vocabulary_rather_than_invent_a_character(tokenizer):
    """UNSEEN (-1), a character the model never saw, decoded as the vocabulary's last character (Python
    indexes a list from its end): text the model was never given, returned without a word."""
    vocab = vocabulary(tokenizer)
    known = vocab.encode("宝玉")
    assert vocab.decode(known) == "宝玉"
    for bad in (UNSEEN, len(vocab)):
        with pytest.raises(
            CharLMError, match=rf"^decode: token id {bad} is not one of the vocabulary's \(0 to {len(vocab) - 1}\)"
        ):
            vocab.decode([*known.tolist(), bad])


@pytest.mark.parametrize("tokenizer", ["char", "sentencepiece"])
def test_encode_and_decode_given_the_wrong_shape_of_input_say_what_to_pass(tokenizer):
    """`model.vocab` is public (docs/python.md): `encode(b"ab")` met a TypeError deep in normalizing, and
    `decode` of a batch of rows (what `model(ids)` takes) a TypeError from `min`; a lone id is one id."""
    vocab = vocabulary(tokenizer)
    with pytest.raises(
        CharLMError, match=r"^text must be a string, not b'ab'; decode it first: text.decode\('utf-8'\)$"
    ):
        vocab.encode(b"ab")
    rows = vocab.encode("宝玉").unsqueeze(0).repeat(2, 1)
    for batch in (rows, rows.numpy(), rows.tolist()):
        with pytest.raises(CharLMError, match=r"^decode takes one row of token ids, not .*decode a row at a time"):
            vocab.decode(batch)
    assert [vocab.decode(row) for row in rows] == ["宝玉", "宝玉"]
    assert vocab.decode(rows[0, -1]) == vocab.decode(rows[0, -1:])  # a 0-D id, as argmax() gives it


@pytest.mark.parametrize("tokenizer", ["char", "sentencepiece"])
def test_decode_takes_a_lone_id_and_refuses_what_is_no_id_in_one_line(tokenizer):
    """`vocab.decode(logits.argmax().item())`, a lone int, met a TypeError ('int' object is not
    subscriptable); floats and texts a TypeError from indexing; and True decoded as id 1, without a word."""
    vocab = vocabulary(tokenizer)
    ids = vocab.encode("宝玉")
    first = ids[0].item()
    assert vocab.decode(first) == vocab.decode(ids[:1])
    assert vocab.decode(list(ids)) == vocab.decode([np.int64(i) for i in ids.tolist()]) == "宝玉"  # 0-D tensors
    for bad, shown in (
        (float(first), rf"{float(first)}"),
        ([first, True], "True"),
        ("宝玉", r"'宝玉'; vocab.encode\(text\) gives a text's ids"),
        (ids.float(), "torch.float32 values"),
        (ids.numpy().astype(float), "float64 values"),
        (torch.tensor([True]), "torch.bool values"),
        (None, "None"),
    ):
        with pytest.raises(CharLMError, match=rf"^decode takes token ids, which are integers, not {shown}$"):
            vocab.decode(bad)


@pytest.mark.parametrize("tokenizer", ["char", "sentencepiece"])
def test_the_per_step_decoder_refuses_an_id_outside_the_vocabulary_as_decode_does(tokenizer):
    """`vocab.decoder(n)`, the per-step path of `Vocabulary`, gave UNSEEN (-1) the last character or piece
    without a word, and an id past the end an IndexError traceback, where `decode` refuses both."""
    vocab = vocabulary(tokenizer)
    known = vocab.encode("宝")
    assert vocab.decoder(1)(known[:1]) == [vocab.decode(known[:1])]
    for bad in (UNSEEN, len(vocab)):
        with pytest.raises(CharLMError, match=rf"^decode: token id {bad} is not one of the vocabulary's"):
            vocab.decoder(2)(torch.tensor([known[0].item(), bad]))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("normalize", 3, "normalize is 3, not a string"),
        ("chars", ["a", 3], "chars holds 3, not a character"),
        ("chars", [["a"]], "chars holds ['a'], not a character"),
        ("chars", 7, "chars is 7, not a string"),
        ("unknown", "yes", "unknown is 'yes', not true or false"),
    ],
)
def test_a_stored_vocabulary_names_the_field_that_is_wrong(field, value, message):
    """A `normalize` that was no string was told "chars is not a string, unknown not true or false", and
    a `chars` list holding a number was a bare TypeError, which a checkpoint showed as "damaged (TypeError)":
    each names the field and its value now."""
    stored = {**Vocab("ab", normalize="nfc").to_dict(), field: value}
    with pytest.raises(CharLMError) as error:
        Vocab.from_dict(stored)
    assert str(error.value) == f"the vocabulary is damaged: {message}"


def test_a_stored_vocabulary_names_every_wrong_field_at_once():
    with pytest.raises(CharLMError) as error:
        Vocab.from_dict({"chars": None, "unknown": 1, "normalize": None})
    assert str(error.value) == (
        "the vocabulary is damaged: chars is None, not a string; unknown is 1, not true or false; "
        "normalize is None, not a string"
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"chars": [1, 2]}, "chars holds 1, not a character"),
        ({"chars": None}, "chars is None, not a string"),
        ({"chars": b"ab"}, "chars is b'ab', not a string"),
        ({"chars": {"a": 1}}, "chars is {'a': 1}, not a string"),
        ({"chars": ["ab"]}, "chars holds 'ab', not a character"),
        ({"chars": "aba"}, "chars holds 'a' twice"),
        ({"chars": "ab", "unknown": "yes"}, "unknown is 'yes', not true or false"),
        ({"chars": "ab", "normalize": "NFKD"}, "normalize is 'NFKD', not one of 'none', 'nfc', 'nfkc'"),
    ],
)
def test_a_vocabulary_built_by_hand_names_the_argument_that_is_wrong(arguments, message):
    """Vocab(chars=[1, 2]) was a bare TypeError, and Vocab("ab", normalize="NFKD") said "the vocabulary is
    damaged" of a vocabulary nobody loaded: a caller building one is told which argument is wrong."""
    with pytest.raises(CharLMError) as error:
        Vocab(**arguments)
    assert str(error.value) == f"charlm.vocab.Vocab: {message}"


def test_a_stored_vocabulary_of_repeated_characters_is_damaged():
    with pytest.raises(CharLMError) as error:
        Vocab.from_dict({"chars": "aba", "unknown": False, "normalize": "nfc"})
    assert str(error.value) == "the vocabulary is damaged: chars holds 'a' twice"
