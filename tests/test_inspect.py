"""charlm inspect: surprise, features and the cells that follow them, gate saturation, the n-gram
baseline, the page (escaped, self-contained, opened in headless Chromium) and the command."""

import ast
import base64
import dataclasses
import html
import json
import math
import random
import re
import sys
import threading
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

import charlm
from charlm import runs, scoring, tracing
from charlm.errors import CharLMError
from charlm.fields import typed
from charlm.inspection import analysis
from charlm.inspection import run as inspection_run
from charlm.inspection.analysis import (
    analyse,
    best_cells,
    cell_view,
    char_class,
    correlations,
    features,
    hardest_spans,
    saturation,
    summary,
)
from charlm.inspection.page import render
from charlm.ngram import KneserNey, modified_discounts
from charlm.pieces import PieceVocab, train_model
from charlm.scoring import Surprise, bits_per_char, surprise
from charlm.tables import width
from charlm.tracing import Trace, trace
from charlm.unseen_notes import unseen_note
from charlm.vocab import UnknownCharacterWarning, Vocab

from .conftest import TINY_ARGS, assert_one_line_error, cli, file_size_limit, make_model, start_charlm
from .test_export import run_of
from .test_serve import CONTRASTS as SERVE_CONTRASTS
from .test_serve import CONTROL_ROLES, PAGE_POLL, PAGE_WAIT

HOSTILE = 'He said "<script>alert(1)</script>" & left.\n\'Tis <b>bold</b> &amp; (odd)\n\n</div>end'


def test_surprise_is_the_softmax_of_the_models_logits_with_its_top_guesses(model):
    text = "bad cafe\nhead"
    seen = surprise(model, text, top=3)
    with torch.no_grad():
        logits, _ = model(model.vocab.encode("\n" + text)[None])
    probs = torch.softmax(logits[0, :-1], -1)  # before each character of the text
    ids = model.vocab.encode(text)
    assert np.allclose(seen.bits, -torch.log2(probs[torch.arange(len(ids)), ids]).numpy(), atol=1e-4)
    best = probs.topk(3, dim=1)
    for t, guesses in enumerate(seen.top):
        assert [char for char, _ in guesses] == [model.vocab.chars[i] for i in best.indices[t].tolist()]
        assert np.allclose([p for _, p in guesses], best.values[t].numpy(), atol=1e-5)
    assert seen.tokens == list(text)
    # Started cold, the first character is not scored and the rest give what `charlm eval` gives.
    cold = surprise(model, text, context="")
    assert math.isnan(cold.bits[0]) and cold.top[0] == []
    assert cold.bpc == pytest.approx(bits_per_char(model, ids), abs=1e-4)
    assert json.loads(json.dumps(cold.to_dict()))["bits"][0] is None  # JSON-ready for a web page


@pytest.mark.parametrize("top", [10**6, 10**30], ids=["a million", "past any array"])
def test_a_top_past_the_vocabulary_gives_every_character_as_next_probs_does(model, top):
    """A top larger than the vocabulary asked numpy for a (T, top) array: a million took 16 MB a token,
    10**30 raised numpy's ValueError from inside charlm. It is every character, as next_probs reads it."""
    seen = surprise(model, "bad cafe", top=top)
    assert seen.top == surprise(model, "bad cafe", top=len(model.vocab)).top
    assert all(len(guesses) == len(model.vocab) for guesses in seen.top)


def test_hardest_spans_are_the_costliest_windows_without_overlap():
    bits = np.ones(60)
    bits[10:14], bits[40:45] = 9.0, 6.0
    seen = Surprise(list("x" * 60), bits, [[] for _ in range(60)])
    spans = hardest_spans(seen, count=3, width=5)
    assert spans[0][:2] in [(9, 14), (10, 15)] and spans[1][:2] == (40, 45)
    assert spans[1][2] == pytest.approx(6.0)
    covered = [set(range(a, b)) for a, b, _ in spans]
    assert all(not (covered[i] & covered[j]) for i in range(3) for j in range(i))
    assert [bpc for _, _, bpc in spans] == sorted((bpc for _, _, bpc in spans), reverse=True)


def test_a_hardest_spans_bits_per_character_is_over_the_characters_scored_in_it():
    """An unseen character has no bits (NaN): it divided the span's bits as if it had cost nothing."""
    bits = np.array([4.0, np.nan, 4.0, 4.0, 4.0] + [1.0] * 7)
    seen = Surprise(list("x" * 12), bits, [[] for _ in range(12)])
    assert hardest_spans(seen, count=1, width=5) == [(0, 5, 4.0)]


def test_a_hardest_span_shows_a_chapter_headings_full_width_space_as_itself():
    """repr escapes U+3000 as not printable: hongloumeng's chapter headings, the hardest spans of a
    chapter, printed as '第八十一回\\u3000占旺相...'. Still a literal that reads back to the span."""
    torch.manual_seed(0)
    text = "第一回\u3000甄士隐梦幻识通灵\n“好。”\n" * 4
    model = make_model(Vocab.from_counts(Counter(text)), layers=1, hidden=8).eval()
    lines = summary(analyse(model, text, text, max_order=2)).split("hardest spans (most bits per character first):\n")
    spans = [line.split(" bpc  ", 1)[1] for line in lines[1].splitlines()]
    assert spans and "\\u3000" not in lines[1] and any("\u3000" in span for span in spans)
    assert all(ast.literal_eval(span) in text for span in spans)


def test_features_of_an_english_text():
    text = 'ab "cd"\n(x(y)) z'
    found = features(text)
    assert list(found) == ["inside quotes", "position in the line", "bracket depth", "inside a word", "after a newline"]
    assert found["inside quotes"].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert found["position in the line"][:9].tolist() == [1, 2, 3, 4, 5, 6, 7, 0, 1]
    assert found["bracket depth"][8:].tolist() == [1, 1, 2, 2, 1, 0, 0, 0]
    assert found["inside a word"][:3].tolist() == [1, 1, 0]
    assert found["after a newline"].sum() == 1 and found["after a newline"][7] == 1


def test_features_of_a_chinese_text():
    text = "他道：“好。”又说「是」。\n来"
    found = features(text)
    assert list(found) == [
        "inside 「」/“” quotes",
        "position in the sentence",
        "position in the line",
        "after a newline",
    ]
    assert found["inside 「」/“” quotes"].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert found["position in the sentence"].tolist() == [1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 0, 0, 1]


def test_the_feature_table_lines_up_under_a_chinese_texts_quotes():
    """A Chinese text's first feature names 「」, two terminal cells each: padded by len, its row's layer,
    cell and correlation stood two cells right of the header's and the other rows'."""
    torch.manual_seed(0)
    text = "宝玉道：“好。”又说「是」。\n黛玉笑道：“来了。”\n" * 6
    model = make_model(Vocab.from_counts(Counter(text)), layers=1, hidden=8).eval()
    lines = summary(analyse(model, text, text * 3, max_order=2)).splitlines()
    header = next(line for line in lines if line.startswith("feature"))
    rows = [line for line in lines if line.startswith(tuple(analysis.CHINESE_FEATURES))]
    assert len(rows) == 4 and rows[0].startswith("inside 「」/“” quotes")
    # every row's correlation and chance end under the header's "correlation" and "chance"
    for column, number in (("correlation", r"[+-]\d\.\d{3}"), ("chance", r"[+-]\d\.\d{3}\s+\d\.\d{3}")):
        ends = {width(line[: re.search(number, line).end()]) for line in rows}
        ends.add(width(header[: header.index(column) + len(column)]))
        assert len(ends) == 1, "\n".join([column, header, *rows])


def test_the_unseen_note_names_the_forms_the_model_knows_as_eval_does():
    """inspect named a text's unseen corner quotes bare, '「' '」', where `charlm eval` on the same file says
    '「' 2 times (the model writes '“'): one wording, `Vocab.names_unseen`'s, the distinct count grouped as eval's."""
    torch.manual_seed(0)
    text = "宝玉道：“好。”又说：“是。”\n黛玉笑道：“来了。”\n" * 6
    model = make_model(Vocab.from_counts(Counter(text)), layers=1, hidden=8).eval()
    odd = "宝玉道：「好」。「寶玉說\n" + "".join(map(chr, range(0x3400, 0x3400 + 1002)))  # Extension A: none known
    note = analyse(model, odd, text * 3, max_order=2).notes[0]
    named = "'「' 2 times (the model writes '“') '」' once (the model writes '”') '寶' once '說' once"
    assert note.startswith("1,007 unseen characters excluded from every bits figure (1,006 distinct, ")
    assert f"never in the model's training text: {named} " in note and "...); the model reads" in note


def test_inspect_says_what_a_min_count_model_scored_as_the_unknown_symbol_as_eval_does():
    """Under a model with the unknown symbol (--min-count, --coverage) inspect said nothing of a text's
    unseen characters, where `charlm eval` says they were scored as the symbol and what their bits are:
    its figures hold those bits too, so it says so, in eval's line (`unseen_notes.unseen_note`), and once: its
    warning, in other words, is left out as eval's is."""
    torch.manual_seed(0)
    text = "宝玉道：“好。”又说：“是。”\n黛玉笑道：“来了。”\n" * 6
    vocab = Vocab(sorted(set(text)), unknown=True)
    model = make_model(vocab, layers=1, hidden=8).eval()
    odd = "寶玉道：「好」。寶玉說\n"  # the first is read, never scored: counted once
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownCharacterWarning)  # said once, in the note, not a warning too
        notes = analyse(model, odd, text * 3, max_order=2).notes
    assert notes[0] == unseen_note(vocab, [odd])
    assert notes[0].startswith("4 unseen characters scored as the unknown symbol '\ufffd' (4 distinct: '「' once (the")


FINE_TUNE = "; to score them, fine-tune the model on text that has them (charlm train FILE --init-from RUN)"
FOREIGN = (
    "; 87% of the text is in characters this model never saw in training, so the figure says little of it: "
    "inspect it under a model trained on text in its script"
)


@pytest.mark.parametrize(
    ("odd", "advice"),
    [
        ("宝玉道：「好」。「寶玉說\n" * 5, f"{FINE_TUNE} or write them as the model does"),
        ("宝玉道：寶玉說好。\n" * 5, FINE_TUNE),  # no form of them the model writes
        ("the quick brown fox 宝玉\n" * 5, FOREIGN),
    ],
    ids=["forms", "bare", "foreign"],
)
def test_inspect_says_once_on_the_terminal_and_the_page_what_to_do_of_unseen_characters(tmp_path, odd, advice):
    """`charlm eval` on a file with characters the model never saw says what scores them (a fine-tune on
    such text, or writing them as the model does), or, where they are most of the text, that the figure
    says little of it and which model to score it under; `charlm inspect` on the same file named them in
    eval's words but said neither. Its note now ends as eval's does (one function words both, `inspect` for
    `score` in what to do of a foreign text), printed once, and the page shows that same note once."""
    text = "宝玉道：“好。”又说：“是。”\n黛玉笑道：“来了。”\n"
    torch.manual_seed(0)
    vocab = Vocab(sorted(set(text)))
    run = run_of(make_model(vocab, layers=1, hidden=8).eval(), tmp_path / "run")
    (tmp_path / "odd.txt").write_text(odd, encoding="utf-8")
    (tmp_path / "train.txt").write_text(text * 20, encoding="utf-8")
    out = tmp_path / "page.html"
    result = cli("inspect", str(run), str(tmp_path / "odd.txt"), "--train-text", str(tmp_path / "train.txt"),
                 "--output", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "unseen characters" in line]
    named = advice.replace("--init-from RUN", f"--init-from {typed(str(run))}")  # the run inspected, by name
    assert len(notes) == 1 and notes[0].endswith(named), notes
    eval_note = unseen_note(vocab, [odd])  # `charlm eval`'s words for the same file (no run), its verb aside
    assert eval_note.endswith(advice.replace(": inspect it under", ": score it under"))
    count = eval_note.split(" unseen characters excluded from the score (")[0]
    assert notes[0].startswith(f"{count} unseen characters excluded from every bits figure (")
    page = out.read_text(encoding="utf-8")
    assert page.count("unseen characters") == 1 and f"Note: {html.escape(notes[0])}." in page


@pytest.mark.parametrize(
    ("module", "step", "work"),
    [
        (analysis, "cell_view", lambda model: analyse(model, "abxc ab\n", "abc ab\n" * 5, max_order=2).notes),
        (scoring, "progress_bar", lambda model: scoring.text_bits(model, "abxc ab\n")),  # eval, bits_per_char
    ],
    ids=["inspect", "eval"],
)
def test_scoring_in_one_thread_leaves_another_threads_unseen_character_warning_alone(
    monkeypatch, recwarn, module, step, work
):
    """inspect and eval kept their own UnknownCharacterWarning quiet with warnings.catch_warnings, which
    sets the filters of the whole process: a seed another thread encoded meanwhile (a server's request)
    lost its warning that a character was read as the unknown symbol. They tell the encoding not to warn."""
    torch.manual_seed(0)
    vocab = Vocab(sorted(set("abc \n")), unknown=True)
    model = make_model(vocab, layers=1, hidden=8).eval()
    inside, encoded = threading.Event(), threading.Event()
    real_step = getattr(module, step)

    def step_while_a_seed_is_encoded(*args, **kwargs):
        inside.set()  # the scoring thread is where it read its text's ids
        encoded.wait(10)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(module, step, step_while_a_seed_is_encoded)
    with ThreadPoolExecutor(1) as pool:
        scoring_thread = pool.submit(work, model)
        assert inside.wait(10)
        vocab.encode("ax", what="--seed")
        encoded.set()
        assert scoring_thread.result()  # its own word on 'x' is a note (unseen_note), not a warning
    said = [str(w.message) for w in recwarn if w.category is UnknownCharacterWarning]
    assert said == ["--seed: 'x' not in the vocabulary, read as '\ufffd'"]


def test_only_han_characters_make_a_text_chinese():
    """Private-use and unassigned code points above U+20000 are not Chinese (forms.is_han decides)."""
    assert features("\U000f0000\U000f0001 \U000f0002")["position in the line"] is not None
    assert "position in the sentence" not in features("\U000f0000\U000f0001 \U000f0002")
    assert "position in the sentence" in features("\U00020000\U0002a6d6")  # CJK Extension B
    assert char_class("\U000f0000") == "other" and char_class("\U00020000") == char_class("中") == "CJK characters"


def test_the_best_cell_for_a_feature_is_the_one_that_follows_it():
    rng = np.random.default_rng(0)
    feature = (rng.random(400) < 0.3).astype(float)
    states = rng.uniform(-1, 1, (2, 400, 8))
    states[1, :, 5] = np.tanh(2 * feature - 1 + 0.5 * rng.standard_normal(400))
    r = correlations(states, feature)
    assert r[1, 3] == pytest.approx(np.corrcoef(states[1, :, 3], feature)[0, 1])
    (match, flat) = best_cells(-states, {"quotes": feature, "flat": np.zeros(400)})
    assert (match.layer, match.cell) == (1, 5) and match.correlation < -0.8  # the sign is kept
    assert flat.correlation is None


def test_a_feature_no_cell_follows_better_than_chance_is_said_so_with_no_cell_to_show():
    """The page and the tables named a cell for every feature that varies, however weakly it followed it:
    for the quotes model's position in the line (docs/inspect.md, "Measured") another cell followed the
    feature shifted along the text as closely, and a learner pressing "show" saw a cell that follows
    nothing. The best cell must beat the best of every cell against the feature shifted along the text
    (chance); else the page says so and shows none."""
    rng = np.random.default_rng(0)
    followed, unfollowed = ((rng.random(400) < 0.3).astype(float) for _ in range(2))
    states = rng.uniform(-1, 1, (1, 400, 8))
    states[0, :, 5] = np.tanh(2 * followed - 1 + 0.5 * rng.standard_normal(400))
    states[0, :, 2] = np.roll(unfollowed, 200)  # in step with what lies half the text away: chance's cell
    matches = best_cells(states, {"followed": followed, "unfollowed": unfollowed})
    assert [m.follows for m in matches] == [True, False]
    assert matches[1].chance == pytest.approx(1.0) and abs(matches[1].correlation) < 0.3
    torch.manual_seed(0)
    text = "the cat sat (on a mat)\nthe dog ran\n" * 3
    model = make_model(Vocab.from_counts(Counter(text)), layers=1, hidden=8).eval()
    inspection = dataclasses.replace(analyse(model, text, text, max_order=2), matches=matches)
    table = summary(inspection).splitlines()
    (followed_line, unfollowed_line) = [line for line in table if line.startswith(("followed", "unfollowed"))]
    assert followed_line.split()[4] == f"{matches[0].chance:.3f}" and "(no better than chance)" not in followed_line
    assert unfollowed_line.split(maxsplit=5)[4:] == ["1.000", "(no better than chance)"]
    assert (
        "(chance: the largest correlation any cell has with the feature shifted"
        in table[table.index(unfollowed_line) + 1]
    )
    cells = render(inspection, "tiny").split("<h2>2.")[1].split("<h2>3.")[0]
    assert "show the cell for followed" in cells and "show the cell for unfollowed" not in cells
    assert f"<td>{matches[1].correlation:+.3f}</td><td>1.000</td><td>no better than chance</td></tr>" in cells
    assert "<th>chance</th>" in cells and "a cell follows a feature only if it beats that" in cells


def test_a_cell_that_follows_nothing_is_said_to_follow_a_feature_one_time_in_20_at_most():
    """A best cell "followed" a feature when it beat the best cell against the feature shifted a quarter, a
    half and three quarters along the text: a cell that follows nothing beat those 3 one time in 4, so a
    line position a cell only drifted with was said to be followed. Slowly drifting cells (as a line cell
    drifts) against a line position of their own, unrelated to them, drawn 200 times: said to follow it
    one time in 20 or less, the chance of beating 19 shifts."""
    rng = np.random.default_rng(0)
    chars, said_to_follow = 2000, 0
    for _ in range(200):
        drift = np.cumsum(rng.standard_normal((1, chars, 16)), axis=1)
        states = np.tanh(drift / np.sqrt(chars) * 2)
        ends = np.cumsum(rng.integers(20, 400, chars))  # lines of 20 to 400 characters
        line = np.arange(chars) - np.concatenate([[0], ends])[np.searchsorted(ends, np.arange(chars), side="right")]
        (match,) = best_cells(states, {"position in the line": line.astype(float)})
        said_to_follow += match.follows
    assert said_to_follow <= 20, said_to_follow  # 3 shifts: 44 of 200


def test_correlations_say_how_many_characters_they_rest_on_and_when_too_few(monkeypatch):
    """On a tiny text the page and tables showed a cell following a feature at +-0.99 with no word of
    the 70 characters it rested on, too few for the best of many cells not to follow it by chance."""
    monkeypatch.setattr(analysis, "FEW_CORRELATED", 100)  # as few as that, to inspect fast
    torch.manual_seed(0)
    text = "the cat sat (on a mat)\nthe dog ran\n" * 2
    model = make_model(Vocab.from_counts(Counter(text)), layers=2, hidden=8).eval()
    for chars, few in ((len(text), True), (100, False)):
        inspected = (text * (chars // len(text) + 1))[:chars]
        inspection = analyse(model, inspected, text * 5, max_order=2)
        table, page = summary(inspection), render(inspection, "tiny")
        assert f"(tanh(c), over {chars:,} characters)" in table
        cells = page.split("<h2>2.")[1].split("<h2>3.")[0]
        assert f"over these {chars:,} characters" in cells
        warning = f"these correlations rest on {chars:,} characters, too few to mean much"
        assert (warning in table) == few and (warning in cells) == few
        assert ("the best of 16 cells follows even a feature of another text by chance" in table) == few


def test_inspect_says_when_the_text_is_in_the_text_the_ngram_was_fitted_on():
    """A chapter of hongloumeng's training split, inspected, showed the n-gram at 2.08 bpc against the LSTM's
    6.45, with no word that the n-gram had been fitted on that very chapter: its figure was recall. The
    share of the text's spans found in the n-gram's text is said, with what to inspect instead; a text
    the n-gram never saw says nothing of it."""
    torch.manual_seed(0)
    fitted, elsewhere = word_texts(600, 200)
    model = make_model(Vocab.from_counts(Counter(fitted + elsewhere)), layers=1, hidden=8).eval()
    named = {"fitted_on": "the run's training split", "seen_advice": "inspect the run's held-out text instead"}
    inside, half = fitted[1000:1400], fitted[2000:2200] + elsewhere[:200]
    for text, shares in ((inside, range(100, 101)), (half, range(40, 61)), (elsewhere[:400], None)):
        inspection = analyse(model, text, fitted, max_order=3, **named)
        table, page = summary(inspection), render(inspection, "tiny")
        said = re.search(
            r"(\d+)% of this text's 20-character spans are word for word in the run's training split", table
        )
        assert (said is not None) == (shares is not None), table
        if shares is not None:
            assert int(said[1]) in shares, said[0]
            note = next(note for note in inspection.notes if note.startswith(said[0]))
            assert note.endswith("; inspect the run's held-out text instead") and note in table.splitlines()
            assert f"Note: {html.escape(note)}." in page


def word_texts(*counts: int) -> list[str]:
    """Texts of `counts` words each, drawn from one list of 400 made-up words: each one new to the others
    (few of its 20-character spans are in them), all alike (an n-gram fitted on one predicts another)."""
    draw = random.Random(0)
    words = ["".join(draw.choice("abcdefghij") for _ in range(draw.randint(2, 7))) for _ in range(400)]
    return [" ".join(draw.choice(words) for _ in range(count)) + "\n" for count in counts]


BEHIND = re.compile(
    r"(?i)the model needs (\d\.\d{3}) more bits per character than the best n-gram: it has not yet learned"
)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_inspect_says_what_it_means_when_the_model_loses_to_the_n_gram_on_a_new_text(cell):
    """A run trained 200 steps showed the 7-gram at 1.904 bpc against the LSTM's 2.930 with no word of what
    that meant: a student could not tell an undertrained model from a weak kind of model. Where the model
    loses on a text the n-gram was not fitted on, the line under the headline says so, for any cell, and
    what to do; where it wins, the n-gram's figure is recall or the model never saw most of the text's
    characters, nothing is said of it."""
    torch.manual_seed(0)
    fitted, elsewhere = word_texts(600, 150)
    model = make_model(Vocab.from_counts(Counter(fitted + elsewhere)), cell=cell, layers=1, hidden=8).eval()
    advice = "train it longer or on more text (step 10)"
    loses = analyse(model, elsewhere, fitted, max_order=3, behind_advice=advice)  # untrained: near uniform
    cases = [(loses, "loses")]
    if cell == "lstm":  # the cases where nothing is said, once: they do not turn on the cell
        foreign = elsewhere.translate(str.maketrans("abcdef", "ABCDEF"))  # half of it in characters never seen
        cases += [
            (analyse(model, elsewhere, "a" * 2000, max_order=3, behind_advice=advice), "wins"),  # an n-gram of "a"
            (analyse(model, fitted[:800], fitted, max_order=3, behind_advice=advice), "recall"),  # its own text
            (analyse(model, foreign, fitted, max_order=3, behind_advice=advice), "foreign"),
        ]
    for inspection, case in cases:
        assert (inspection.surprise.bpc > inspection.ngram_bpc[inspection.ngram_order]) == (case != "wins")
        table, page = summary(inspection), render(inspection, "tiny")
        said = case == "loses"
        assert (BEHIND.search(table) is not None) == said and (BEHIND.search(page) is not None) == said, table
        assert any("recall, not prediction" in note for note in inspection.notes) == (case == "recall")
    line = summary(loses).splitlines()[1]  # under the headline that compares them
    assert BEHIND.match(line) and line.endswith(f"; {advice}") and cell.upper() not in line and "LSTM" not in line
    gap = float(BEHIND.match(line)[1])
    assert gap == pytest.approx(loses.surprise.bpc - loses.ngram_bpc[loses.ngram_order], abs=1e-3) and gap > 0
    headline, after = render(loses, "tiny").split("<p>", 2)[1:]
    assert "bits per character.</p>" in headline and html.unescape(after).startswith(line[0].upper() + line[1:] + ".")


def test_inspect_of_a_run_that_loses_to_the_n_gram_names_its_step_and_how_to_train_it_on(tmp_path):
    """What to do, from the run's record: the checkpoint's step and validation bpc, and the command that
    trains the run on."""
    torch.manual_seed(0)
    fitted, elsewhere = word_texts(600, 150)
    (tmp_path / "fitted.txt").write_text(fitted, encoding="utf-8")
    (tmp_path / "new.txt").write_text(elsewhere, encoding="utf-8")
    model = make_model(Vocab.from_counts(Counter(fitted + elsewhere)), layers=1, hidden=8).eval()
    run = run_of(model, tmp_path / "words")
    result = cli("inspect", str(run), "new.txt", "--train-text", "fitted.txt", "--output", "new.html")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()  # the n-gram's progress bar (stderr) before the headline, in click's runner
    line = lines[next(k for k, line in enumerate(lines) if "bits per character; best n-gram" in line) + 1]
    assert BEHIND.match(line), result.output
    go_on = f"charlm train --resume {typed(str(run))} --max-time DURATION"
    assert line.endswith(
        f"; train it longer or on more text (this checkpoint: step 10, 2.500 bpc on validation; to go on: {go_on})"
    )
    assert html.escape(line[1:]) in (tmp_path / "new.html").read_text(encoding="utf-8")


def test_the_headline_and_the_features_count_one_text_the_same_way():
    """On a 3,000-character file the headline said "on 2,999 characters" (the bits are over those the
    first predicts) and the feature table "over 3,000 characters": both now say the text's length, the
    headline with how many of them were scored, on the page as in the tables."""
    torch.manual_seed(0)
    text = "the cat sat (on a mat)\nthe dog ran\n" * 3
    model = make_model(Vocab.from_counts(Counter(text)), layers=1, hidden=8).eval()
    inspection = analyse(model, text, text, max_order=2)
    table, page = summary(inspection), render(inspection, "tiny")
    said = f"on {len(text):,} characters ({len(text) - 1:,} of them scored): "
    assert said in table.splitlines()[0] and f"over {len(text):,} characters)" in table
    assert said + "<b>" in page and f"over these {len(text):,} characters" in page


def test_inspect_reads_the_text_through_the_model_once_for_the_trace_and_the_surprises():
    """`analyse` ran the model over the text twice, once for the trace (states, gates) and once for the
    surprises (bits, guesses), though both are the one head's numbers on the same top layer's outputs: one
    pass (one embedding of the text) feeds both, and the page and tables are the two passes' byte for byte."""
    torch.manual_seed(0)
    text = "the cat sat (on a mat)\nthe dog ran\n" * 3
    model = make_model(Vocab.from_counts(Counter(text)), layers=2, hidden=8).eval()
    passes = []
    model.embed.register_forward_hook(lambda module, inputs, output: passes.append(tuple(inputs[0].shape)))
    inspection = analyse(model, text, text, max_order=2)
    assert passes == [(len(text),)], passes
    two_passes = dataclasses.replace(inspection, surprise=surprise(model, text, context="", warn=False))
    assert render(inspection, "tiny") == render(two_passes, "tiny")
    assert summary(inspection) == summary(two_passes)


def test_a_trace_alone_decodes_no_guesses(monkeypatch):
    """`trace` reads through `trace_and_surprise`, whose surprises it drops: it built their guesses too, a
    list per token, for nothing. It asks for none; `trace_and_surprise` still gives its `top` of them."""
    model = make_model(Vocab.from_counts(Counter("abc \n")), layers=1, hidden=8).eval()
    made = []
    monkeypatch.setattr(tracing, "guesses", lambda *args: made.append(args) or scoring.guesses(*args))
    tracing.trace(model, "abc ab")
    assert made == []
    _, surprises = tracing.trace_and_surprise(model, "abc ab", top=2)
    assert len(made) == 1 and [len(guessed) for guessed in surprises.top] == [2] * 6


def test_gate_saturation_counts_shut_and_open_gates_per_cell():
    gates = np.full((1, 4, 2), 0.5)
    gates[0, :3, 0] = 0.05  # cell 0 shut three characters of four
    gates[0, :, 1] = 0.95  # cell 1 open throughout
    made = Trace("gru", list("abcd"), np.zeros(4), np.zeros(4), None, gates, None, {"reset": gates, "new": gates})
    found = saturation(made)
    assert list(found) == ["reset"]  # `new` is a tanh: not a gate that saturates at 0 and 1
    assert found["reset"][0].tolist() == [[0.75, 0.0], [0.0, 1.0]]


def test_the_class_table_says_what_its_bits_saved_are_and_which_way_they_point():
    """The page's class table had a "bits saved" column of -0.815 and +0.477 with no word of what was
    saved, per what, or which model a negative one favours: a learner could not read it."""
    torch.manual_seed(0)
    text = "the cat sat (on a mat)\nthe dog ran\n" * 3
    model = make_model(Vocab.from_counts(Counter(text)), layers=1, hidden=8).eval()
    classes = render(analyse(model, text, text, max_order=2), "tiny").split("<h2>4.")[1]
    assert "<th>bits saved</th>" in classes
    said = " ".join(html.unescape(classes.split("</p>")[0]).split())
    assert "Bits saved: the n-gram's bits per character on that class minus the LSTM's (above 0: the LSTM " in said
    assert "below 0: the n-gram does" in said


def test_the_terminal_class_table_says_what_saved_is_and_which_way_it_points():
    """The terminal's class table headed a column "saved" (-0.985, +0.103) with no word of what was saved
    or which model a negative figure favours; only the page said it."""
    torch.manual_seed(0)
    text = "the cat sat (on a mat)\nthe dog ran\n" * 3
    model = make_model(Vocab.from_counts(Counter(text)), layers=1, hidden=8).eval()
    tables = summary(analyse(model, text, text, max_order=2)).split("\n\n")
    classes = next(block for block in tables if block.startswith("class ")).splitlines()
    assert classes[0].split()[-1] == "saved"
    said = classes[-1]
    assert said.startswith("(saved: the n-gram's bits per character on the class minus the LSTM's") and said.endswith(
        ")"
    )
    assert "above 0: the LSTM needs fewer bits" in said and "below 0: the n-gram does" in said


def test_the_page_gives_the_n_grams_figure_its_unit_and_says_what_an_order_is():
    """The page's headline gave the n-gram as "the best n-gram (order 7) 1.907": a figure with no unit
    beside the LSTM's "bits per character", and an order nothing on the page explained."""
    torch.manual_seed(0)
    text = "the cat sat (on a mat)\nthe dog ran\n" * 3
    model = make_model(Vocab.from_counts(Counter(text)), layers=1, hidden=8).eval()
    inspection = analyse(model, text, text * 5, max_order=3)
    for order, context in ((3, "the 2 before it"), (2, "the one before it"), (1, "how often it occurs alone")):
        headline = " ".join(render(dataclasses.replace(inspection, ngram_order=order), "tiny").split("<p>")[1].split())
        bpc = inspection.ngram_bpc[order]
        said = f"the best n-gram model (order {order}: each character predicted from {context}) {bpc:.3f} bits per"
        assert said in headline, headline
    classes = " ".join(render(inspection, "tiny").split("<h2>4.")[1].split("</p>")[0].split())
    assert "an n-gram model of order n predicts each character from the n - 1 characters before it" in classes


def test_character_classes():
    classes = {c: char_class(c) for c in "a Z\n,7林。“…!\t"}
    assert classes == {
        "a": "letters",
        " ": "spaces",
        "Z": "letters",
        "\n": "newline",
        ",": "punctuation",
        "7": "digits",
        "林": "CJK characters",
        "。": "CJK punctuation",
        "“": "punctuation",
        "…": "punctuation",
        "!": "punctuation",
        "\t": "spaces",
    }


def test_english_typographic_punctuation_is_punctuation_and_chinese_punctuation_is_cjk():
    """General Punctuation (U+2000-U+206F) is not CJK: an English novel's dashes, curly quotes and
    ellipses are its punctuation; Chinese marks (the CJK block and the full-width forms) stay CJK."""
    english = "\u2014\u2013\u2018\u2019\u201c\u201d\u2026\u2022\u2032\u20ac"  # —–‘’“”…•′€
    assert {c: char_class(c) for c in english} == dict.fromkeys(english, "punctuation")
    chinese = "，。、「」『』：；！？《》（）〈〉【】"
    assert {c: char_class(c) for c in chinese} == dict.fromkeys(chinese, "CJK punctuation")
    assert char_class("\u3000") == "spaces" and char_class("\uff21") == "letters"  # ideographic space, Ａ


def test_kneser_ney_gives_distributions_that_sum_to_one():
    rng = random.Random(0)
    text = "".join(rng.choice(["the cat ", "a hat ", "that ", "\n"]) for _ in range(400))
    vocab = sorted(set(text)) + ["q"]  # q never occurs: it still gets a little probability
    model = KneserNey(text, len(vocab), max_order=4)
    for history in ["", "t", "th", "the", "ca", "qqq", "t\nq"]:
        for order in (1, 2, 3, 4):
            total = sum(model.probability(history[-(order - 1) :] if order > 1 else "", c, order) for c in vocab)
            assert total == pytest.approx(1.0, abs=1e-9), (history, order)
    assert model.probability("th", "q", 3) > 0
    held = "the cat a hat that\n" * 3
    bpc = [model.bits(held, order).mean() for order in (1, 2, 3, 4)]
    assert bpc[0] > bpc[1] > bpc[2] and min(bpc) < 1.2  # longer histories help on this text


def test_modified_kneser_ney_discounts_follow_chen_and_goodman():
    n1, n2, n3, n4 = 100, 40, 20, 10
    y = n1 / (n1 + 2 * n2)
    expected = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    assert modified_discounts(Counter({1: n1, 2: n2, 3: n3, 4: n4})) == pytest.approx(expected)
    assert modified_discounts(Counter({1: 5})) == (0.75, 0.75, 0.75)  # too few counts to estimate


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_gru_and_rnn_models_are_inspected_with_what_they_have(cell):
    torch.manual_seed(0)
    text = "the cat sat (on a mat)\nthe dog ran\n" * 3
    model = make_model(Vocab.from_counts(Counter(text)), cell=cell, layers=2, hidden=8).eval()
    inspection = analyse(model, text, text * 5, max_order=3)
    assert inspection.state_name == "h" and inspection.states.shape == (2, len(text), 8)
    assert any("no cell state" in note for note in inspection.notes)
    if cell == "gru":
        assert list(inspection.saturation) == ["reset", "update"]
    else:
        assert inspection.saturation == {} and any("no gates" in note for note in inspection.notes)
    page = render(inspection, "tiny")
    assert "no cell state" in page and ("no gates" in page) == (cell == "rnn")


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_a_gru_or_rnn_page_says_what_its_gates_do_not_an_lstms(cell):
    """A GRU's page told what a forget gate that stays open does, a gate it has not, and nothing of its
    update gate; the n-gram section of both said "an LSTM's context", and the note "a RNN"."""
    torch.manual_seed(0)
    text = "the cat sat (on a mat)\nthe dog ran\n" * 3
    model = make_model(Vocab.from_counts(Counter(text)), cell=cell, layers=1, hidden=8).eval()
    page = render(analyse(model, text, text * 5, max_order=3), "tiny")
    gates = page.split("<h2>3. Gates</h2>")[1].split("<h2>")[0]
    assert "forget gate that stays open" not in gates
    if cell == "gru":
        assert "update gate that stays open keeps the state" in gates and "reset gate" in gates
    else:
        assert "an RNN has no cell state" in page
    assert "LSTM" not in page and f"the {cell.upper()}'s context has no fixed length" in page


class TextOf(HTMLParser):
    """The text content of the element with a given id, as a browser would give it."""

    def __init__(self, element_id: str):
        super().__init__()
        self.element_id, self.depth, self.parts = element_id, 0, []

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += 1
        elif dict(attrs).get("id") == self.element_id:
            self.depth = 1

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.parts.append(data)

    @classmethod
    def read(cls, page: str, element_id: str) -> str:
        parser = cls(element_id)
        parser.feed(page)
        return "".join(parser.parts)


def hostile_page(tmp_path):
    torch.manual_seed(0)
    model = make_model(Vocab.from_counts(Counter(HOSTILE)), hidden=8).eval()
    page = render(analyse(model, HOSTILE, HOSTILE * 3, max_order=3), "<i>title</i> & co")
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    return page, path


def test_the_page_escapes_every_character_and_keeps_the_text_intact(tmp_path):
    page, _ = hostile_page(tmp_path)
    assert "<script>alert" not in page and "<b>bold" not in page and "<i>title" not in page
    assert TextOf.read(page, "surprise") == HOSTILE  # every character, in order, escaped and intact
    assert TextOf.read(page, "cells") == HOSTILE
    data = json.loads(TextOf.read(page, "data"))
    assert "".join(data["tokens"]) == HOSTILE
    assert page.count("<script") == 2  # the data block and the page's own script, nothing from the text
    assert "http" not in page and " src=" not in page  # self-contained: opens offline


def test_the_page_opens_in_headless_chromium_and_shows_the_text(tmp_path, browser):
    _, path = hostile_page(tmp_path)
    browser.set_window_size(1200, 1600)
    opened(browser, path)  # the page's script ran to its end without an error
    dom = browser.page_source
    assert TextOf.read(dom, "surprise") == HOSTILE and TextOf.read(dom, "cells") == HOSTILE
    assert "rgba(" in dom.split('id="cells"')[1][:400]  # the script coloured the cells view
    shot = browser.get_screenshot_as_png()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000


def test_inspect_command_writes_the_page_and_prints_the_tables(fox_file, tmp_path):
    assert cli("train", str(fox_file), *TINY_ARGS, "--max-steps", "10", "--out", "fox").exit_code == 0
    result = cli("inspect", "fox", str(fox_file), "--output", "fox.html", "--max-chars", "300", "--quiet")
    assert result.exit_code == 0, result.output
    # fox.txt is the run's corpus, so the n-gram was fitted on the text inspected: said, with what to inspect
    in_training = "100% of this text's 20-character spans are word for word in the run's training split, which"
    advice = "the model trained on it too: inspect the run's held-out text instead (charlm inspect fox --held-out)"
    assert result.output.splitlines()[0].startswith(in_training) and result.output.splitlines()[0].endswith(advice)
    assert result.output.splitlines()[1:] == ["wrote fox.html"]
    page = (tmp_path / "fox.html").read_text(encoding="utf-8")
    assert TextOf.read(page, "surprise") == fox_file.read_text()[:300]
    result = cli("inspect", "fox", "--held-out", "--output", "reports/held.html", "--quiet")  # a new folder
    assert result.exit_code == 0, result.output  # was `No such file or directory` once the work was done
    assert "(held out)" in (tmp_path / "reports/held.html").read_text(encoding="utf-8")
    repeats = "the run's held-out text repeats its training text, so neither figure is a prediction"
    assert result.output.splitlines()[0].startswith(in_training) and result.output.splitlines()[0].endswith(repeats)
    shown = cli("inspect", str(fox_file), "--output", "latest.html", "--max-chars", "200")  # the latest run
    assert shown.exit_code == 0, shown.output
    for heading in ("bits per character", "feature", "gate", "class", "n-gram order", "hardest spans"):
        assert heading in shown.output
    # each hardest span as its text, found in the file, not as offsets ("33-53") a reader must count to
    spans = shown.output.split("hardest spans (most bits per character first):\n")[1].split("\n\n")[0].splitlines()
    assert spans and all(ast.literal_eval(line.split(" bpc  ", 1)[1]) in fox_file.read_text() for line in spans)


def test_an_inspect_page_for_a_full_disk_keeps_the_earlier_page_and_says_what_to_do(fox_file, tmp_path):
    """On a full disk (a file size limit here) the page was cut short where the earlier one stood, after
    the minutes of inspecting, and the error was `Error: file: File too large`."""
    assert cli("train", str(fox_file), *TINY_ARGS, "--max-steps", "5", "--out", "fox").exit_code == 0
    args = ["inspect", "fox", str(fox_file), "--output", "fox.html", "--max-chars", "100", "--quiet"]
    assert cli(*args).exit_code == 0
    before = (tmp_path / "fox.html").read_bytes()
    with file_size_limit(4000):
        result = cli(*args)
    assert_one_line_error(result, "--output fox.html: cannot write (File too large); free space on its disk")
    assert (tmp_path / "fox.html").read_bytes() == before and not list(tmp_path.glob(".fox.html*"))


def test_a_second_inspect_into_the_same_output_says_it_replaced_the_first(fox_file, tmp_path):
    """`charlm inspect a.txt`, then `charlm inspect b.txt`, replaced a.txt's report.html without a word."""
    run_of(make_model("".join(sorted(set(fox_file.read_text())))), Path("fox"))
    args = ["inspect", "fox", str(fox_file), "--train-text", str(fox_file), "--quiet", "--max-chars"]
    first = cli(*args, "40")  # above its last line, that the n-gram was fitted on the text inspected
    assert first.exit_code == 0 and first.output.splitlines()[-1] == "wrote report.html", first.output
    second = cli(*args, "50")
    assert second.exit_code == 0, second.output
    assert second.output.splitlines()[-1] == (
        "wrote report.html, replacing the earlier report.html (give --output another name to keep both)"
    )
    assert TextOf.read((tmp_path / "report.html").read_text(encoding="utf-8"), "surprise") == fox_file.read_text()[:50]


def test_inspecting_a_sentencepiece_run_names_the_run_and_the_model_to_give(fox_file, tmp_path):
    """The refusal named neither the run nor what to give instead, and came after the files and the
    run's corpus were read (minutes, for --held-out on a novel)."""
    pieces = PieceVocab(train_model([fox_file.read_text() * 20], "char", 300))
    run_of(make_model(pieces), Path("pieces"))
    result = cli("inspect", "pieces", str(fox_file), "--train-text", str(fox_file), "--quiet")
    assert_one_line_error(result, "pieces/best.pt reads sentencepiece pieces", "--tokenizer char")


@pytest.mark.slow
def test_two_inspects_at_once_into_one_output_leave_one_whole_page(fox_file, tmp_path):
    """Two real processes write the same --output at once: each writes a file of its own beside it and
    renames it into place, so the page is one of the two, whole, and nothing else is left there."""
    run_of(make_model("".join(sorted(set(fox_file.read_text())))), Path("fox"))
    command = ["inspect", "fox", str(fox_file), "--train-text", str(fox_file)]
    lengths = (300, 301)
    started = [start_charlm(*command, "--quiet", "--max-chars", str(n)) for n in lengths]  # each torch imported
    for process in started:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (out, err)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.rstrip().endswith("</html>")
    assert TextOf.read(page, "surprise") in [fox_file.read_text()[:n] for n in lengths]
    assert sorted(path.name for path in tmp_path.iterdir() if "report" in path.name) == ["report.html"]


def test_inspect_command_errors_are_one_line(fox_file, tmp_path):
    assert cli("train", str(fox_file), *TINY_ARGS, "--max-steps", "5", "--out", "fox").exit_code == 0
    assert_one_line_error(cli("inspect", "fox", "missing.txt"), "missing.txt")
    assert_one_line_error(cli("inspect", "fox", str(fox_file), "extra"), "[RUN] FILE")
    assert_one_line_error(cli("inspect", "fox", "a", "--held-out"), "[RUN] --held-out")
    assert_one_line_error(cli("inspect", "fox"), "fox is a run: give a FILE to inspect after it, or --held-out")
    # a run's folder too, which was read as a folder of texts: `holds no .txt files`
    assert_one_line_error(cli("inspect", "checkpoints/fox"), "checkpoints/fox is a run: give a FILE")
    (tmp_path / "empty.txt").write_text("")
    assert_one_line_error(cli("inspect", "fox", "empty.txt"), "empty.txt: file is empty; give a file with text")
    fox_file.rename(tmp_path / "moved.txt")  # the run's training text is gone
    other = tmp_path / "other.txt"
    other.write_text("the lazy dog\n" * 20, encoding="utf-8")
    assert_one_line_error(cli("inspect", "fox", str(other)), "--train-text")
    fine = cli("inspect", "fox", str(other), "--train-text", str(tmp_path / "moved.txt"), "--quiet")
    assert fine.exit_code == 0, fine.output


def test_inspect_of_a_name_that_is_neither_a_file_nor_a_run_names_it():
    """`charlm inspect nope`, where no run was trained yet, said "no runs under checkpoints/ ...", which does
    not mention nope (taken as FILE, with the latest run to inspect it); with runs, that nope is no file. It
    is neither a file nor a run: said so of it, alike with runs and without."""
    says = (
        f"nope: no such file or folder to inspect, nor a run or corpus of that name; check the path (relative to "
        f"{Path.cwd()}), or name a run (`charlm runs` lists them)"
    )
    assert_one_line_error(cli("inspect", "nope"), says)
    run_of(make_model("abc"), runs.CHECKPOINT_ROOT / "fox")
    assert_one_line_error(cli("inspect", "nope"), says)


def test_inspect_reads_a_gbk_file_with_encoding_as_eval_does(tmp_path):
    """A GBK chapter was refused with `pass --encoding gb18030`, an option inspect did not have; and it
    read FILE in the run's --encoding, so a GBK run could not inspect a UTF-8 chapter (`not valid
    gb18030 ...; convert it to UTF-8`, which it was)."""
    text = "小猫在院子里晒太阳，小狗在门口睡觉。\n老鼠说：“今天真好！”\n" * 20
    (tmp_path / "utf8.txt").write_text(text, encoding="utf-8")
    (tmp_path / "gbk.txt").write_bytes(text.encode("gb18030"))
    for corpus, encoding in (("utf8.txt", "utf-8"), ("gbk.txt", "gb18030")):
        trained = cli("train", corpus, *TINY_ARGS, "--max-steps", "3", "--encoding", encoding, "--out", encoding)
        assert trained.exit_code == 0, trained.output
        assert_one_line_error(cli("inspect", encoding, "gbk.txt"), "gbk.txt: not valid utf-8", "--encoding gb18030")
        for file, given in (("utf8.txt", []), ("gbk.txt", ["--encoding", "gb18030"])):
            result = cli("inspect", encoding, file, *given, "--output", "page.html", "--quiet")
            assert result.exit_code == 0, result.output
            assert TextOf.read((tmp_path / "page.html").read_text(encoding="utf-8"), "surprise") == text
    assert_one_line_error(cli("inspect", "utf-8", "utf8.txt", "--encoding", "gbk2"), "--encoding")


def quoted_text(chars: int, seed: int) -> str:
    """Sentences, half of them ending in quoted speech with words of its own, a quarter in brackets."""
    rng = random.Random(seed)
    plain = ["the", "man", "and", "a", "dog", "went", "to", "town", "on", "that", "day", "then", "home"]
    spoken = ["yes", "we", "must", "go", "now", "quick", "see", "it", "why", "so", "dear"]
    parts, size = [], 0
    while size < chars:
        sentence = [rng.choice(plain) for _ in range(rng.randint(2, 5))]
        kind = rng.random()
        if kind < 0.5:
            sentence += ["said", '"' + " ".join(rng.choice(spoken) for _ in range(rng.randint(2, 6))) + '"']
        elif kind < 0.75:
            sentence += ["(" + " ".join(rng.choice(plain) for _ in range(rng.randint(1, 4))) + ")"]
        parts.append(" ".join(sentence) + ("\n" if rng.random() < 0.3 else " "))
        size += len(parts[-1])
    return "".join(parts)


@pytest.mark.slow
def test_a_briefly_trained_model_has_a_cell_that_tracks_quotes(tmp_path):
    """Measured with 1x64 LSTMs, 300 steps: the best quote cell correlates +0.82, +0.82 and -0.82 (seeds
    1337, 1, 2; docs/inspect.md, "Measured"); untrained ones of that size reach 0.49, 0.37, 0.35 by chance."""
    corpus = tmp_path / "quotes.txt"
    corpus.write_text(quoted_text(60_000, seed=0), encoding="utf-8")
    options = {"layers": 1, "hidden": 64, "seq_len": 50, "batch_size": 16, "dropout": 0.0, "warmup_steps": 20}
    model = charlm.train(
        corpus, out="quotes", max_steps=300, max_time=None, quiet=True, device="cpu", precision="fp32", **options
    )
    held = quoted_text(3000, seed=1)
    torch.manual_seed(0)
    untrained = make_model(model.vocab, layers=1, hidden=64).eval()
    for trained, bound in ((model, 0.7), (untrained, 0.6)):
        _, states = cell_view(trace(trained, held, probs=False))
        (quotes,) = best_cells(states, {"inside quotes": features(held)["inside quotes"]})
        assert (abs(quotes.correlation) >= bound) == (trained is model), (quotes, bound)


def test_the_page_carries_the_gates_of_each_cell_the_features_table_names(tmp_path):
    """The page showed a cell's tanh(c) but none of its gates, so the story docs/how-it-works.md tells (the
    line cell's forget gate near 0 at each newline) could not be seen on it; a hardest span's newlines
    read ' / ', which a text's own slashes also read."""
    page, _ = hostile_page(tmp_path)
    data = json.loads(TextOf.read(page, "data"))
    torch.manual_seed(0)
    model = make_model(Vocab.from_counts(Counter(HOSTILE)), hidden=8).eval()
    inspection = analyse(model, HOSTILE, HOSTILE * 3, max_order=3)
    named = {f"{m.layer},{m.cell}" for m in inspection.matches if m.correlation is not None}
    assert named and set(data["gates"]) == named
    labels = {"input": "input gate", "forget": "forget gate", "candidate": "candidate", "output": "output gate"}
    for key, gates in data["gates"].items():
        layer, cell = map(int, key.split(","))
        assert list(gates) == list(labels.values())
        for name, label in labels.items():
            shown = np.frombuffer(base64.b64decode(gates[label]), dtype=np.int8) / 127
            assert np.allclose(shown, inspection.trace.gates[name][layer, :, cell], atol=0.5 / 127 + 1e-6)
    assert "its gates there" in page
    spans = page.split("<ol>")[1].split("</ol>")[0]  # the hardest spans: newlines marked as the views mark them
    assert " / " not in spans and "\u21b5" in spans


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=["double", "bfloat16"])
def test_a_model_moved_to_another_float_type_traces_as_it_samples(model, dtype):
    """model.double() (or .bfloat16()) samples and scores, but trace ran each layer in a float32 copy of it
    and failed inside torch ('RNN input dtype ... does not match weight dtype'): the copy is of its type."""
    text = "bad cafe\nhead"
    expected = trace(model, text)
    seen = trace(model.to(dtype), text)
    tolerance = 1e-5 if dtype == torch.float64 else 0.1
    assert np.allclose(seen.bits, expected.bits, atol=tolerance * 10)
    assert np.allclose(seen.hidden, expected.hidden, atol=tolerance)
    assert np.allclose(seen.cells, expected.cells, atol=tolerance * 10)


def test_a_trace_or_surprise_shown_in_a_notebook_is_a_line_not_every_number(model):
    """A notebook cell ending in surprise(model, text) showed 440 KB on one line for 3,000 characters
    (every guess of every character), and a trace 171 lines of arrays: what they hold, in one line."""
    text = "bad cafe\nheadd " * 200
    seen, traced = surprise(model, text), trace(model, text)
    for shown, kind in ((repr(seen), "Surprise"), (repr(traced), "Trace")):
        assert shown.startswith(f"{kind}(") and "3,000 tokens 'bad cafe\\nheadd bad" in shown and "\n" not in shown
        assert f"{seen.bpc:.3f} bpc" in shown and len(shown) < 300
    assert "5 guesses each" in repr(seen)
    assert "hidden (2, 3000, 16)" in repr(traced) and "gates input, forget, candidate, output" in repr(traced)


def test_surprise_colours_span_the_texts_own_range_and_say_it(tmp_path):
    surprise_range = sys.modules[render.__module__].surprise_range  # the page module, wherever it lives

    assert surprise_range(np.array([9.0, 10.0, 12.0, np.nan])) == (9.0, pytest.approx(11.96))
    assert surprise_range(np.array([3.0, 3.0])) == (3.0, 4.0)  # at least a bit wide
    page, _ = hostile_page(tmp_path)
    low, high = surprise_range(np.array([b for b in json.loads(TextOf.read(page, "data"))["bits"] if b is not None]))
    assert f"white {low:.1f}" in page and f"{high:.1f} bits and more" in page and "99th percentile" in page


def test_a_missing_file_is_refused_before_the_runs_corpus_is_prepared(fox_file, monkeypatch):
    """`charlm inspect RUN typo.txt` prepared (or checked) the run's corpus, minutes for enwik8, before
    saying the file was not there."""
    run = str(run_of(make_model("".join(sorted(set(fox_file.read_text())))), Path("fox")))
    prepared = []

    def run_corpus(*args, **options):
        prepared.append(args)
        raise CharLMError("the corpus was prepared")

    monkeypatch.setattr(inspection_run, "run_corpus", run_corpus)
    for extra in ([], ["--train-text", "nope.txt"]):
        file = str(fox_file) if extra else "nope.txt"
        assert_one_line_error(cli("inspect", run, file, *extra, "--output", "page.html"), "nope.txt: no such file")
    assert not prepared


def test_the_ngram_baseline_is_fitted_on_a_capped_training_text_and_the_page_says_so(fox_file, tmp_path, monkeypatch):
    """A run trained on a 90M-character text: inspecting 5,000 characters decoded its whole training
    split into one string (1.8 GB, 40 s before the n-gram bar) and fitted every order on all of it. Now
    the first MAX_TRAIN_CHARS are decoded and fitted, and the page and tables say so; a small run fits all."""
    assert cli("train", str(fox_file), *TINY_ARGS, "--max-steps", "5", "--out", "fox").exit_code == 0
    decoded, fitted = [], []
    decode = Vocab.decode
    monkeypatch.setattr(Vocab, "decode", lambda self, ids: decoded.append(len(ids)) or decode(self, ids))

    class Recorded(KneserNey):
        def __init__(self, text, *args, **options):
            fitted.append(text)
            super().__init__(text, *args, **options)

    monkeypatch.setattr("charlm.inspection.analysis.KneserNey", Recorded)
    whole, _ = inspection_run.inspect_run("fox", str(fox_file), max_chars=100)
    split = fitted[-1]
    assert whole.ngram_fitted_on == "the run's training split" and len(split) > 600
    monkeypatch.setattr(inspection_run, "MAX_TRAIN_CHARS", 500)
    capped, _ = inspection_run.inspect_run("fox", str(fox_file), max_chars=100)
    assert fitted[-1] == split[:500] and max(decoded[-2:]) <= 500  # no whole-split decode
    said = f"the first 500 characters of the run's training split ({len(split):,} characters)"
    assert capped.ngram_fitted_on == said and said in summary(capped) and html.escape(said) in render(capped, "fox")
    from_file, _ = inspection_run.inspect_run("fox", str(fox_file), max_chars=100, train_text=str(fox_file))
    assert fitted[-1] == fox_file.read_text()[:500]
    assert from_file.ngram_fitted_on == f"the first 500 characters of {fox_file}"


def opened(driver, path: Path) -> None:
    """The page at `path` in the browser, its script run to its end."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.as_uri())
    WebDriverWait(driver, PAGE_WAIT, poll_frequency=PAGE_POLL).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "yes"
    )


@pytest.mark.slow
def test_the_page_is_named_for_a_screen_reader(tmp_path, browser):
    """A screen reader heard 'combo box', 'spin button', '<', '>' and ten buttons all 'show' with nothing
    to tell them apart; the two text views were no region, and their text (a Chinese one too) was read
    as the page's English."""
    _, path = hostile_page(tmp_path)
    opened(browser, path)
    nodes = browser.execute_cdp_cmd("Accessibility.getFullAXTree", {})["nodes"]
    shown = [(node["role"]["value"], node.get("name", {}).get("value", "")) for node in nodes if not node["ignored"]]
    controls = [(role, name) for role, name in shown if role in CONTROL_ROLES]
    assert len(controls) > 8 and all(name for _, name in controls), controls
    buttons = [name for role, name in controls if role == "button"]
    assert len(set(buttons)) == len(buttons), buttons
    assert "show hardest span 1 in the text" in buttons
    assert any(name.startswith("show the cell for ") for name in buttons), buttons  # a feature beats chance
    regions = [name for role, name in shown if role == "region"]
    assert regions == ["Surprise: the text coloured by bits", "Cells: the text coloured by the chosen cell"]
    assert browser.execute_script("return ['surprise', 'cells'].map((id) => document.getElementById(id).lang)") == [
        "",
        "",
    ]


@pytest.mark.slow
def test_a_characters_guesses_are_read_out_as_the_keys_reach_it(tmp_path, browser):
    """The guesses the arrow keys show beside a character were drawn only: a screen reader said nothing
    of them. A polite live region now says what the hover shows, its characters named (space, newline)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page, path = hostile_page(tmp_path)
    data = json.loads(TextOf.read(page, "data"))
    opened(browser, path)
    region = browser.find_element("css selector", "[aria-live]:not(#cell-label)")
    assert region.get_attribute("aria-live") == "polite" and region.get_attribute("textContent") == ""
    browser.execute_script("document.getElementById('surprise').focus()")
    said = []
    for _ in range(3):  # onto characters 0, 1 and 2 ("He" and a space)
        ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
        said.append(region.get_attribute("textContent"))
    assert len(set(said)) == 3, said
    assert said[0].startswith("H: not predicted")
    first_guess = {" ": "space", "\n": "newline"}.get(data["top"][1][0][0], data["top"][1][0][0])
    assert said[1].startswith(f"e: {data['bits'][1]:.2f} bits; {first_guess} ") and "%" in said[1], said[1]
    assert said[2].startswith("space: "), said[2]


@pytest.mark.slow
def test_the_page_fits_a_phones_width(tmp_path, browser):
    """At a phone's 390 pixels the gate and class tables pushed the page 610 pixels wide, so the whole
    page, text views included, scrolled sideways; and without a viewport a phone laid it out at 980."""
    page, path = hostile_page(tmp_path)
    assert '<meta name="viewport" content="width=device-width' in page
    browser.set_window_size(390, 844)
    opened(browser, path)
    assert browser.execute_script("return document.documentElement.scrollWidth <= innerWidth")


# test_serve's contrast check (each text's WCAG ratio against what is behind it: those under 4.5, and the
# page's luminance), over this page's texts too: headings, paragraphs, tables, the text views' own colour.
CONTRASTS = SERVE_CONTRASTS.replace(
    'querySelectorAll("h1, label,', 'querySelectorAll("h1, h2, p, li, td, th, code, .text, label,'
)
assert CONTRASTS != SERVE_CONTRASTS


@pytest.mark.slow
def test_the_page_is_dark_in_the_dark_and_every_text_readable(tmp_path, browser):
    """With the system's dark setting the page stayed a glaring white; now it is dark, its text readable,
    and the text views stay white, which their colour legends (white to red, blue to orange) are on."""
    _, path = hostile_page(tmp_path)
    opened(browser, path)
    light, page = browser.execute_script(CONTRASTS)
    assert not light and page > 0.9, light
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    dark, page = browser.execute_script(CONTRASTS)
    assert not dark and page < 0.05, (dark, page)
    views = browser.execute_script(
        "return ['surprise', 'cells'].map((id) => getComputedStyle(document.getElementById(id)).backgroundColor)"
    )
    assert views == ["rgb(255, 255, 255)"] * 2


def contrast(foreground: tuple[float, ...], background: tuple[float, ...]) -> float:
    """WCAG's contrast ratio of two sRGB colours (0-255 channels)."""

    def luminance(colour: tuple[float, ...]) -> float:
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in colour[:3])]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def on_white(css: str) -> tuple[float, ...]:
    """A CSS rgb()/rgba() colour as seen over the text views' white."""
    r, g, b, *alpha = (float(v) for v in re.findall(r"[\d.]+", css))
    a = alpha[0] if alpha else 1.0
    return tuple(a * c + (1 - a) * 255 for c in (r, g, b))


@pytest.mark.slow
def test_a_newlines_mark_is_as_readable_as_the_characters_on_its_colour(tmp_path, browser):
    """A surprising newline showed as an empty red box: its mark, a light grey ↵, vanished on the red
    (and on a cell's blue or orange) that the letters beside it are read on."""
    _, path = hostile_page(tmp_path)
    opened(browser, path)
    marks = browser.execute_script(
        "return [...document.querySelectorAll('#surprise span.nl, #cells span.nl')].map((s) =>"
        " [s.parentElement.id, s.style.backgroundColor, getComputedStyle(s, '::before').color, getComputedStyle(s).color])"
    )
    assert len(marks) == 2 * HOSTILE.count("\n")
    faint = [
        (view, background, round(contrast(on_white(mark), on_white(background)), 2))
        for view, background, mark, text in marks
        if contrast(on_white(mark), on_white(background)) < contrast(on_white(text), on_white(background)) - 0.01
    ]
    assert not faint, faint


@pytest.mark.slow
def test_the_page_works_from_the_keyboard_alone(tmp_path, browser):
    """A hardest span's "show" outlined its first character only, and a character's guesses and a cell's
    value were shown on hovering alone: a keyboard could not reach them. Now, keys only: "show" underlines
    the whole span and shows its first character's guesses, the arrow keys step through the text with
    them, and the layer and cell are picked with the keys."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page, path = hostile_page(tmp_path)
    data = json.loads(TextOf.read(page, "data"))
    opened(browser, path)

    def press(*keys: str) -> None:
        ActionChains(browser).send_keys(*keys).perform()

    def active() -> str:
        return browser.execute_script("return document.activeElement.id || document.activeElement.outerHTML")

    def tip() -> list[str]:
        shown = browser.find_element("id", "tip")
        return [row.text for row in shown.find_elements("tag name", "tr")] if shown.is_displayed() else []

    press(Keys.TAB)  # the first control: the hardest span's "show"
    assert "show hardest span 1" in active()
    press(Keys.ENTER)
    bits = np.array([np.nan if b is None else b for b in data["bits"]])
    start, end, _ = hardest_spans(Surprise(data["tokens"], bits, data["top"]))[0]
    marked = browser.execute_script(
        "return [...document.getElementById('surprise').children].flatMap((s, i) => s.classList.contains('mark') ? [i] : [])"
    )
    assert marked == list(range(start, end)) and active() == "surprise"
    guesses = tip()
    assert guesses and len(guesses) == 1 + len(data["top"][start])  # the character and its guesses
    press(Keys.ARROW_RIGHT)
    assert tip()[0].startswith(data["tokens"][start + 1].replace(" ", "\u2423"))
    # Tab on to the cells: layer and cell picked with the keys, the cell's value shown by the arrows
    browser.execute_script("document.getElementById('layer').focus()")
    press(Keys.ARROW_DOWN)
    browser.execute_script("document.getElementById('cell').focus()")
    press(Keys.END, Keys.BACKSPACE, Keys.BACKSPACE, Keys.BACKSPACE, "3")
    assert browser.find_element("id", "cell-label").text == "layer 1, cell 3, tanh(c)"
    press(Keys.TAB, Keys.TAB, Keys.TAB)  # past "next cell" and the state: the cells view
    assert active() == "cells"
    press(Keys.END)
    assert tip()[0].startswith(data["tokens"][-1]) and "tanh(c)" in tip()[0]


@pytest.mark.slow
def test_the_layer_and_state_menus_repaint_on_a_change_event_alone(tmp_path, browser):
    """Selenium's Select (as some tools and browsers) picks an option with a `change` event and no
    `input`: the cells view and its label stayed on the old layer and state."""
    from selenium.webdriver.support.select import Select

    _, path = hostile_page(tmp_path)
    opened(browser, path)

    def view() -> tuple[str, list[str]]:
        colours = browser.execute_script(
            "return [...document.getElementById('cells').children].map((s) => s.style.backgroundColor)"
        )
        return browser.find_element("id", "cell-label").text, colours

    before = view()
    layer = "0" if before[0].startswith("layer 1") else "1"
    Select(browser.find_element("id", "layer")).select_by_value(layer)
    after_layer = view()
    assert after_layer[0].startswith(f"layer {layer},") and after_layer[1] != before[1], after_layer[0]
    Select(browser.find_element("id", "kind")).select_by_value("h")
    after_state = view()
    assert after_state[0].endswith(", h") and after_state[1] != after_layer[1], after_state[0]


def table_lines(driver, section: str) -> tuple[list[tuple[str, int]], bool]:
    """The first table of the page's section `section` ("3."): each cell with text, and the lines it takes,
    and whether the table fits its view. Cells holding a button are left out: a button's box is not a line
    of text."""
    return driver.execute_script(
        """const table = [...document.querySelectorAll("h2")].find((h) => h.textContent.startsWith(arguments[0]))
             .nextElementSibling.nextElementSibling.querySelector("table");
           const lines = (cell) => { const r = document.createRange(); r.selectNodeContents(cell);
             return new Set([...r.getClientRects()].map((box) => Math.round(box.top))).size; };
           return [[...table.querySelectorAll("td, th")].filter((c) => c.textContent && !c.querySelector("button"))
                     .map((c) => [c.textContent, lines(c)]),
                   table.parentElement.scrollWidth <= table.parentElement.clientWidth];""",
        section,
    )


@pytest.mark.slow
def test_the_gate_table_reads_on_one_line_a_row_at_800_pixels(tmp_path, browser):
    """At 800 pixels the gate table wrapped "layer 0" onto two lines and each header ("input < 0.1")
    too, while the view had room for them on one."""
    _, path = hostile_page(tmp_path)
    browser.set_window_size(800, 900)
    opened(browser, path)
    lines, fits = table_lines(browser, "3.")
    assert any(text == "layer 0" for text, _ in lines) and fits
    assert [(text, n) for text, n in lines if n != 1] == []


@pytest.mark.slow
def test_every_gates_dots_can_be_seen_in_the_scatter(tmp_path, browser):
    """Input dots were drawn first, under the forget and output dots of the cells at the same place: where
    the gates of a model agree, the blue dots were hidden. Here every input gate saturates as its forget
    gate does, the worst case: at each dot's centre, a dot of its own gate is on top."""
    torch.manual_seed(0)
    model = make_model(Vocab.from_counts(Counter(HOSTILE)), hidden=8).eval()
    inspection = analyse(model, HOSTILE, HOSTILE * 3, max_order=3)
    forget = inspection.saturation["forget"]
    same = dataclasses.replace(inspection, saturation={**inspection.saturation, "input": forget.copy()})
    path = tmp_path / "same.html"
    path.write_text(render(same, "same"), encoding="utf-8")
    browser.set_window_size(1200, 2000)
    opened(browser, path)
    hidden = browser.execute_script(
        """const hidden = [];
           for (const dot of document.querySelectorAll("svg circle")) {
             dot.scrollIntoView({block: "center"});
             const box = dot.getBoundingClientRect();
             const top = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
             if (!top || top.tagName !== "circle" || top.getAttribute("fill") !== dot.getAttribute("fill"))
               hidden.push(dot.getAttribute("fill"));
           }
           return [hidden, document.querySelectorAll("svg circle").length];"""
    )
    assert hidden[1] == 3 * 2 * 8 and hidden[0] == [], hidden


@pytest.mark.slow
def test_the_features_table_reads_on_one_line_a_row_at_800_pixels(tmp_path, browser):
    """At 800 pixels the features table of 5,000 characters wrapped its header ("correlation over 5,000
    characters"), "position in the line" and "no better than chance": the count is said above it now."""
    torch.manual_seed(0)
    text = (HOSTILE * 61)[:5000]
    model = make_model(Vocab.from_counts(Counter(text)), hidden=8).eval()
    path = tmp_path / "features.html"
    path.write_text(render(analyse(model, text, text, max_order=3), "features"), encoding="utf-8")
    browser.set_window_size(800, 900)
    opened(browser, path)
    lines, fits = table_lines(browser, "2.")
    texts = {text for text, _ in lines}
    assert {"position in the line", "no better than chance"} <= texts and fits, texts
    assert [(text, n) for text, n in lines if n != 1] == []
